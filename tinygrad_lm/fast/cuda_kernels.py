"""Fused CUDA kernels for CuPy arrays: the GPU twins of the fast ops' compiled loops (see ``compiler.py``).

On a GPU every CuPy call is one kernel launch, and a formula such as an LSTM step,
``C_t = f C_{t-1} + i g; h_t = o tanh(C_t)`` with four gate nonlinearities before it,
costs a dozen launches (each a few microseconds of Python and driver work, and a pass
over memory) for very little arithmetic. A training step makes thousands of them.

Several fast ops state such formulas once, element by element, as a Python *kernel*
that Numba compiles for the CPU (``compiler.compiled``). This module holds a CUDA C twin of
each: the same loop body, one GPU thread per element (or one warp of 32 threads per row,
for the row reductions of softmax cross-entropy and LayerNorm). ``compiler.compiled(kernel,
*arrays)`` returns the twin when the arrays are CuPy float32/float64 arrays, so the fast ops call
both the same way and ``TINYGRAD_LM_FAST=off`` turns both off (the reference ops, which compute
the same values, are what the kernels are tested against).

Each twin takes the arguments of its Python kernel; ``None`` for an optional array becomes a
flag and a placeholder pointer. The CUDA source is compiled by CuPy (NVRTC) on first use, once
per dtype, and cached on disk by CuPy.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from .. import backend

_THREADS = 256  # threads per block for the elementwise kernels
_ROWS_PER_BLOCK = 4  # the row kernels run one 32-thread warp per row, 4 rows per block
_MAX_BLOCKS = 8192  # grid-stride loops cover larger arrays with this many blocks

_SOURCE = r"""
typedef REAL real;

// A grid-stride loop: element k of n for this thread, then every (threads in the grid)-th after it.
#define FOR_EACH(k, n) \
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < (n); \
         k += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ real warp_sum(real v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ real warp_max(real v) {
    for (int off = 16; off > 0; off >>= 1) v = FMAX(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// One LSTM step (recurrent.py, _lstm_step_kernel) for one element (b, j) of the (B, H) state. The
// pre-activations a (B, 4H) arrive scaled by 1/2 for the sigmoid gates: sigma(z) = (1 + tanh(z / 2)) / 2.
extern "C" __global__ void lstm_step(real* a, const real* bias, int has_bias, const real* c_prev,
                                     real* c, real* tanh_c, real* h, int B, int H) {
    long long n = (long long)B * H;
    FOR_EACH(k, n) {
        long long b = k / H, j = k - b * H;
        real* row = a + b * 4 * H;
        real zi = row[j], zf = row[H + j], zg = row[2 * H + j], zo = row[3 * H + j];
        if (has_bias) { zi += bias[j]; zf += bias[H + j]; zg += bias[2 * H + j]; zo += bias[3 * H + j]; }
        real i = (real)0.5 * TANH(zi) + (real)0.5;
        real f = (real)0.5 * TANH(zf) + (real)0.5;
        real g = TANH(zg);
        real o = (real)0.5 * TANH(zo) + (real)0.5;
        row[j] = i; row[H + j] = f; row[2 * H + j] = g; row[3 * H + j] = o;
        real cn = f * c_prev[k] + i * g;
        real tc = TANH(cn);
        c[k] = cn; tanh_c[k] = tc; h[k] = o * tc;
    }
}

// One LSTM step back through time (recurrent.py, _lstm_step_back_kernel), element (b, j).
extern "C" __global__ void lstm_step_back(const real* a, const real* c_prev, const real* tanh_c,
                                          const real* grad, int has_grad, const real* dh, real* dc, real* da,
                                          int B, int H) {
    long long n = (long long)B * H;
    FOR_EACH(k, n) {
        long long b = k / H, j = k - b * H;
        const real* row = a + b * 4 * H;
        real* drow = da + b * 4 * H;
        real d_h = dh[k];
        if (has_grad) d_h += grad[k];
        real i = row[j], f = row[H + j], g = row[2 * H + j], o = row[3 * H + j];
        real tc = tanh_c[k];
        real d_c = dc[k] + d_h * o * ((real)1 - tc * tc);
        drow[j] = d_c * g * i * ((real)1 - i);
        drow[H + j] = d_c * c_prev[k] * f * ((real)1 - f);
        drow[2 * H + j] = d_c * i * ((real)1 - g * g);
        drow[3 * H + j] = d_h * tc * o * ((real)1 - o);
        dc[k] = d_c * f;
    }
}

// Softmax cross-entropy of each row of x (N, C) (fast/fused_nn.py, _cross_entropy_forward_kernel): one warp per row.
extern "C" __global__ void cross_entropy_forward(const real* x, const long long* target, const bool* valid,
                                                 const real* weight, real eps, real w_sum, real* loss, real* m,
                                                 real* log_s, real* w_t, int N, int C) {
    int lane = threadIdx.x & 31;
    long long n = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= N) return;
    const real* xr = x + n * C;
    real mx = xr[0];  // C >= 1; FMAX skips a NaN, which then spoils the row through its exp below
    for (int c = lane; c < C; c += 32) mx = FMAX(mx, xr[c]);
    mx = warp_max(mx);
    if (!isfinite(mx)) mx = 0;
    real s = 0, smooth = 0;
    for (int c = lane; c < C; c += 32) {
        real e = xr[c] - mx;
        s += EXP(e);
        if (eps > 0) smooth += weight[c] * e;
    }
    s = warp_sum(s);
    smooth = warp_sum(smooth);
    if (lane != 0) return;
    real ls = LOG(s);
    m[n] = mx;
    log_s[n] = ls;
    if (!valid[n]) { loss[n] = 0; w_t[n] = 0; return; }
    long long t = target[n];
    real wt = weight[t];
    w_t[n] = wt;
    real l = wt * (ls - (xr[t] - mx));
    if (eps > 0) l = ((real)1 - eps) * l + eps / (real)C * (w_sum * ls - smooth);
    loss[n] = l;
}

// dx (N, C) of softmax cross-entropy (fast/fused_nn.py, _cross_entropy_backward_kernel): one thread per element.
extern "C" __global__ void cross_entropy_backward(const real* x, const long long* target, const bool* valid,
                                                  const real* weight, real eps, real w_sum, const real* m,
                                                  const real* log_s, const real* w_t, const real* row, real* dx,
                                                  int N, int C) {
    long long total = (long long)N * C;
    real spread = eps / (real)C;
    FOR_EACH(k, total) {
        long long n = k / C, c = k - n * C;
        real r = row[n];
        real coef = (((real)1 - eps) * w_t[n] + spread * w_sum) * r;
        real v = EXP((x[k] - m[n]) - log_s[n]) * coef;
        if (valid[n] && target[n] == c) v -= ((real)1 - eps) * w_t[n] * r;
        if (eps > 0) v -= spread * r * weight[c];
        dx[k] = v;
    }
}

// LayerNorm of each row of x (M, D) (fast/fused_nn.py, _layer_norm_forward_kernel): one warp per row.
extern "C" __global__ void layer_norm_forward(const real* x, const real* weight, int has_weight, const real* bias,
                                              int has_bias, real eps, real* y, real* mean, real* rstd, int M, int D) {
    int lane = threadIdx.x & 31;
    long long i = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (i >= M) return;
    const real* xr = x + i * D;
    real* yr = y + i * D;
    real inv_d = (real)1 / (real)(D > 0 ? D : 1);
    real total = 0;
    for (int j = lane; j < D; j += 32) total += xr[j];
    real mu = warp_sum(total) * inv_d;
    real squares = 0;
    for (int j = lane; j < D; j += 32) { real xc = xr[j] - mu; squares += xc * xc; }
    real r = (real)1 / SQRT(warp_sum(squares) * inv_d + eps);
    if (lane == 0) { mean[i] = mu; rstd[i] = r; }
    for (int j = lane; j < D; j += 32) {
        real v = (xr[j] - mu) * r;
        if (has_weight) v *= weight[j];
        if (has_bias) v += bias[j];
        yr[j] = v;
    }
}

// dx of LayerNorm (fast/fused_nn.py, _layer_norm_backward_kernel), one warp per row.
extern "C" __global__ void layer_norm_backward_dx(const real* x, const real* mean, const real* rstd,
                                                  const real* weight, int has_weight, const real* g, real* dx,
                                                  int M, int D) {
    int lane = threadIdx.x & 31;
    long long i = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (i >= M) return;
    const real* xr = x + i * D;
    const real* gr = g + i * D;
    real mu = mean[i], r = rstd[i];
    real inv_d = (real)1 / (real)(D > 0 ? D : 1);
    real sum_g = 0, sum_gx = 0;
    for (int j = lane; j < D; j += 32) {
        real g_hat = has_weight ? gr[j] * weight[j] : gr[j];
        sum_g += g_hat;
        sum_gx += g_hat * (xr[j] - mu) * r;
    }
    real mean_g = warp_sum(sum_g) * inv_d, mean_gx = warp_sum(sum_gx) * inv_d;
    for (int j = lane; j < D; j += 32) {
        real g_hat = has_weight ? gr[j] * weight[j] : gr[j];
        dx[i * D + j] = (g_hat - mean_g - (xr[j] - mu) * r * mean_gx) * r;
    }
}

// Partial sums of dw = sum_i g x_hat and db = sum_i g over one chunk of rows per blockIdx.y, one column per
// thread (adjacent threads read adjacent columns); the caller adds the chunks up.
extern "C" __global__ void layer_norm_backward_wb(const real* x, const real* mean, const real* rstd, const real* g,
                                                  real* part_w, real* part_b, int M, int D, int rows) {
    long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (j >= D) return;
    long long start = (long long)blockIdx.y * rows;
    long long stop = start + rows < M ? start + rows : M;
    real sw = 0, sb = 0;
    for (long long i = start; i < stop; ++i) {
        real gg = g[i * D + j];
        sw += gg * (x[i * D + j] - mean[i]) * rstd[i];
        sb += gg;
    }
    part_w[blockIdx.y * (long long)D + j] = sw;
    part_b[blockIdx.y * (long long)D + j] = sb;
}

// The attention softmax on transposed scores st (N, S, L) -> P^T, in place (fast/fused_attention.py,
// _softmax_columns_kernel): one thread per query column (n, l); adjacent threads read adjacent queries.
extern "C" __global__ void softmax_columns(real* st, const real* mask_t, int has_mask, real scale,
                                           int N, int S, int L) {
    FOR_EACH(k, (long long)N * L) {
        long long n = k / L, l = k - n * L;
        real* col = st + n * S * L + l;
        real m = scale * col[0] + (has_mask ? mask_t[l] : (real)0);
        for (int s = 0; s < S; ++s) {
            real z = scale * col[(long long)s * L] + (has_mask ? mask_t[(long long)s * L + l] : (real)0);
            col[(long long)s * L] = z;
            m = FMAX(m, z);  // skips NaN, which then spoils the column through its exp
        }
        if (!isfinite(m)) m = 0;
        real total = 0;
        for (int s = 0; s < S; ++s) {
            real e = EXP(col[(long long)s * L] - m);
            col[(long long)s * L] = e;
            total += e;
        }
        real inv = total != 0 ? (real)1 / total : (real)1;
        for (int s = 0; s < S; ++s) col[(long long)s * L] *= inv;
    }
}

// Its derivative in place of dP^T (fast/fused_attention.py, _softmax_columns_back_kernel): dS^T = P^T (dP^T - c).
extern "C" __global__ void softmax_columns_back(real* dpt, const real* pt, int N, int S, int L) {
    FOR_EACH(k, (long long)N * L) {
        long long n = k / L, l = k - n * L;
        real* d = dpt + n * S * L + l;
        const real* p = pt + n * S * L + l;
        real c = 0;
        for (int s = 0; s < S; ++s) c += p[(long long)s * L] * d[(long long)s * L];
        for (int s = 0; s < S; ++s) d[(long long)s * L] = p[(long long)s * L] * (d[(long long)s * L] - c);
    }
}

// GELU and its derivative (fast/fused_nn.py, _gelu_jit_float32 / _gelu_jit_exact) with Phi from erf.
extern "C" __global__ void gelu(const real* x, real* out, real* dx, long long n) {
    const real inv_sqrt_2 = (real)0.70710678118654752440, inv_sqrt_2pi = (real)0.39894228040143267794;
    FOR_EACH(k, n) {
        real v = x[k];
        real cdf = (real)0.5 * ((real)1 + ERF(v * inv_sqrt_2));
        out[k] = v * cdf;
        dx[k] = cdf + inv_sqrt_2pi * v * EXP((real)-0.5 * v * v);
    }
}
"""

_MATH = {
    "float32": {"REAL": "float", "FMAX": "fmaxf", "TANH": "tanhf", "EXP": "expf", "LOG": "logf", "SQRT": "sqrtf",
                "ERF": "erff"},
    "float64": {"REAL": "double", "FMAX": "fmax", "TANH": "tanh", "EXP": "exp", "LOG": "log", "SQRT": "sqrt",
                "ERF": "erf"},
}
_modules: dict[str, Any] = {}
_functions: dict[tuple[Any, str], Any] = {}


def _function(dtype: Any, name: str) -> Any:
    """The compiled CUDA function ``name`` for float32 or float64 (one module per dtype, built on first use)."""
    fn = _functions.get((dtype, name))  # a step calls this thousands of times: one dict lookup
    if fn is None:
        key = numpy.dtype(dtype).name
        module = _modules.get(key)
        if module is None:
            cupy = backend.cupy_module()
            defines = "".join(f"#define {k} {v}\n" for k, v in _MATH[key].items())
            module = _modules[key] = cupy.RawModule(code=defines + _SOURCE, options=("--std=c++14",))
        fn = _functions[(dtype, name)] = module.get_function(name)
    return fn


def _grid(n: int) -> tuple[int]:
    return (max(1, min(_MAX_BLOCKS, -(-n // _THREADS))),)


def _row_grid(rows: int) -> tuple[int]:
    return (max(1, -(-rows // _ROWS_PER_BLOCK)),)


def _real(dtype: Any, value: float) -> Any:
    return numpy.dtype(dtype).type(value)


def _contiguous(*arrays: Any) -> None:
    """The kernels index flat memory: every array they get must be C-contiguous (a caller's bug otherwise)."""
    for a in arrays:
        if a is not None and not a.flags.c_contiguous:
            raise ValueError(f"a CUDA kernel got a non-contiguous array of shape {a.shape}")


def _or(a: Any, placeholder: Any) -> tuple[Any, numpy.int32]:
    """An optional array as (pointer, flag): the array and 1, or a placeholder array and 0."""
    return (placeholder, numpy.int32(0)) if a is None else (a, numpy.int32(1))


def lstm_step(a: Any, bias: Any, c_prev: Any, c: Any, tanh_c: Any, h: Any) -> None:
    _contiguous(a, bias, c_prev, c, tanh_c, h)
    B, H = c.shape
    bias_, has_bias = _or(bias, a)
    _function(a.dtype, "lstm_step")(_grid(B * H), (_THREADS,),
                                    (a, bias_, has_bias, c_prev, c, tanh_c, h, numpy.int32(B), numpy.int32(H)))


def lstm_step_back(a: Any, c_prev: Any, tanh_c: Any, grad: Any, dh: Any, dc: Any, da: Any) -> None:
    if grad is not None and not grad.flags.c_contiguous:
        grad = grad.copy()
    _contiguous(a, c_prev, tanh_c, dh, dc, da)
    B, H = dc.shape
    grad_, has_grad = _or(grad, dh)
    _function(a.dtype, "lstm_step_back")(
        _grid(B * H), (_THREADS,),
        (a, c_prev, tanh_c, grad_, has_grad, dh, dc, da, numpy.int32(B), numpy.int32(H)))


def cross_entropy_forward(x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float,
                          loss: Any, m: Any, log_s: Any, w_t: Any) -> None:
    cupy = backend.cupy_module()
    target = cupy.ascontiguousarray(target, dtype=cupy.int64)
    valid = cupy.ascontiguousarray(valid)
    m_out, log_s_out = _writable(m), _writable(log_s)
    _contiguous(x, weight, loss, w_t)
    N, C = x.shape
    _function(x.dtype, "cross_entropy_forward")(
        _row_grid(N), (32 * _ROWS_PER_BLOCK,),
        (x, target, valid, weight, _real(x.dtype, eps), _real(x.dtype, w_sum), loss, m_out, log_s_out, w_t,
         numpy.int32(N), numpy.int32(C)))
    _copy_back(m_out, m)
    _copy_back(log_s_out, log_s)


def cross_entropy_backward(x: Any, target: Any, valid: Any, weight: Any, eps: float, w_sum: float,
                           m: Any, log_s: Any, w_t: Any, row: Any, dx: Any) -> None:
    cupy = backend.cupy_module()
    target = cupy.ascontiguousarray(target, dtype=cupy.int64)
    valid = cupy.ascontiguousarray(valid)
    m, log_s, w_t, row = (cupy.ascontiguousarray(v) for v in (m, log_s, w_t, row))
    _contiguous(x, weight, dx)
    N, C = x.shape
    _function(x.dtype, "cross_entropy_backward")(
        _grid(N * C), (_THREADS,),
        (x, target, valid, weight, _real(x.dtype, eps), _real(x.dtype, w_sum), m, log_s, w_t, row, dx,
         numpy.int32(N), numpy.int32(C)))


def layer_norm_forward(x: Any, weight: Any, bias: Any, eps: float, y: Any, mean: Any, rstd: Any) -> None:
    mean_out, rstd_out = _writable(mean), _writable(rstd)
    _contiguous(x, weight, bias, y)
    M, D = x.shape
    weight_, has_weight = _or(weight, x)
    bias_, has_bias = _or(bias, x)
    _function(x.dtype, "layer_norm_forward")(
        _row_grid(M), (32 * _ROWS_PER_BLOCK,),
        (x, weight_, has_weight, bias_, has_bias, _real(x.dtype, eps), y, mean_out, rstd_out,
         numpy.int32(M), numpy.int32(D)))
    _copy_back(mean_out, mean)
    _copy_back(rstd_out, rstd)


_LN_CHUNK_ROWS = 32  # rows per partial sum of LayerNorm's dw and db


def layer_norm_backward(x: Any, mean: Any, rstd: Any, weight: Any, g: Any, dx: Any, dw: Any, db: Any) -> None:
    cupy = backend.cupy_module()
    mean, rstd = cupy.ascontiguousarray(mean), cupy.ascontiguousarray(rstd)
    _contiguous(x, weight, g, dx)
    M, D = x.shape
    weight_, has_weight = _or(weight, x)
    _function(x.dtype, "layer_norm_backward_dx")(
        _row_grid(M), (32 * _ROWS_PER_BLOCK,),
        (x, mean, rstd, weight_, has_weight, g, dx, numpy.int32(M), numpy.int32(D)))
    chunks = max(1, -(-M // _LN_CHUNK_ROWS))
    part_w = cupy.empty((chunks, D), dtype=x.dtype)
    part_b = cupy.empty((chunks, D), dtype=x.dtype)
    if M and D:
        threads = min(_THREADS, 32 * -(-D // 32))
        _function(x.dtype, "layer_norm_backward_wb")(
            (-(-D // threads), chunks), (threads,),
            (x, mean, rstd, g, part_w, part_b, numpy.int32(M), numpy.int32(D), numpy.int32(_LN_CHUNK_ROWS)))
    else:
        part_w.fill(0)
        part_b.fill(0)
    dw += part_w.sum(axis=0)
    db += part_b.sum(axis=0)


def softmax_columns(st: Any, mask_t: Any, scale: float) -> None:
    _contiguous(st, mask_t)
    N, S, L = st.shape
    if N * S * L == 0:
        return
    mask_, has_mask = _or(mask_t, st)
    _function(st.dtype, "softmax_columns")(
        _grid(N * L), (_THREADS,),
        (st, mask_, has_mask, _real(st.dtype, scale), numpy.int32(N), numpy.int32(S), numpy.int32(L)))


def softmax_columns_back(dpt: Any, pt: Any) -> None:
    _contiguous(dpt, pt)
    N, S, L = dpt.shape
    if N * S * L == 0:
        return
    _function(dpt.dtype, "softmax_columns_back")(
        _grid(N * L), (_THREADS,), (dpt, pt, numpy.int32(N), numpy.int32(S), numpy.int32(L)))


def gelu(x: Any, out: Any, dx: Any) -> None:
    _contiguous(x, out, dx)
    n = x.size
    _function(x.dtype, "gelu")(_grid(n), (_THREADS,), (x, out, dx, numpy.int64(n)))


def _writable(a: Any) -> Any:
    """``a`` if the kernel can write it in place, else a contiguous scratch array (see :func:`_copy_back`)."""
    return a if a.flags.c_contiguous else backend.cupy_module().empty(a.shape, dtype=a.dtype)


def _copy_back(scratch: Any, a: Any) -> None:
    if scratch is not a:
        a[...] = scratch


# The twin of each Python kernel, by the kernel's name (see compiler.compiled).
TWINS: dict[str, Callable[..., None]] = {
    "_lstm_step_kernel": lstm_step,
    "_lstm_step_back_kernel": lstm_step_back,
    "_cross_entropy_forward_kernel": cross_entropy_forward,
    "_cross_entropy_backward_kernel": cross_entropy_backward,
    "_layer_norm_forward_kernel": layer_norm_forward,
    "_layer_norm_backward_kernel": layer_norm_backward,
    "_softmax_columns_kernel": softmax_columns,
    "_softmax_columns_back_kernel": softmax_columns_back,
    "_gelu_jit_float32": gelu,
    "_gelu_jit_exact": gelu,
}


def twin(kernel: Callable[..., Any]) -> Callable[..., None] | None:
    """The CUDA twin of a Python kernel, or None where there is none (the op then takes its array path)."""
    return TWINS.get(kernel.__qualname__)
