"""Scaled dot-product attention as one op: softmax(Q K^T * scale + M) V, one graph node instead of six.

    S = Q K^T * scale + M              (..., L, S)
    P = softmax(S) over the last axis  (a row that is entirely -inf, a query that sees no key, gives P = 0)
    O = (P * D) V                      (..., L, Ev); D is the dropout keep-mask, already divided by 1 - p

The backward pass is written out from the same equations (P' = P * D):

    dV = P'^T dO,   dP = (dO V^T) * D,   dS = P * (dP - rowsum(dP * P)),
    dQ = dS K * scale,   dK = dS^T Q * scale,   dM = dS.

dS is the softmax's derivative: for one row, dS_j = sum_i dP_i dP_i/dS_j = P_j (dP_j - sum_i dP_i P_i).
Masks, keep-masks and the batch dims of Q, K and V broadcast as in NumPy; the engine sums each
gradient back to its input's shape.

:class:`ScaledDotProductAttentionWeights` is the same op returning P' as a second output (what
``MultiheadAttention`` returns with ``need_weights=True``). P' then reaches the loss twice, through
O and directly, so its gradient is the sum of the two: dP' = dO V^T + dW.
"""
from __future__ import annotations

from typing import Any

from ..autograd import Function


class ScaledDotProductAttention(Function):
    """O = softmax(s Q K^T + M) V; dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dP P)), dQ = s dS K, dK = s dS^T Q

    ``mask`` M is additive (0 where a key may be seen, -inf where not, or any float; its gradient is
    dM = dS), ``keep`` is the dropout keep-mask D (0 or 1 / (1 - p), broadcasting to the scores), and
    ``scale`` is s.
    """

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        xp = self.xp
        s = q @ k.swapaxes(-1, -2) * scale  # S, (..., L, S)
        if mask is not None:
            s = s + mask
        # Softmax is shift-invariant: subtracting each row's max keeps exp from overflowing. A row with no
        # finite max (all -inf) is not shifted: its exp is all 0. With no keys at all there is nothing to shift.
        if s.shape[-1]:
            m = s.max(axis=-1, keepdims=True)  # (..., L, 1)
            m[~xp.isfinite(m)] = 0
        else:
            m = xp.zeros(s.shape[:-1] + (1,), dtype=s.dtype)
        e = xp.exp(s - m)
        total = e.sum(axis=-1, keepdims=True)  # (..., L, 1)
        total[total == 0] = 1  # a query that sees no key: its e are all 0, and so is its P
        p = e / total  # P
        self.q, self.k, self.v, self.p, self.keep, self.scale = q, k, v, p, keep, scale
        return self._dropped(p) @ v  # O = P' V, (..., L, Ev)

    def backward(self, g: Any) -> tuple[Any, Any, Any, Any]:
        return self._backward(g, None)

    def _backward(self, g: Any, dw: Any) -> tuple[Any, Any, Any, Any]:
        """The gradients from dO = ``g`` and dP' = ``dw`` (the weights' own gradient); either may be None."""
        need_q, need_k, need_v, need_mask = self.needs_grad
        p, scale = self.p, self.scale
        dv = self._dropped(p).swapaxes(-1, -2) @ g if need_v and g is not None else None  # dV = P'^T dO, (..., S, Ev)
        dq = dk = ds = None
        if need_q or need_k or need_mask:
            if g is None:
                dp = dw  # dP' = dW
            else:
                dp = g @ self.v.swapaxes(-1, -2)  # dP' = dO V^T, (..., L, S)
                if dw is not None:
                    dp = dp + dw
            if self.keep is not None:
                dp = dp * self.keep  # dP = dP' * D
            ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # dS, (..., L, S)
            if need_q:
                dq = ds @ self.k * scale  # (..., L, E)
            if need_k:
                dk = ds.swapaxes(-1, -2) @ self.q * scale  # (..., S, E)
        return dq, dk, dv, (ds if need_mask else None)

    def _dropped(self, p: Any) -> Any:
        """P' = P * D, the attention weights after dropout (P itself without it)."""
        return p if self.keep is None else p * self.keep

    def _weights(self) -> Any:
        """P' of the forward just run, as :class:`ScaledDotProductAttentionWeights` returns it."""
        return self._dropped(self.p)


class ScaledDotProductAttentionWeights(ScaledDotProductAttention):
    """(O, P'), the weights P' = P * D too; dP' = dO V^T + dW, then dS, dQ, dK as ScaledDotProductAttention's

    P' may be the array the backward reads (P itself without dropout): the engine's in-place checks
    then cover it (a change under ``no_grad`` makes backward raise, as in PyTorch).
    """

    def forward(self, q: Any, k: Any, v: Any, mask: Any = None, keep: Any = None, scale: float = 1.0) -> Any:
        out = super().forward(q, k, v, mask, keep, scale)
        return out, self._weights()

    def backward(self, grads: list[Any]) -> tuple[Any, Any, Any, Any]:  # type: ignore[override]
        return self._backward(grads[0], grads[1])
