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

    The (..., L, S) score array is the largest one here, so the softmax and its gradient
    are done in place on the fresh products S and dP: one allocation each instead of five.
    Row sums are einsums and P = E / rowsum(E) multiplies by the reciprocal: on rows of a few
    dozen keys both are about twice as fast as ``sum`` and a division.
    """

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        s = matmul(q, k.swapaxes(-1, -2))  # (..., L, S)
        s *= scale
        if mask is not None:
            s = _add_into(xp, s, mask)  # in place, unless the mask has more batch dims than Q K^T
        row_max = s.max(axis=-1, keepdims=True)  # (..., L, 1)
        row_max = xp.where(xp.isfinite(row_max), row_max, 0).astype(s.dtype, copy=False)
        s -= row_max
        p = xp.exp(s, out=s)  # e = exp(S - max)
        total = xp.einsum("...ij->...i", p)[..., None]  # row sums, (..., L, 1)
        p *= 1.0 / xp.where(total == 0, 1, total).astype(s.dtype, copy=False)  # fully masked rows: P = 0
        p_used = p if keep is None else p * keep
        self.q, self.k, self.v, self.p, self.p_used, self.keep, self.scale = q, k, v, p, p_used, keep, scale
        return matmul(p_used, v)  # (..., L, Ev)

    def backward(self, g: Any) -> tuple[Any, Any, Any, Any]:
        xp = self.xp
        need_q, need_k, need_v, need_mask = self.needs_grad
        p, scale = self.p, self.scale
        dv = matmul(self.p_used.swapaxes(-1, -2), g) if need_v else None  # (..., S, Ev)
        dq = dk = ds = None
        if need_q or need_k or need_mask:
            dp = matmul(g, self.v.swapaxes(-1, -2))  # (..., L, S)
            # dP comes from dO, which has the full broadcast shape of P' V: P and D broadcast into it.
            if self.keep is not None:
                dp *= self.keep
            dp -= xp.einsum("...ij,...ij->...i", dp, p)[..., None]  # dP - rowsum(dP P), (..., L, S)
            ds = dp
            ds *= p  # dS = P (dP - rowsum(dP P))
            if need_q:
                dq = matmul(ds, self.k)  # (..., L, E)
                dq *= scale
            if need_k:
                dk = matmul(ds.swapaxes(-1, -2), self.q)  # (..., S, E)
                dk *= scale
        return dq, dk, dv, (ds if need_mask else None)


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
