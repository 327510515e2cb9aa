"""masked_fill with a mask that broadcasts over leading axes, as one compiled pass.

Attention written by hand masks its (B, heads, T, T) scores with a (T, T) causal mask,
``att.masked_fill(mask == 0, float('-inf'))``. The reference, ``xp.where(mask, value, x)``
with the mask broadcast, runs at a tenth of the speed of a plain pass over the same
memory (0.63 ms against 0.06 for a multiply, for 32 x 4 x 64 x 64 float32); the compiled
loop below walks x as rows of the mask's size, reading the mask from the cache.
"""
from __future__ import annotations

from typing import Any

from .. import ops
from . import compiler, register


def _masked_fill_kernel(x: Any, mask: Any, value: Any, out: Any) -> None:
    """out[n, j] = value where mask[j], else x[n, j], for x and out (N, M) and the flat mask (M,)."""
    N, M = x.shape
    for n in range(N):
        for j in range(M):
            out[n, j] = value if mask[j] else x[n, j]


def _masked_zero_kernel(g: Any, mask: Any, dx: Any) -> None:
    """dx[n, j] = 0 where mask[j], else g[n, j]: the derivative of masked_fill."""
    N, M = g.shape
    zero = g.dtype.type(0)
    for n in range(N):
        for j in range(M):
            dx[n, j] = zero if mask[j] else g[n, j]


def _masked_zero_in_place_kernel(g: Any, mask: Any) -> None:
    """g[n, j] = 0 where mask[j]: the derivative of masked_fill written over its gradient. (The kernel above
    with dx = g runs 3x slower: the compiler cannot tell that the two do not overlap, and gives up vectors.)"""
    N, M = g.shape
    zero = g.dtype.type(0)
    for n in range(N):
        for j in range(M):
            g[n, j] = zero if mask[j] else g[n, j]


@register(ops.MaskedFill)
class MaskedFill(ops.MaskedFill):
    """The reference masked_fill as a compiled pass, for a C-contiguous float x on the CPU and a mask whose
    shape is 1s followed by x's trailing axes (the mask broadcast over x's leading ones)."""

    def forward(self, x: Any, mask: Any = None, value: Any = 0.0) -> Any:
        kernel = self._kernel(_masked_fill_kernel, x, mask)
        self.fused = kernel is not None
        if not self.fused:
            return super().forward(x, mask, value)
        self.mask, self.flat_mask = mask, mask.reshape(-1)
        m = self.flat_mask.size
        out = self.xp.empty_like(x)
        kernel(x.reshape(-1, m), self.flat_mask, x.dtype.type(value), out.reshape(-1, m))
        return out

    def backward(self, g: Any) -> Any:
        if not self.fused:
            return super().backward(g)
        m = self.flat_mask.size
        if self.owns_grad:  # a gradient the engine hands over (fast/in_place.py): zeroed where it lies
            kernel = compiler.compiled(_masked_zero_in_place_kernel, g)
            if kernel is not None:
                kernel(g.reshape(-1, m), self.flat_mask)
                return g
        g = self.xp.ascontiguousarray(g)
        kernel = compiler.compiled(_masked_zero_kernel, g)
        if kernel is None:  # a gradient the kernel cannot take: the reference, with the mask's own shape
            return super().backward(g)
        dx = self.xp.empty_like(g)
        kernel(g.reshape(-1, m), self.flat_mask, dx.reshape(-1, m))
        return dx

    @staticmethod
    def _kernel(kernel: Any, x: Any, mask: Any) -> Any:
        """The compiled kernel when the mask is 1s followed by x's trailing axes (so that x is rows of the
        flat mask), x is C-contiguous and the mask a bool array; else None (the reference runs)."""
        if mask is None or getattr(mask, "dtype", None) is None or mask.dtype.kind != "b" or x.size == 0 \
                or not x.flags.c_contiguous or mask.ndim > x.ndim or not mask.flags.c_contiguous:
            return None
        j = 0  # the longest run of trailing axes the mask shares with x
        while j < mask.ndim and mask.shape[mask.ndim - 1 - j] == x.shape[x.ndim - 1 - j]:
            j += 1
        if any(n != 1 for n in mask.shape[: mask.ndim - j]):
            return None
        return compiler.compiled(kernel, x)
