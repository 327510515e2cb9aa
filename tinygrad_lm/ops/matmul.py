"""Matrix products (batched, with NumPy's broadcasting of the batch axes) and the Linear layer."""
from __future__ import annotations

import math
import operator
from typing import Any

from ..autograd import Function


class Matmul(Function):
    """d(a @ b) = dy @ b^T (for a) and a^T @ dy (for b), with batch axes broadcast like NumPy

    ``product`` is the function that multiplies (``a @ b``); a subclass may multiply another way.
    """

    product = staticmethod(operator.matmul)

    @staticmethod
    def product_like(a: Any, b: Any, like: Any) -> Any:
        """``a @ b``, an input's gradient: a subclass may lay it out in memory as the input ``like`` is."""
        return a @ b

    def forward(self, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({ka} != {kb})")
        self.a, self.b = a, b
        return self.product(a, b)

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
            ga = self.product_like(g, b.swapaxes(-1, -2), a)
        if need_b:
            if b.ndim == 2 and a.ndim > 2:  # the sum over the batch is part of one product: (k, B*m) @ (B*m, n)
                gb = self.product(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
            else:
                gb = self.product_like(a.swapaxes(-1, -2), g, b)
        return ga, gb


class Linear(Function):
    """y = x W^T + b; dx = dy W, dW = dy^T x, db = sum of dy over the rows (leading dims folded into one product)"""

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        out_features, in_features = weight.shape
        x2 = x.reshape(math.prod(x.shape[:-1]), in_features)  # (M, in)
        out = x2 @ weight.T  # (M, out)
        if bias is not None:
            out += bias
        self.x2, self.weight, self.x_shape, self.has_bias = x2, weight, x.shape, bias is not None
        return out.reshape(x.shape[:-1] + (out_features,))  # (..., out)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        need_x, need_w, need_b = self.needs_grad[0], self.needs_grad[1], self.has_bias and self.needs_grad[2]
        g2 = g.reshape(self.x2.shape[0], self.weight.shape[0])  # (M, out)
        gx = (g2 @ self.weight).reshape(self.x_shape) if need_x else None  # (..., in)
        gw = g2.T @ self.x2 if need_w else None  # (out, in)
        gb = g2.sum(axis=0) if need_b else None  # (out,)
        return gx, gw, gb


class Einsum(Function):
    """y = einsum("a,b,...->o", x_1, x_2, ...); dx_i = einsum("o,<the others>->a_i", dy, <the others>),
    broadcast over the letters of x_i that appear nowhere else (they were summed over x_i alone).

    ``subscripts`` arrive expanded by the Tensor function: explicit output, no ellipsis, and no letter
    repeated within one operand.
    """

    def forward(self, *xs: Any, subscripts: tuple[tuple[str, ...], str] = ((), "")) -> Any:
        self.xs, (self.ins, self.out) = xs, subscripts
        return self.xp.asarray(self.xp.einsum(",".join(self.ins) + "->" + self.out, *xs))

    def backward(self, g: Any) -> tuple[Any, ...]:
        xp = self.xp
        grads: list[Any] = []
        for i, (x, sub) in enumerate(zip(self.xs, self.ins)):
            if not self.needs_grad[i]:
                grads.append(None)
                continue
            others = [(s, o) for j, (s, o) in enumerate(zip(self.ins, self.xs)) if j != i]
            seen = set(self.out).union(*(set(s) for s, _ in others))
            kept = "".join(c for c in sub if c in seen)
            eq = ",".join([self.out] + [s for s, _ in others]) + "->" + kept
            gx = xp.einsum(eq, g, *[o for _, o in others])
            kept_sizes = [n for c, n in zip(sub, x.shape) if c in seen]
            wide = tuple(a for a, (m, n) in enumerate(zip(gx.shape, kept_sizes)) if n == 1 and m != 1)
            if wide:  # a size-1 dim of x that einsum broadcast: sum the gradient back over it
                gx = gx.sum(axis=wide, keepdims=True)
            shape = tuple(n if c in seen else 1 for c, n in zip(sub, x.shape))
            grads.append(xp.ascontiguousarray(xp.broadcast_to(gx.reshape(shape), x.shape)).astype(x.dtype, copy=False))
        return tuple(grads)
