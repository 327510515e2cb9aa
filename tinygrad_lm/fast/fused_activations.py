"""tanh and the sigmoid as compiled passes, forward and backward.

NumPy's float32 ``tanh`` calls libm once per element on CPUs without AVX-512: about 6.5 ns an
element on the project's machine, against 0.9 ns for the compiled :func:`compiler.tanh`, which
vectorises. The reference sigmoid (``exp(-|x|)``, then a ``where`` of two quotients) is five
array operations, each a pass over memory and a temporary, and the backward passes
``g (1 - y^2)`` and ``g y (1 - y)`` are three more each. The kernels below do each of these in
one pass over flat arrays. Models written with ``torch.tanh``/``torch.sigmoid`` (RNN and GRU
cells unrolled in Python, a tanh hidden layer, the tanh form of GELU) spend their elementwise
time here.

CuPy arrays (there are no CUDA twins: CuPy's own elementwise kernels are one pass already),
other dtypes and a gradient of another dtype go to the reference ops through ``super()``.
"""
from __future__ import annotations

from typing import Any

from .. import ops
from . import compiler, register


def _tanh_kernel(x: Any, out: Any) -> None:
    """out = tanh(x), element by element (flat arrays; out may be x)."""
    for k in range(x.size):
        out[k] = compiler.tanh(x[k])


def _tanh_back_kernel(g: Any, y: Any, dx: Any) -> None:
    """dx = g (1 - y^2) with y = tanh(x) (flat arrays)."""
    one = y.dtype.type(1)
    for k in range(y.size):
        dx[k] = g[k] * (one - y[k] * y[k])


def _tanh_back_in_place_kernel(g: Any, y: Any) -> None:
    """g <- g (1 - y^2): :func:`_tanh_back_kernel` over a gradient the engine hands over (fast/in_place.py). Its
    own loop: given dx = g, that kernel's loop is not vectorised (the compiler cannot rule out an overlap)."""
    one = y.dtype.type(1)
    for k in range(y.size):
        g[k] *= one - y[k] * y[k]


def _sigmoid_kernel(x: Any, out: Any) -> None:
    """out = 1 / (1 + e^-x) as the reference computes it: with e = e^-|x|, 1 / (1 + e) for x >= 0 and
    e / (1 + e) below, so that e^-|x| never overflows and sigma(x) keeps its relative accuracy for x << 0."""
    one = x.dtype.type(1)
    for k in range(x.size):
        v = x[k]
        e = compiler.exp(-abs(v))
        s = one / (one + e)
        out[k] = s if v >= 0 else e * s


def _sigmoid_back_kernel(g: Any, y: Any, dx: Any) -> None:
    """dx = g y (1 - y) with y = sigma(x) (flat arrays)."""
    one = y.dtype.type(1)
    for k in range(y.size):
        dx[k] = g[k] * y[k] * (one - y[k])


def _sigmoid_back_in_place_kernel(g: Any, y: Any) -> None:
    """g <- g y (1 - y): :func:`_sigmoid_back_kernel` over a gradient the engine hands over (as for tanh)."""
    one = y.dtype.type(1)
    for k in range(y.size):
        g[k] *= y[k] * (one - y[k])


def _flat(xp: Any, x: Any) -> Any:
    """x as a flat C-contiguous array (a view where x already is one)."""
    return x.reshape(-1) if x.flags.c_contiguous else xp.ascontiguousarray(x).reshape(-1)


def _elementwise(op: Any, kernel: Any, x: Any) -> Any:
    """``kernel(x, out)`` into a new array of x's shape, or None where there is no compiled kernel for x."""
    run = compiler.compiled(kernel, x)
    if run is None:
        return None
    out = op.xp.empty(x.shape, dtype=x.dtype)
    run(_flat(op.xp, x), out.reshape(-1))
    return out


def _elementwise_back(op: Any, kernel: Any, in_place_kernel: Any, g: Any, y: Any) -> Any:
    """``kernel(g, y, dx)`` into a new array of y's shape, or ``in_place_kernel(g, y)`` over a gradient the op owns
    (``Function.owns_grad``); None (no kernel, or g of another shape or dtype)."""
    if g.shape != y.shape or g.dtype != y.dtype:
        return None
    if op.owns_grad:
        run = compiler.compiled(in_place_kernel, g, y)
        if run is not None:
            run(g.reshape(-1), _flat(op.xp, y))
            return g
    run = compiler.compiled(kernel, g, y)
    if run is None:
        return None
    dx = op.xp.empty(y.shape, dtype=y.dtype)
    run(_flat(op.xp, g), _flat(op.xp, y), dx.reshape(-1))
    return dx


class _OnePass:
    """forward and backward as one compiled pass each: the subclass names its ``kernel`` (x -> y) and
    ``back_kernel`` (dy, y -> dx); what they do not take goes to the reference op, next in the MRO."""

    kernel: Any
    back_kernel: Any
    back_in_place_kernel: Any  # (dy, y): dy <- dx
    out: Any  # the forward's result, which both derivatives are written in
    owns_grad: bool  # (Function's)

    def forward(self, x: Any) -> Any:
        out = _elementwise(self, type(self).kernel, x)
        if out is None:
            return super().forward(x)  # type: ignore[misc]
        self.out = out
        return out

    def backward(self, g: Any) -> Any:
        dx = _elementwise_back(self, type(self).back_kernel, type(self).back_in_place_kernel, g, self.out)
        return super().backward(g) if dx is None else dx  # type: ignore[misc]


@register(ops.Tanh)
class Tanh(_OnePass, ops.Tanh):
    """tanh and its derivative, each one compiled pass (:func:`_tanh_kernel`, :func:`_tanh_back_kernel`)."""

    kernel, back_kernel = staticmethod(_tanh_kernel), staticmethod(_tanh_back_kernel)
    back_in_place_kernel = staticmethod(_tanh_back_in_place_kernel)


@register(ops.Sigmoid)
class Sigmoid(_OnePass, ops.Sigmoid):
    """The sigmoid and its derivative, one compiled pass each (:func:`_sigmoid_kernel`,
    :func:`_sigmoid_back_kernel`)."""

    kernel, back_kernel = staticmethod(_sigmoid_kernel), staticmethod(_sigmoid_back_kernel)
    back_in_place_kernel = staticmethod(_sigmoid_back_in_place_kernel)


def tanh_in_place(a: Any) -> bool:
    """a <- tanh(a) with the compiled kernel, for a C-contiguous array; False (a untouched) where there is none."""
    if not a.flags.c_contiguous:
        return False
    run = compiler.compiled(_tanh_kernel, a)
    if run is None:
        return False
    flat = a.reshape(-1)
    run(flat, flat)
    return True
