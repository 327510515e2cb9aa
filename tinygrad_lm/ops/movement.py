"""Ops that move, select or combine elements without arithmetic on them."""
from __future__ import annotations

from typing import Any

from .. import backend
from ..autograd import Function


class Reshape(Function):
    """d reshape(x) = reshape(dy) back to x's shape"""

    def forward(self, x: Any, shape: tuple[int, ...] = ()) -> Any:
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, g: Any) -> Any:
        return g.reshape(self.shape)


class Permute(Function):
    """d permute(x, p) = permute(dy, p^-1)"""

    def forward(self, x: Any, axes: tuple[int, ...] = ()) -> Any:
        self.inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
        return x.transpose(axes)

    def backward(self, g: Any) -> Any:
        return g.transpose(self.inverse)


class Expand(Function):
    """d expand(x) = dy summed over the expanded axes (done by the engine's unbroadcast)"""

    def forward(self, x: Any, shape: tuple[int, ...] = ()) -> Any:
        return self.xp.broadcast_to(x, shape)

    def backward(self, g: Any) -> Any:
        return g


class GetItem(Function):
    """d x[idx] = dy scattered into zeros at idx (repeated indices accumulate)"""

    def forward(self, x: Any, index: Any = None, advanced: bool = False) -> Any:
        self.shape, self.index, self.advanced = x.shape, index, advanced
        out = x[index]
        if type(out) is not type(x) and not advanced:  # one element by ints: NumPy copies it out, PyTorch views it
            out = x[(index if type(index) is tuple else (index,)) + (Ellipsis,)]
        return out

    def backward(self, g: Any) -> Any:
        gx = self.xp.zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            backend.scatter_add(gx, self.index, g)
        else:
            gx[self.index] = g
        return gx


class IndexPut(Function):
    """out = x with out[idx] = v (``x[idx] = v`` out of place); dx = dy with zeros at idx, dv = dy[idx]"""

    def forward(self, x: Any, v: Any, index: Any = None) -> Any:
        self.index = index
        out = x.copy()
        out[index] = v
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        gx = gv = None
        if self.needs_grad[0]:
            gx = g.copy()
            gx[self.index] = 0
        if self.needs_grad[1]:
            gv = g[self.index]
        return gx, gv


class Split(Function):
    """Pieces of x along ``axis``, as views; d split(x) = the pieces' gradients concatenated (zeros where unused)"""

    def forward(self, x: Any, sizes: tuple[int, ...] = (), axis: int = 0) -> tuple[Any, ...]:
        lead = (slice(None),) * axis
        pieces, start = [], 0
        for size in sizes:
            pieces.append(x[lead + (slice(start, start + size),)])
            start += size
        self.axis, self.shapes = axis, [p.shape for p in pieces]
        return tuple(pieces)

    def backward(self, grads: list[Any]) -> Any:
        dtype = next(g.dtype for g in grads if g is not None)
        parts = [self.xp.zeros(shape, dtype=dtype) if g is None else g for g, shape in zip(grads, self.shapes)]
        return self.xp.concatenate(parts, axis=self.axis)


class Cat(Function):
    """d cat(xs) = the matching slices of dy"""

    def forward(self, *xs: Any, axis: int = 0) -> Any:
        self.axis = axis
        self.bounds = []
        start = 0
        for x in xs:
            self.bounds.append((start, start + x.shape[axis]))
            start += x.shape[axis]
        return self.xp.concatenate(xs, axis=axis)

    def backward(self, g: Any) -> tuple[Any, ...]:
        lead = (slice(None),) * (self.axis % g.ndim)
        return tuple(
            g[lead + (slice(lo, hi),)] if need else None for (lo, hi), need in zip(self.bounds, self.needs_grad)
        )


class Stack(Function):
    """d stack(xs) = the matching sub-arrays of dy"""

    def forward(self, *xs: Any, axis: int = 0) -> Any:
        self.axis = axis
        return self.xp.stack(xs, axis=axis)

    def backward(self, g: Any) -> tuple[Any, ...]:
        lead = (slice(None),) * self.axis
        return tuple(g[lead + (i,)] if need else None for i, need in enumerate(self.needs_grad))


def _scatter_index(xp: Any, index: Any, axis: int) -> tuple[Any, ...]:
    """The full advanced index that ``take_along_axis(x, index, axis)`` reads from."""
    grids = []
    for a, n in enumerate(index.shape):
        if a == axis:
            grids.append(index)
        else:
            shape = [1] * index.ndim
            shape[a] = n
            grids.append(xp.arange(n).reshape(shape))
    return tuple(grids)


class Gather(Function):
    """out[..., i, ...] = x[..., index[..., i, ...], ...] along ``axis``; dx scatters dy back"""

    def forward(self, x: Any, index: Any = None, axis: int = 0) -> Any:
        self.shape, self.axis = x.shape, axis
        self.full_index = _scatter_index(self.xp, index, axis)
        return x[self.full_index]

    def backward(self, g: Any) -> Any:
        gx = self.xp.zeros(self.shape, dtype=g.dtype)
        backend.scatter_add(gx, self.full_index, g)
        return gx


class Embedding(Function):
    """y[..., :] = W[ids[...], :]; dW[i] = sum of dy[n] over the positions n where ids[n] == i (0 for padding_idx)

    The backward scatter-adds the rows of dy into a zero dW, so repeated ids accumulate.
    """

    def forward(self, weight: Any, ids: Any, padding_idx: int | None = None) -> Any:
        self.ids, self.num_embeddings, self.padding_idx = ids, weight.shape[0], padding_idx
        return self.xp.take(weight, ids, axis=0)  # ids.shape + (D,)

    def backward(self, g: Any) -> tuple[Any, None]:
        dim = g.shape[-1]
        gw = self.xp.zeros((self.num_embeddings, dim), dtype=g.dtype)  # (V, D)
        backend.scatter_add(gw, self.ids.reshape(-1), g.reshape(-1, dim))  # dW[ids[n]] += dy[n]
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw, None


class MaskedFill(Function):
    """d masked_fill(x, m, v) = dy where not m, 0 where m"""

    def forward(self, x: Any, mask: Any = None, value: Any = 0.0) -> Any:
        self.mask = mask
        out = self.xp.where(mask, value, x).astype(x.dtype, copy=False)
        if out.shape != x.shape:
            raise ValueError(f"mask of shape {mask.shape} does not broadcast to the tensor's shape {x.shape}")
        return out

    def backward(self, g: Any) -> Any:
        return self.xp.where(self.mask, g.dtype.type(0), g)


class Tril(Function):
    """d tril(x, k) = tril(dy, k)"""

    def forward(self, x: Any, k: int = 0) -> Any:
        self.k = k
        return self.xp.tril(x, k)

    def backward(self, g: Any) -> Any:
        return self.xp.tril(g, self.k)


class Triu(Function):
    """d triu(x, k) = triu(dy, k)"""

    def forward(self, x: Any, k: int = 0) -> Any:
        self.k = k
        return self.xp.triu(x, k)

    def backward(self, g: Any) -> Any:
        return self.xp.triu(g, self.k)


class Roll(Function):
    """roll(x, k) shifts by k along each axis, wrapping around; d roll(x, k) = roll(dy, -k)"""

    def forward(self, x: Any, shifts: tuple[int, ...] = (), axes: tuple[int, ...] = ()) -> Any:
        self.shifts, self.axes = shifts, axes
        return self.xp.roll(x, shifts, axes)

    def backward(self, g: Any) -> Any:
        return self.xp.roll(g, tuple(-k for k in self.shifts), self.axes)


class Clone(Function):
    """d clone(x) = dy"""

    def forward(self, x: Any) -> Any:
        return x.copy()

    def backward(self, g: Any) -> Any:
        return g


class ToDevice(Function):
    """Copy to another device; the gradient is copied back: d to(x) = to^-1(dy)"""

    def forward(self, x: Any, device: str = "cpu") -> Any:
        self.source = self.device
        self.device = device  # the result lives on the target device
        return backend.to_device(x, device)

    def backward(self, g: Any) -> Any:
        return backend.to_device(g, self.source)


def _src_part(src: Any, shape: tuple[int, ...]) -> Any:
    """The leading ``shape`` block of ``src`` (scatter reads src only where index has entries)."""
    if src.shape == shape:
        return src
    return src[tuple(slice(0, n) for n in shape)]


class Scatter(Function):
    """out = x with out[..., index[..., i, ...], ...] = src[..., i, ...] along ``axis``; dx = dy with zeros at the
    written places, dsrc = dy read back at them (zeros where src was not read)"""

    def forward(self, x: Any, src: Any, index: Any = None, axis: int = 0) -> Any:
        self.shape, self.src_shape = x.shape, getattr(src, "shape", ())
        self.full_index = _scatter_index(self.xp, index, axis)
        out = x.copy()
        out[self.full_index] = _src_part(src, index.shape) if self.src_shape else src
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        gx = gsrc = None
        if self.needs_grad[0]:
            gx = g.copy()
            gx[self.full_index] = 0
        if self.needs_grad[1]:
            gsrc = _place(self.xp, g[self.full_index], self.src_shape)
        return gx, gsrc


class ScatterAdd(Function):
    """out = x, then out[..., index[..., i, ...], ...] += src[..., i, ...] along ``axis`` (repeated indices add up);
    dx = dy, dsrc = dy read back at the places each element went to"""

    def forward(self, x: Any, src: Any, index: Any = None, axis: int = 0) -> Any:
        self.src_shape = src.shape
        self.full_index = _scatter_index(self.xp, index, axis)
        out = x.copy()
        backend.scatter_add(out, self.full_index, _src_part(src, index.shape))
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        gsrc = _place(self.xp, g[self.full_index], self.src_shape) if self.needs_grad[1] else None
        return g, gsrc


def _place(xp: Any, part: Any, shape: tuple[int, ...]) -> Any:
    """``part`` as the leading block of a zero array of ``shape`` (the gradient of :func:`_src_part`)."""
    if part.shape == shape:
        return part
    out = xp.zeros(shape, dtype=part.dtype)
    out[tuple(slice(0, n) for n in part.shape)] = part
    return out


class IndexAccumulate(Function):
    """out = x, then out[idx] += v (repeated indices add up); dx = dy, dv = dy[idx]"""

    def forward(self, x: Any, v: Any, index: Any = None) -> Any:
        self.index = index
        out = x.copy()
        backend.scatter_add(out, index, self.xp.broadcast_to(v, out[index].shape))
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        return g, (g[self.index] if self.needs_grad[1] else None)
