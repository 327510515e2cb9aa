"""Matrix products (batched, with NumPy's broadcasting of the batch axes)."""
from __future__ import annotations

from typing import Any

from ..autograd import Function
from ..backend import matmul


class Matmul(Function):
    """d(a @ b) = dy @ b^T (for a) and a^T @ dy (for b), with batch axes broadcast like NumPy"""

    def forward(self, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({ka} != {kb})")
        self.a, self.b = a, b
        return matmul(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.a, self.b
        need_a, need_b = self.needs_grad
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
            if need_a:
                ga = (g[..., None, :] @ b.swapaxes(-1, -2))[..., 0, :]
            if need_b:
                gb = a[:, None] * g[..., None, :]
            return ga, gb
        if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
            if need_a:
                ga = g[..., :, None] * b
            if need_b:
                gb = (a.swapaxes(-1, -2) @ g[..., :, None])[..., 0]
            return ga, gb
        if need_a:
            ga = matmul(g, b.swapaxes(-1, -2))
        if need_b:
            if b.ndim == 2 and a.ndim > 2:  # sum over the batch inside one GEMM: (k, B*m) @ (B*m, n)
                gb = matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = matmul(a.swapaxes(-1, -2), g)
        return ga, gb
