"""Softmax and log-softmax over the last axis as compiled loops, one row at a time.

The reference ops (:class:`tinygrad_lm.ops.Softmax`, :class:`tinygrad_lm.ops.LogSoftmax`) are
whole-array NumPy expressions: a max, a subtraction, an exp, a sum and a division, each a pass
over memory with its own temporary, and three or four more for the backward. Attention written by
hand (``(q @ k.transpose(-2, -1)) * scale``, ``masked_fill``, ``softmax``, ``@ v``) runs its
(B, heads, T, T) scores through them at every layer. Here each row stays in the L1 cache while
two short passes over it do the whole forward (max; then exp, sum and scale), and one does the
backward, with no temporaries. On a GPU these kernels have no CUDA twin, so CuPy arrays take the
reference.
"""
from __future__ import annotations

import math
from typing import Any

import numpy

from .. import ops
from . import compiler, register, workers


def _softmax_rows_kernel(x: Any, y: Any, log: bool) -> None:
    """y_n = softmax(x_n), or log softmax(x_n) with ``log``, for each row n of x (N, C).

    m_n = max_c x_nc; e_nc = exp(x_nc - m_n); s_n = sum_c e_nc; softmax = e / s, log softmax = (x - m) - log s.
    A row whose max is not finite gives what the reference gives: NaN where x - m is NaN (all -inf, or +inf);
    log softmax shifts by 0 instead of an infinite max, as the reference does.
    """
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for n in range(N):
        m = x[n, 0]
        for c in range(1, C):
            if x[n, c] > m:
                m = x[n, c]
        if log and not (m - m == zero):  # an infinite (or NaN) max: shift by 0
            m = zero
        s = zero
        for c in range(C):
            if log:
                y[n, c] = x[n, c] - m
                s += compiler.exp(y[n, c])
            else:
                e = compiler.exp(x[n, c] - m)
                y[n, c] = e
                s += e
        if log:
            # x - m waits in y (memory): a compiler free to reassociate would otherwise compute
            # x - (m + log s), where log s is lost next to a large m (log softmax of [-1e4] * 3 in float32)
            log_s = math.log(s)
            for c in range(C):
                y[n, c] -= log_s
        else:
            r = one / s
            for c in range(C):
                y[n, c] *= r


def _softmax_rows_back_kernel(y: Any, g: Any, dx: Any, log: bool) -> None:
    """dx_n = y_n (g_n - sum(g_n y_n)) for softmax, dx_n = g_n - exp(y_n) sum(g_n) for log softmax (y the output)."""
    N, C = y.shape
    zero = y.dtype.type(0)
    for n in range(N):
        s = zero
        for c in range(C):
            s += g[n, c] if log else g[n, c] * y[n, c]
        for c in range(C):
            dx[n, c] = g[n, c] - compiler.exp(y[n, c]) * s if log else y[n, c] * (g[n, c] - s)


def _softmax_rows_back_in_place_kernel(y: Any, g: Any, log: bool) -> None:
    """:func:`_softmax_rows_back_kernel` with dx written over g (a gradient the engine hands over: in_place.py).
    Its own loop: given dx = g, that kernel runs 2-3x slower, as the compiler then cannot vectorise it."""
    N, C = y.shape
    zero = y.dtype.type(0)
    for n in range(N):
        s = zero
        for c in range(C):
            s += g[n, c] if log else g[n, c] * y[n, c]
        for c in range(C):
            g[n, c] = g[n, c] - compiler.exp(y[n, c]) * s if log else y[n, c] * (g[n, c] - s)


compiler.callable_in_kernels(_softmax_rows_kernel, _softmax_rows_back_kernel, _softmax_rows_back_in_place_kernel)


def _rows_piece(w: Any, like: Any) -> None:
    """Rows ``first .. last - 1`` of :func:`_softmax_rows_kernel` or of its backward (word 7), in floats of
    ``like``'s type: the words of :func:`_softmax_rows_task`."""
    first, n, size, c, log, backward = w[1], w[2] - w[1], w[4], w[5], w[6] != 0, w[7]
    at = size * first * c  # the first row's offset in bytes
    if backward == 2:
        _softmax_rows_back_in_place_kernel(compiler.floats(w[8] + at, (n, c), like),
                                           compiler.floats(w[9] + at, (n, c), like), log)
    elif backward == 1:
        _softmax_rows_back_kernel(compiler.floats(w[8] + at, (n, c), like), compiler.floats(w[9] + at, (n, c), like),
                                  compiler.floats(w[10] + at, (n, c), like), log)
    else:
        _softmax_rows_kernel(compiler.floats(w[8] + at, (n, c), like), compiler.floats(w[9] + at, (n, c), like), log)


compiler.callable_in_kernels(_rows_piece)


def _softmax_rows_task(task: int) -> None:
    """One thread's share of the forward or the backward (:func:`workers.run_pieces`): rows ``first .. last - 1``.
    Words: 4 the float size, 5 the row length C, 6 log softmax (1) or softmax (0), 7 forward (0), backward (1)
    or backward in place (2), then the addresses of x and y (forward), of y, dy and dx (backward) or of y and
    dy (in place)."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _rows_piece(w, numpy.float32(0))
    else:
        _rows_piece(w, numpy.float64(0))


class _RowsMixin:
    """Softmax and LogSoftmax over the rows of a C-contiguous float array's last axis (``log`` picks which);
    anything else goes to the reference op that follows this class in the method resolution order."""

    log = False
    xp: Any
    owns_grad: bool  # (Function's)

    def forward(self, x: Any, axis: int = -1) -> Any:
        kernel = self._rows(x, axis)
        self.fused = kernel is not None
        if not self.fused:
            return super().forward(x, axis)  # type: ignore[misc]  # the reference op's
        self.out = self._forward_rows(kernel, x)
        return self.out

    def backward(self, g: Any) -> Any:
        dx = self._backward_rows(self.out, g) if self.fused else None
        return super().backward(g) if dx is None else dx  # type: ignore[misc]

    def _rows(self, x: Any, axis: int) -> Any:
        """The compiled forward for x over ``axis``, or None when the reference must run."""
        if x.ndim == 0 or x.size == 0 or axis not in (-1, x.ndim - 1) or not x.flags.c_contiguous:
            return None
        return compiler.compiled(_softmax_rows_kernel, x)  # None for CuPy arrays: there is no CUDA twin

    def _forward_rows(self, kernel: Any, x: Any) -> Any:
        y = self.xp.empty_like(x)
        rows, c = x.size // x.shape[-1], x.shape[-1]
        parts = workers.pieces_for(rows, x.size, x)
        if parts > 1:
            workers.run_pieces(_softmax_rows_task, parts, rows, x.dtype.itemsize, c, self.log, 0,
                               *workers.addresses(x, y))
        else:
            kernel(x.reshape(-1, c), y.reshape(-1, c), self.log)
        return y

    def _backward_rows(self, y: Any, g: Any) -> Any:
        """dx from the output y and its gradient g with the compiled backward, or None if it cannot take g."""
        g = self.xp.ascontiguousarray(g)
        in_place = self.owns_grad  # (ascontiguousarray returns an owned g itself: it is C-contiguous)
        kernel = compiler.compiled(_softmax_rows_back_in_place_kernel if in_place else _softmax_rows_back_kernel, y, g)
        if kernel is None or g.dtype != y.dtype:
            return None
        dx = g if in_place else self.xp.empty_like(y)
        rows, c = y.size // y.shape[-1], y.shape[-1]
        parts = workers.pieces_for(rows, y.size, y, g)
        if parts > 1:
            words = workers.addresses(y, g) if in_place else workers.addresses(y, g, dx)
            workers.run_pieces(_softmax_rows_task, parts, rows, y.dtype.itemsize, c, self.log, 2 if in_place else 1,
                               *words)
        elif in_place:
            kernel(y.reshape(-1, c), g.reshape(-1, c), self.log)
        else:
            kernel(y.reshape(-1, c), g.reshape(-1, c), dx.reshape(-1, c), self.log)
        return dx


@register(ops.Softmax)
class Softmax(_RowsMixin, ops.Softmax):
    """The reference softmax, as :func:`_softmax_rows_kernel` for C-contiguous float rows on the CPU."""


@register(ops.LogSoftmax)
class LogSoftmax(_RowsMixin, ops.LogSoftmax):
    """The reference log-softmax, as :func:`_softmax_rows_kernel` for C-contiguous float rows on the CPU."""

    log = True
