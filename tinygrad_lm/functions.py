"""PyTorch's function forms: ``tl.exp(x)``, ``tl.max(x, 1)``, ``tl.clamp(x, 0, 1, out=y)``.

Each is a thin wrapper over the Tensor method of the same name (``tl.f(x, ...)`` is
``x.f(...)``), made by :func:`_method_form`, with PyTorch's optional ``out=``: the result
is copied into ``out`` (which must have the result's shape, as PyTorch warns about others).
The few that are not plain method calls (``pow`` with a number base, ``numel``, ``is_tensor``,
``mm``) are written out below.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable, Sequence

from . import autograd, backend
from .tensor import Tensor

# Tensor methods whose function form takes the tensor first: tl.name(input, *args, **kwargs).
_METHOD_FORMS = (
    # pointwise math
    "abs", "absolute", "neg", "negative", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt",
    "reciprocal", "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "sigmoid", "relu", "erf", "floor", "ceil", "round", "trunc", "fix", "frac", "sign", "square",
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "atan2", "arctan2", "fmod",
    "remainder", "floor_divide", "lerp", "addcmul", "addcdiv", "clamp", "clip", "clamp_min", "clamp_max",
    # comparisons and logic
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "less", "greater_equal", "less_equal", "not_equal", "equal",
    "isclose", "allclose", "isnan", "isinf", "isfinite", "isposinf", "isneginf", "logical_and", "logical_or",
    "logical_not", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    # reductions
    "sum", "mean", "nansum", "nanmean", "prod", "cumsum", "cumprod", "logcumsumexp", "norm", "var", "std",
    "var_mean", "std_mean", "max", "min", "amax", "amin", "aminmax", "argmax", "argmin", "sort", "argsort",
    "msort", "topk", "kthvalue", "median", "mode", "all", "any", "count_nonzero", "logsumexp", "softmax",
    "log_softmax",
    # shape, indexing, joining
    "reshape", "transpose", "swapaxes", "swapdims", "permute", "squeeze", "unsqueeze", "flatten", "unflatten",
    "narrow", "select", "movedim", "moveaxis", "flip", "fliplr", "flipud", "roll", "tile", "repeat_interleave",
    "unbind", "split", "chunk", "gather", "index_select", "take_along_dim", "masked_select", "masked_fill",
    "scatter", "scatter_add", "index_add", "nonzero", "argwhere", "diag", "diagonal", "trace", "t", "tril", "triu",
    "matmul", "clone", "detach",
)


def _tensor_arg(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(value).__name__}")
    return value


def _into(name: str, out: Any, result: Any) -> Tensor:
    """``result`` copied into ``out`` (PyTorch's ``out=``): same shape and device, values cast to out's dtype."""
    if not isinstance(result, Tensor):
        raise TypeError(f"{name}(): out= is supported for single-tensor results only")
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if out.shape != result.shape:
        raise RuntimeError(f"{name}(): out has shape {out.shape} but the result has shape {result.shape}")
    if autograd.is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic differentiation, "
                           "but one of the arguments requires grad")
    return out.copy_(result)


def _method_form(name: str) -> Callable[..., Any]:
    method = getattr(Tensor, name)

    def function(input: Any, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        result = method(_tensor_arg(name, input), *args, **kwargs)
        return result if out is None else _into(name, out, result)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``tl.{name}(input, ...)`` is ``input.{name}(...)``."
    return function


for _name in _METHOD_FORMS:
    globals()[_name] = _method_form(_name)


def pow(input: Any, exponent: Any, *, out: Any = None) -> Tensor:  # noqa: A001 - PyTorch's name
    """``input ** exponent``; ``input`` may be a number when ``exponent`` is a tensor."""
    if isinstance(input, Tensor):
        result = input**exponent
    elif isinstance(exponent, Tensor):
        result = exponent.__rpow__(input)
    else:
        raise TypeError("pow(): one of input and exponent must be a Tensor")
    return result if out is None else _into("pow", out, result)


def mm(input: Tensor, mat2: Tensor, *, out: Any = None) -> Tensor:
    """The product of two matrices (2-D only; ``matmul`` broadcasts)."""
    if _tensor_arg("mm", input).ndim != 2 or _tensor_arg("mm", mat2).ndim != 2:
        raise RuntimeError(f"mm: expected two 2-D tensors, got shapes {input.shape} and {mat2.shape}")
    result = input @ mat2
    return result if out is None else _into("mm", out, result)


def bmm(input: Tensor, mat2: Tensor, *, out: Any = None) -> Tensor:
    """Batched matrix products of two 3-D tensors with the same batch size."""
    if _tensor_arg("bmm", input).ndim != 3 or _tensor_arg("bmm", mat2).ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: expected two 3-D tensors with one batch size, got {input.shape} and {mat2.shape}")
    result = input @ mat2
    return result if out is None else _into("bmm", out, result)


def dot(input: Tensor, other: Tensor) -> Tensor:
    if _tensor_arg("dot", input).ndim != 1 or _tensor_arg("dot", other).ndim != 1:
        raise RuntimeError(f"dot: 1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return input @ other


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    return _tensor_arg("outer", input).reshape(-1, 1) * _tensor_arg("outer", vec2).reshape(1, -1)


def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    result: tuple[int, ...] = ()
    for shape in shapes:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = builtins.max(len(result), len(shape))  # (this module's max and any are PyTorch's: see _METHOD_FORMS)
        a, b = (1,) * (n - len(result)) + result, (1,) * (n - len(shape)) + shape
        if builtins.any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
            raise RuntimeError(f"broadcast_shapes: shapes {result} and {shape} do not broadcast")
        result = tuple(y if x == 1 else x for x, y in zip(a, b))
    return result


def broadcast_to(input: Tensor, size: Sequence[int]) -> Tensor:
    return _tensor_arg("broadcast_to", input).expand(*size)


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    shape = broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t if t.shape == shape else t.expand(*shape) for t in tensors)


def numel(input: Tensor) -> int:
    return _tensor_arg("numel", input).numel()


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    return _tensor_arg("is_floating_point", input).is_floating_point()


def get_default_dtype() -> backend.DType:
    """The dtype Python floats become (``tl.float32`` unless ``set_default_dtype`` changed it)."""
    return backend.as_dtype(backend.get_default_dtype())


def set_printoptions(precision: int | None = None, threshold: int | None = None, edgeitems: int | None = None,
                     linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """How tensors print (PyTorch's options; ``profile`` is 'default', 'short' or 'full')."""
    backend.set_print_options(precision=precision, threshold=threshold, edgeitems=edgeitems, linewidth=linewidth,
                              profile=profile, sci_mode=sci_mode)


__all__ = [*_METHOD_FORMS, "bmm", "broadcast_shapes", "broadcast_tensors", "broadcast_to", "dot", "get_default_dtype",
           "is_floating_point", "is_tensor", "mm", "numel", "outer", "pow", "set_printoptions"]
