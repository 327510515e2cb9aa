"""Fused scaled dot-product attention: one graph node instead of six.

    S = Q K^T * scale + M            (..., L, S)
    P = softmax(S) over the last axis  (rows that are entirely -inf give P = 0)
    O = (P * D) V                    (..., L, Ev); D is the dropout keep-mask, already divided by 1 - p

The backward pass is written out by hand from the same equations (with P' = P * D):

    dV = P'^T dO,   dP' = dO V^T,   dP = dP' * D,
    dS = P * (dP - c),   c_i = rowsum(dP * P)_i = dO_i . O_i,
    dQ = dS K * scale,   dK = dS^T Q * scale,   dM = dS.

The second form of c holds because sum_j (dO_i . V_j) D_ij P_ij = dO_i . sum_j P'_ij V_j = dO_i . O_i
(FlashAttention's trick): it costs one pass over the (..., L, Ev) output instead of two over the
(..., S, L) scores.
"""
from __future__ import annotations

import math
from typing import Any

from ..autograd import Function
from ..backend import matmul

# A mask at most 1/this of the scores' size (a causal (L, S) mask, say) is copied, transposed, into a
# contiguous array before it is added: the add then streams, about 2x faster than through the strided view.
SMALL_MASK_FRACTION = 4


class ScaledDotProductAttention(Function):
    """O = softmax(Q K^T s + M) V; dS = P (dP - rowsum(dO O)), dQ = s dS K, dK = s dS^T Q, dV = P^T dO, dM = dS

    The op keeps the (..., L, S) score-sized arrays transposed, as (..., S, L) = K Q^T: the
    softmax then reduces over axis -2, which NumPy vectorises across the contiguous queries
    (about 3x faster than reducing each short row), and the transposes cost nothing in the
    matrix products. The softmax and its gradient are done in place on the fresh products
    (one allocation each), and the column sums are einsums.

    Two shortcuts (together 10-15% off the forward and about 3% off the backward at
    GPT-like sizes, batch 32, 4 heads, 64 tokens, head size 32):

    * The softmax skips its max when it can. Softmax is shift-invariant,
      softmax(S)_ij = exp(S_ij - m_i) / sum_j exp(S_ij - m_i) for any m_i; the usual
      m_i = max_j S_ij only keeps exp from overflowing, or a whole row from underflowing to 0.
      When every entry of S other than -inf lies in [-b, b], b = ln(1 / tiny) / 2 (43.7 in
      float32), exp(S) lies in [sqrt(tiny), 1 / sqrt(tiny)] and needs no shift: m = 0 replaces
      the per-query max over axis -2 (slow: 64-wide inner loops) and the subtraction. The
      bound costs two fast contiguous reductions (the scaled scores' min and max) plus the
      largest finite |M| of a small mask (:func:`_exp_is_safe`); large logits, large finite
      mask values, a mask as large as the scores, inf or NaN take the shifted path, where a
      fully masked row gets m = 0 too (its exp is all 0, so its P is 0).
    * The backward's c_i = rowsum(dP P)_i is computed as dO_i . O_i on the (..., L, Ev) output,
      instead of from the two (..., S, L) score-sized arrays.

    A small mask (a causal (L, S) one) is transposed into a contiguous copy before it is added.
    """

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        st = matmul(k, q.swapaxes(-1, -2))  # S^T = K Q^T, (..., S, L)
        st *= scale
        # (on a GPU the bound would cost a device-to-host copy and a wait per call: always shift there)
        shift = self.device != "cpu" or not _exp_is_safe(xp, st, mask)
        if mask is not None:
            mask_t = _transposed(mask)
            if mask.size * SMALL_MASK_FRACTION <= st.size:
                mask_t = xp.ascontiguousarray(mask_t)
            st = _add_into(xp, st, mask_t)  # in place, unless the mask has more batch dims than K Q^T
        if shift:
            col_max = st.max(axis=-2, keepdims=True)  # (..., 1, L): each query's largest score
            col_max = xp.where(xp.isfinite(col_max), col_max, 0).astype(st.dtype, copy=False)
            st -= col_max
        pt = xp.exp(st, out=st)  # E^T = exp(S - m)^T
        total = xp.einsum("...ji->...i", pt)[..., None, :]  # each query's sum over keys, (..., 1, L)
        pt *= 1.0 / xp.where(total == 0, 1, total).astype(st.dtype, copy=False)  # P^T; fully masked queries: 0
        pt_used = pt if keep is None else pt * _transposed(keep)  # P'^T
        out = matmul(pt_used.swapaxes(-1, -2), v)  # O = P' V, (..., L, Ev)
        self.q, self.k, self.v, self.pt, self.pt_used, self.keep, self.scale = q, k, v, pt, pt_used, keep, scale
        self.out = out
        return out

    def backward(self, g: Any) -> tuple[Any, Any, Any, Any]:
        xp = self.xp
        need_q, need_k, need_v, need_mask = self.needs_grad
        pt, scale = self.pt, self.scale
        dv = matmul(self.pt_used, g) if need_v else None  # P'^T dO, (..., S, Ev)
        dq: Any = None
        dk: Any = None
        dst: Any = None
        if need_q or need_k or need_mask:
            c = xp.einsum("...ie,...ie->...i", g, self.out)[..., None, :]  # c = rowsum(dO O), (..., 1, L)
            dpt = matmul(self.v, g.swapaxes(-1, -2))  # dP'^T = V dO^T, (..., S, L)
            # dP comes from dO, which has the full broadcast shape of P' V: P and D broadcast into it.
            if self.keep is not None:
                dpt *= _transposed(self.keep)
            dpt -= c  # (dP - c)^T
            dst = dpt
            dst *= pt  # dS^T = (P (dP - c))^T
            if need_q:
                dq = matmul(dst.swapaxes(-1, -2), self.k)  # dS K, (..., L, E)
                dq *= scale
            if need_k:
                dk = matmul(dst, self.q)  # dS^T Q, (..., S, E)
                dk *= scale
        return dq, dk, dv, (dst.swapaxes(-1, -2) if need_mask else None)


def _exp_is_safe(xp: Any, scores: Any, mask: Any) -> bool:
    """Whether every score + mask entry other than -inf lies in [-b, b], b = ln(1 / tiny) / 2, so exp needs no shift.

    ``scores`` are the scaled products before the mask is added. A mask larger than
    1/SMALL_MASK_FRACTION of the scores is not measured (that would cost as much as the shift):
    the answer is then False.
    """
    bound = _abs_bound(scores)
    if mask is not None:
        if mask.size * SMALL_MASK_FRACTION > scores.size:
            return False
        bound += _abs_bound(xp.where(mask == -math.inf, 0, mask))  # -inf entries only zero a weight
    return bound <= -0.5 * math.log(float(xp.finfo(scores.dtype).tiny))


def _abs_bound(a: Any) -> float:
    """max |a| as a Python float (inf or NaN where ``a`` holds them); 0 for an empty array."""
    return max(-float(a.min()), float(a.max())) if a.size else 0.0


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


def _add_into(xp: Any, a: Any, b: Any) -> Any:
    """a + b, written into ``a`` (a fresh array of this op) when the result has a's shape and dtype."""
    if _broadcasts_to(b.shape, a.shape) and xp.result_type(a, b) == a.dtype:
        a += b
        return a
    return a + b
