"""Reductions and the softmax family.

``axis`` is ``None`` (all axes) or a tuple of non-negative axes, already
normalised by the Tensor method. Each backward first restores the reduced axes
as size-1 axes (``keepdims`` shape) so the gradient broadcasts against the input.
"""
from __future__ import annotations

from typing import Any

from ..autograd import Function


def _keepdims_shape(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


class Sum(Function):
    """d sum(x) = broadcast(dy) over the summed axes"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        self.shape, self.axis = x.shape, axis
        return self.xp.asarray(x.sum(axis=axis, keepdims=keepdims))

    def backward(self, g: Any) -> Any:
        g = g.reshape(_keepdims_shape(self.shape, self.axis))
        return self.xp.broadcast_to(g, self.shape)


class Mean(Function):
    """d mean(x) = broadcast(dy) / n, n the number of averaged elements"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        self.shape, self.axis = x.shape, axis
        self.n = max(1, x.size // max(1, _kept_size(x.shape, axis)))
        return self.xp.asarray(x.mean(axis=axis, keepdims=keepdims))

    def backward(self, g: Any) -> Any:
        g = g.reshape(_keepdims_shape(self.shape, self.axis)) / self.n
        return self.xp.broadcast_to(g, self.shape)


def _kept_size(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> int:
    """Number of elements left after reducing ``axis`` of ``shape``."""
    n = 1
    for i, s in enumerate(shape):
        if axis is not None and i not in axis:
            n *= s
    return n


class Max(Function):
    """d max(x) = dy at the maximal elements (shared equally between ties)"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        out = x.max(axis=axis, keepdims=True)
        self.x, self.out_keep, self.axis = x, out, axis
        return self.xp.asarray(out if keepdims else out.reshape(_reduced_shape(x.shape, axis)))

    def backward(self, g: Any) -> Any:
        mask = self.x == self.out_keep
        count = mask.sum(axis=self.axis, keepdims=True)
        g = g.reshape(self.out_keep.shape)
        return g * mask / count.astype(g.dtype)


class Min(Max):
    """d min(x) = dy at the minimal elements (shared equally between ties)"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        out = x.min(axis=axis, keepdims=True)
        self.x, self.out_keep, self.axis = x, out, axis
        return self.xp.asarray(out if keepdims else out.reshape(_reduced_shape(x.shape, axis)))


def _reduced_shape(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axis)


def stable_logsumexp(xp: Any, x: Any, axis: Any) -> Any:
    """log(sum(exp(x))) over ``axis`` (keepdims), shifted by the max so exp never overflows."""
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    return xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True)) + m


class LogSumExp(Function):
    """d logsumexp(x) = softmax(x) dy (over an empty axis the sum is 0: logsumexp = -inf, as PyTorch)"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        if x.size == 0:
            out = self.xp.full(_keepdims_shape(x.shape, axis), -self.xp.inf, dtype=x.dtype)
        else:
            out = stable_logsumexp(self.xp, x, axis)
        self.x, self.out_keep = x, out
        return out if keepdims else out.reshape(_reduced_shape(x.shape, axis))

    def backward(self, g: Any) -> Any:
        return g.reshape(self.out_keep.shape) * self.xp.exp(self.x - self.out_keep)


class Softmax(Function):
    """y = softmax(x); dx = y (dy - sum(dy y))"""

    def forward(self, x: Any, axis: int = -1) -> Any:
        if x.size == 0:  # an empty axis (or tensor): an empty result, as PyTorch
            self.out, self.axis = x, axis
            return x.copy()
        e = self.xp.exp(x - x.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        self.out, self.axis = out, axis
        return out

    def backward(self, g: Any) -> Any:
        y = self.out
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x); dx = dy - softmax(x) sum(dy)"""

    def forward(self, x: Any, axis: int = -1) -> Any:
        xp = self.xp
        if x.size == 0:  # an empty axis (or tensor): an empty result, as PyTorch
            self.out, self.axis = x, axis
            return x.copy()
        m = x.max(axis=axis, keepdims=True)
        shifted = x - xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # subtract m first: no float32 loss
        self.out, self.axis = out, axis
        return out

    def backward(self, g: Any) -> Any:
        return g - self.xp.exp(self.out) * g.sum(axis=self.axis, keepdims=True)


def _shifted(xp: Any, a: Any, axis: int, fill: Any, reverse: bool = False) -> Any:
    """``a`` moved one place along ``axis`` (forward, or backward when ``reverse``), ``fill`` in the freed place."""
    n = a.shape[axis]
    pad = xp.full(a.shape[:axis] + (1,) + a.shape[axis + 1 :], fill, dtype=a.dtype)
    lead = (slice(None),) * axis
    if reverse:
        return xp.concatenate([a[lead + (slice(1, n),)], pad], axis=axis)
    return xp.concatenate([pad, a[lead + (slice(0, n - 1),)]], axis=axis)


def _reverse_cumsum(xp: Any, a: Any, axis: int) -> Any:
    """sum_{j >= i} a_j along ``axis``."""
    return xp.flip(xp.cumsum(xp.flip(a, axis), axis=axis), axis)


class Prod(Function):
    """y = prod_i x_i along ``axis``; dy/dx_i = prod_{j != i} x_j

    The products of the elements before and after each one (exclusive cumulative products) give it
    without dividing by x_i, so it is exact where elements are 0.
    """

    def forward(self, x: Any, axis: int = 0, keepdims: bool = False) -> Any:
        self.x, self.axis = x, axis
        return self.xp.asarray(x.prod(axis=axis, keepdims=keepdims))

    def backward(self, g: Any) -> Any:
        xp, x, axis = self.xp, self.x, self.axis
        if x.shape[axis] == 0:
            return xp.zeros(x.shape, dtype=g.dtype)
        before = xp.cumprod(_shifted(xp, x, axis, 1), axis=axis)  # prod_{j < i} x_j
        after = xp.flip(xp.cumprod(xp.flip(_shifted(xp, x, axis, 1, reverse=True), axis), axis=axis), axis)
        return xp.expand_dims(g.reshape(_reduced_shape(x.shape, (axis,))), axis) * before * after


class CumSum(Function):
    """y_i = sum_{j <= i} x_j; dx_i = sum_{j >= i} dy_j"""

    def forward(self, x: Any, axis: int = 0) -> Any:
        self.axis = axis
        return self.xp.cumsum(x, axis=axis)

    def backward(self, g: Any) -> Any:
        return _reverse_cumsum(self.xp, g, self.axis)


class CumProd(Function):
    """y_i = prod_{j <= i} x_j; dx_i = sum_{j >= i} dy_j prod_{k <= j, k != i} x_k

    Without zeros that is ``reverse_cumsum(dy y) / x``; along a line holding a zero it is
    summed term by term (exact, quadratic in the length of that axis).
    """

    def forward(self, x: Any, axis: int = 0) -> Any:
        out = self.xp.cumprod(x, axis=axis)
        self.x, self.out, self.axis = x, out, axis
        return out

    def backward(self, g: Any) -> Any:
        xp, x, axis = self.xp, self.x, self.axis
        if not bool((x == 0).any()):
            return _reverse_cumsum(xp, g * self.out, axis) / x
        before = xp.cumprod(_shifted(xp, x, axis, 1), axis=axis)  # prod_{k < i} x_k
        n = x.shape[axis]
        lead = (slice(None),) * axis
        parts = []
        for i in range(n):
            tail = x[lead + (slice(i + 1, n),)]
            ones = xp.ones(x.shape[:axis] + (1,) + x.shape[axis + 1 :], dtype=x.dtype)
            partial = xp.cumprod(xp.concatenate([ones, tail], axis=axis), axis=axis)  # prod_{i < k <= j} x_k
            term = (g[lead + (slice(i, n),)] * partial).sum(axis=axis, keepdims=True)
            parts.append(term * before[lead + (slice(i, i + 1),)])
        return xp.concatenate(parts, axis=axis)


class Norm(Function):
    """y = (sum |x|^p)^(1/p); dx = dy x |x|^(p-2) / y^(p-1) (0 where y = 0)"""

    def forward(self, x: Any, p: float = 2.0, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        xp = self.xp
        a = xp.abs(x)
        if p == 1:
            out = a.sum(axis=axis, keepdims=True)
        elif p == 2:
            out = xp.sqrt((x * x).sum(axis=axis, keepdims=True))
        else:
            out = ((a**p).sum(axis=axis, keepdims=True)) ** (1.0 / p)
        self.x, self.p, self.out_keep = x, p, out
        return out if keepdims else out.reshape(_reduced_shape(x.shape, axis))

    def backward(self, g: Any) -> Any:
        xp, x, p, y = self.xp, self.x, self.p, self.out_keep
        g = g.reshape(y.shape)
        if p == 1:
            return g * xp.sign(x)
        safe = xp.where(y == 0, 1, y).astype(y.dtype, copy=False)
        if p == 2:
            return xp.where(y == 0, 0, g * x / safe).astype(x.dtype, copy=False)
        scale = xp.where(y == 0, 0, g / safe ** (p - 1)).astype(x.dtype, copy=False)
        return scale * x * xp.abs(x) ** (p - 2)
