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


class ScaledDotProductAttention(Function):
    """O = softmax(Q K^T s + M) V; dS = P (dP - rowsum(dP P)), dQ = s dS K, dK = s dS^T Q, dV = P^T dO, dM = dS"""

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        s = (q @ k.swapaxes(-1, -2)) * scale  # (..., L, S)
        if mask is not None:
            s = s + mask
        row_max = s.max(axis=-1, keepdims=True)  # (..., L, 1)
        row_max = xp.where(xp.isfinite(row_max), row_max, 0).astype(s.dtype, copy=False)
        e = xp.exp(s - row_max)
        total = e.sum(axis=-1, keepdims=True)
        p = e / xp.where(total == 0, 1, total).astype(s.dtype, copy=False)  # fully masked rows: P = 0
        p_used = p if keep is None else p * keep
        self.q, self.k, self.v, self.p, self.p_used, self.keep, self.scale = q, k, v, p, p_used, keep, scale
        return p_used @ v  # (..., L, Ev)

    def backward(self, g: Any) -> tuple[Any, Any, Any, Any]:
        need_q, need_k, need_v, need_mask = self.needs_grad
        p, scale = self.p, self.scale
        dv = self.p_used.swapaxes(-1, -2) @ g if need_v else None  # (..., S, Ev)
        dq = dk = ds = None
        if need_q or need_k or need_mask:
            dp = g @ self.v.swapaxes(-1, -2)  # (..., L, S)
            if self.keep is not None:
                dp = dp * self.keep
            ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
            if need_q:
                dq = (ds @ self.k) * scale  # (..., L, E)
            if need_k:
                dk = (ds.swapaxes(-1, -2) @ self.q) * scale  # (..., S, E)
        return dq, dk, dv, (ds if need_mask else None)
