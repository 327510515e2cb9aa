"""The Tensor: a backend array plus what autograd needs (``grad``, ``grad_fn``).

Every method that computes something calls an op's ``apply``; this file only
turns Python arguments (scalars, dims, index expressions) into what the ops
expect, and keeps PyTorch's dtype rules: a Python scalar takes the tensor's
dtype, integers meeting floats become floats, float32 stays float32.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator

from . import autograd, backend
from . import ops as _ops
from .ops.movement import Split as _Split

_xp_cache: dict[str, Any] = {}
# Tensor has methods named int() and bool() (as PyTorch); annotations inside the class use these names.
_int = int
_bool = bool
_NDARRAY = backend.numpy_ndarray_type()


def _is_float(dtype: Any) -> bool:
    return dtype.kind in "fc"


class Tensor:
    """An n-dimensional array on a device that can record the ops applied to it."""

    __slots__ = ("array", "grad", "grad_fn", "requires_grad", "device", "_output_nr", "__weakref__")
    _output_nr: int  # which output of its grad_fn this is: 0, except for the outputs of split/chunk
    __array_priority__ = 1000
    __array_ufunc__ = None  # make NumPy defer to our reflected operators (ndarray + Tensor -> Tensor)

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> None:
        array, device = _as_array(data, dtype, device)
        self.array = array
        self.grad: Tensor | None = None
        self.grad_fn: Any = None
        self.device: str = device
        self.requires_grad = False
        self._output_nr = 0
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(array: Any, device: str) -> Tensor:
        """Fast internal constructor around an array that is already on ``device``."""
        t = _new(Tensor)
        if type(array) is not _NDARRAY:
            array = backend.ensure_array(array)
        t.array = array
        t.grad = None
        t.grad_fn = None
        t.requires_grad = False
        t.device = device
        t._output_nr = 0
        return t

    @staticmethod
    def _xp_of(device: str) -> Any:
        xp = _xp_cache.get(device)
        if xp is None:
            xp = _xp_cache[device] = backend.get_xp(device)
        return xp

    # ------------------------------------------------------------------ attributes
    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's memory, outside the graph (PyTorch's ``.data``; the raw array is ``.array``).

        Changes made through it are not seen by autograd, as in PyTorch: ``p.data -= lr * p.grad`` updates ``p``.
        """
        return Tensor._wrap(self.array, self.device)

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be set to a Tensor, got {type(value).__name__} "
                            " (the raw array is .array)")
        if value.device != self.device:
            raise RuntimeError(f"Tensor.data: cannot set data on {value.device} "
                               f"for a tensor on {self.device}")
        self.array = value.array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def dtype(self) -> Any:
        return self.array.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def xp(self) -> Any:
        """The array module (numpy or cupy) holding this tensor's data."""
        return Tensor._xp_of(self.device)

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self.array.shape
        return self.array.shape[_axis(dim, self.ndim)]

    def numel(self) -> int:
        return int(self.array.size)

    def dim(self) -> int:
        return self.array.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        """PyTorch's layout: ``tensor([1., 2.], requires_grad=True)``; the dtype shows only when not a default."""
        extra = []
        if self.array.size == 0 and self.ndim != 1:
            extra.append(f"size={self.shape}")
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        if self.dtype.name not in (backend.get_default_dtype().name, "int64", "bool"):
            extra.append(f"dtype={self.dtype.name}")
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{type(self.grad_fn).__name__}Backward>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        body = backend.format_array(self.array, "tensor(")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.array.size} elements is ambiguous")
        return bool(self.array)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        host = backend.to_host(self.array)
        return host if dtype is None else host.astype(dtype)

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> Any:
        """The data as a NumPy array (a host copy for CUDA tensors; shares memory on the CPU)."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return backend.to_host(self.array)

    def item(self) -> Any:
        if self.array.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.array.item()

    def tolist(self) -> Any:
        return backend.to_host(self.array).tolist()

    def to(self, *args: Any, dtype: Any = None, device: Any = None) -> Tensor:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)``: differentiable copy (no copy if nothing changes)."""
        for a in args:
            if isinstance(a, str) and (a.startswith("cpu") or a.startswith("cuda")):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if dtype is not None:
            dt = backend.check_dtype(dtype)
            if dt != out.dtype:
                out = _ops.Cast.apply(out, dtype=dt)
        if device is not None:
            dev = backend.canonical_device(device)
            if dev != out.device:
                out = _ops.ToDevice.apply(out, device=dev)
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Tensor:
        if device is None:
            return self.to("cuda")
        return self.to(device if isinstance(device, str) else f"cuda:{device}")

    def float(self) -> Tensor:
        return self.to(dtype="float32")

    def double(self) -> Tensor:
        return self.to(dtype="float64")

    def long(self) -> Tensor:
        return self.to(dtype="int64")

    def int(self) -> Tensor:
        return self.to(dtype="int32")

    def bool(self) -> Tensor:
        return self.to(dtype="bool")

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(dtype=other.dtype)

    # ------------------------------------------------------------------ autograd
    def detach(self) -> Tensor:
        """The same data, cut from the graph (what truncated BPTT carries between chunks)."""
        return Tensor._wrap(self.array, self.device)

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: _bool = True) -> Tensor:
        if requires_grad and not _is_float(self.dtype):
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, this one is {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach() on this one")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` of this non-leaf tensor after backward (e.g. to study dL/dh_t)."""
        if self.grad_fn is None:
            return
        import weakref

        node = self.grad_fn
        if node.n_outputs is None:
            node.__dict__["_retain_ref"] = weakref.ref(self)
        else:  # one weak reference per output of a split
            node.__dict__.setdefault("_retain_ref", {})[self._output_nr] = weakref.ref(self)

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        """Call ``hook(self)`` in each backward once this leaf's ``.grad`` is complete; returns a removable handle."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def backward(self, gradient: Any = None, retain_graph: _bool = False) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf that requires it."""
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this output has shape {self.shape}, "
                    "pass backward(gradient=...) of that shape"
                )
            g = self.xp.ones(self.shape, dtype=self.dtype)
        else:
            g = gradient.array if isinstance(gradient, Tensor) else gradient
            g = backend.to_device(self.xp.asarray(g) if not backend.is_backend_array(g) else g, self.device)
            if tuple(g.shape) != self.shape:
                raise RuntimeError(
                    f"backward: gradient has shape {tuple(g.shape)} but the output has shape {self.shape}"
                )
            g = g.astype(self.dtype, copy=False)
        autograd.backward(self, g, retain_graph=retain_graph)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Any) -> Tensor:
        return _binary(_ops.Add, self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _binary(_ops.Add, self, other, reflected=True)

    def __sub__(self, other: Any) -> Tensor:
        return _binary(_ops.Sub, self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _binary(_ops.Sub, self, other, reflected=True)

    def __mul__(self, other: Any) -> Tensor:
        return _binary(_ops.Mul, self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _binary(_ops.Mul, self, other, reflected=True)

    def __truediv__(self, other: Any) -> Tensor:
        return _binary(_ops.Div, self, other, true_div=True)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _binary(_ops.Div, self, other, reflected=True, true_div=True)

    def __pow__(self, other: Any) -> Tensor:
        return _binary(_ops.Pow, self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _binary(_ops.Pow, self, other, reflected=True)

    def __matmul__(self, other: Any) -> Tensor:
        return _binary(_ops.Matmul, self, _tensor_like(other, self))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _binary(_ops.Matmul, self, _tensor_like(other, self), reflected=True)

    def __neg__(self) -> Tensor:
        return _ops.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def matmul(self, other: Tensor) -> Tensor:
        return self @ other

    def add(self, other: Any) -> Tensor:
        return self + other

    def sub(self, other: Any) -> Tensor:
        return self - other

    def mul(self, other: Any) -> Tensor:
        return self * other

    def div(self, other: Any) -> Tensor:
        return self / other

    def pow(self, exponent: Any) -> Tensor:
        return self**exponent

    def neg(self) -> Tensor:
        return -self

    # comparisons: boolean results, never part of the graph
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare("equal", self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare("not_equal", self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _compare("less", self, other)

    def __le__(self, other: Any) -> Tensor:
        return _compare("less_equal", self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _compare("greater", self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _compare("greater_equal", self, other)

    def __invert__(self) -> Tensor:
        if self.dtype.kind != "b":
            raise TypeError(f"~ is only defined for bool tensors, not {self.dtype}")
        return Tensor._wrap(~self.array, self.device)

    def __and__(self, other: Any) -> Tensor:
        return _compare("logical_and", self, other)

    def __or__(self, other: Any) -> Tensor:
        return _compare("logical_or", self, other)

    # ------------------------------------------------------------------ elementwise
    def exp(self) -> Tensor:
        return _ops.Exp.apply(_floating(self))

    def log(self) -> Tensor:
        return _ops.Log.apply(_floating(self))

    def sqrt(self) -> Tensor:
        return _ops.Sqrt.apply(_floating(self))

    def abs(self) -> Tensor:
        return _ops.Abs.apply(self)

    def tanh(self) -> Tensor:
        return _ops.Tanh.apply(_floating(self))

    def sigmoid(self) -> Tensor:
        return _ops.Sigmoid.apply(_floating(self))

    def relu(self) -> Tensor:
        return _ops.Relu.apply(self)

    def gelu(self, approximate: str = "none") -> Tensor:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return _ops.Gelu.apply(_floating(self), approximate=approximate)

    def sin(self) -> Tensor:
        return _ops.Sin.apply(_floating(self))

    def cos(self) -> Tensor:
        return _ops.Cos.apply(_floating(self))

    def square(self) -> Tensor:
        return self * self

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return _ops.Clamp.apply(self, min=_scalar_value(min), max=_scalar_value(max))

    clip = clamp

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        mask = _tensor_like(mask, self)
        if mask.dtype.kind != "b":
            raise TypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
        _check_same_device("masked_fill", self, mask)
        return _ops.MaskedFill.apply(self, mask=mask.array, value=_scalar_value(value))

    # ------------------------------------------------------------------ reductions
    def sum(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return _ops.Sum.apply(self, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return _ops.Mean.apply(_floating(self), axis=_axes(dim, self.ndim), keepdims=keepdim)

    def var(self, dim: Any = None, keepdim: _bool = False, correction: _int = 1) -> Tensor:
        axes = _axes(dim, self.ndim)
        n = self.numel() if axes is None else _prod(self.shape[a] for a in axes)
        centred = self - self.mean(dim, keepdim=True)
        return (centred * centred).sum(dim, keepdim=keepdim) / max(0, n - correction)

    def std(self, dim: Any = None, keepdim: _bool = False, correction: _int = 1) -> Tensor:
        return self.var(dim, keepdim=keepdim, correction=correction).sqrt()

    def max(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        """The maximum over ``dim`` (values only; **differs** from PyTorch: use argmax for the indices)."""
        _check_nonempty("max", self)
        return _ops.Max.apply(self, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def min(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        _check_nonempty("min", self)
        return _ops.Min.apply(self, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def argmax(self, dim: _int | None = None, keepdim: _bool = False) -> Tensor:
        _check_nonempty("argmax", self)
        if dim is None:
            return Tensor._wrap(self.array.argmax().astype("int64"), self.device)
        return Tensor._wrap(self.array.argmax(axis=_axis(dim, self.ndim), keepdims=keepdim), self.device)

    def argmin(self, dim: _int | None = None, keepdim: _bool = False) -> Tensor:
        _check_nonempty("argmin", self)
        if dim is None:
            return Tensor._wrap(self.array.argmin().astype("int64"), self.device)
        return Tensor._wrap(self.array.argmin(axis=_axis(dim, self.ndim), keepdims=keepdim), self.device)

    def logsumexp(self, dim: Any, keepdim: _bool = False) -> Tensor:
        return _ops.LogSumExp.apply(_floating(self), axis=_axes(dim, self.ndim), keepdims=keepdim)

    def softmax(self, dim: _int) -> Tensor:
        return _ops.Softmax.apply(_floating(self), axis=_axis(dim, self.ndim))

    def log_softmax(self, dim: _int) -> Tensor:
        return _ops.LogSoftmax.apply(_floating(self), axis=_axis(dim, self.ndim))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> Tensor:
        shape = _shape_arg(shape)
        n = self.numel()
        if min(shape, default=0) < -1 or shape.count(-1) > 1:  # one -1 at most, no other negative size
            fits = False
        elif shape.count(-1) == 1:
            known = _prod(s for s in shape if s != -1)
            fits = known > 0 and n % known == 0
        else:
            fits = _prod(shape) == n
        if not fits:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} ({n} elements) into {shape}")
        return _ops.Reshape.apply(self, shape=shape)

    view = reshape

    def contiguous(self) -> Tensor:
        return self

    def clone(self) -> Tensor:
        return _ops.Clone.apply(self)

    def transpose(self, dim0: _int, dim1: _int) -> Tensor:
        axes = list(range(self.ndim))
        d0, d1 = _axis(dim0, self.ndim), _axis(dim1, self.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return _ops.Permute.apply(self, axes=tuple(axes))

    def permute(self, *dims: Any) -> Tensor:
        dims = _shape_arg(dims)
        if sorted(_axis(d, self.ndim) for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims of shape {self.shape}")
        return _ops.Permute.apply(self, axes=tuple(_axis(d, self.ndim) for d in dims))

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"mT needs at least 2 dims, got shape {self.shape}")
        return self.transpose(-2, -1)

    def unsqueeze(self, dim: _int) -> Tensor:
        d = _axis(dim, self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim: Any = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = _axes(dim, self.ndim) or ()
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in axes and n == 1)))

    def flatten(self, start_dim: _int = 0, end_dim: _int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _axis(start_dim, self.ndim), _axis(end_dim, self.ndim)
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (_prod(self.shape[s : e + 1]),) + self.shape[e + 1 :])

    def expand(self, *shape: Any) -> Tensor:
        shape = _shape_arg(shape)
        if len(shape) < self.ndim:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape} (fewer dims)")
        lead = len(shape) - self.ndim
        target = []
        for i, n in enumerate(shape):
            old = self.shape[i - lead] if i >= lead else 1
            if n == -1:
                if i < lead:
                    raise ValueError(f"expand: -1 is not allowed for the new leading dim {i} in {shape}")
                n = old
            if old != n and old != 1:
                raise ValueError(f"expand: cannot expand shape {self.shape} to {shape} (dim {i}: {old} -> {n})")
            target.append(n)
        return _ops.Expand.apply(self, shape=tuple(target))

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(*other.shape)

    def split(self, split_size_or_sections: Any, dim: _int = 0) -> tuple[Tensor, ...]:
        d = _axis(dim, self.ndim)
        n = self.shape[d]
        if isinstance(split_size_or_sections, int):
            if split_size_or_sections <= 0:
                raise ValueError(f"split: split_size must be positive, got {split_size_or_sections}")
            sizes = [min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
        else:
            if not isinstance(split_size_or_sections, (list, tuple)):
                got = type(split_size_or_sections).__name__
                raise TypeError(f"split: expected an int or a list of ints, got {got}")
            sizes = list(split_size_or_sections)
            if any(not isinstance(s, numbers.Integral) or s < 0 for s in sizes):
                raise ValueError(f"split: sizes must be non-negative ints, got {sizes}")
            if sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of dim {dim} of {self.shape}")
        return _Split.apply(self, sizes=tuple(int(s) for s in sizes), axis=d)

    def chunk(self, chunks: _int, dim: _int = 0) -> tuple[Tensor, ...]:
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[_axis(dim, self.ndim)]
        return self.split(max(1, -(-n // chunks)), dim)

    def tril(self, diagonal: _int = 0) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"tril needs at least 2 dims, got shape {self.shape}")
        return _ops.Tril.apply(self, k=diagonal)

    def triu(self, diagonal: _int = 0) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"triu needs at least 2 dims, got shape {self.shape}")
        return _ops.Triu.apply(self, k=diagonal)

    def gather(self, dim: _int, index: Tensor) -> Tensor:
        index = _tensor_like(index, self)
        if index.dtype.kind not in "iu":
            raise TypeError(f"gather: index must be an integer tensor, got {index.dtype}")
        if index.ndim != self.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims but the tensor has {self.ndim} (shape {self.shape})")
        d = _axis(dim, self.ndim)
        for i, (m, n) in enumerate(zip(index.shape, self.shape)):
            if i != d and m > n:
                raise ValueError(f"gather: index shape {index.shape} exceeds tensor shape {self.shape} in dim {i}")
        _check_index_range("gather", index.array, self.shape[d], self.xp)
        _check_same_device("gather", self, index)
        return _ops.Gather.apply(self, index=index.array, axis=d)

    def __getitem__(self, index: Any) -> Tensor:
        index, advanced = _normalise_index(index, self)
        return _ops.GetItem.apply(self, index=index, advanced=advanced)

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "in-place assignment to a tensor that requires grad is not differentiable here; "
                "use where()/masked_fill(), or assign under tl.no_grad()"
            )
        index, _ = _normalise_index(index, self)
        if isinstance(value, Tensor):
            _check_same_device("setitem", self, value)
        try:
            self.array[index] = value.array if isinstance(value, Tensor) else value
        except (ValueError, IndexError, TypeError) as err:
            kind = next(k for k in (IndexError, ValueError, TypeError) if isinstance(err, k))
            raise kind(f"setitem on a tensor of shape {self.shape}: {err}") from None


_new = object.__new__


# ---------------------------------------------------------------------- helpers
def _prod(values: Any) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _axis(dim: int, ndim: int) -> int:
    """A dim in [-ndim, ndim) as a non-negative axis (0-d tensors accept 0 and -1)."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"dim {dim} is out of range for a tensor with {ndim} dims")
    return int(dim) % n if ndim else 0


def _axes(dim: Any, ndim: int) -> tuple[int, ...] | None:
    if dim is None:
        return None
    if ndim == 0:
        return None
    if isinstance(dim, (tuple, list)):
        axes = tuple(sorted(_axis(d, ndim) for d in dim))
        if len(set(axes)) != len(axes):
            raise ValueError(f"dim {tuple(dim)} names a dim more than once")
        return axes
    return (_axis(dim, ndim),)


def _shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if not isinstance(n, numbers.Integral) or isinstance(n, bool):
            raise TypeError(f"shape entries must be ints, got {shape}")
    return tuple(int(n) for n in shape)


def _check_nonempty(name: str, t: Tensor) -> None:
    if t.array.size == 0:
        raise RuntimeError(f"{name}() of an empty tensor (shape {t.shape}) is undefined")


def _check_same_device(name: str, a: Tensor, b: Tensor) -> None:
    if a.device != b.device:
        raise RuntimeError(f"{name}: expected all tensors on the same device, found {a.device} and {b.device}")


def _check_index_range(name: str, index: Any, size: int, xp: Any) -> None:
    """Indices must lie in [0, size): negative ones raise (as PyTorch's gather) instead of wrapping."""
    if index.size and (bool((index >= size).any()) or bool((index < 0).any())):
        bad = index[(index >= size) | (index < 0)].ravel()[0]
        raise IndexError(f"{name}: index {int(bad)} is out of range for a dim of size {size} (valid: 0..{size - 1})")


def _scalar_value(value: Any) -> Any:
    if value is None or type(value) in (bool, int, float):
        return value
    if isinstance(value, Tensor):
        return value.item()
    if isinstance(value, numbers.Number):
        return value.item() if hasattr(value, "item") else value
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _floating(t: Tensor) -> Tensor:
    """Integer and bool tensors become the default float dtype before float-only math, as in PyTorch."""
    if _is_float(t.array.dtype):
        return t
    return Tensor._wrap(t.array.astype(backend.get_default_dtype()), t.device)


def _tensor_like(value: Any, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return Tensor(value, device=like.device)


def _promoted_dtype(da: Any, db: Any) -> Any:
    """PyTorch's result dtype for two dtypes: a float meeting an int or bool stays that float."""
    fa, fb = _is_float(da), _is_float(db)
    if fa and not fb:
        return da
    if fb and not fa:
        return db
    return backend.result_type(da, db)


def _promote(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Bring two tensors of different dtypes to their common dtype, as PyTorch does."""
    da, db = a.array.dtype, b.array.dtype
    if da.kind == db.kind and (a.ndim == 0) != (b.ndim == 0):  # a 0-d tensor does not widen a dimensioned one
        common = db if a.ndim == 0 else da
    else:
        common = _promoted_dtype(da, db)
    return a.to(dtype=common), b.to(dtype=common)


def _binary(op: Any, a: Tensor, b: Any, reflected: bool = False, true_div: bool = False) -> Tensor:
    if isinstance(b, Tensor):
        if a.array.dtype != b.array.dtype:
            a, b = _promote(a, b)
        if true_div and not _is_float(a.array.dtype):
            a, b = _floating(a), _floating(b)
    else:
        if type(b) not in (int, float):  # bools, and NumPy scalars (np.float64 subclasses float but is not weak)
            if isinstance(b, numbers.Number) and not isinstance(b, complex):
                b = b.item() if hasattr(b, "item") else b  # NumPy scalars: take the Python value
            elif not isinstance(b, bool):
                return _binary(op, a, _tensor_like(b, a), reflected, true_div)
        if not _is_float(a.array.dtype) and (isinstance(b, float) or true_div):
            a = _floating(a)
    if reflected:
        return op.apply(b, a)
    return op.apply(a, b)


def _compare(name: str, a: Tensor, b: Any) -> Tensor:
    if isinstance(b, Tensor):
        _check_same_device(name, a, b)
        b = b.array
    elif not isinstance(b, (int, float, bool)):
        b = _tensor_like(b, a).array
    try:
        out = getattr(a.xp, name)(a.array, b)
    except ValueError as err:
        raise ValueError(f"{name}: shapes {a.shape} and {getattr(b, 'shape', ())} do not broadcast: {err}") from None
    return Tensor._wrap(out, a.device)


def _normalise_index(index: Any, t: Tensor) -> tuple[Any, bool]:
    """Turn an index expression into raw arrays on t's device; say whether it has integer arrays."""
    items = index if isinstance(index, tuple) else (index,)
    out = []
    advanced = False
    has_bool = False
    for item in items:
        if isinstance(item, Tensor):
            _check_same_device("indexing", t, item)
            item = item.array
        elif isinstance(item, list):
            item = backend.to_device(backend.host_asarray(item), t.device)
        elif backend.is_backend_array(item):
            item = backend.to_device(item, t.device)
        if hasattr(item, "dtype") and hasattr(item, "ndim"):
            kind = item.dtype.kind
            if kind == "b":
                has_bool = True
            elif kind in "iu":
                advanced = True
            else:
                raise IndexError(f"tensors used as indices must be integer or bool, got {item.dtype}")
        out.append(item)
    if advanced and t.device != "cpu":  # NumPy raises on an index out of range; CuPy would wrap it silently
        _check_array_index_bounds(out, t.shape)
    if advanced and has_bool:  # repeated-index accumulation needs integer positions throughout
        expanded = []
        for item in out:
            if hasattr(item, "dtype") and item.dtype.kind == "b":
                expanded.extend(item.nonzero())
            else:
                expanded.append(item)
        out = expanded
    return (tuple(out) if isinstance(index, tuple) or len(out) != 1 else out[0]), advanced


def _check_array_index_bounds(items: list[Any], shape: tuple[int, ...]) -> None:
    """Raise IndexError, as NumPy does, for an integer index array with an entry outside [-n, n) of its dim."""
    def consumes(item: Any) -> int:  # how many dims of the tensor an index item walks over
        if item is None:
            return 0
        if item is Ellipsis:
            return -1
        return item.ndim if getattr(item, "dtype", None) is not None and item.dtype.kind == "b" else 1

    dim = 0
    for pos, item in enumerate(items):
        n = consumes(item)
        if n < 0:  # the Ellipsis spans the dims that the items after it do not use
            dim = len(shape) - sum(max(consumes(i), 0) for i in items[pos + 1 :])
            continue
        if hasattr(item, "dtype") and item.dtype.kind in "iu" and item.size and dim < len(shape):
            size = shape[dim]
            bad = (item >= size) | (item < -size)
            if bool(bad.any()):
                raise IndexError(f"indexing a tensor of shape {shape}: index {int(item[bad].ravel()[0])} "
                                 f"is out of bounds for dim {dim} with size {size}")
        dim += n


def _as_array(data: Any, dtype: Any, device: Any) -> tuple[Any, str]:
    """Python data, NumPy/CuPy arrays or tensors as an array of a supported dtype on the device."""
    if isinstance(data, Tensor):
        array = data.array
        src = data.device
    elif backend.is_backend_array(data) or backend.is_numpy_scalar(data):
        array = backend.ensure_array(data)
        src = backend.device_of(array)
    else:
        try:
            array = backend.host_asarray(data)
        except (ValueError, TypeError) as err:
            raise TypeError(f"cannot make a tensor from {type(data).__name__}: {err}") from None
        if array.dtype.kind == "O" or array.dtype.kind in "USV":
            raise TypeError(f"cannot make a tensor from {type(data).__name__} (got NumPy dtype {array.dtype})")
        if dtype is None and array.dtype.kind == "f":
            array = array.astype(backend.get_default_dtype())
        elif dtype is None and array.dtype.kind in "iu":
            array = array.astype("int64")
        src = "cpu"
    if dtype is not None:
        dt = backend.check_dtype(dtype)
        if array.dtype != dt:
            array = array.astype(dt)
    else:
        backend.check_dtype(array.dtype)
    if device is not None:
        dev = backend.canonical_device(device)
    else:  # tensors and GPU arrays stay where they are; host data goes to the default device
        dev = src if isinstance(data, Tensor) or src != "cpu" else backend.get_default_device()
    return backend.to_device(array, dev), dev


autograd.Tensor = Tensor
