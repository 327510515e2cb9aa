"""The recurrent layer ops (:mod:`tinygrad_lm.ops.recurrent`) on preallocated buffers, with compiled LSTM steps.

The reference ops write each step as its equations and make new arrays for every gate and state.
These subclasses compute the same, with the copies and passes over memory taken out:

- Buffers allocated once per sequence: h_0 .. h_T live in one (T+1, B, H) array, and each step's
  GEMM writes into, or adds to, its rows (:func:`matmul_right_steps`, with W_hh made contiguous
  once for all T products: :class:`RightFactor`); the gates and the gradients are updated in place.
- The biases are summed as (G,) vectors before one pass over the (T*B, G) input projections, and
  when both weights see the same pre-activation gradient (RNN, LSTM), [dW_ih, dW_hh] is one GEMM
  over [x, h_{t-1}].
- Sigmoid gates are computed as sigma(a) = (1 + tanh(a / 2)) / 2, the same function, which never
  overflows and lets one ``tanh`` pass act on all four LSTM gates at once:
  ``act(a) = s * tanh(s * a) + shift`` with s = shift = 1/2 for the sigmoid gates and
  s = 1, shift = 0 for the tanh candidate.
- The LSTM runs everything after a step's GEMM as one compiled kernel, forward and backward
  (:func:`_lstm_step_kernel`, :func:`_lstm_step_back_kernel`: Numba on the CPU, their CUDA twins in
  :mod:`.cuda_kernels` on a GPU). Without a kernel (no Numba, or another dtype) it takes NumPy
  passes over each step, and its backward walks the steps in blocks of ``BPTT_BLOCK_BYTES``.
- On more than one thread, a large enough LSTM is split by hidden units (:mod:`.workers`): each
  thread runs the whole time loop for its slice of the units, forward (:func:`_lstm_forward_part`)
  and backward (:func:`_lstm_backward_part`), with the same step kernels, its slice of each product
  computed by BLAS from inside the compiled loop, and one wait for the other slices per step.
"""
from __future__ import annotations

from typing import Any

import numpy

from ..ops import recurrent as reference
from . import compiler, register, workers
from .blas import RightFactor, matmul, matmul_right_steps
from .fused_activations import tanh_in_place

# LSTMLayer's backward makes its step-independent factors for blocks of steps of about this many
# bytes of gates: small enough to stay in the L2 cache, large enough to spread the ufunc call cost.
BPTT_BLOCK_BYTES = 1 << 18


def _lstm_step_kernel(a: Any, bias: Any, c_prev: Any, c: Any, tanh_c: Any, h: Any) -> None:
    """One whole LSTM step after the GEMMs, in place: a (B, 4H) holds the scaled pre-activations
    [a_i, a_f, a_g, a_o] without the biases; ``bias`` (4H,) is the scaled b_ih + b_hh (or None).
    Writes the gates i, f, g, o into a, C_t = f C_{t-1} + i g into c, tanh(C_t) and h_t = o tanh(C_t).

    Each row takes a tanh pass over its four gate blocks, a pass that turns i, f and o into sigmoids,
    and one pass for the cell: simple loops that the compiler vectorises, tanh included
    (:func:`compiler.tanh`). On the CPU this one call does the work of a bias add, NumPy's tanh of the gates
    and of C_t, and two more passes; a GPU runs it as one kernel (its CUDA twin in ``cuda_kernels.py``)
    instead of a dozen CuPy calls.
    """
    B, H = c.shape
    half = c.dtype.type(0.5)
    for b in range(B):
        for k in range(4 * H):
            z = a[b, k] + bias[k] if bias is not None else a[b, k]
            a[b, k] = compiler.tanh(z)
        for k in range(2 * H):  # i and f: sigma(a) = (1 + tanh(a / 2)) / 2
            a[b, k] = half * a[b, k] + half
        for k in range(3 * H, 4 * H):  # o
            a[b, k] = half * a[b, k] + half
        for j in range(H):
            c[b, j] = a[b, H + j] * c_prev[b, j] + a[b, j] * a[b, 2 * H + j]
            tanh_c[b, j] = compiler.tanh(c[b, j])
            h[b, j] = a[b, 3 * H + j] * tanh_c[b, j]


def _lstm_step_back_kernel(a: Any, c_prev: Any, tanh_c: Any, grad: Any, dh: Any, dc: Any, da: Any) -> None:
    """One LSTM step back through time, in place (LSTMLayer's derivative, element by element).

    In: the gates a = [i, f, g, o] (B, 4H), C_{t-1}, tanh(C_t), the output's gradient ``grad`` (or None),
    dh = dL/dh_t from step t+1 and dc = dL/dC_t from step t+1. Out: da = dL/d(pre-activations) (B, 4H)
    and dc = dL/dC_{t-1}; dh is left for the caller's da W_hh.

    Each row of gates is first copied into ``row`` and each row of da is written from ``d_row``, in
    one front-to-back pass each, rather than read and written as four gate blocks at once. The
    gates were written during the forward and are no longer in the core's caches; the hardware
    prefetcher follows one sequential stream per 4 KiB page but not four interleaved ones, so the
    copy streams them in at memory speed (measured at B = 32, H = 256: 37 instead of 63 us a step).
    As a row is read in full before its gradient is written, da may be a itself.
    """
    B, H = dc.shape
    one = dc.dtype.type(1)
    row = compiler.scratch(4 * H, a)  # the gates i, f, g, o of one sequence
    d_row = compiler.scratch(4 * H, a)  # their gradients
    for b in range(B):
        for k in range(4 * H):
            row[k] = a[b, k]
        for j in range(H):
            d_h = dh[b, j]
            if grad is not None:
                d_h += grad[b, j]
            i, f, g, o = row[j], row[H + j], row[2 * H + j], row[3 * H + j]
            tc = tanh_c[b, j]
            d_c = dc[b, j] + d_h * o * (one - tc * tc)  # dC_t = dC_{t+1} f_{t+1} + dh_t o (1 - tanh^2 C_t)
            d_row[j] = d_c * g * i * (one - i)
            d_row[H + j] = d_c * c_prev[b, j] * f * (one - f)
            d_row[2 * H + j] = d_c * i * (one - g * g)
            d_row[3 * H + j] = d_h * tc * o * (one - o)
            dc[b, j] = d_c * f  # dL/dC_{t-1} along C_t = f C_{t-1} + ...
        for k in range(4 * H):
            da[b, k] = d_row[k]


compiler.callable_in_kernels(_lstm_step_kernel, _lstm_step_back_kernel)


def _lstm_forward_part(part: int, parts: int, start: int, gates: Any, bias: Any, hs: Any, c: Any, tanh_c: Any,
                       w_t: Any, h: Any, flags: Any, blas: int, int_like: Any, yield_at: int) -> None:
    """The forward time loop of one part of an LSTM layer split by hidden units (:mod:`.workers`).

    This part owns units start .. start + U - 1. ``gates`` (T, B, 4U) holds their [i, f, g, o]
    pre-activations from x_t (scaled, as in the layer), ``bias`` (4U,) theirs, ``w_t`` (H, 4U) their
    rows of W_hh (scaled), transposed; ``c`` (T+1, B, U) and ``tanh_c`` (T, B, U) their cells; ``h``
    (B, U) is scratch. ``hs`` (T+1, B, H) is shared: every part reads all of h_{t-1} and writes its
    own columns of h_t, then waits for the others before step t+1.
    """
    one = gates.dtype.type(1)
    for t in range(gates.shape[0]):
        compiler.gemm(blas, int_like, hs[t], w_t, gates[t], one)  # + h_{t-1} W_hh^T, this part's columns
        _lstm_step_kernel(gates[t], bias, c[t], c[t + 1], tanh_c[t], h)
        for b in range(h.shape[0]):
            for j in range(h.shape[1]):
                hs[t + 1, b, start + j] = h[b, j]
        workers.barrier(flags, part, parts, t + 1, yield_at)


def _lstm_backward_part(part: int, parts: int, bounds: Any, gates: Any, das_at: Any, c: Any, tanh_c: Any, grad: Any,
                        grad_part: Any, dh: Any, dc: Any, w_parts_at: Any, flags: Any, blas: int, int_like: Any,
                        yield_at: int) -> None:
    """The backward time loop of one part (see :func:`_lstm_forward_part`).

    ``bounds`` (parts + 1,) are the parts' first units. ``das_at`` (parts,) holds the addresses of every
    part's dL/da (T, B, 4U_q), this part's being written (it may be ``gates`` itself); ``grad`` (T, B, H)
    is the output's gradient, of which ``grad_part`` (B, U) takes this part's columns each step; dh and
    dc (B, U) are this part's dL/dh_t and dL/dC_t. After each step's kernel the parts wait for each
    other, then each forms its own dh_{t-1} = sum over parts q of dL/da_t[q] W_hh[rows of q, this part's
    units] (the (4U_q, U) matrices at ``w_parts_at[q]``).
    """
    zero, one = dh.dtype.type(0), dh.dtype.type(1)
    T, B = gates.shape[0], gates.shape[1]
    start, U = bounds[part], bounds[part + 1] - bounds[part]
    size = dh.itemsize
    da = compiler.floats(das_at[part], (T, B, 4 * U), zero)
    for step in range(T):
        t = T - 1 - step
        for b in range(B):
            for j in range(U):
                grad_part[b, j] = grad[t, b, start + j]
        _lstm_step_back_kernel(gates[t], c[t], tanh_c[t], grad_part, dh, dc, da[t])
        workers.barrier(flags, part, parts, step + 1, yield_at)
        for q in range(parts):
            width = 4 * (bounds[q + 1] - bounds[q])
            da_q = compiler.floats(das_at[q] + size * t * B * width, (B, width), zero)
            compiler.gemm(blas, int_like, da_q, compiler.floats(w_parts_at[q], (width, U), zero), dh,
                          zero if q == 0 else one)


compiler.callable_in_kernels(_lstm_forward_part, _lstm_backward_part)


# The parts run on OpenBLAS's threads (workers.run_on_blas_pool), each reading its arrays from task words:
# 0 the part, 1 parts, 2 the float size, 3 the BLAS's integer size, 4-6 T, B and H, then addresses.
def _lstm_forward_piece(w: Any, like: Any, int_like: Any) -> None:
    """:func:`_lstm_forward_part` from a forward task's words (see :data:`_LSTM_TASKS`), in floats of ``like``'s
    type and with the BLAS integers of ``int_like``'s."""
    part, parts, T, B, H = w[0], w[1], w[4], w[5], w[6]
    bounds = compiler.words(w[7], parts + 1)
    U = bounds[part + 1] - bounds[part]
    gates = compiler.floats(w[8], (T, B, 4 * U), like)
    hs, c = compiler.floats(w[10], (T + 1, B, H), like), compiler.floats(w[11], (T + 1, B, U), like)
    tanh_c, w_t = compiler.floats(w[12], (T, B, U), like), compiler.floats(w[13], (H, 4 * U), like)
    h, flags = compiler.floats(w[14], (B, U), like), compiler.words(w[15], parts * workers.FLAG_STRIDE)
    if w[9] == 0:
        _lstm_forward_part(part, parts, bounds[part], gates, None, hs, c, tanh_c, w_t, h, flags, w[16], int_like,
                           w[17])
    else:
        _lstm_forward_part(part, parts, bounds[part], gates, compiler.floats(w[9], 4 * U, like), hs, c, tanh_c, w_t, h,
                           flags, w[16], int_like, w[17])


def _lstm_backward_piece(w: Any, like: Any, int_like: Any) -> None:
    """:func:`_lstm_backward_part` from a backward task's words (see :data:`_LSTM_TASKS`)."""
    part, parts, T, B, H = w[0], w[1], w[4], w[5], w[6]
    bounds = compiler.words(w[7], parts + 1)
    U = bounds[part + 1] - bounds[part]
    gates, das_at = compiler.floats(w[8], (T, B, 4 * U), like), compiler.words(w[9], parts)
    c, tanh_c = compiler.floats(w[10], (T + 1, B, U), like), compiler.floats(w[11], (T, B, U), like)
    grad, grad_part = compiler.floats(w[12], (T, B, H), like), compiler.floats(w[13], (B, U), like)
    dh, dc = compiler.floats(w[14], (B, U), like), compiler.floats(w[15], (B, U), like)
    w_parts_at, flags = compiler.words(w[16], parts), compiler.words(w[17], parts * workers.FLAG_STRIDE)
    _lstm_backward_part(part, parts, bounds, gates, das_at, c, tanh_c, grad, grad_part, dh, dc, w_parts_at, flags,
                        w[18], int_like, w[19])


compiler.callable_in_kernels(_lstm_forward_piece, _lstm_backward_piece)


# The callbacks, one per float type and BLAS integer width, so that a process compiles only the one it uses
# (a callback compiles every branch it has: the forward's four in one took 14 s on first use, one alone 5 s).
# Forward words after the first seven: 7-15 the addresses of the bounds (parts + 1,), the part's gates
# (T, B, 4U), bias (4U,) (0: none), the shared h (T+1, B, H), the part's cells (T+1, B, U), tanh of them
# (T, B, U), W_hh's rows transposed (H, 4U), scratch h (B, U) and the flags; 16 the ``cblas_?gemm``
# address, 17 ``sched_yield``'s. Backward: 7-17 the addresses of the bounds, the part's gates, the parts'
# dL/da addresses (parts,), the part's cells and tanh of them, the output's gradient (T, B, H), scratch
# (B, U), the part's dh and dc (B, U), the addresses of W_hh's blocks (parts,) and the flags; 18 the
# ``cblas_?gemm`` address, 19 ``sched_yield``'s.
def _lstm_forward_f32_i64(task: int) -> None:
    _lstm_forward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0), numpy.int64(0))


def _lstm_forward_f32_i32(task: int) -> None:
    _lstm_forward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0), numpy.int32(0))


def _lstm_forward_f64_i64(task: int) -> None:
    _lstm_forward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0), numpy.int64(0))


def _lstm_forward_f64_i32(task: int) -> None:
    _lstm_forward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0), numpy.int32(0))


def _lstm_backward_f32_i64(task: int) -> None:
    _lstm_backward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0), numpy.int64(0))


def _lstm_backward_f32_i32(task: int) -> None:
    _lstm_backward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0), numpy.int32(0))


def _lstm_backward_f64_i64(task: int) -> None:
    _lstm_backward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0), numpy.int64(0))


def _lstm_backward_f64_i32(task: int) -> None:
    _lstm_backward_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0), numpy.int32(0))


_LSTM_TASKS = {  # (float size, BLAS integer size) -> (forward, backward)
    (4, 8): (_lstm_forward_f32_i64, _lstm_backward_f32_i64), (4, 4): (_lstm_forward_f32_i32, _lstm_backward_f32_i32),
    (8, 8): (_lstm_forward_f64_i64, _lstm_backward_f64_i64), (8, 4): (_lstm_forward_f64_i32, _lstm_backward_f64_i32),
}


def _gate_(a: Any, xp: Any, scale: Any, shift: Any) -> Any:
    """In place: a <- scale * tanh(scale * a) + shift (sigmoid for 0.5/0.5, tanh for 1/0)."""
    a *= scale
    xp.tanh(a, out=a)
    a *= scale
    a += shift
    return a


def _input_projection(xp: Any, x: Any, w_ih: Any, *biases: Any, out: Any = None) -> tuple[Any, Any]:
    """All T input projections in one GEMM: x (T, B, I) -> (T, B, G) (into ``out`` if given) and the flat x (T*B, I)."""
    T, B, n_in = x.shape
    x2 = xp.ascontiguousarray(x).reshape(T * B, n_in)  # (T*B, I)
    proj = matmul(x2, w_ih.T, out=None if out is None else out.reshape(T * B, -1))  # (T*B, G)
    bias = None
    for b in biases:  # add the (G,) bias vectors first, then make one pass over the (T*B, G) projections
        if b is not None:
            bias = b if bias is None else bias + b
    if bias is not None:
        proj += bias
    return proj.reshape(T, B, -1), x2  # (T, B, G)


def _weight_grads(op: Any, d_ih: Any, d_hh: Any) -> tuple[Any, Any, Any, Any, Any]:
    """dx, dW_ih, dW_hh, db_ih, db_hh from the pre-activation gradients of all steps (one GEMM each).

    ``d_ih (T, B, G)`` is dL/d(x_t W_ih^T + b_ih), ``d_hh (T, B, G)`` is dL/d(h_{t-1} W_hh^T + b_hh);
    the hidden states h_0 .. h_{T-1} are ``op.h_prev``.
    """
    T, B, G = d_ih.shape
    need = op.needs_grad
    n_state = len(need) - 5
    d_ih2 = d_ih.reshape(T * B, G)  # (T*B, G)
    d_hh2 = d_hh.reshape(T * B, G)  # (T*B, G)
    dx = matmul(d_ih2, op.w_ih).reshape(T, B, -1) if need[0] else None  # (T, B, I)
    h_prev2 = op.h_prev.reshape(T * B, -1)  # (T*B, H)
    if d_hh is d_ih:
        dw_ih, dw_hh = _shared_weight_grads(op.xp, d_ih2, op.x2, h_prev2, need[n_state + 1], need[n_state + 2])
    else:
        dw_ih = matmul(d_ih2.T, op.x2) if need[n_state + 1] else None  # (G, I)
        dw_hh = matmul(d_hh2.T, h_prev2) if need[n_state + 2] else None  # (G, H)
    db_ih = d_ih2.sum(axis=0) if need[n_state + 3] else None  # (G,)
    if d_hh is d_ih and db_ih is not None:  # both biases enter the same pre-activation: one sum serves both
        db_hh = db_ih if need[n_state + 4] else None
    else:
        db_hh = d_hh2.sum(axis=0) if need[n_state + 4] else None  # (G,)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def _shared_weight_grads(xp: Any, da2: Any, x2: Any, h_prev2: Any, need_ih: bool, need_hh: bool,
                         xh: Any = None) -> tuple[Any, Any]:
    """dW_ih = da^T x and dW_hh = da^T h_{t-1} (each or None, as needed) when both weights see the same
    pre-activation gradient ``da2`` (T*B, G).

    With both needed, [dW_ih, dW_hh] = da^T [x, h_{t-1}] is one GEMM of K = T*B, faster than two (about
    10% on these shapes) even with the copy into [x, h_{t-1}] (``xh``: made here unless given).
    """
    if not (need_ih and need_hh):
        return (matmul(da2.T, x2) if need_ih else None), (matmul(da2.T, h_prev2) if need_hh else None)
    if xh is None:
        xh = _inputs_and_states(xp, x2, h_prev2)
    dw = matmul(da2.T, xh)  # (G, I + H)
    return dw[:, : x2.shape[1]], dw[:, x2.shape[1] :]


def _inputs_and_states(xp: Any, x2: Any, h_prev2: Any) -> Any:
    """[x, h_{t-1}]: the (T*B, I) inputs and (T*B, H) previous states side by side, (T*B, I + H)."""
    xh = xp.empty((x2.shape[0], x2.shape[1] + h_prev2.shape[1]), dtype=x2.dtype)
    xh[:, : x2.shape[1]], xh[:, x2.shape[1] :] = x2, h_prev2
    return xh


def _state_grads(xp: Any, grads: list[Any], B: int, H: int, dtype: Any) -> tuple[Any, list[Any]]:
    """The gradient of every step's output (or None) and writable copies of the last states' (zeros if unused),
    which the backward passes below update in place."""
    return grads[0], [xp.zeros((B, H), dtype=dtype) if g is None else g.copy() for g in grads[1:]]


@register(reference.RNNLayer)
class RNNLayer(reference.RNNLayer):
    """The Elman layer in one (T+1, B, H) buffer of states, the steps' products added into it."""

    def forward(self, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, nonlinearity: str = "tanh") -> Any:
        xp = self.xp
        reference._check_shapes("RNNLayer", x, (h0,), w_ih, w_hh, 1)
        T, B, _ = x.shape
        H = w_hh.shape[1]
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)  # h_0 .. h_T
        hs[0] = h0
        _, self.x2 = _input_projection(xp, x, w_ih, b_ih, b_hh, out=hs[1:])  # h_t starts as x_t W_ih^T + b
        recurrent = matmul_right_steps(hs[:T], RightFactor(w_hh.T), hs[1:], accumulate=True)  # (H, H), once
        for t in range(T):
            a = hs[t + 1]
            recurrent(t)  # a_t = x_t W_ih^T + b + h_{t-1} W_hh^T
            if nonlinearity == "tanh":
                if not tanh_in_place(a):  # compiled where it can be: NumPy's float32 tanh is libm's, element by element
                    xp.tanh(a, out=a)
            elif nonlinearity == "relu":
                xp.maximum(a, 0, out=a)
            else:
                _gate_(a, xp, 0.5, 0.5)
        self.w_ih, self.w_hh, self.hs, self.nonlinearity = w_ih, w_hh, hs, nonlinearity
        self.h_prev = hs[:T]
        return hs[1:], hs[T]  # output (T, B, H), h_T (B, H)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        xp = self.xp
        h = self.hs[1:]  # (T, B, H)
        g, (dh,) = _state_grads(xp, grads, h.shape[1], h.shape[2], h.dtype)  # dh: dL/dh_t from h_n, then from t+1
        if self.nonlinearity == "tanh":
            da = xp.multiply(h, h)
            xp.subtract(1, da, out=da)  # 1 - h^2, in place
        elif self.nonlinearity == "relu":
            da = (h > 0).astype(h.dtype)
        else:
            da = h * (1 - h)
        back = matmul_right_steps(da, RightFactor(self.w_hh), dh)  # dh = da_t W_hh; (H, H) once
        for t in range(h.shape[0] - 1, -1, -1):
            if g is not None:
                dh += g[t]
            da[t] *= dh  # now dL/da_t
            back(t)
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self, da, da)
        return dx, (dh if self.needs_grad[1] else None), dw_ih, dw_hh, db_ih, db_hh


@register(reference.LSTMLayer)
class LSTMLayer(reference.LSTMLayer):
    """The LSTM with one compiled kernel per step after its GEMM, forward and backward (see the module's notes)."""

    def forward(self, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
        xp = self.xp
        reference._check_shapes("LSTMLayer", x, (h0, c0), w_ih, w_hh, 4)
        T, B, _ = x.shape
        H = w_hh.shape[1]
        scale = xp.full(4 * H, 0.5, dtype=x.dtype)  # (4H,) sigmoid for i, f, o; tanh for g
        scale[2 * H : 3 * H] = 1
        # The biases are added one step at a time, while the step's rows are in the cache: a pass
        # over all T steps here would stream the whole (T, B, 4H) array through memory once more.
        biases = [b for b in (b_ih, b_hh) if b is not None]
        self.parts = workers.parts_for(H, T * B * H * 4 * H, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        if self.parts > 1:  # on several threads, one slice of the hidden units each (see the module's notes)
            return self._forward_parts(x, h0, c0, w_ih, w_hh, biases, scale)
        # tanh's argument is scale * a. Scaling the rows of W_ih, W_hh and the biases by 1/2 (exact in
        # floating point) lets the GEMMs produce it directly, so one tanh pass acts on a step's four gates.
        gates, self.x2 = _input_projection(xp, x, w_ih * scale[:, None])  # (T, B, 4H)
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)  # h_0 .. h_T
        cs = xp.empty((T + 1, B, H), dtype=x.dtype)  # C_0 .. C_T
        tanh_c = xp.empty((T, B, H), dtype=x.dtype)  # tanh(C_1) .. tanh(C_T)
        hs[0], cs[0] = h0, c0
        # + h_{t-1} W_hh^T, scaled, into each step's gates; W_hh^T (H, 4H) is prepared once for the T products
        recurrent = matmul_right_steps(hs[:T], RightFactor((w_hh * scale[:, None]).T), gates, accumulate=True)
        # Everything after a step's GEMM is one compiled call (Numba, or the CUDA twin on a GPU); without
        # kernels, the plain array path below.
        step = compiler.compiled(_lstm_step_kernel, gates)
        bias = sum(biases) * scale if biases else None  # (4H,), scaled; step adds it itself
        if step is None:
            bias_rows = xp.broadcast_to(bias, (B, 4 * H)).copy() if bias is not None else None
            scale_rows = xp.broadcast_to(scale, (B, 4 * H)).copy()  # (B, 4H): NumPy runs same-shape operands
            shift_rows = xp.broadcast_to(1 - scale, (B, 4 * H)).copy()  # faster than a broadcast row vector
            ig = xp.empty((B, H), dtype=x.dtype)
        for t in range(T):
            a = gates[t]  # holds x_t W_ih^T, scaled
            recurrent(t)  # + h_{t-1} W_hh^T, scaled
            if step is not None:
                step(a, bias, cs[t], cs[t + 1], tanh_c[t], hs[t + 1])
                continue
            if bias_rows is not None:
                a += bias_rows  # + b_ih + b_hh, scaled
            xp.tanh(a, out=a)
            a *= scale_rows
            a += shift_rows  # now i, f, g, o
            xp.multiply(a[:, H : 2 * H], cs[t], out=cs[t + 1])
            xp.multiply(a[:, :H], a[:, 2 * H : 3 * H], out=ig)
            cs[t + 1] += ig
            xp.tanh(cs[t + 1], out=tanh_c[t])
            xp.multiply(a[:, 3 * H :], tanh_c[t], out=hs[t + 1])
        self.w_ih, self.w_hh, self.gates, self.cs, self.tanh_c = w_ih, w_hh, gates, cs, tanh_c
        self.h_prev = hs[:T]
        return hs[1:], hs[T], cs[T]  # output (T, B, H), h_T and C_T (B, H)

    def _forward_parts(self, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, biases: list[Any], scale: Any) -> Any:
        """The forward with the hidden units split over ``self.parts`` threads (:func:`_lstm_forward_part`).

        Part p owns units bounds[p] .. bounds[p+1] - 1, and ``rows[p]`` are their rows in the gate order
        [i, f, g, o]: its input projection, its slice of W_hh and its cells are arrays of its own, so
        that each thread's GEMMs and kernels run on contiguous memory.
        """
        T, B, n_in = x.shape
        H = w_hh.shape[1]
        parts = self.parts
        bounds = [H * p // parts for p in range(parts + 1)]
        rows = [numpy.concatenate([numpy.arange(g * H + bounds[p], g * H + bounds[p + 1]) for g in range(4)])
                for p in range(parts)]
        self.x2 = x2 = numpy.ascontiguousarray(x).reshape(T * B, n_in)  # (T*B, I)
        w_ih_s, w_hh_s = w_ih * scale[:, None], w_hh * scale[:, None]
        bias = sum(biases) * scale if biases else None
        gates = [matmul(x2, w_ih_s[r].T).reshape(T, B, len(r)) for r in rows]  # (T, B, 4U) each, all threads
        hs = numpy.empty((T + 1, B, H), dtype=x.dtype)  # h_0 .. h_T, shared
        hs[0] = h0
        cs, tanh_c = [], []
        for p in range(parts):
            cs.append(numpy.empty((T + 1, B, bounds[p + 1] - bounds[p]), dtype=x.dtype))
            cs[p][0] = c0[:, bounds[p] : bounds[p + 1]]
            tanh_c.append(numpy.empty((T, B, bounds[p + 1] - bounds[p]), dtype=x.dtype))
        gemm, int_like, yield_at = workers.blas_arguments(x.dtype)
        flags, bounds_ = workers.new_flags(parts), numpy.array(bounds, dtype=numpy.int64)
        keep = []  # (the arrays that only the task words point to, alive until the parts are done)
        tasks = workers.new_tasks(parts)
        for p in range(parts):
            part_bias = None if bias is None else numpy.ascontiguousarray(bias[rows[p]])
            w_t = numpy.ascontiguousarray(w_hh_s[rows[p]].T)  # (H, 4U)
            h = numpy.empty((B, bounds[p + 1] - bounds[p]), dtype=x.dtype)
            keep += [part_bias, w_t, h]
            tasks[p, :18] = [p, parts, x.dtype.itemsize, int_like.itemsize, T, B, H,
                             *workers.addresses(bounds_, gates[p]), 0 if part_bias is None else part_bias.ctypes.data,
                             *workers.addresses(hs, cs[p], tanh_c[p], w_t, h, flags), gemm, yield_at]
        workers.run_on_blas_pool(_LSTM_TASKS[x.dtype.itemsize, int_like.itemsize][0], tasks)
        del keep
        self.w_ih, self.w_hh, self.gates, self.cs, self.tanh_c = w_ih, w_hh, gates, cs, tanh_c
        self.bounds, self.rows, self.h_prev = bounds, rows, hs[:T]
        return hs[1:], hs[T], numpy.concatenate([c[T] for c in cs], axis=1)

    def _backward_parts(self, grads: list[Any]) -> tuple[Any, ...]:
        """The backward of :meth:`_forward_parts`, on the same parts (:func:`_lstm_backward_part`)."""
        gates, cs, tanh_c, bounds, rows = self.gates, self.cs, self.tanh_c, self.bounds, self.rows
        T, B = gates[0].shape[:2]
        H, parts, dtype = bounds[-1], self.parts, gates[0].dtype
        grad, (dh, dc) = _state_grads(numpy, grads, B, H, dtype)
        grad = numpy.zeros((T, B, H), dtype=dtype) if grad is None else numpy.ascontiguousarray(grad)
        units = [slice(bounds[p], bounds[p + 1]) for p in range(parts)]
        dhs = [numpy.ascontiguousarray(dh[:, u]) for u in units]
        dcs = [numpy.ascontiguousarray(dc[:, u]) for u in units]
        das = tuple(gates) if self.last_backward else tuple(numpy.empty_like(g) for g in gates)
        gemm, int_like, yield_at = workers.blas_arguments(dtype)
        flags, bounds_ = workers.new_flags(parts), numpy.array(bounds, dtype=numpy.int64)
        das_at = numpy.array(workers.addresses(*das), dtype=numpy.int64)
        w_rows = [self.w_hh[r] for r in rows]  # (4U_q, H)
        keep = []  # (the arrays that only the task words point to, alive until the parts are done)
        tasks = workers.new_tasks(parts)
        for p in range(parts):
            w_parts = [numpy.ascontiguousarray(w[:, units[p]]) for w in w_rows]  # (4U_q, U_p)
            w_parts_at = numpy.array(workers.addresses(*w_parts), dtype=numpy.int64)
            grad_part = numpy.empty((B, bounds[p + 1] - bounds[p]), dtype=dtype)
            keep += [*w_parts, w_parts_at, grad_part]
            tasks[p, :20] = [p, parts, dtype.itemsize, int_like.itemsize, T, B, H,
                             *workers.addresses(bounds_, gates[p], das_at, cs[p], tanh_c[p], grad, grad_part, dhs[p],
                                                dcs[p], w_parts_at, flags), gemm, yield_at]
        workers.run_on_blas_pool(_LSTM_TASKS[dtype.itemsize, int_like.itemsize][1], tasks)
        del keep
        need = self.needs_grad  # x, h_0, C_0, W_ih, W_hh, b_ih, b_hh
        n_in = self.x2.shape[1]
        h_prev2 = self.h_prev.reshape(T * B, H)  # (T*B, H)
        xh = _inputs_and_states(numpy, self.x2, h_prev2) if need[3] and need[4] else None  # once for all parts
        dx = None
        dw_ih = numpy.empty((4 * H, n_in), dtype=dtype) if need[3] else None
        dw_hh = numpy.empty((4 * H, H), dtype=dtype) if need[4] else None
        db = numpy.empty(4 * H, dtype=dtype) if need[5] or need[6] else None
        for da, r in zip(das, rows):  # each part's rows of the gradients
            da2 = da.reshape(T * B, -1)  # (T*B, 4U)
            if need[0]:
                part_dx = matmul(da2, self.w_ih[r])  # (T*B, I)
                dx = part_dx if dx is None else numpy.add(dx, part_dx, out=dx)
            part_ih, part_hh = _shared_weight_grads(numpy, da2, self.x2, h_prev2, need[3], need[4], xh)
            if dw_ih is not None:
                dw_ih[r] = part_ih
            if dw_hh is not None:
                dw_hh[r] = part_hh
            if db is not None:
                db[r] = da2.sum(axis=0)
        dh0 = numpy.concatenate(dhs, axis=1) if need[1] else None
        dc0 = numpy.concatenate(dcs, axis=1) if need[2] else None
        return (None if dx is None else dx.reshape(T, B, n_in), dh0, dc0, dw_ih, dw_hh,
                db if need[5] else None, db if need[6] else None)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        if self.parts > 1:
            return self._backward_parts(grads)
        xp = self.xp
        gates, cs, tanh_c = self.gates, self.cs, self.tanh_c
        T, B, H = tanh_c.shape
        grad, (dh, dc) = _state_grads(xp, grads, B, H, gates.dtype)  # dL/dh_T, dL/dC_T from h_n and c_n
        step_back = compiler.compiled(_lstm_step_back_kernel, gates, dh, dc)
        if step_back is not None:  # one compiled pass per step does all of the loops below
            if grad is not None:
                # One copy up front rather than strided reads in every step: a batch_first model hands in
                # the transpose of a (B, T, H) gradient, whose step rows lie T*H apart, and the CPU kernel
                # then reads B scattered 1 KiB pieces a step, which the prefetcher does not foresee
                # (B = 32, H = 256: 62 us a step before; 38 us after, plus 0.17 ms for the copy). The CUDA
                # kernel reads flat rows.
                grad = xp.ascontiguousarray(grad)
            # dL/da_t for every step (T, B, 4H). When the graph is freed after this backward, the CPU kernel
            # writes it over the gates, which it reads row by row just before (B = 32, H = 256: 23 instead
            # of 37 us a step, as the writes then go to cache lines just read, and no second array).
            da = gates if self.last_backward and self.device == "cpu" else xp.empty_like(gates)
            back = matmul_right_steps(da, RightFactor(self.w_hh), dh)  # dh = da_t W_hh; W_hh (4H, H) once
            for t in range(T - 1, -1, -1):
                step_back(gates[t], cs[t], tanh_c[t], None if grad is None else grad[t], dh, dc, da[t])
                back(t)
            return self._grads(da, dh, dc)
        # The steps are walked back in blocks of about BPTT_BLOCK_BYTES of gates. The factors of
        # da_t that do not depend on dh_t or dC_t are made for a whole block at once, while its
        # rows sit in the cache (whole-sequence passes would stream (T, B, 4H) arrays through
        # memory about ten times; single steps would pay the call overhead of ten ufuncs each);
        # the loop over the block's steps then only multiplies them by dC_t and dh_t.
        steps = max(1, min(T, BPTT_BLOCK_BYTES // max(gates[0].nbytes, 1)))
        da = xp.empty_like(gates)  # (T, B, 4H): dL/da_t for every step, for the weight GEMMs after the loop
        dc_from_h = xp.empty((steps, B, H), dtype=gates.dtype)  # o (1 - tanh^2 C_t): how dh_t reaches C_t
        tmp = xp.empty((B, H), dtype=gates.dtype)
        back = matmul_right_steps(da, RightFactor(self.w_hh), dh)  # dh = da_t W_hh; W_hh (4H, H) once
        for stop in range(T, 0, -steps):
            start = max(0, stop - steps)
            a, d, q = gates[start:stop], da[start:stop], dc_from_h[: stop - start]  # (n, B, 4H), (n, B, 4H), (n, B, H)
            i, g, o = a[..., :H], a[..., 2 * H : 3 * H], a[..., 3 * H :]
            d_g = d[..., 2 * H : 3 * H]
            # d = [g i (1 - i), C_{t-1} f (1 - f), i (1 - g^2), tanh(C_t) o (1 - o)], times dC_t or dh_t below
            xp.subtract(1, a, out=d)
            d *= a  # s (1 - s): the sigmoid's derivative for i, f, o
            xp.multiply(g, g, out=d_g)
            xp.subtract(1, d_g, out=d_g)  # 1 - g^2: tanh's derivative for g
            d[..., :H] *= g
            d[..., H : 2 * H] *= cs[start:stop]
            d_g *= i
            d[..., 3 * H :] *= tanh_c[start:stop]
            xp.multiply(tanh_c[start:stop], tanh_c[start:stop], out=q)
            xp.subtract(1, q, out=q)
            q *= o
            for t in range(stop - 1, start - 1, -1):
                if grad is not None:
                    dh += grad[t]
                xp.multiply(dh, q[t - start], out=tmp)
                dc += tmp  # dC_t = dC_{t+1} f_{t+1} + dh_t o (1 - tanh^2 C_t)
                da[t].reshape(B, 4, H)[:, :3] *= dc[:, None, :]  # i, f, g are reached through C_t
                da[t, :, 3 * H :] *= dh  # o through h_t
                dc *= gates[t, :, H : 2 * H]  # dL/dC_{t-1} along C_t = f C_{t-1} + ...
                back(t)
        return self._grads(da, dh, dc)

    def _grads(self, da: Any, dh: Any, dc: Any) -> tuple[Any, ...]:
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self, da, da)
        need = self.needs_grad
        return dx, (dh if need[1] else None), (dc if need[2] else None), dw_ih, dw_hh, db_ih, db_hh


@register(reference.GRULayer)
class GRULayer(reference.GRULayer):
    """The GRU on preallocated gates, with the step-independent factors of its backward made for all steps at once."""

    def forward(self, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
        xp = self.xp
        reference._check_shapes("GRULayer", x, (h0,), w_ih, w_hh, 3)
        T, B, _ = x.shape
        H = w_hh.shape[1]
        proj, self.x2 = _input_projection(xp, x, w_ih, b_ih)  # (T, B, 3H)
        if b_hh is not None:
            proj[..., : 2 * H] += b_hh[: 2 * H]  # r and z see b_hh outside the product with r
        gates = xp.empty((T, B, 3 * H), dtype=x.dtype)  # r, z, n of every step
        hh = xp.empty((T, B, 3 * H), dtype=x.dtype)  # h_{t-1} W_hh^T (+ b_hn), kept for dr
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)  # h_0 .. h_T
        hs[0] = h0
        recurrent = matmul_right_steps(hs[:T], RightFactor(w_hh.T), hh)  # hh_t = h_{t-1} W_hh^T; (H, 3H) once
        for t in range(T):
            recurrent(t)
            if b_hh is not None:
                hh[t, :, 2 * H :] += b_hh[2 * H :]
            rz, n = gates[t, :, : 2 * H], gates[t, :, 2 * H :]
            xp.add(proj[t, :, : 2 * H], hh[t, :, : 2 * H], out=rz)
            _gate_(rz, xp, 0.5, 0.5)
            xp.multiply(rz[:, :H], hh[t, :, 2 * H :], out=n)
            n += proj[t, :, 2 * H :]
            xp.tanh(n, out=n)
            h = hs[t + 1]
            xp.subtract(hs[t], n, out=h)
            h *= rz[:, H:]
            h += n
        self.w_ih, self.w_hh, self.gates, self.hh_n = w_ih, w_hh, gates, hh[..., 2 * H :]
        self.h_prev = hs[:T]
        return hs[1:], hs[T]  # output (T, B, H), h_T (B, H)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        xp = self.xp
        gates, h_prev = self.gates, self.h_prev
        T, B, H = h_prev.shape
        grad, (dh,) = _state_grads(xp, grads, B, H, gates.dtype)  # dh: dL/dh_T from h_n, then from step t+1
        r, z, n = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]
        # The step-independent factors of da = [dh (1-z)(1-n^2) hh_n r(1-r), dh (h_{t-1}-n) z(1-z), dh (1-z)(1-n^2)]:
        d_ih = xp.empty((T, B, 3 * H), dtype=gates.dtype)  # becomes dL/d(x W_ih^T + b_ih)
        d_ih[..., 2 * H :] = (1 - z) * (1 - n * n)
        d_ih[..., :H] = self.hh_n * r * (1 - r)
        d_ih[..., :H] *= d_ih[..., 2 * H :]
        d_ih[..., H : 2 * H] = (h_prev - n) * z * (1 - z)
        d_ih3 = d_ih.reshape(T, B, 3, H)  # (T, B, 3, H)
        d_hh = xp.empty_like(d_ih)  # becomes dL/d(h W_hh^T + b_hh)
        tmp = xp.empty((B, H), dtype=gates.dtype)
        back = matmul_right_steps(d_hh, RightFactor(self.w_hh), tmp)  # tmp = d_hh_t W_hh; W_hh (3H, H) once
        for t in range(T - 1, -1, -1):
            if grad is not None:
                dh += grad[t]
            d_ih3[t] *= dh[:, None, :]
            d_hh[t, :, : 2 * H] = d_ih[t, :, : 2 * H]
            xp.multiply(d_ih[t, :, 2 * H :], r[t], out=d_hh[t, :, 2 * H :])
            back(t)
            dh *= z[t]
            dh += tmp
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self, d_ih, d_hh)
        return dx, (dh if self.needs_grad[1] else None), dw_ih, dw_hh, db_ih, db_hh
