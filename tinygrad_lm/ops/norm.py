"""Normalisation ops: LayerNorm over the last dims of each row."""
from __future__ import annotations

import math
from typing import Any

from ..autograd import Function


class LayerNorm(Function):
    """y = x_hat w + b, x_hat = (x - mean(x)) rstd, rstd = 1 / sqrt(var(x) + eps);
    with g_hat = dy w: dx = rstd (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)), dw = sum(dy x_hat), db = sum(dy).

    mean and var (biased, as PyTorch) are taken over the last ``ndim`` dims of x, each row of
    those dims on its own; dw and db sum over the leading, not normalised, dims. ``weight`` and
    ``bias`` (the normalised shape) may each be None. Forward saves x_hat and rstd, all that
    backward needs.
    """

    def forward(self, x: Any, weight: Any = None, bias: Any = None, ndim: int = 1, eps: float = 1e-5) -> Any:
        lead, norm_shape = x.shape[: x.ndim - ndim], x.shape[x.ndim - ndim :]
        rows, d = math.prod(lead), math.prod(norm_shape)
        x2 = x.reshape(rows, d)  # (M, D), one row per normalised slice
        mean = _row_mean(x2)  # (M, 1)
        x_c = x2 - mean
        var = _row_mean(x_c * x_c)  # (M, 1)
        rstd = 1.0 / self.xp.sqrt(var + eps)  # (M, 1)
        x_hat = x_c * rstd  # (M, D)
        w = None if weight is None else weight.reshape(d)
        y = x_hat if w is None else x_hat * w
        if bias is not None:
            y = y + bias.reshape(d)
        self.x_hat, self.rstd, self.weight = x_hat, rstd, w
        self.shape, self.norm_shape = x.shape, norm_shape
        return y.reshape(x.shape)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        need_x, need_w, need_b = self.needs_grad
        x_hat, rstd, w = self.x_hat, self.rstd, self.weight
        dy = g.reshape(x_hat.shape)  # (M, D)
        dx = dw = db = None
        if need_x:
            g_hat = dy if w is None else dy * w
            dx = rstd * (g_hat - _row_mean(g_hat) - x_hat * _row_mean(g_hat * x_hat))
            dx = dx.reshape(self.shape)
        if need_w:
            dw = (dy * x_hat).sum(axis=0).reshape(self.norm_shape)
        if need_b:
            db = dy.sum(axis=0).reshape(self.norm_shape)
        return dx, dw, db


def _row_mean(a: Any) -> Any:
    """The mean of each row of a (M, D) as (M, 1); 0 for rows of no elements (not a 0/0 warning)."""
    return a.sum(axis=1, keepdims=True) * (1.0 / max(a.shape[1], 1))
