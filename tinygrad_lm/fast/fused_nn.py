"""GELU, LayerNorm, cross-entropy and the embedding's backward (that of ``x[ids]`` too) as compiled kernels.

NumPy runs each of these ops as a dozen passes over memory, one per array operation, with a
temporary array for each. A kernel here writes the op's equations once more, one row (or one
element) at a time, so that a row stays in the L1 cache while two or three short passes over it do
all the work. :func:`compiler.compiled` gives the kernel compiled by Numba for NumPy float32/float64
arrays, or its CUDA twin (:mod:`.cuda_kernels`, keyed by the kernel's name) for CuPy arrays; for
anything else the op runs its reference code (:mod:`tinygrad_lm.ops`) through ``super()``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy

from .. import ops
from . import compiler, register, workers
from .blas import matmul

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715

# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26 (|error| < 1.5e-7):
# erfc(z) = t P(t) exp(-z^2) for z >= 0, t = 1 / (1 + p z), P(t) = a1 + a2 t + a3 t^2 + a4 t^3 + a5 t^4;
# _ERF_A lists a5 first, for Horner's rule.
_ERF_P = 0.3275911
_ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _gelu_jit_float32(x: Any, out: Any, dx: Any) -> None:
    """The float32 kernel: out = x Phi(x) and dx = Phi(x) + x phi(x), one element at a time (flat arrays).

    Phi comes from A&S 7.1.26 (float32 rounding is larger than its error): with z = |x| / sqrt(2),
    Phi(-|x|) = erfc(z) / 2 = t P(t) exp(-x^2/2) / 2 and Phi(x) = 1 - Phi(-|x|) for x >= 0. The same
    exp(-x^2/2) = sqrt(2 pi) phi(x) gives the derivative, so GELU and its derivative cost one exp.
    """
    f = x.dtype.type
    p = f(_ERF_P * _INV_SQRT_2)
    a5, a4, a3 = f(0.5 * _ERF_A[0]), f(0.5 * _ERF_A[1]), f(0.5 * _ERF_A[2])  # A&S's a_k / 2, a5 first
    a2, a1 = f(0.5 * _ERF_A[3]), f(0.5 * _ERF_A[4])
    half, one, c = f(0.5), f(1), f(_INV_SQRT_2PI)
    for k in range(x.size):
        v = x[k]
        t = one / (one + p * abs(v))
        e = compiler.exp(-half * v * v)  # sqrt(2 pi) phi(v)
        tail = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * e  # Phi(-|v|)
        cdf = one - tail if v >= 0 else tail
        out[k] = v * cdf
        dx[k] = cdf + c * v * e


def _gelu_jit_exact(x: Any, out: Any, dx: Any) -> None:
    """The float64 kernel: the same with Phi(v) = (1 + erf(v / sqrt 2)) / 2 from libm (flat arrays)."""
    for k in range(x.size):
        v = x[k]
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT_2))
        out[k] = v * cdf
        dx[k] = cdf + _INV_SQRT_2PI * v * math.exp(-0.5 * v * v)


def _gelu_tanh_kernel(x: Any, out: Any, dx: Any) -> None:
    """GELU's tanh form and its derivative in one pass (flat arrays): with u = sqrt(2/pi) (x + 0.044715 x^3)
    and h = (1 + tanh u) / 2, out = x h and dx = h + x (1 - tanh^2 u) u' / 2, u' = sqrt(2/pi) (1 + 3 0.044715 x^2)."""
    f = x.dtype.type
    c, k3 = f(_SQRT_2_OVER_PI), f(_TANH_CUBIC)
    half, one, three = f(0.5), f(1), f(3)
    for k in range(x.size):
        v = x[k]
        t = compiler.tanh(c * (v + k3 * v * v * v))
        h = half * (one + t)
        out[k] = v * h
        dx[k] = h + half * v * (one - t * t) * c * (one + three * k3 * v * v)


@register(ops.Gelu)
class Gelu(ops.Gelu):
    """GELU and its derivative in one compiled pass: the exact form (:func:`_gelu_jit_float32`,
    :func:`_gelu_jit_exact`) and the tanh form (:func:`_gelu_tanh_kernel`, which has no CUDA twin).

    The reference's backward (dy times the saved derivative) serves both.
    """

    def forward(self, x: Any, approximate: str = "none") -> Any:
        if approximate == "none":
            kernel = compiler.compiled(_gelu_jit_float32 if x.dtype == "float32" else _gelu_jit_exact, x)
        else:
            kernel = compiler.compiled(_gelu_tanh_kernel, x)
        if kernel is None:
            return super().forward(x, approximate)
        xp = self.xp
        flat = xp.ascontiguousarray(x).reshape(-1)
        out, dx = xp.empty_like(flat), xp.empty_like(flat)
        parts = workers.pieces_for(flat.size, flat.size, flat)
        if parts > 1:
            workers.run_pieces(_gelu_part, parts, flat.size, flat.dtype.itemsize, int(approximate != "none"),
                               *workers.addresses(flat, out, dx))
        else:
            kernel(flat, out, dx)
        self.dx = dx.reshape(x.shape)
        return out.reshape(x.shape)

    def backward(self, g: Any) -> Any:
        dx = self.dx
        if type(g) is not numpy.ndarray or g.shape != dx.shape or g.dtype != dx.dtype or not g.flags.c_contiguous:
            return super().backward(g)
        if self.owns_grad:  # (fast/in_place.py) g *= dx on one thread: 2x faster than into a
            return numpy.multiply(g, dx, out=g)  # new array on two, and no faster in pieces (memory-bound)
        parts = workers.pieces_for(dx.size, dx.size, g, dx)  # (a multiply streams memory: 1.2x on 2 threads)
        if parts < 2:
            return super().backward(g)
        out = numpy.empty_like(dx)
        workers.run_pieces(_multiply_part, parts, dx.size, dx.itemsize, *workers.addresses(g, dx, out))
        return out


compiler.callable_in_kernels(_gelu_jit_float32, _gelu_jit_exact, _gelu_tanh_kernel)


def _gelu_piece(w: Any, like: Any) -> None:
    """Elements ``first .. last - 1`` of Gelu's forward in floats of ``like``'s type, from the words of
    :func:`_gelu_part`."""
    first, n, size = w[1], w[2] - w[1], w[4]
    x, out = compiler.floats(w[6] + size * first, n, like), compiler.floats(w[7] + size * first, n, like)
    dx = compiler.floats(w[8] + size * first, n, like)
    if w[5] != 0:
        _gelu_tanh_kernel(x, out, dx)
    elif size == 4:
        _gelu_jit_float32(x, out, dx)
    else:
        _gelu_jit_exact(x, out, dx)


def _multiply_piece(w: Any, like: Any) -> None:
    """Elements ``first .. last - 1`` of ``a * b`` in floats of ``like``'s type, from the words of
    :func:`_multiply_part`."""
    first, n, size = w[1], w[2] - w[1], w[4]
    a, b = compiler.floats(w[5] + size * first, n, like), compiler.floats(w[6] + size * first, n, like)
    out = compiler.floats(w[7] + size * first, n, like)
    for i in range(n):
        out[i] = a[i] * b[i]


compiler.callable_in_kernels(_gelu_piece, _multiply_piece)


def _gelu_part(task: int) -> None:
    """One thread's share of Gelu's forward (:func:`workers.run_pieces`): elements ``first .. last - 1`` of
    x, out and dx. Words: 4 the float size, 5 the form (0 exact: :func:`_gelu_jit_float32` for float32,
    :func:`_gelu_jit_exact` for float64; 1 tanh: :func:`_gelu_tanh_kernel`), 6-8 the addresses of x, out, dx."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _gelu_piece(w, numpy.float32(0))
    else:
        _gelu_piece(w, numpy.float64(0))


def _multiply_part(task: int) -> None:
    """One thread's share of ``a * b`` (GELU's backward, dy times the saved derivative): elements ``first .. last
    - 1``. Words: 4 the float size, 5-7 the addresses of a, b and the product (flat, C-contiguous)."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _multiply_piece(w, numpy.float32(0))
    else:
        _multiply_piece(w, numpy.float64(0))


def _layer_norm_forward_kernel(x: Any, weight: Any, bias: Any, eps: float, y: Any, mean: Any, rstd: Any) -> None:
    """LayerNorm of each row of x (M, D) into y, one row at a time, and the row's mean and rstd (M,):
    mu = mean(x), var = mean((x - mu)^2), rstd = 1 / sqrt(var + eps), y = (x - mu) rstd w + b.
    ``weight`` and ``bias`` (D,) may each be None."""
    M, D = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    inv_d = one / x.dtype.type(max(D, 1))
    eps_ = x.dtype.type(eps)
    for i in range(M):
        total = zero
        for j in range(D):
            total += x[i, j]
        mu = total * inv_d
        squares = zero
        for j in range(D):
            x_c = x[i, j] - mu
            squares += x_c * x_c
        r = one / math.sqrt(squares * inv_d + eps_)
        mean[i], rstd[i] = mu, r
        for j in range(D):
            y_ij = (x[i, j] - mu) * r  # x_hat
            if weight is not None:
                y_ij *= weight[j]
            if bias is not None:
                y_ij += bias[j]
            y[i, j] = y_ij


def _layer_norm_backward_kernel(x: Any, mean: Any, rstd: Any, weight: Any, g: Any, dx: Any, dw: Any, db: Any) -> None:
    """LayerNorm's backward, one row of x (M, D) at a time, from the forward's mean and rstd (M,).

    With x_hat = (x - mu) rstd and g_hat = g w (g if ``weight`` is None): a first pass over the row sums
    g_hat and g_hat x_hat and adds g x_hat and g into the accumulators dw and db (D,); a second pass
    writes dx = (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) rstd.
    """
    M, D = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    inv_d = one / x.dtype.type(max(D, 1))
    for i in range(M):
        mu, r = mean[i], rstd[i]
        sum_g_hat = zero
        sum_g_hat_x_hat = zero
        for j in range(D):
            x_hat = (x[i, j] - mu) * r
            g_hat = g[i, j]
            dw[j] += g_hat * x_hat
            db[j] += g_hat
            if weight is not None:
                g_hat *= weight[j]
            sum_g_hat += g_hat
            sum_g_hat_x_hat += g_hat * x_hat
        mean_g_hat = sum_g_hat * inv_d
        mean_g_hat_x_hat = sum_g_hat_x_hat * inv_d
        for j in range(D):
            x_hat = (x[i, j] - mu) * r
            g_hat = g[i, j]
            if weight is not None:
                g_hat *= weight[j]
            dx[i, j] = (g_hat - mean_g_hat - x_hat * mean_g_hat_x_hat) * r


# LayerNorm's kernels are split between threads at this many times workers.MIN_ELEMENTS_PER_PART elements a
# part: they stream memory (2048 x 128 float32 forward: 0.13 ms in one piece, 0.16 ms in two, after a product
# as in a training step), so only larger layers gain (2048 x 512: 0.28 against 0.33 ms; 8192 x 128: 0.38
# against 0.44), where GELU, with an exp per element, gains from 64 K elements a part on.
LAYER_NORM_SPLIT_COST = 4


@register(ops.LayerNorm)
class LayerNorm(ops.LayerNorm):
    """Each direction as one compiled loop over the rows (:func:`_layer_norm_forward_kernel`,
    :func:`_layer_norm_backward_kernel`).

    Forward saves each row's mean and rstd, not x_hat (x is kept by the graph anyway): the backward
    kernel rebuilds x_hat row by row. The kernels take C-contiguous arrays: a non-contiguous x or dy
    is copied first.
    """

    def forward(self, x: Any, weight: Any = None, bias: Any = None, ndim: int = 1, eps: float = 1e-5) -> Any:
        xp = self.xp
        norm_shape = x.shape[x.ndim - ndim :]
        x2 = x.reshape(math.prod(x.shape[: x.ndim - ndim]), math.prod(norm_shape))  # (M, D)
        kernel = compiler.compiled(_layer_norm_forward_kernel, *(a for a in (x2, weight, bias) if a is not None))
        self.fused = kernel is not None
        if kernel is None:
            return super().forward(x, weight, bias, ndim, eps)
        x2 = xp.ascontiguousarray(x2)
        w = None if weight is None else xp.ascontiguousarray(weight.reshape(-1))
        b = None if bias is None else xp.ascontiguousarray(bias.reshape(-1))
        out = xp.empty_like(x2)  # (M, D)
        mean, rstd = xp.empty(x2.shape[0], dtype=x.dtype), xp.empty(x2.shape[0], dtype=x.dtype)  # (M,)
        parts = 1
        if w is not None and b is not None:
            parts = workers.pieces_for(x2.shape[0], x2.size // LAYER_NORM_SPLIT_COST, x2, w, b)
        if parts > 1:  # (with weight and bias: the usual layer; without, one thread)
            eps_ = numpy.array([eps], dtype=x2.dtype)
            workers.run_pieces(_layer_norm_forward_part, parts, x2.shape[0], x2.dtype.itemsize, x2.shape[1],
                               *workers.addresses(x2, w, b, eps_, out, mean, rstd))
        else:
            kernel(x2, w, b, eps, out, mean, rstd)
        self.x2, self.mean, self.rstd, self.weight = x2, mean, rstd, w
        self.shape, self.norm_shape = x.shape, norm_shape
        return out.reshape(x.shape)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        if not self.fused:
            return super().backward(g)
        xp, x2, w = self.xp, self.x2, self.weight
        need_x, need_w, need_b = self.needs_grad
        g2 = xp.ascontiguousarray(g.reshape(x2.shape))  # (M, D); a gradient from sum() has zero strides
        kernel = compiler.compiled(_layer_norm_backward_kernel, *(a for a in (x2, w, g2) if a is not None))
        assert kernel is not None  # dy has the dtype of the arrays the forward kernel took
        dx = xp.empty_like(x2)  # (M, D)
        parts = workers.pieces_for(x2.shape[0], x2.size // LAYER_NORM_SPLIT_COST, x2, g2, w) if w is not None else 1
        if parts > 1:  # each part sums its rows' dw and db, then the parts' sums are added
            sums = xp.zeros((2, parts, x2.shape[1]), dtype=x2.dtype)
            workers.run_pieces(_layer_norm_backward_part, parts, x2.shape[0], x2.dtype.itemsize, x2.shape[1],
                               *workers.addresses(x2, self.mean, self.rstd, w, g2, dx, sums))
            dw, db = sums.sum(axis=1)
        else:
            dw, db = xp.zeros(x2.shape[1], dtype=x2.dtype), xp.zeros(x2.shape[1], dtype=x2.dtype)  # (D,)
            kernel(x2, self.mean, self.rstd, w, g2, dx, dw, db)  # (it writes all 3)
        return (dx.reshape(self.shape) if need_x else None,
                dw.reshape(self.norm_shape) if need_w else None,
                db.reshape(self.norm_shape) if need_b else None)


compiler.callable_in_kernels(_layer_norm_forward_kernel, _layer_norm_backward_kernel)


def _layer_norm_forward_piece(w: Any, like: Any) -> None:
    """Rows ``first .. last - 1`` of LayerNorm's forward in floats of ``like``'s type, from the words of
    :func:`_layer_norm_forward_part`."""
    first, rows, size, D = w[1], w[2] - w[1], w[4], w[5]
    at_row, at = size * first * D, size * first  # byte offsets of the first row in (M, D) and (M,) arrays
    x, y = compiler.floats(w[6] + at_row, (rows, D), like), compiler.floats(w[10] + at_row, (rows, D), like)
    weight, bias, eps = compiler.floats(w[7], D, like), compiler.floats(w[8], D, like), compiler.floats(w[9], 1, like)
    mean, rstd = compiler.floats(w[11] + at, rows, like), compiler.floats(w[12] + at, rows, like)
    _layer_norm_forward_kernel(x, weight, bias, eps[0], y, mean, rstd)


def _layer_norm_backward_piece(w: Any, like: Any) -> None:
    """Rows ``first .. last - 1`` of LayerNorm's backward and this part's sums of dw and db, in floats of
    ``like``'s type, from the words of :func:`_layer_norm_backward_part`."""
    first, rows, size, D, part, parts = w[1], w[2] - w[1], w[4], w[5], w[0], w[3]
    at_row, at = size * first * D, size * first  # byte offsets of the first row in (M, D) and (M,) arrays
    x, dy = compiler.floats(w[6] + at_row, (rows, D), like), compiler.floats(w[10] + at_row, (rows, D), like)
    mean, rstd = compiler.floats(w[7] + at, rows, like), compiler.floats(w[8] + at, rows, like)
    dx, sums = compiler.floats(w[11] + at_row, (rows, D), like), compiler.floats(w[12], (2, parts, D), like)
    _layer_norm_backward_kernel(x, mean, rstd, compiler.floats(w[9], D, like), dy, dx, sums[0, part], sums[1, part])


compiler.callable_in_kernels(_layer_norm_forward_piece, _layer_norm_backward_piece)


def _layer_norm_forward_part(task: int) -> None:
    """One thread's share of LayerNorm's forward (:func:`workers.run_pieces`): rows ``first .. last - 1``.
    Words: 4 the float size, 5 D, 6-12 the addresses of x (M, D), weight, bias, eps (one element),
    y (M, D), mean and rstd (M,)."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _layer_norm_forward_piece(w, numpy.float32(0))
    else:
        _layer_norm_forward_piece(w, numpy.float64(0))


def _layer_norm_backward_part(task: int) -> None:
    """One thread's share of LayerNorm's backward: rows ``first .. last - 1`` of dx, and this part's sums
    of dw and db. Words: 4 the float size, 5 D, 6-11 the addresses of x (M, D), mean, rstd (M,),
    weight (D,), dy, dx (M, D), 12 that of the sums (2, parts, D), zeroed: dw's rows, then db's."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _layer_norm_backward_piece(w, numpy.float32(0))
    else:
        _layer_norm_backward_piece(w, numpy.float64(0))


# CrossEntropy's forward kernel takes this many rows at a time (see its docstring).
CROSS_ENTROPY_BLOCK_ROWS = 32


def _cross_entropy_forward_kernel(
    x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float, loss: Any, m: Any, log_s: Any, w_t: Any
) -> None:
    """Softmax cross-entropy of each row of x (N, C), as :class:`ops.CrossEntropy` states it.

    m_n = max_c x_nc (0 where that is not finite), log_s_n = log sum_c e^(x_nc - m_n), picked_n = x_{n,t_n} - m_n,
    w_t_n = w_{t_n}, loss_n = w_t_n (log_s_n - picked_n); with label smoothing eps the loss is
    (1 - eps) loss_n + eps / C (sum_c w_c log_s_n - sum_c w_c (x_nc - m_n)). Rows with valid_n false
    get loss_n = 0 and w_t_n = 0. Writes loss, m, log_s, w_t (N,); ``weight`` (C,) is all ones when none is given.

    The rows go in blocks of ``CROSS_ENTROPY_BLOCK_ROWS``: a first pass over the block finds each row's m_n
    and picked_n, a second one does the rest, so that a row's exponentials never wait for its own maximum
    (twice as fast as row by row). picked_n waits in loss[n] between the passes: kept in memory, it stays
    x_t - m, which a compiler free to reorder sums would otherwise turn log_s - (x_t - m) into
    (log_s + m) - x_t, where log_s is lost next to a large m.
    """
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    eps_, w_sum_ = x.dtype.type(eps), x.dtype.type(w_sum)
    spread = eps_ / x.dtype.type(C)
    for start in range(0, N, CROSS_ENTROPY_BLOCK_ROWS):
        stop = min(start + CROSS_ENTROPY_BLOCK_ROWS, N)
        for n in range(start, stop):
            m_n = x[n, 0]
            for c in range(1, C):
                if x[n, c] > m_n:
                    m_n = x[n, c]
            if not math.isfinite(m_n):
                m_n = zero
            m[n] = m_n
            loss[n] = x[n, target[n]] - m_n if valid[n] else zero  # picked_n
        for n in range(start, stop):
            m_n = m[n]
            s = zero
            for c in range(C):
                s += compiler.exp(x[n, c] - m_n)
            log_s_n = math.log(s)
            log_s[n] = log_s_n
            if not valid[n]:
                w_t[n] = zero
                continue
            w_t[n] = weight[target[n]]
            loss_n = w_t[n] * (log_s_n - loss[n])
            if eps_ > zero:
                smooth_sum = zero
                for c in range(C):
                    smooth_sum += weight[c] * (x[n, c] - m_n)
                loss_n = (one - eps_) * loss_n + spread * (w_sum_ * log_s_n - smooth_sum)
            loss[n] = loss_n


def _cross_entropy_backward_kernel(
    x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float,
    m: Any, log_s: Any, w_t: Any, row: Any, dx: Any,
) -> None:
    """dx (N, C) of softmax cross-entropy, one row at a time, from the forward's m, log_s and w_t (N,).

    With r_n = d loss / d loss_n (0 where the target is ignored), p_nc = e^((x_nc - m_n) - log_s_n) and
    coef_n = (1 - eps) w_t_n + eps / C sum_c w_c: dx_nc = coef_n r_n p_nc - (1 - eps) w_t_n r_n [c = t_n]
    - eps / C r_n w_c (the last term only with label smoothing). A first pass writes x - m into dx and
    the second reads it back: a compiler free to reorder sums would otherwise compute
    e^(x - (m + log_s)), where log_s is lost next to a large m.
    """
    N, C = x.shape
    zero, one = x.dtype.type(0), x.dtype.type(1)
    eps_, w_sum_ = x.dtype.type(eps), x.dtype.type(w_sum)
    spread = eps_ / x.dtype.type(C)
    for n in range(N):
        r = row[n]
        a = ((one - eps_) * w_t[n] + spread * w_sum_) * r  # coef_n r_n
        m_n, log_s_n = m[n], log_s[n]
        for c in range(C):
            dx[n, c] = x[n, c] - m_n
        for c in range(C):
            dx[n, c] = compiler.exp(dx[n, c] - log_s_n) * a
        if valid[n]:
            dx[n, target[n]] -= (one - eps_) * w_t[n] * r
        if eps_ > zero:
            for c in range(C):
                dx[n, c] -= spread * r * weight[c]


@register(ops.CrossEntropy)
class CrossEntropy(ops.CrossEntropy):
    """Logits of shape (N, C) (or (C,)) in two compiled loops over the rows (:func:`_cross_entropy_forward_kernel`,
    :func:`_cross_entropy_backward_kernel`): a row stays in the L1 cache for its max, its sum of exponentials
    and its gradient, instead of a dozen array passes over the (N, C) logits and their temporaries.

    The kernels replace the reference's two array steps, :meth:`_row_losses` and :meth:`_logit_grad`;
    the reductions stay the reference's. Other layouts, (N, C, d1, ...), and C = 0 take the reference.
    From 128 K logits on (:func:`workers.pieces_for`) the rows are shared out between OpenBLAS's threads
    (:func:`_cross_entropy_part`); each row's arithmetic is the same either way.
    """

    def _row_losses(self, x: Any, target: Any, valid: Any) -> tuple[Any, Any, Any, Any]:
        kernel = None
        if x.ndim == 2 and x.shape[1] > 0:
            kernel = compiler.compiled(_cross_entropy_forward_kernel, *(a for a in (x, self.weight) if a is not None))
        self.fused = kernel is not None
        if kernel is None:
            return super()._row_losses(x, target, valid)
        xp = self.xp
        x = self.x = xp.ascontiguousarray(x)
        N, C = x.shape
        m, log_s = xp.empty((N, 1), dtype=x.dtype), xp.empty((N, 1), dtype=x.dtype)  # (N, 1)
        loss, w_t = xp.empty(N, dtype=x.dtype), xp.empty(N, dtype=x.dtype)  # (N,)
        self.parts = workers.pieces_for(N, x.size, x)
        if self.parts > 1:  # the rows shared out: targets and their mask as int64 words, eps and sum_c w_c as floats
            self.pieces = (numpy.ascontiguousarray(target, dtype=numpy.int64), valid.astype(numpy.int64),
                           self._class_weights(),
                           numpy.array([self.eps, float(self.w_sum)], dtype=x.dtype))
            workers.run_pieces(_cross_entropy_part, self.parts, N, x.dtype.itemsize, C, 0,
                               *workers.addresses(x, *self.pieces, m, log_s, w_t, loss))
        else:
            kernel(x, target, valid, self._class_weights(), self.eps, float(self.w_sum), loss, m[:, 0], log_s[:, 0],
                   w_t)
        return loss, m, log_s, w_t

    def _logit_grad(self, row: Any) -> Any:
        if not self.fused:
            return super()._logit_grad(row)
        xp, x = self.xp, self.x
        kernel = compiler.compiled(_cross_entropy_backward_kernel, *(a for a in (x, self.weight) if a is not None))
        assert kernel is not None  # the arrays the forward kernel took
        dx = xp.empty(x.shape, dtype=x.dtype)  # (N, C)
        if self.parts > 1:  # (the pieces read r as floats of x's type)
            row = xp.ascontiguousarray(row, dtype=x.dtype)
            workers.run_pieces(_cross_entropy_part, self.parts, x.shape[0], x.dtype.itemsize, x.shape[1], 1,
                               *workers.addresses(x, *self.pieces, self.m, self.log_s, self.w_t, row, dx))
        else:
            kernel(x, self.target, self.valid, self._class_weights(), self.eps, float(self.w_sum),
                   self.m[:, 0], self.log_s[:, 0], self.w_t, xp.ascontiguousarray(row), dx)
        return dx

    def _class_weights(self) -> Any:
        """The class weights (C,) for the kernels: the given ones, else all ones."""
        if self.weight is None:
            return self.xp.ones(self.x.shape[1], dtype=self.x.dtype)
        return self.xp.ascontiguousarray(self.weight)


def _cross_entropy_piece(w: Any, like: Any) -> None:
    """Rows ``first .. last - 1`` of :func:`_cross_entropy_forward_kernel` or of its backward (word 6), in floats of
    ``like``'s type: the words of :func:`_cross_entropy_part`."""
    first, n, size, c = w[1], w[2] - w[1], w[4], w[5]
    at_row, at = size * first * c, size * first  # byte offsets of the first row in (N, C) and (N,) arrays
    x = compiler.floats(w[7] + at_row, (n, c), like)
    target, valid = compiler.words(w[8] + 8 * first, n), compiler.words(w[9] + 8 * first, n)
    weight, scalars = compiler.floats(w[10], c, like), compiler.floats(w[11], 2, like)
    m, log_s = compiler.floats(w[12] + at, n, like), compiler.floats(w[13] + at, n, like)
    w_t = compiler.floats(w[14] + at, n, like)
    if w[6] == 0:
        loss = compiler.floats(w[15] + at, n, like)
        _cross_entropy_forward_kernel(x, target, valid, weight, scalars[0], scalars[1], loss, m, log_s, w_t)
    else:
        row, dx = compiler.floats(w[15] + at, n, like), compiler.floats(w[16] + at_row, (n, c), like)
        _cross_entropy_backward_kernel(x, target, valid, weight, scalars[0], scalars[1], m, log_s, w_t, row, dx)


compiler.callable_in_kernels(_cross_entropy_forward_kernel, _cross_entropy_backward_kernel, _cross_entropy_piece)


def _cross_entropy_part(task: int) -> None:
    """One thread's share of CrossEntropy's forward or backward (:func:`workers.run_pieces`): rows ``first .. last -
    1``. Words: 4 the float size, 5 C, 6 forward (0) or backward (1), 7-14 the addresses of x (N, C), the targets
    and their mask (N,) as int64, the class weights (C,), eps and sum_c w_c (2 floats), m, log_s, w_t (N,), then the
    forward's loss (N,) or the backward's r (N,) and dx (N, C)."""
    w = compiler.words(task, workers.TASK_WORDS)
    if w[4] == 4:
        _cross_entropy_piece(w, numpy.float32(0))
    else:
        _cross_entropy_piece(w, numpy.float64(0))


def _embedding_backward_kernel(ids: Any, g: Any, gw: Any) -> None:
    """dW[ids[n], :] += dy[n, :] for every position n: the rows of g (N, D) added into gw (V, D) in one pass.

    The ids are in [-V, V) (a negative one counts from the end): forward's ``take`` raised on any other,
    and this loop does not check them.
    """
    N, D = g.shape
    for n in range(N):
        i = ids[n]
        for j in range(D):
            gw[i, j] += g[n, j]


# Up to this many rows, and where no kernel applies, the embedding gradient is one GEMM with a one-hot
# matrix: for a character vocabulary that is several times faster than a scatter-add of the rows.
ONE_HOT_MAX_ROWS = 256


@register(ops.Embedding)
class Embedding(ops.Embedding):
    """dW as one compiled pass that adds each row of dy into its id's row (:func:`_embedding_backward_kernel`).

    Where no kernel applies (no Numba, or a dtype it does not take), a small vocabulary
    (``ONE_HOT_MAX_ROWS``) gets dW = onehot(ids)^T dy, one matrix product; a large one the reference's
    scatter-add.
    """

    def backward(self, g: Any) -> tuple[Any, None]:
        xp, ids, rows, dim = self.xp, self.ids.reshape(-1), self.num_embeddings, g.shape[-1]
        g2 = g.reshape(-1, dim)  # (N, D)
        kernel = compiler.compiled(_embedding_backward_kernel, g2)
        if kernel is not None:
            gw = xp.zeros((rows, dim), dtype=g.dtype)  # (V, D)
            kernel(ids, xp.ascontiguousarray(g2), gw)
        elif rows <= ONE_HOT_MAX_ROWS:
            one_hot = xp.zeros((rows, ids.size), dtype=g.dtype)  # (V, N)
            one_hot[ids, xp.arange(ids.size)] = 1
            gw = matmul(one_hot, g2)  # (V, D)
        else:
            return super().backward(g)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw, None


def _leading_ids(index: Any) -> Any:
    """The integer array of an index that picks whole rows by one array on the first axis (``w[ids]``,
    ``w[ids, :]``, the lookup a bigram model makes), else None."""
    if type(index) is tuple:
        if not index or any(type(i) is not slice or i != slice(None) for i in index[1:]):
            return None
        index = index[0]
    kind = getattr(getattr(index, "dtype", None), "kind", None)
    return index if kind in ("i", "u") and getattr(index, "ndim", 0) >= 1 else None


@register(ops.GetItem)
class GetItem(ops.GetItem):
    """``x[ids]`` with an integer array on the first axis: its gradient is an embedding's, rows of dy added
    into their ids' rows by :func:`_embedding_backward_kernel` (NumPy's ``add.at``, which the reference uses,
    takes about 0.2 ms for the 480 rows of a 27-wide bigram table). Every other index takes the reference."""

    def backward(self, g: Any) -> Any:
        ids = _leading_ids(self.index) if self.advanced else None
        if ids is not None and type(ids) is type(g) and self.shape:
            row = math.prod(self.shape[1:])  # the size of a row of x
            g2 = g.reshape(ids.size, row)  # (N, D): a row per id
            kernel = compiler.compiled(_embedding_backward_kernel, g2)
            if kernel is not None:
                gx = self.xp.zeros(self.shape, dtype=g.dtype)
                kernel(ids.reshape(-1), self.xp.ascontiguousarray(g2), gx.reshape(self.shape[0], row))
                return gx
        return super().backward(g)
