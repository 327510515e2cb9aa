"""Losses from logits or log-probabilities, one Function each with its gradient written out.

The class axis is axis 1, as in PyTorch: inputs are ``(N, C)`` or ``(N, C, d1, ...)`` (an
unbatched ``(C,)`` input gets a leading axis of 1 and loses it again). The ``nn.functional``
wrappers check shapes, dtypes and index ranges; the ops assume valid input.
"""
from __future__ import annotations

from typing import Any

from ..autograd import Function


def _class_index(xp: Any, target: Any) -> tuple[Any, ...]:
    """The index tuple that picks x[n, target[n, i..], i..] from x of shape (N, C, d1, ...)."""
    k = target.ndim
    index = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (k - 1 - i)) for i, n in enumerate(target.shape)]
    index.insert(1, target)
    return tuple(index)


def _class_shape(x_ndim: int, c: int) -> tuple[int, ...]:
    """The shape that broadcasts a per-class vector (C,) against x of shape (N, C, d1, ...)."""
    return (1, c) + (1,) * (x_ndim - 2)


def _nan_if_zero(xp: Any, denom: Any) -> Any:
    """``denom`` with 0 replaced by NaN, so that 0/0 means NaN (as in PyTorch) without a division warning."""
    if denom.ndim == 0 and xp.__name__ == "numpy":  # (a mean's count; NumPy's where() costs 5 us on a scalar)
        return denom if denom != 0 else xp.full((), xp.nan, dtype=denom.dtype)
    return xp.where(denom == 0, float("nan"), denom).astype(denom.dtype, copy=False)


def _row_grad(xp: Any, g: Any, reduction: str, valid: Any, denom: Any) -> Any:
    """d loss / d loss_n for every element n of the unreduced loss, zero where the target is ignored."""
    if reduction == "none":
        g = g.reshape(valid.shape)
    elif reduction == "mean":
        g = g / denom
    return xp.where(valid, g, 0).astype(g.dtype, copy=False)


def _reduce(xp: Any, loss: Any, reduction: str, denom: Any, shape: tuple[int, ...]) -> Any:
    """The unreduced loss (N, d1, ...) as ``shape`` ('none'), its sum, or its sum / ``denom`` ('mean')."""
    if reduction == "none":
        return loss.reshape(shape)
    total = xp.asarray(loss.sum())
    return total / denom if reduction == "mean" else total


class CrossEntropy(Function):
    """loss_n = -sum_c w_c q_nc log softmax(x_n)_c, q_n = (1 - eps) onehot(t_n) + eps / C (0 where t_n is ignored);
    d loss_n / d x_n = (sum_c w_c q_nc) softmax(x_n) - w q_n.

    Softmax cross-entropy from logits x and class indices t, with label smoothing eps and class
    weights w (all ones when none are given). Without smoothing or weights the gradient is
    softmax(x_n) - onehot(t_n). The reductions: 'none' (loss_n), 'sum', and 'mean', which divides by
    the weight of the targets kept, sum_n w_{t_n} (NaN when it is 0, as in PyTorch).
    """

    def forward(
        self,
        x: Any,
        target: Any,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> Any:
        xp = self.xp
        out_shape = target.shape
        self.unbatched = x.ndim == 1
        if self.unbatched:
            x, target = x[None], target[None]  # (1, C), (1,)
        valid = target != ignore_index  # (N, d1, ...)
        w_sum = float(x.shape[1]) if weight is None else weight.sum()  # sum_c w_c
        self.x, self.target, self.valid, self.weight, self.w_sum = x, target, valid, weight, w_sum
        self.eps, self.reduction = label_smoothing, reduction
        loss, self.m, self.log_s, self.w_t = self._row_losses(x, target, valid)
        self.denom = _nan_if_zero(xp, xp.asarray(self.w_t.sum())) if reduction == "mean" else None
        return _reduce(xp, loss, reduction, self.denom, out_shape)

    def _row_losses(self, x: Any, target: Any, valid: Any) -> tuple[Any, Any, Any, Any]:
        """loss_n (N, d1, ...), and what backward needs: m and log_s (N, 1, d1, ...), w_t (N, d1, ...)
        (and, saved on self, the index of each target).

        With m_n = max_c x_nc (0 where that is not finite) and log_s_n = log sum_c e^(x_nc - m_n):
        log softmax(x_n)_c = (x_nc - m_n) - log_s_n, so that
        loss_n = w_{t_n} (log_s_n - (x_{n,t_n} - m_n)), and with smoothing
        (1 - eps) loss_n + eps / C (sum_c w_c log_s_n - sum_c w_c (x_nc - m_n)).
        """
        xp, eps, weight, c = self.xp, self.eps, self.weight, x.shape[1]
        self.index = _class_index(xp, xp.where(valid, target, 0))  # picks x[n, t_n, ...]
        m = x.max(axis=1, keepdims=True)  # (N, 1, d1, ...)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        e = x - m
        picked = e[self.index]  # (N, d1, ...): x_t - m
        wb = None if weight is None else weight.reshape(_class_shape(x.ndim, c))
        if eps > 0:
            smooth_sum = (e.sum(axis=1) if wb is None else (e * wb).sum(axis=1))  # sum_c w_c (x_c - m)
        log_s = xp.log(xp.exp(e).sum(axis=1, keepdims=True))  # (N, 1, d1, ...)
        w_t = valid.astype(x.dtype) if weight is None else xp.where(valid, weight[self.index[1]], 0)  # (N, d1, ...)
        w_t = w_t.astype(x.dtype, copy=False)
        loss = w_t * (log_s[:, 0] - picked)  # (N, d1, ...)
        if eps > 0:
            smooth = self.w_sum * log_s[:, 0] - smooth_sum
            loss = (1.0 - eps) * loss + (eps / c) * smooth
        loss = xp.where(valid, loss, 0).astype(x.dtype, copy=False)  # 0 for an ignored target, even if x is -inf
        return loss, m, log_s, w_t

    def backward(self, g: Any) -> tuple[Any, None]:
        row = _row_grad(self.xp, g, self.reduction, self.valid, self.denom)  # (N, d1, ...): d loss / d loss_n
        dx = self._logit_grad(row)
        return (dx[0] if self.unbatched else dx), None

    def _logit_grad(self, row: Any) -> Any:
        """d loss / d x_n = r_n ((sum_c w_c q_nc) softmax(x_n) - w q_n), r_n = ``row``, for all n at once."""
        xp, eps, x = self.xp, self.eps, self.x
        c = x.shape[1]
        p = xp.exp(x - self.m - self.log_s)  # softmax(x_n), (N, C, d1, ...)
        coef = (1.0 - eps) * self.w_t + (eps / c) * self.w_sum  # sum_c w_c q_nc
        p *= (coef * row)[:, None]
        p[self.index] -= (1.0 - eps) * self.w_t * row  # w q_n, its onehot part: (1 - eps) w_t at the target ...
        if eps > 0:
            spread = row[:, None] * (eps / c)  # (N, 1, d1, ...): ... and its smoothing, eps / C w_c everywhere
            p -= spread if self.weight is None else spread * self.weight.reshape(_class_shape(x.ndim, c))
        return p


class SoftCrossEntropy(Function):
    """loss_n = -sum_c w_c q_nc log softmax(x_n)_c with q = (1 - eps) y + eps / C;
    d loss_n / d x_n = (sum_c w_c q_nc) softmax(x_n) - w q_n, d loss_n / d y_nc = -(1 - eps) w_c log softmax(x_n)_c

    Cross-entropy from logits x and class probabilities y (soft targets), label smoothing eps, class weights w.
    """

    def forward(self, x: Any, y: Any, weight: Any = None, reduction: str = "mean", label_smoothing: float = 0.0) -> Any:
        xp = self.xp
        self.unbatched = x.ndim == 1
        if self.unbatched:
            x, y = x[None], y[None]  # (1, C)
        c = x.shape[1]
        eps = label_smoothing
        m = x.max(axis=1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        logp = x - m
        logp -= xp.log(xp.exp(logp).sum(axis=1, keepdims=True))  # (N, C, d1, ...)
        q = y if eps == 0 else (1.0 - eps) * y + eps / c
        wb = None if weight is None else weight.reshape(_class_shape(x.ndim, c))
        wq = q if wb is None else q * wb
        loss = -(wq * logp).sum(axis=1)  # (N, d1, ...)
        rows = loss.size
        self.logp, self.wq, self.wb, self.eps, self.reduction, self.rows = logp, wq, wb, eps, reduction, rows
        if reduction == "none":
            return loss[0] if self.unbatched else loss
        total = xp.asarray(loss.sum())
        return total / rows if reduction == "mean" else total

    def backward(self, g: Any) -> tuple[Any, Any]:
        xp = self.xp
        logp, wq = self.logp, self.wq
        if self.reduction == "none":
            row = g.reshape(logp.shape[:1] + logp.shape[2:])[:, None]  # (N, 1, d1, ...)
        else:
            row = g / self.rows if self.reduction == "mean" else g
        gx = gy = None
        if self.needs_grad[0]:
            gx = xp.exp(logp) * wq.sum(axis=1, keepdims=True)
            gx -= wq
            gx *= row
        if self.needs_grad[1]:
            gy = -(1.0 - self.eps) * logp * row
            if self.wb is not None:
                gy *= self.wb
        if self.unbatched:
            gx = None if gx is None else gx[0]
            gy = None if gy is None else gy[0]
        return gx, gy


class NLLLoss(Function):
    """loss_n = -w_{t_n} x_{n, t_n} (0 where t_n = ignore_index); d loss_n / d x_nc = -w_c [c = t_n]"""

    def forward(
        self, x: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> Any:
        xp = self.xp
        out_shape = target.shape
        self.unbatched, self.shape = x.ndim == 1, x.shape
        if self.unbatched:
            x, target = x[None], target[None]  # (1, C), (1,)
        valid = target != ignore_index
        t = xp.where(valid, target, 0)
        index = _class_index(xp, t)
        w_t = valid.astype(x.dtype) if weight is None else xp.where(valid, weight[t], 0).astype(x.dtype, copy=False)
        loss = -w_t * x[index]  # (N, d1, ...)
        denom = _nan_if_zero(xp, xp.asarray(w_t.sum())) if reduction == "mean" else None
        self.x_shape, self.index, self.valid, self.w_t, self.reduction, self.denom = (
            x.shape, index, valid, w_t, reduction, denom
        )
        return _reduce(xp, loss, reduction, denom, out_shape)

    def backward(self, g: Any) -> tuple[Any, None]:
        xp = self.xp
        row = _row_grad(xp, g, self.reduction, self.valid, self.denom)
        gx = xp.zeros(self.x_shape, dtype=g.dtype)
        gx[self.index] = -self.w_t * row
        return (gx.reshape(self.shape) if self.unbatched else gx), None
