"""Attention's softmax and its derivative as compiled kernels, on scores kept transposed.

The reference (:class:`tinygrad_lm.ops.attention.ScaledDotProductAttention`) runs the softmax
over S = Q K^T as five NumPy passes (max, subtract, exp, sum, divide) and its derivative as four.
Here each is one call:

- On the CPU (Numba), :func:`_softmax_kernel` and :func:`_softmax_back_kernel` walk the scores one
  (S, L) block of one batch element and head at a time, so that the block stays in the L1 cache.
  At GPT-like sizes (batch 32, 4 heads, 64 tokens, head size 32, causal) the softmax's share of
  forward and backward takes about half the time of the NumPy passes.
- On a GPU, with a mask that is one (L, S) matrix (a causal one, say) or none and no dropout,
  :func:`_softmax_columns_kernel` and :func:`_softmax_columns_back_kernel` run as their CUDA twins
  (:mod:`tinygrad_lm.fast.cuda_kernels`), a thread per query.

Other inputs (no Numba, a mask or keep-mask that enlarges the scores, a per-batch mask or dropout
on a GPU) run the reference.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy

from ..ops import attention
from . import compiler, layouts, register, workers
from .blas import matmul

# The compiled softmax skips exp on whole chunks of this many queries that a key cannot see; the
# chunk must be at least as wide as one step of the compiled loop (8 float32 lanes, 4 times unrolled).
_SPAN_CHUNK = 32


@register(attention.ScaledDotProductAttention)
class ScaledDotProductAttention(attention.ScaledDotProductAttention):
    """The reference's equations with the softmax and its derivative compiled, on transposed scores.

    The op keeps the (..., L, S) score-sized arrays transposed, as (..., S, L) = K Q^T: the
    queries of one key are then contiguous, so each kernel step is one vector operation across
    queries, and the transposes cost nothing in the matrix products. The softmax and its
    derivative are done in place on the fresh products (one allocation each).

    :func:`_softmax_kernel` walks each (S, L) block (16 KiB in float32 at 64 x 64) key by key
    three times: scale, add the mask and keep each query's running max; exp(x - max) and each
    query's running sum; divide by the sum (and multiply by the dropout mask). It always shifts
    by the max (one compare per score in a pass that is made anyway) and skips exp on chunks of
    32 queries that the mask hides from a key (a quarter of a causal 64 x 64 block). The
    backward's dS = P (dP - c) is one call too, :func:`_softmax_back_kernel`, which sums
    c = rowsum(dP P) over the block it is about to rewrite. The kernels need the mask to
    broadcast to K Q^T and the dropout mask to have its shape, and in backward dP (V dO^T) to
    have P's shape; otherwise (a mask or keep-mask with more batch dims, V with more batch dims)
    the reference runs.
    """

    pt_used: Any = None  # P'^T (..., S, L) once the compiled forward has run; None while the reference runs

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        shape = numpy.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (k.shape[-2], q.shape[-2])  # K Q^T, (..., S, L)
        dtype = xp.result_type(q, k)
        one_matrix = mask is None or (mask.shape == shape[:-3:-1] and mask.dtype == dtype)  # no mask, or (L, S)
        blocks = None
        self.back: Callable[..., Any] | None = None  # the compiled derivative for backward; None: the reference's
        kernel = compiler.compiled(_softmax_kernel, q, k)
        if kernel is not None:
            blocks = _kernel_operands(xp, type(q), shape, dtype, mask, keep)
            if blocks is not None:
                self.back = compiler.compiled(_softmax_back_kernel, q, k)
        elif keep is None and 0 not in shape and one_matrix:
            # a GPU's one-kernel softmax (a thread per query)
            kernel = compiler.compiled(_softmax_columns_kernel, q, k)
            if kernel is not None:
                self.back = compiler.compiled(_softmax_columns_back_kernel, q, k)
        if kernel is None or self.back is None:  # (the reference by name: for the weights' op, super() is that op)
            return attention.ScaledDotProductAttention.forward(self, q, k, v, mask, keep, scale)
        st = matmul(k, q.swapaxes(-1, -2))  # S^T = K Q^T, (..., S, L), a fresh C-contiguous array
        self.columns = blocks is None
        if blocks is not None:
            pt, pt_used = _fused_softmax(xp, kernel, st, blocks, scale)
            self.keep_blocks = blocks[2]
        else:
            mask_t = None if mask is None else xp.ascontiguousarray(mask.T)  # (S, L)
            kernel(st.reshape((-1,) + st.shape[-2:]), mask_t, scale)  # (N, S, L), in place: now P^T
            pt = pt_used = st
        out = matmul(pt_used.swapaxes(-1, -2), v)  # O = P' V, (..., L, Ev)
        self.q, self.k, self.v, self.pt, self.pt_used, self.keep, self.scale = q, k, v, pt, pt_used, keep, scale
        self.p = pt.swapaxes(-1, -2)  # P, for the reference's backward where the kernels' does not apply
        return out

    def _backward(self, g: Any, dw: Any) -> tuple[Any, Any, Any, Any]:
        # (dP'^T = V dO^T is larger than P^T when V broadcasts P over more batch dims: the reference then)
        if self.back is None or (g is not None and (g.shape[:-2] != self.pt.shape[:-2]
                                                    or self.xp.result_type(self.v, g) != self.pt.dtype)):
            return super()._backward(g, dw)
        xp = self.xp
        need_q, need_k, need_v, need_mask = self.needs_grad
        pt, scale = self.pt, self.scale
        # Each gradient is laid out as its input, and q, k and v split from one qkv product get theirs in one
        # array laid out as that product (fast/layouts.py): the split's backward then copies nothing.
        batch = pt.shape[:-2]
        needed = [(x, batch + x.shape[-2:]) for x, need in zip((self.q, self.k, self.v), (need_q, need_k, need_v))
                  if need]
        outs = iter(layouts.empty_like_inputs([x for x, _ in needed], [shape for _, shape in needed], pt.dtype))
        out_q, out_k, out_v = (next(outs) if need else None for need in (need_q, need_k, need_v))
        dv = matmul(self.pt_used, g, out=out_v) if need_v and g is not None else None  # P'^T dO, (..., S, Ev)
        dq: Any = None
        dk: Any = None
        dst: Any = None
        if need_q or need_k or need_mask:
            if g is None:  # dP'^T = dW^T, in a fresh array (the kernels below overwrite it)
                dpt = dw.swapaxes(-1, -2).astype(pt.dtype, order="C", copy=True)
            else:
                dpt = matmul(self.v, g.swapaxes(-1, -2))  # dP'^T = V dO^T, (..., S, L)
                if dw is not None:  # + dW^T, the weights' own gradient
                    dpt += dw.swapaxes(-1, -2)
            if self.columns:
                blocks = (-1,) + pt.shape[-2:]  # (N, S, L)
                self.back(dpt.reshape(blocks), pt.reshape(blocks))
                dst = dpt  # now dS^T
            else:
                dst = _fused_softmax_back(xp, self.back, dpt, pt, self.keep_blocks)  # dS^T
            if need_q:
                dq = matmul(dst.swapaxes(-1, -2), self.k, out=out_q)  # dS K, (..., L, E)
                dq *= scale
            if need_k:
                dk = matmul(dst, self.q, out=out_k)  # dS^T Q, (..., S, E)
                dk *= scale
        return dq, dk, dv, (dst.swapaxes(-1, -2) if need_mask else None)

    def _weights(self) -> Any:
        if self.pt_used is None:  # the reference ran
            return super()._weights()
        return self.pt_used.swapaxes(-1, -2)  # P', (..., L, S): a view of what backward reads


@register(attention.ScaledDotProductAttentionWeights)
class ScaledDotProductAttentionWeights(ScaledDotProductAttention, attention.ScaledDotProductAttentionWeights):
    """The op above returning P' too (``MultiheadAttention``'s weights): the transposed view of P'^T, no copy.
    Its backward is the reference's, which hands dO and dW to :meth:`ScaledDotProductAttention._backward`."""

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        return ScaledDotProductAttention.forward(self, q, k, v, mask, keep, scale), self._weights()


def _softmax_columns_kernel(st: Any, mask_t: Any, scale: float) -> None:
    """The softmax on transposed scores as a GPU runs it, in place: ``st`` (N, S, L) holds K Q^T and becomes P^T.

    One query (n, l) at a time, a column of st: z_s = scale st[n, s, l] + M^T[s, l] (``mask_t`` (S, L),
    or no mask), m = max_s z_s (0 where that is not finite), e_s = exp(z_s - m), p_s = e_s / sum_s e_s,
    and p = e = 0 for a query that sees no key (its sum is 0). Its CUDA twin runs a thread per query;
    adjacent threads hold adjacent queries, so each of its three passes over the keys reads contiguous rows.
    """
    N, S, L = st.shape
    for n in range(N):
        for q in range(L):
            m = -math.inf
            for k in range(S):
                z = scale * st[n, k, q] + (mask_t[k, q] if mask_t is not None else 0.0)
                st[n, k, q] = z
                m = z if z > m else m
            m = m if math.isfinite(m) else 0.0
            total = 0.0
            for k in range(S):
                st[n, k, q] = math.exp(st[n, k, q] - m)
                total += st[n, k, q]
            inv = 1.0 / total if total != 0 else 1.0
            for k in range(S):
                st[n, k, q] *= inv


def _softmax_columns_back_kernel(dpt: Any, pt: Any) -> None:
    """dS^T = (P (dP - c))^T in place of dP^T (N, S, L), with c = sum_s P^T[s, l] dP^T[s, l] for each query
    (no dropout: dP = dP'). Its CUDA twin: a thread per query."""
    N, S, L = dpt.shape
    for n in range(N):
        for q in range(L):
            c = 0.0
            for k in range(S):
                c += pt[n, k, q] * dpt[n, k, q]
            for k in range(S):
                dpt[n, k, q] = pt[n, k, q] * (dpt[n, k, q] - c)


def _softmax_kernel(st: Any, scale: Any, mask: Any, mask_index: Any, spans: Any, keep: Any, pt_used: Any,
                    rows: Any) -> None:
    """The forward softmax on transposed scores, in place: ``st`` (N, S, L) holds K Q^T and becomes P^T.

    Each of the N (S, L) blocks is walked key by key, three times, with the L queries of a key
    contiguous, so that every step is one vector operation across queries:

    1. x = s * scale + M (M^T is ``mask[mask_index[n]]``, (S, L)) and each query's running max m;
    2. e = exp(x - m) and each query's running sum t (a query with no finite max, a fully masked
       one, uses m = 0: its e are all 0);
    3. P = e / t (0 where t = 0); with dropout also P' = P * D into ``pt_used`` (N, S, L), from
       ``keep`` D (N, L, S).

    Step 2 skips exp on chunks of _SPAN_CHUNK queries that a key cannot see (a quarter of a
    causal 64 x 64 block): first, ``spans[b, j]`` (Nm, S, 2) gets the start of the chunk that
    holds the first query mask block b lets key j see, and one past the last such query. In a
    skipped chunk x is -inf, so e = 0, or NaN (from an inf or NaN score), kept as exp would
    keep it. ``rows`` (2, L) is scratch for m and t.
    """
    N, S, L = st.shape
    W = _SPAN_CHUNK
    n_chunks = -(-L // W)  # the last one L - (n_chunks - 1) W wide
    sc = st.dtype.type(scale)
    zero = st.dtype.type(0)
    one = st.dtype.type(1)
    inf = st.dtype.type(math.inf)
    m, t = rows[0], rows[1]
    if mask is not None:
        for b in range(mask.shape[0]):
            for j in range(S):
                lo, hi = 0, L
                while lo < L and mask[b, j, lo] == -inf:
                    lo += 1
                while hi > lo and mask[b, j, hi - 1] == -inf:
                    hi -= 1
                spans[b, j, 0], spans[b, j, 1] = lo - lo % W, hi
    for n in range(N):
        s = st[n]
        if mask is not None:
            mk, span = mask[mask_index[n]], spans[mask_index[n]]  # M^T (S, L), (S, 2)
        for i in range(L):
            m[i] = -inf
        for j in range(S):
            for i in range(L):
                x = s[j, i] * sc
                if mask is not None:
                    x += mk[j, i]
                s[j, i] = x
                mi = m[i]
                m[i] = x if x > mi else mi
        for i in range(L):
            if m[i] == inf or m[i] == -inf:
                m[i] = zero
            t[i] = zero
        for j in range(S):
            lo, hi = 0, L
            if mask is not None:
                lo, hi = span[j, 0], span[j, 1]
            for c in range(n_chunks):
                w = W if c < n_chunks - 1 else L - c * W
                if lo <= c * W < hi:
                    for u in range(w):
                        e = compiler.exp(s[j, c * W + u] - m[c * W + u])
                        s[j, c * W + u] = e
                        t[c * W + u] += e
                else:
                    for u in range(w):
                        x = s[j, c * W + u]
                        e = zero if x == -inf else x
                        s[j, c * W + u] = e
                        t[c * W + u] += e
        for i in range(L):
            t[i] = zero if t[i] == zero else one / t[i]
        for j in range(S):
            for i in range(L):
                p = s[j, i] * t[i]
                s[j, i] = p
                if keep is not None:
                    pt_used[n, j, i] = p * keep[n, i, j]


def _softmax_back_kernel(dpt: Any, pt: Any, keep: Any, c: Any) -> None:
    """The softmax's derivative on transposed blocks, in place: dpt (N, S, L) holds dP'^T = V dO^T and becomes dS^T.

    For each block, two passes key by key as in :func:`_softmax_kernel`: (1) dP = dP' * D (with
    dropout, D from ``keep`` (N, L, S)) and each query's c = sum_j dP P; (2) dS = P * (dP - c).
    ``pt`` (N, S, L) is P^T; ``c`` (L,) is scratch.
    """
    N, S, L = dpt.shape
    zero = dpt.dtype.type(0)
    for n in range(N):
        d = dpt[n]
        p = pt[n]
        for i in range(L):
            c[i] = zero
        for j in range(S):
            for i in range(L):
                dp = d[j, i]
                if keep is not None:
                    dp *= keep[n, i, j]
                    d[j, i] = dp
                c[i] += dp * p[j, i]
        for j in range(S):
            for i in range(L):
                d[j, i] = p[j, i] * (d[j, i] - c[i])


def _fused_softmax(xp: Any, kernel: Any, st: Any, blocks: tuple[Any, Any, Any], scale: float) -> tuple[Any, Any]:
    """P^T and P'^T from K Q^T ``st`` (..., S, L) by the compiled :func:`_softmax_kernel`; ``st`` becomes P^T."""
    mask_t, mask_index, keep_blocks = blocks
    S, L = st.shape[-2:]
    N = math.prod(st.shape[:-2])
    st_blocks = st.reshape(N, S, L)  # (N, S, L), a view
    pt_used = None if keep_blocks is None else xp.empty_like(st)
    parts = workers.pieces_for(N, st.size, st, mask_t, keep_blocks)
    contiguous = all(a is None or a.flags.c_contiguous for a in (st, mask_t, mask_index, keep_blocks))
    if parts > 1 and contiguous and (mask_index is None or mask_index.dtype == numpy.int64):
        # each part has spans and rows of its own (each works out the spans of every mask block)
        Nm = 0 if mask_t is None else mask_t.shape[0]
        spans = xp.empty((parts, max(Nm, 1), S, 2), dtype=numpy.int64)
        rows, scale_ = xp.empty((parts, 2, L), dtype=st.dtype), numpy.array([scale], dtype=st.dtype)
        optional = [0 if a is None else a.ctypes.data for a in (mask_t, mask_index, keep_blocks, pt_used)]
        task = _softmax_pieces_f32 if st.dtype.itemsize == 4 else _softmax_pieces_f64
        workers.run_pieces(task, parts, N, st.dtype.itemsize, S, L, Nm,
                           *workers.addresses(st_blocks, scale_, spans, rows), *optional)
        return st, (st if pt_used is None else pt_used)
    spans = None if mask_t is None else xp.empty(mask_t.shape[:-1] + (2,), dtype=mask_index.dtype)  # (Nm, S, 2)
    kernel(st_blocks, scale, mask_t, mask_index, spans, keep_blocks,
           None if pt_used is None else pt_used.reshape(st_blocks.shape), xp.empty((2, L), dtype=st.dtype))
    return st, (st if pt_used is None else pt_used)


def _fused_softmax_back(xp: Any, kernel: Any, dpt: Any, pt: Any, keep_blocks: Any) -> Any:
    """dS^T from dP'^T = V dO^T ``dpt`` and P^T ``pt`` (..., S, L) by the compiled :func:`_softmax_back_kernel`.

    ``dpt`` is overwritten with dS^T and returned."""
    S, L = pt.shape[-2:]
    n_blocks = math.prod(pt.shape[:-2])
    parts = workers.pieces_for(n_blocks, pt.size, dpt, pt, keep_blocks)
    contiguous = all(a is None or a.flags.c_contiguous for a in (dpt, pt, keep_blocks))
    if parts > 1 and contiguous:
        c = xp.empty((parts, L), dtype=pt.dtype)
        task = _softmax_back_pieces_f32 if pt.dtype.itemsize == 4 else _softmax_back_pieces_f64
        workers.run_pieces(task, parts, n_blocks, pt.dtype.itemsize, S, L,
                           *workers.addresses(dpt, pt, c), 0 if keep_blocks is None else keep_blocks.ctypes.data)
        return dpt
    kernel(dpt.reshape(n_blocks, S, L), pt.reshape(n_blocks, S, L), keep_blocks, xp.empty(L, dtype=pt.dtype))
    return dpt


compiler.callable_in_kernels(_softmax_kernel, _softmax_back_kernel)


def _softmax_piece(w: Any, like: Any) -> None:
    """Blocks ``first .. last - 1`` of :func:`_softmax_kernel` in floats of ``like``'s type, from the task words
    of :func:`_softmax_pieces_f32` (or ``_f64``)."""
    part, first, n = w[0], w[1], w[2] - w[1]
    size, S, L, Nm = w[4], w[5], w[6], w[7]
    st = compiler.floats(w[8] + size * first * S * L, (n, S, L), like)
    scale = compiler.floats(w[9], 1, like)[0]
    spans = compiler.words(w[10] + 8 * part * max(Nm, 1) * S * 2, max(Nm, 1) * S * 2).reshape((max(Nm, 1), S, 2))
    rows = compiler.floats(w[11] + size * part * 2 * L, (2, L), like)
    if w[14] == 0:  # no dropout
        if w[12] == 0:
            _softmax_kernel(st, scale, None, None, None, None, None, rows)
        else:
            mask, mask_index = compiler.floats(w[12], (Nm, S, L), like), compiler.words(w[13] + 8 * first, n)
            _softmax_kernel(st, scale, mask, mask_index, spans, None, None, rows)
    else:
        keep = compiler.floats(w[14] + size * first * L * S, (n, L, S), like)
        pt_used = compiler.floats(w[15] + size * first * S * L, (n, S, L), like)
        if w[12] == 0:
            _softmax_kernel(st, scale, None, None, None, keep, pt_used, rows)
        else:
            mask, mask_index = compiler.floats(w[12], (Nm, S, L), like), compiler.words(w[13] + 8 * first, n)
            _softmax_kernel(st, scale, mask, mask_index, spans, keep, pt_used, rows)


# The callbacks, one per float type, so that a process compiles only the one it uses (each compiles
# the kernel four times, with and without a mask and a keep-mask: 19 s for both float types on first use).
# Words: 4 the float size, 5-7 S, L and the mask's blocks Nm, 8-11 the addresses of the scores (N, S, L),
# the scale (one element), the parts' spans (parts, Nm, S, 2) and rows (parts, 2, L), 12-15 those of the
# mask (Nm, S, L), its block index (N,), the keep-mask (N, L, S) and P' (N, S, L), 0 where absent.
def _softmax_pieces_f32(task: int) -> None:
    _softmax_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0))


def _softmax_pieces_f64(task: int) -> None:
    _softmax_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0))


def _softmax_back_piece(w: Any, like: Any) -> None:
    """Blocks ``first .. last - 1`` of :func:`_softmax_back_kernel`, from the words of
    :func:`_softmax_back_pieces_f32` (or ``_f64``)."""
    part, first, n = w[0], w[1], w[2] - w[1]
    size, S, L = w[4], w[5], w[6]
    dpt = compiler.floats(w[7] + size * first * S * L, (n, S, L), like)
    pt = compiler.floats(w[8] + size * first * S * L, (n, S, L), like)
    c = compiler.floats(w[9] + size * part * L, L, like)
    if w[10] == 0:
        _softmax_back_kernel(dpt, pt, None, c)
    else:
        _softmax_back_kernel(dpt, pt, compiler.floats(w[10] + size * first * L * S, (n, L, S), like), c)


# Backward words: 4 the float size, 5-6 S and L, 7-10 the addresses of dP'^T and P^T (N, S, L), the parts'
# scratch (parts, L) and the keep-mask (N, L, S) (0: none).
def _softmax_back_pieces_f32(task: int) -> None:
    _softmax_back_piece(compiler.words(task, workers.TASK_WORDS), numpy.float32(0))


def _softmax_back_pieces_f64(task: int) -> None:
    _softmax_back_piece(compiler.words(task, workers.TASK_WORDS), numpy.float64(0))


compiler.callable_in_kernels(_softmax_piece, _softmax_back_piece)


def _kernel_operands(xp: Any, kind: Any, shape: tuple[int, ...], dtype: Any, mask: Any,
                     keep: Any) -> tuple[Any, Any, Any] | None:
    """The kernels' view of the mask and keep-mask for scores K Q^T of ``shape`` (..., S, L), or None where
    they do not apply.

    Returns the mask's distinct transposed blocks M^T as one contiguous (Nm, S, L) copy (a causal
    mask: one block), the block of each of the N = prod(...) score blocks (N,), and D as (N, L, S);
    None for an absent mask or keep-mask. The kernels need operands of the scores' array type
    ``kind`` and ``dtype``, a mask that broadcasts to the scores without enlarging them and a
    keep-mask of exactly their (..., L, S) shape.
    """
    for a in (mask, keep):
        if a is not None and (type(a) is not kind or a.dtype != dtype):
            return None
    batch, (S, L) = shape[:-2], shape[-2:]
    mask_t: Any = None
    mask_index: Any = None
    keep_blocks: Any = None
    if mask is not None:
        mask_t = _transposed(mask)
        if not _broadcasts_to(mask_t.shape, shape):
            return None
        mask_batch = mask_t.shape[:-2]
        mask_t = xp.ascontiguousarray(xp.broadcast_to(mask_t, mask_batch + (S, L)))
        mask_t = mask_t.reshape(math.prod(mask_batch), S, L)  # (Nm, S, L)
        mask_index = xp.broadcast_to(xp.arange(mask_t.shape[0]).reshape(mask_batch), batch).ravel()  # (N,)
    if keep is not None:
        if keep.shape != batch + (L, S):
            return None
        keep_blocks = keep.reshape(math.prod(batch), L, S)  # (N, L, S)
    return mask_t, mask_index, keep_blocks


def _transposed(a: Any) -> Any:
    """A view of an array that broadcasts to (..., L, S) as one that broadcasts to (..., S, L)."""
    if a.ndim < 2:
        a = a.reshape((1,) * (2 - a.ndim) + a.shape)
    return a.swapaxes(-1, -2)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without enlarging it."""
    if len(shape) > len(target):
        return False
    return all(n == 1 or n == m for n, m in zip(reversed(shape), reversed(target)))
