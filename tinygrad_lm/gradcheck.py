"""Finite-difference gradient checking.

``gradcheck`` compares the analytic gradient from ``backward`` with central
differences (f(x + eps) - f(x - eps)) / (2 eps), in float64. For functions with
several or non-scalar outputs it checks the scalar sum_k <w_k, out_k> with
fixed random weights w_k: a wrong Jacobian changes that projection with
probability one, and one backward pass checks all inputs at once.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from . import backend, dtypes, generators
from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(RuntimeError):
    """The analytic and numerical gradients disagree."""


def _outputs(result: Any) -> list[Tensor]:
    if isinstance(result, Tensor):
        result = (result,)
    if not isinstance(result, (tuple, list)):
        raise TypeError(f"gradcheck: fn must return a Tensor (or a tuple of Tensors) computed from the inputs, "
                        f"got {type(result).__name__} {str(result)[:40]}")
    outs = []
    for r in result:
        if isinstance(r, Tensor) and r.dtype.kind == "f":
            outs.append(r)
        elif isinstance(r, (tuple, list)):
            outs.extend(_outputs(r))
    return outs


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | Tensor,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s gradients with respect to every input with ``requires_grad=True``.

    Inputs must be float64 (the check is meaningless in float32). Returns ``True``,
    or raises :class:`GradcheckError` naming the input, the worst element and both
    values (returns ``False`` instead when ``raise_exception=False``).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != dtypes.check_dtype("float64"):
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; gradients are checked in float64")
    outs = _outputs(fn(*inputs))
    if not outs:
        raise ValueError("gradcheck: fn returned no floating point tensor")
    rng = generators.generator_for_check(seed)
    weights = [backend.to_device(rng.standard_normal(o.shape), o.device) for o in outs]

    def evaluate(*xs: Any) -> list[Any]:
        return [o.array.copy() for o in _outputs(fn(*xs))]  # copies: an output may be a view of an input

    saved = [(inputs[i], inputs[i].grad) for i in checked]
    for x, _ in saved:
        x.grad = None
    differentiable = [o for o in outs if o.requires_grad]
    for k, (o, w) in enumerate(zip(outs, weights)):
        if o.requires_grad:
            o.backward(Tensor._wrap(w, o.device), retain_graph=k < len(outs) - 1)
    analytic = {i: (inputs[i].grad.array.copy() if inputs[i].grad is not None else None) for i in checked}
    for x, g in saved:
        x.grad = g
    del differentiable

    ok = True
    with no_grad():
        for i in checked:
            x = inputs[i]
            original = x.array
            x.array = original.copy()  # a C-ordered scratch copy: the flat view below writes through
            flat = x.array.reshape(-1)
            numeric = x.xp.zeros(x.array.size, dtype=x.array.dtype)
            try:
                for j in range(x.array.size):
                    orig = flat[j].item()
                    flat[j] = orig + eps
                    plus = evaluate(*inputs)
                    flat[j] = orig - eps
                    minus = evaluate(*inputs)
                    flat[j] = orig
                    # Project the difference, not each side: large constant outputs (masked -1e9) cancel exactly.
                    diff = sum(float(((p - m) * w).sum()) for p, m, w in zip(plus, minus, weights))
                    numeric[j] = diff / (2 * eps)
            finally:
                x.array = original
            a = analytic[i]
            a = x.xp.zeros(x.array.size, dtype=x.array.dtype) if a is None else a.reshape(-1)
            err = abs(a - numeric) - (atol + rtol * abs(numeric))
            if err.size and float(err.max()) > 0:
                worst = int(err.argmax())
                index = tuple(int(v) for v in backend.unravel_index(worst, x.shape))
                msg = (
                    f"gradcheck: gradient of input {i} (shape {x.shape}) is wrong at index {index}: "
                    f"analytic {float(a[worst]):.8g} vs numerical {float(numeric[worst]):.8g} "
                    f"(atol={atol}, rtol={rtol})"
                )
                if raise_exception:
                    raise GradcheckError(msg)
                ok = False
    return ok
