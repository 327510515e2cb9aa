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
    """d logsumexp(x) = softmax(x) dy"""

    def forward(self, x: Any, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        out = stable_logsumexp(self.xp, x, axis)
        self.x, self.out_keep = x, out
        return out if keepdims else out.reshape(_reduced_shape(x.shape, axis))

    def backward(self, g: Any) -> Any:
        return g.reshape(self.out_keep.shape) * self.xp.exp(self.x - self.out_keep)


class Softmax(Function):
    """y = softmax(x); dx = y (dy - sum(dy y))"""

    def forward(self, x: Any, axis: int = -1) -> Any:
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
        m = x.max(axis=axis, keepdims=True)
        shifted = x - xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))  # subtract m first: no float32 loss
        self.out, self.axis = out, axis
        return out

    def backward(self, g: Any) -> Any:
        return g - self.xp.exp(self.out) * g.sum(axis=self.axis, keepdims=True)
