"""Fused scaled dot-product attention: one graph node instead of six.

    S = Q K^T * scale + M            (..., L, S)
    P = softmax(S) over the last axis  (rows that are entirely -inf give P = 0)
    O = (P * D) V                    (..., L, Ev); D is the dropout keep-mask, already divided by 1 - p

The backward pass is written out by hand from the same equations (with P' = P * D):

    dV = P'^T dO,   dP' = dO V^T,   dP = dP' * D,
    dS = P * (dP - rowsum(dP * P)),
    dQ = dS K * scale,   dK = dS^T Q * scale,   dM = dS.
"""
from __future__ import annotations

from typing import Any

from ..autograd import Function
from ..backend import matmul


class ScaledDotProductAttention(Function):
    """O = softmax(Q K^T s + M) V; dS = P (dP - rowsum(dP P)), dQ = s dS K, dK = s dS^T Q, dV = P^T dO, dM = dS

    The op keeps the (..., L, S) score-sized arrays transposed, as (..., S, L) = K Q^T: the
    softmax then reduces over axis -2, which NumPy vectorises across the contiguous queries
    (about 3x faster than reducing each short row), and the transposes cost nothing in the
    matrix products. The softmax and its gradient are done in place on the fresh products
    (one allocation each), and the column sums are einsums.
    """

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        st = matmul(k, q.swapaxes(-1, -2))  # S^T = K Q^T, (..., S, L)
        st *= scale
        if mask is not None:
            st = _add_into(xp, st, _transposed(mask))  # in place, unless the mask has more batch dims than K Q^T
        col_max = st.max(axis=-2, keepdims=True)  # (..., 1, L): each query's largest score
        col_max = xp.where(xp.isfinite(col_max), col_max, 0).astype(st.dtype, copy=False)
        st -= col_max
        pt = xp.exp(st, out=st)  # E^T = exp(S - max)^T
        total = xp.einsum("...ji->...i", pt)[..., None, :]  # each query's sum over keys, (..., 1, L)
        pt *= 1.0 / xp.where(total == 0, 1, total).astype(st.dtype, copy=False)  # P^T; fully masked queries: 0
        pt_used = pt if keep is None else pt * _transposed(keep)  # P'^T
        self.q, self.k, self.v, self.pt, self.pt_used, self.keep, self.scale = q, k, v, pt, pt_used, keep, scale
        return matmul(pt_used.swapaxes(-1, -2), v)  # P' V, (..., L, Ev)

    def backward(self, g: Any) -> tuple[Any, Any, Any, Any]:
        xp = self.xp
        need_q, need_k, need_v, need_mask = self.needs_grad
        pt, scale = self.pt, self.scale
        dv = matmul(self.pt_used, g) if need_v else None  # P'^T dO, (..., S, Ev)
        dq: Any = None
        dk: Any = None
        dst: Any = None
        if need_q or need_k or need_mask:
            dpt = matmul(self.v, g.swapaxes(-1, -2))  # dP'^T = V dO^T, (..., S, L)
            # dP comes from dO, which has the full broadcast shape of P' V: P and D broadcast into it.
            if self.keep is not None:
                dpt *= _transposed(self.keep)
            dpt -= xp.einsum("...ji,...ji->...i", dpt, pt)[..., None, :]  # dP - rowsum(dP P), transposed
            dst = dpt
            dst *= pt  # dS^T = (P (dP - rowsum(dP P)))^T
            if need_q:
                dq = matmul(dst.swapaxes(-1, -2), self.k)  # dS K, (..., L, E)
                dq *= scale
            if need_k:
                dk = matmul(dst, self.q)  # dS^T Q, (..., S, E)
                dk *= scale
        return dq, dk, dv, (dst.swapaxes(-1, -2) if need_mask else None)


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
