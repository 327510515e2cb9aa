"""The Tensor: a backend array plus what autograd needs (``grad``, ``grad_fn``, a version counter).

Every method that computes something calls an op's ``apply`` (or composes other
methods: ``lerp``, ``var``, ``sort`` through ``gather``); this file only turns
Python arguments (scalars, dims, index expressions) into what the ops expect,
and keeps PyTorch's dtype rules: a Python scalar takes the tensor's dtype,
integers meeting floats become floats, float32 stays float32. Names, arguments
and return types are PyTorch's (``max(dim)`` returns ``(values, indices)``).

In-place methods (``add_``, ``x[i] = v``, ...) write into the tensor's memory
and bump its version counter, shared with the tensors that view the same
memory; while the graph is recorded they instead redirect a non-leaf to the
out-of-place result and its node (``_rebind``). The function forms
(``tl.exp(x)``) live in ``functions.py``.
"""
from __future__ import annotations

import math
import numbers
from collections import namedtuple
from typing import Any, Iterator
from weakref import ref as _weakref

from . import autograd, backend, dtypes, printing
from . import ops as _ops
from .ops.movement import Split as _Split

_xp_cache: dict[str, Any] = {}
_DTYPE_OF: dict[Any, dtypes.DType] = {}
# Tensor has methods named int() and bool() (as PyTorch); annotations inside the class use these names.
_int = int
_bool = bool
_NDARRAY = backend.numpy_ndarray_type()


def _is_float(dtype: Any) -> bool:
    return dtype.kind in "fc"


class Tensor:
    """An n-dimensional array on a device that can record the ops applied to it."""

    __slots__ = ("array", "_grad", "grad_fn", "requires_grad", "device", "_output_nr", "_vc", "__weakref__")
    _output_nr: int  # which output of its grad_fn this is: 0, except for the outputs of split/chunk
    # The version counter, [version, sharers, tracked], created when first needed: every in-place change
    # bumps it, and tensors viewing the same memory (detach(), reshape, slices) share it; ``sharers`` holds
    # weak references to them (see autograd.share_counter); ``tracked`` is False for ``.data``.
    _vc: list[Any] | None
    __array_priority__ = 1000
    __array_ufunc__ = None  # make NumPy defer to our reflected operators (ndarray + Tensor -> Tensor)

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> None:
        array, device = _as_array(data, dtype, device)
        self.array = array
        self._grad: Tensor | None = None
        self.grad_fn: Any = None
        self.device: str = device
        self.requires_grad = False
        self._output_nr = 0
        self._vc = None
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(array: Any, device: str) -> Tensor:
        """Fast internal constructor around an array that is already on ``device``."""
        t = _new(Tensor)
        if type(array) is not _NDARRAY:
            array = backend.ensure_array(array)
        t.array = array
        t._grad = None
        t.grad_fn = None
        t.requires_grad = False
        t.device = device
        t._output_nr = 0
        t._vc = None
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
        t = Tensor._wrap(self.array, self.device)
        t._vc = [0, None, False]  # its own counter, untracked: changes through .data are not seen by autograd
        return t

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
    def grad(self) -> Tensor | None:
        """The gradient accumulated by backward (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        """Set ``.grad`` as PyTorch does: None, or a Tensor of this tensor's shape, dtype and device."""
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of type "
                                f"{type(value).__module__}.{type(value).__name__}")
            if value.device != self.device:
                raise RuntimeError(f"assigned grad has data located on a different device ({value.device}) "
                                   f"than the tensor ({self.device})")
            if value.array.dtype != self.array.dtype:
                raise RuntimeError(f"assigned grad has data of a different type ({value.array.dtype}) "
                                   f"than the tensor ({self.array.dtype})")
            if value.shape != self.shape:
                raise RuntimeError(f"assigned grad has data of a different size ({value.shape}) "
                                   f"than the tensor ({self.shape})")
        self._grad = value

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has had (PyTorch's ``tensor._version``)."""
        vc = self._vc
        return 0 if vc is None else vc[0]

    def _counter(self) -> list[Any]:
        """The version counter, made on first use."""
        vc = self._vc
        if vc is None:
            vc = self._vc = [0, None, True]
        return vc

    def _bump_version(self) -> None:
        """Record an in-place change of this tensor's memory (made through ``.array``, by an optimizer, say).

        Backward then refuses to use the old values wherever an op saved them for its gradient
        (``autograd.note_inplace``); changes through ``.data`` are not tracked, as in PyTorch.
        """
        vc = self._vc
        if vc is None:
            vc = self._vc = [1, None, True]
        else:
            vc[0] += 1
        if vc[2]:
            autograd.note_inplace(self.array, vc[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def dtype(self) -> dtypes.DType:
        dt = _DTYPE_OF.get(self.array.dtype)
        if dt is None:
            dt = _DTYPE_OF[self.array.dtype] = dtypes.as_dtype(self.array.dtype)
        return dt

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
        if self.dtype.name not in (dtypes.get_default_dtype().name, "int64", "bool"):
            extra.append(f"dtype={self.dtype.name}")
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{type(self.grad_fn).__name__}Backward>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        body = printing.format_array(self.array, "tensor(")
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

    def to(self, *args: Any, dtype: Any = None, device: Any = None, non_blocking: _bool = False, copy: _bool = False,
           memory_format: Any = None) -> Tensor:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)``: differentiable copy (no copy if nothing changes,
        unless ``copy=True``)."""
        _check_memory_format("to", memory_format)
        if copy:
            return self.to(*args, dtype=dtype, device=device).clone()
        for a in args:
            if isinstance(a, str) and (a.startswith("cpu") or a.startswith("cuda")):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if dtype is not None:
            dt = dtypes.check_dtype(dtype)
            if dt != out.array.dtype:
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

    def half(self) -> Tensor:
        return self.to(dtype="float16")

    def type(self, dtype: Any = None) -> Any:
        """The type name (``'torch.FloatTensor'``, as PyTorch names it) without ``dtype``; else ``to(dtype)``."""
        if dtype is None:
            names = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
                     "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}
            prefix = "torch.cuda." if self.device != "cpu" else "torch."
            return f"{prefix}{names.get(self.array.dtype.name, self.array.dtype.name)}Tensor"
        return self.to(dtype=dtype)

    @property
    def is_cuda(self) -> _bool:
        return self.device != "cpu"

    def get_device(self) -> _int:
        """The GPU index, -1 on the CPU (PyTorch's)."""
        return -1 if self.device == "cpu" else _int(self.device.partition(":")[2] or 0)

    def ndimension(self) -> _int:
        return self.array.ndim

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(dtype=other.dtype)

    # ------------------------------------------------------------------ autograd
    def detach(self) -> Tensor:
        """The same data, cut from the graph (what truncated BPTT carries between chunks).

        It shares this tensor's memory and version counter, as in PyTorch.
        """
        t = Tensor._wrap(self.array, self.device)
        t._vc = autograd.share_counter(self, t)
        return t

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

    @property
    def retains_grad(self) -> _bool:
        """Whether :meth:`retain_grad` was called on this non-leaf tensor."""
        if self.grad_fn is None:
            return False
        if self._grad is not None:  # only a retained non-leaf gets a .grad (its node may be freed by now)
            return True
        refs = self.grad_fn.__dict__.get("_retain_ref")
        if isinstance(refs, dict):
            refs = refs.get(self._output_nr)
        return refs is not None and refs() is self

    def register_hook(self, hook: Any) -> Any:
        """Call ``hook(grad)`` each time this tensor's gradient is computed; a returned tensor replaces it.

        Returns a handle whose ``remove()`` unregisters the hook (see :func:`autograd.register_hook`).
        """
        return autograd.register_hook(self, hook)

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        """Call ``hook(self)`` in each backward once this leaf's ``.grad`` is complete; returns a removable handle."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def backward(self, gradient: Any = None, retain_graph: Any = None, create_graph: _bool = False,
                 inputs: Any = None) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf that requires it
        (only of ``inputs``, leaves or not, when given). ``create_graph=True`` is not supported yet."""
        if create_graph:
            raise NotImplementedError("backward: create_graph=True is not supported (backward records no graph)")
        if inputs is not None:
            inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
            if not inputs:
                raise RuntimeError("backward: 'inputs' argument to backward() cannot be empty.")
            grads = autograd.grad(self, inputs, gradient, retain_graph=retain_graph, allow_unused=True)
            with autograd.no_grad():
                for x, g in zip(inputs, grads):
                    if g is not None:
                        if x._grad is None:
                            x._grad = g
                        else:
                            x._grad.array += g.array
            return
        retain_graph = _bool(retain_graph)
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this output has shape {self.shape}, "
                    "pass backward(gradient=...) of that shape"
                )
            g = self.xp.ones(self.shape, dtype=self.array.dtype)
        else:
            g = gradient.array if isinstance(gradient, Tensor) else gradient
            g = backend.to_device(self.xp.asarray(g) if not backend.is_backend_array(g) else g, self.device)
            if tuple(g.shape) != self.shape:
                raise RuntimeError(
                    f"backward: gradient has shape {tuple(g.shape)} but the output has shape {self.shape}"
                )
            g = g.astype(self.array.dtype, copy=False)
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

    def bmm(self, mat2: Tensor) -> Tensor:
        """Batched product of (B, n, m) and (B, m, p) tensors (no broadcasting, as PyTorch's bmm)."""
        if self.ndim != 3 or not isinstance(mat2, Tensor) or mat2.ndim != 3:
            raise RuntimeError(f"bmm: both arguments must be 3-D tensors, got shapes {self.shape} and "
                               f"{getattr(mat2, 'shape', type(mat2).__name__)}")
        if self.shape[0] != mat2.shape[0] or self.shape[2] != mat2.shape[1]:
            raise RuntimeError(f"bmm: shapes {self.shape} and {mat2.shape} do not fit (B, n, m) @ (B, m, p)")
        return self @ mat2

    def absolute(self) -> Tensor:
        return self.abs()

    def negative(self) -> Tensor:
        return -self

    def subtract(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return self.sub(other, alpha=alpha)

    def multiply(self, other: Any) -> Tensor:
        return self * other

    def divide(self, other: Any, *, rounding_mode: Any = None) -> Tensor:
        """``self / other``; ``rounding_mode`` 'trunc' or 'floor' rounds the quotient (no gradient then)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self.floor_divide(other)
        if rounding_mode == "trunc":
            return (self / other).trunc().to(_promoted_dtype(self.array.dtype, _tensor_like(other, self).array.dtype))
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")

    def true_divide(self, other: Any) -> Tensor:
        return self / other

    def mm(self, other: Tensor) -> Tensor:
        if self.ndim != 2 or other.ndim != 2:
            raise RuntimeError(f"mm: expected two 2-D tensors, got shapes {self.shape} and {other.shape}")
        return self @ other

    def add(self, other: Any, *, alpha: Any = 1) -> Tensor:
        """``self + alpha * other``."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other: Any, *, alpha: Any = 1) -> Tensor:
        """``self - alpha * other``."""
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other: Any) -> Tensor:
        return self * other

    def div(self, other: Any, *, rounding_mode: Any = None) -> Tensor:
        return self / other if rounding_mode is None else self.divide(other, rounding_mode=rounding_mode)

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
        if self.array.dtype.kind not in "iub":
            raise TypeError(f"~ is only defined for bool and integer tensors, not {self.dtype}")
        return Tensor._wrap(~self.array, self.device)

    def __and__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_and", self, other)

    def __or__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_or", self, other)

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
        if isinstance(min, Tensor) or isinstance(max, Tensor):  # bounds per element: gradients reach them too
            from .creation import where

            out = self
            if min is not None:
                out = where(out < min, _tensor_like(min, self).to(self.dtype), out)
            if max is not None:
                out = where(out > max, _tensor_like(max, self).to(self.dtype), out)
            return out
        return _ops.Clamp.apply(self, min=_scalar_value(min), max=_scalar_value(max))

    clip = clamp

    def exp2(self) -> Tensor:
        return _ops.Exp2.apply(_floating(self))

    def expm1(self) -> Tensor:
        return _ops.Expm1.apply(_floating(self))

    def log2(self) -> Tensor:
        return _ops.Log2.apply(_floating(self))

    def log10(self) -> Tensor:
        return _ops.Log10.apply(_floating(self))

    def log1p(self) -> Tensor:
        return _ops.Log1p.apply(_floating(self))

    def rsqrt(self) -> Tensor:
        return _ops.Rsqrt.apply(_floating(self))

    def reciprocal(self) -> Tensor:
        return _ops.Reciprocal.apply(_floating(self))

    def tan(self) -> Tensor:
        return _ops.Tan.apply(_floating(self))

    def asin(self) -> Tensor:
        return _ops.Asin.apply(_floating(self))

    def acos(self) -> Tensor:
        return _ops.Acos.apply(_floating(self))

    def atan(self) -> Tensor:
        return _ops.Atan.apply(_floating(self))

    arcsin, arccos, arctan = asin, acos, atan

    def atan2(self, other: Any) -> Tensor:
        return _binary(_ops.Atan2, _floating(self), other, true_div=True)

    arctan2 = atan2

    def sinh(self) -> Tensor:
        return _ops.Sinh.apply(_floating(self))

    def cosh(self) -> Tensor:
        return _ops.Cosh.apply(_floating(self))

    def erf(self) -> Tensor:
        return _ops.Erf.apply(_floating(self))

    def _piecewise(self, fn: str, decimals: _int = 0) -> Tensor:
        if self.array.dtype.kind in "iub" and fn != "sign":
            return self.clone()
        return _ops.Piecewise.apply(self, fn=fn, decimals=decimals)

    def floor(self) -> Tensor:
        return self._piecewise("floor")

    def ceil(self) -> Tensor:
        return self._piecewise("ceil")

    def round(self, decimals: _int = 0) -> Tensor:
        """Round half to even, as PyTorch; with ``decimals``, to that many decimal places."""
        return self._piecewise("round", decimals)

    def trunc(self) -> Tensor:
        return self._piecewise("trunc")

    fix = trunc

    def sign(self) -> Tensor:
        if self.array.dtype.kind == "b":
            return self.clone()
        return self._piecewise("sign")

    def frac(self) -> Tensor:
        """x - trunc(x) (the sign of x); d frac(x) = dx."""
        return self - self.trunc().detach()

    def fmod(self, other: Any) -> Tensor:
        return _binary(_ops.Fmod, self, other)

    def remainder(self, other: Any) -> Tensor:
        return _binary(_ops.Remainder, self, other)

    def floor_divide(self, other: Any) -> Tensor:
        return _binary(_ops.FloorDivide, self, other)

    def __mod__(self, other: Any) -> Tensor:
        return self.remainder(other)

    def __rmod__(self, other: Any) -> Tensor:
        return _binary(_ops.Remainder, self, other, reflected=True)

    def __floordiv__(self, other: Any) -> Tensor:
        return self.floor_divide(other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return _binary(_ops.FloorDivide, self, other, reflected=True)

    def lerp(self, end: Tensor, weight: Any) -> Tensor:
        """``self + weight * (end - self)``."""
        return self + weight * (end - self)

    def addcmul(self, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
        """``self + value * tensor1 * tensor2``."""
        prod = tensor1 * tensor2
        return self + (prod if value == 1 else prod * value)

    def addcdiv(self, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
        """``self + value * tensor1 / tensor2``."""
        quot = tensor1 / tensor2
        return self + (quot if value == 1 else quot * value)

    def asinh(self) -> Tensor:
        return _ops.Asinh.apply(_floating(self))

    def acosh(self) -> Tensor:
        return _ops.Acosh.apply(_floating(self))

    def atanh(self) -> Tensor:
        return _ops.Atanh.apply(_floating(self))

    arcsinh, arccosh, arctanh = asinh, acosh, atanh

    def deg2rad(self) -> Tensor:
        return _floating(self) * (math.pi / 180.0)

    def rad2deg(self) -> Tensor:
        return _floating(self) * (180.0 / math.pi)

    def sgn(self) -> Tensor:
        return self.sign()

    def signbit(self) -> Tensor:
        return Tensor._wrap(self.xp.signbit(self.array), self.device)

    def positive(self) -> Tensor:
        return self

    def erfc(self) -> Tensor:
        """1 - erf(x)."""
        return 1.0 - self.erf()

    def logit(self, eps: Any = None) -> Tensor:
        """log(x / (1 - x)), with x clamped to [eps, 1 - eps] when ``eps`` is given."""
        x = _floating(self) if eps is None else _floating(self).clamp(eps, 1 - eps)
        return (x / (1 - x)).log()

    def xlogy(self, other: Any) -> Tensor:
        """x log(y), 0 where x is 0."""
        other = _tensor_like(other, self)
        from .creation import where

        return where(self == 0, 0.0, _floating(self) * _floating(other).log())

    def hypot(self, other: Any) -> Tensor:
        return (self * self + other * other).sqrt()

    def logaddexp(self, other: Any) -> Tensor:
        """log(e^x + e^y), shifted by the larger so exp never overflows."""
        other = _tensor_like(other, self)
        m = _binary(_ops.Maximum, self, other).detach()
        m = m.masked_fill(~m.isfinite(), 0)
        return m + ((self - m).exp() + (other - m).exp()).log()

    def logaddexp2(self, other: Any) -> Tensor:
        """log2(2^x + 2^y)."""
        return (self * math.log(2.0)).logaddexp(_tensor_like(other, self) * math.log(2.0)) / math.log(2.0)

    def copysign(self, other: Any) -> Tensor:
        """|x| with the sign of ``other`` (no gradient reaches ``other``, as in PyTorch)."""
        other = _tensor_like(other, self)
        negative = Tensor._wrap(self.xp.signbit(other.array), self.device)
        from .creation import where

        magnitude = _floating(self).abs()
        return where(negative, -magnitude, magnitude)

    def heaviside(self, values: Tensor) -> Tensor:
        from .creation import where

        return where(self == 0, values, (self > 0).to(self.dtype)).detach()

    def nan_to_num(self, nan: Any = 0.0, posinf: Any = None, neginf: Any = None) -> Tensor:
        """NaN, +inf and -inf replaced (by 0 and the dtype's largest and smallest finite values by default)."""
        if self.array.dtype.kind != "f":
            return self.clone()
        info = self.xp.finfo(self.array.dtype)
        out = self.masked_fill(self.isnan(), nan)
        out = out.masked_fill(self.isposinf(), float(info.max) if posinf is None else posinf)
        return out.masked_fill(self.isneginf(), float(info.min) if neginf is None else neginf)

    def sinc(self) -> Tensor:
        """sin(pi x) / (pi x), 1 at 0."""
        x = _floating(self)
        zero = x == 0
        safe = x.masked_fill(zero, 1.0) * math.pi
        return (safe.sin() / safe).masked_fill(zero, 1.0)

    def float_power(self, exponent: Any) -> Tensor:
        """``self ** exponent`` in float64."""
        return self.double() ** (exponent.double() if isinstance(exponent, Tensor) else exponent)

    def fmax(self, other: Tensor) -> Tensor:
        """The elementwise maximum, ignoring NaN (the other value wins)."""
        from .creation import where

        both = _binary(_ops.Maximum, self, other)
        return where(self.isnan(), other, where(other.isnan(), self, both))

    def fmin(self, other: Tensor) -> Tensor:
        from .creation import where

        both = _binary(_ops.Minimum, self, other)
        return where(self.isnan(), other, where(other.isnan(), self, both))

    def ldexp(self, other: Any) -> Tensor:
        """``self * 2 ** other``."""
        return _floating(self) * (2.0 ** _floating(_tensor_like(other, self)))

    def gcd(self, other: Any) -> Tensor:
        return _integer_op("gcd", self, other)

    def lcm(self, other: Any) -> Tensor:
        return _integer_op("lcm", self, other)

    def nextafter(self, other: Any) -> Tensor:
        return Tensor._wrap(self.xp.nextafter(self.array, _tensor_like(other, self).array), self.device)

    def frexp(self) -> Any:
        mantissa, exponent = self.xp.frexp(self.array)
        return return_types.frexp(Tensor._wrap(mantissa, self.device),
                                  Tensor._wrap(exponent.astype("int32"), self.device))

    # products beyond @ (PyTorch's BLAS-style names)
    def mv(self, vec: Tensor) -> Tensor:
        if self.ndim != 2 or vec.ndim != 1:
            raise RuntimeError(f"mv: expected a matrix and a vector, got shapes {self.shape} and {vec.shape}")
        return self @ vec

    def addmm(self, mat1: Tensor, mat2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        """``beta * self + alpha * (mat1 @ mat2)``."""
        return _scaled_sum(self, beta, mat1.mm(mat2), alpha)

    def addmv(self, mat: Tensor, vec: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        return _scaled_sum(self, beta, mat.mv(vec), alpha)

    def addbmm(self, batch1: Tensor, batch2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        """``beta * self + alpha * sum_b batch1[b] @ batch2[b]``."""
        return _scaled_sum(self, beta, (batch1 @ batch2).sum(0), alpha)

    def baddbmm(self, batch1: Tensor, batch2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        return _scaled_sum(self, beta, batch1 @ batch2, alpha)

    def addr(self, vec1: Tensor, vec2: Tensor, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
        return _scaled_sum(self, beta, vec1.reshape(-1, 1) * vec2.reshape(1, -1), alpha)

    def outer(self, vec2: Tensor) -> Tensor:
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    ger = outer

    def inner(self, other: Tensor) -> Tensor:
        """The sum over the last dims: ``self[..., k] * other[..., k]`` for every pair of leading indices."""
        if self.ndim == 0 or other.ndim == 0:
            return self * other
        return self @ other.movedim(-1, 0) if other.ndim > 1 else self @ other

    def vdot(self, other: Tensor) -> Tensor:
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"vdot: 1D tensors expected, got {self.ndim}D and {other.ndim}D")
        return self @ other

    def dot(self, other: Tensor) -> Tensor:
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"dot: 1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
        return self @ other

    def maximum(self, other: Tensor) -> Tensor:
        return _binary(_ops.Maximum, self, other)

    def minimum(self, other: Tensor) -> Tensor:
        return _binary(_ops.Minimum, self, other)

    def clamp_min(self, min: Any) -> Tensor:
        return self.clamp(min=min)

    def clamp_max(self, max: Any) -> Tensor:
        return self.clamp(max=max)

    # comparisons and logic: results without gradient
    def eq(self, other: Any) -> Tensor:
        return _compare("equal", self, other)

    def ne(self, other: Any) -> Tensor:
        return _compare("not_equal", self, other)

    def lt(self, other: Any) -> Tensor:
        return _compare("less", self, other)

    def le(self, other: Any) -> Tensor:
        return _compare("less_equal", self, other)

    def gt(self, other: Any) -> Tensor:
        return _compare("greater", self, other)

    def ge(self, other: Any) -> Tensor:
        return _compare("greater_equal", self, other)

    not_equal, less, less_equal, greater, greater_equal = ne, lt, le, gt, ge

    def equal(self, other: Tensor) -> _bool:
        """True when ``other`` has this shape and the same values."""
        if not isinstance(other, Tensor):
            raise TypeError(f"equal: expected a Tensor, got {type(other).__name__}")
        _check_same_device("equal", self, other)
        return self.shape == other.shape and _bool(self.xp.array_equal(self.array, other.array))

    def isclose(self, other: Any, rtol: Any = 1e-05, atol: Any = 1e-08, equal_nan: _bool = False) -> Tensor:
        other = _tensor_like(other, self)
        _check_same_device("isclose", self, other)
        return Tensor._wrap(self.xp.isclose(self.array, other.array, rtol=rtol, atol=atol, equal_nan=equal_nan),
                            self.device)

    def allclose(self, other: Any, rtol: Any = 1e-05, atol: Any = 1e-08, equal_nan: _bool = False) -> _bool:
        return _bool(self.isclose(other, rtol, atol, equal_nan).array.all())

    def isnan(self) -> Tensor:
        return Tensor._wrap(self.xp.isnan(self.array), self.device)

    def isinf(self) -> Tensor:
        return Tensor._wrap(self.xp.isinf(self.array), self.device)

    def isfinite(self) -> Tensor:
        return Tensor._wrap(self.xp.isfinite(self.array), self.device)

    def isposinf(self) -> Tensor:
        return Tensor._wrap(self.array == float("inf"), self.device)

    def isneginf(self) -> Tensor:
        return Tensor._wrap(self.array == -float("inf"), self.device)

    def logical_not(self) -> Tensor:
        return Tensor._wrap(self.xp.logical_not(self.array), self.device)

    def logical_and(self, other: Any) -> Tensor:
        return _compare("logical_and", self, other)

    def logical_or(self, other: Any) -> Tensor:
        return _compare("logical_or", self, other)

    def logical_xor(self, other: Any) -> Tensor:
        return _compare("logical_xor", self, other)

    def bitwise_and(self, other: Any) -> Tensor:
        return _bitwise("bitwise_and", self, other)

    def bitwise_or(self, other: Any) -> Tensor:
        return _bitwise("bitwise_or", self, other)

    def bitwise_xor(self, other: Any) -> Tensor:
        return _bitwise("bitwise_xor", self, other)

    def bitwise_not(self) -> Tensor:
        if self.array.dtype.kind not in "iub":
            raise TypeError(f"bitwise_not is only defined for integer and bool tensors, not {self.dtype}")
        return Tensor._wrap(self.xp.invert(self.array), self.device)

    def __xor__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_xor", self, other)

    def __rand__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_and", self, other)

    def __ror__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_or", self, other)

    def __rxor__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_xor", self, other)

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        mask = _tensor_like(mask, self)
        if mask.dtype.kind != "b":
            raise TypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
        _check_same_device("masked_fill", self, mask)
        return _ops.MaskedFill.apply(self, mask=mask.array, value=_scalar_value(value))

    # ------------------------------------------------------------------ in place
    # Every in-place op bumps the version counter. Outside the graph (no_grad, or nothing requires a
    # gradient) it writes into this tensor's memory, so views, ``.data`` and ``detach()`` see the
    # change (``p.data.add_(p.grad, alpha=-lr)`` updates ``p``). While recording the graph, a non-leaf
    # takes the result and its graph node (see ``_rebind``); a leaf that requires grad refuses.
    def add_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return _inplace_arith(self, "add_", other, alpha)

    def sub_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return _inplace_arith(self, "sub_", other, alpha)

    def mul_(self, other: Any) -> Tensor:
        return _inplace_arith(self, "mul_", other, 1)

    def div_(self, other: Any) -> Tensor:
        return _inplace_arith(self, "div_", other, 1)

    def pow_(self, exponent: Any) -> Tensor:
        return _inplace(self, "pow_", lambda: self**exponent)

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __ipow__(self, other: Any) -> Tensor:
        return self.pow_(other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        return _inplace(self, "clamp_", lambda: self.clamp(min, max))

    clip_ = clamp_

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return _inplace(self, "masked_fill_", lambda: self.masked_fill(mask, value))

    def fill_(self, value: Any) -> Tensor:
        """Every element set to ``value`` (a number or a one-element tensor); no gradient flows to the old values."""
        value = _scalar_value(value)
        if self.requires_grad and autograd._modes.grad_enabled:
            everywhere = self.xp.ones((), dtype=bool)
            return _inplace(self, "fill_", lambda: _ops.MaskedFill.apply(self, mask=everywhere, value=value))
        _check_writable("fill_", self)
        self.array.fill(value)
        self._bump_version()
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def copy_(self, src: Tensor, non_blocking: _bool = False) -> Tensor:
        """This tensor's values set to ``src``'s (broadcast, cast to this dtype, copied across devices)."""
        if not isinstance(src, Tensor):
            raise TypeError(f"copy_: src must be a Tensor, got {type(src).__name__}")
        _check_broadcast("copy_", src.shape, self.shape)

        def compute() -> Tensor:
            out = src.to(self.dtype).to(self.device)
            if out.shape != self.shape:
                out = out.expand(self.shape)
            return out.clone() if autograd._modes.grad_enabled and out.requires_grad else out
        return _inplace(self, "copy_", compute)

    def uniform_(self, a: Any = 0.0, b: Any = 1.0, *, generator: Any = None) -> Tensor:
        from . import random

        return random.uniform_(self, a, b, generator=generator)

    def normal_(self, mean: Any = 0.0, std: Any = 1.0, *, generator: Any = None) -> Tensor:
        from . import random

        return random.normal_(self, mean, std, generator=generator)

    def exponential_(self, lambd: Any = 1.0, *, generator: Any = None) -> Tensor:
        from . import random

        return random.exponential_(self, lambd, generator=generator)

    def log_normal_(self, mean: Any = 1.0, std: Any = 2.0, *, generator: Any = None) -> Tensor:
        from . import random

        return random.log_normal_(self, mean, std, generator=generator)

    def cauchy_(self, median: Any = 0.0, sigma: Any = 1.0, *, generator: Any = None) -> Tensor:
        from . import random

        return random.cauchy_(self, median, sigma, generator=generator)

    def geometric_(self, p: Any, *, generator: Any = None) -> Tensor:
        from . import random

        return random.geometric_(self, p, generator=generator)

    def bernoulli_(self, p: Any = 0.5, *, generator: Any = None) -> Tensor:
        from . import random

        return random.bernoulli_(self, p, generator=generator)

    def random_(self, *args: Any, generator: Any = None) -> Tensor:
        from . import random

        return random.random_(self, *args, generator=generator)

    def multinomial(self, num_samples: _int, replacement: _bool = False, *, generator: Any = None) -> Tensor:
        from . import random

        return random.multinomial(self, num_samples, replacement, generator=generator)

    def bernoulli(self, p: Any = None, *, generator: Any = None) -> Tensor:
        from . import random

        return random.bernoulli(self, p, generator=generator)

    def _rebind(self, name: str, result: Tensor) -> Tensor:
        """Make ``result`` (computed out of place, with its graph node) this tensor's value and history.

        Nothing is written into the old memory, so the ops that saved it still backprop correctly.
        A tensor sharing its memory with others (a view, or one with views or ``detach()``ed copies)
        cannot be redirected so: those would keep the old values and history (PyTorch rewrites their
        history too), so that raises instead of giving a silently different result.
        """
        if result.shape != self.shape:
            raise RuntimeError(f"{name}: output with shape {self.shape} doesn't match the broadcast shape "
                               f"{result.shape}")
        if result.array.dtype != self.array.dtype:
            _check_cast(name, result.array.dtype, self.array.dtype)
            result = result.to(self.dtype)
        vc = self._vc
        views: list[Any] = []
        if vc is not None and vc[1] is not None:
            base, views = _memory_family(name, self, vc[1])
            if base is not None:  # a view made by indexing: the change goes into its base, which regenerates it
                parent, index = base
                if parent.requires_grad and parent.grad_fn is None:
                    raise RuntimeError(f"{name}: a view of a leaf Variable that requires grad is being used in an "
                                       "in-place operation.")
                parent._rebind(name, _ops.IndexPut.apply(parent, result, index=index))
                return self
        self.array = result.array
        self.grad_fn = result.grad_fn
        self._output_nr = result._output_nr
        self.requires_grad = result.requires_grad
        # the new values live in the result's memory, whose counter the result's node may have recorded
        self._vc = result._counter()
        for view, parent, index in views:  # parents come before their views
            fresh = _ops.GetItem.apply(parent, index=index, advanced=False)
            view.array, view.grad_fn, view._output_nr = fresh.array, fresh.grad_fn, fresh._output_nr
            view.requires_grad = fresh.requires_grad
            counter = view._vc = autograd.share_counter(parent, view)
            _note_indexing_view(counter, view, parent, index)
        return self

    # ------------------------------------------------------------------ reductions
    def sum(self, dim: Any = None, keepdim: _bool = False, *, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        if dtype is None and x.array.dtype.kind in "bi" and x.array.dtype.itemsize < 8:
            x = x.long()  # as PyTorch: integer and bool sums are int64
        return _ops.Sum.apply(x, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: _bool = False, *, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        return _ops.Mean.apply(_floating(x), axis=_axes(dim, self.ndim), keepdims=keepdim)

    def nansum(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return self.masked_fill(self.isnan(), 0).sum(dim, keepdim)

    def nanmean(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return self.nansum(dim, keepdim) / (~self.isnan()).sum(dim, keepdim)

    def prod(self, dim: _int | None = None, keepdim: _bool = False, *, dtype: Any = None) -> Tensor:
        """Product over ``dim`` (all elements when None); its gradient is exact where elements are 0."""
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind == "b":
            x = x.long()
        if dim is None:
            return _ops.Prod.apply(x.reshape(-1), axis=0, keepdims=False)
        return _ops.Prod.apply(x, axis=_axis(dim, self.ndim), keepdims=keepdim) if self.ndim else x.clone()

    def cumsum(self, dim: _int, *, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind == "b":
            x = x.long()
        return _ops.CumSum.apply(x, axis=_axis(dim, self.ndim)) if self.ndim else x.clone()

    def cumprod(self, dim: _int, *, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind == "b":
            x = x.long()
        return _ops.CumProd.apply(x, axis=_axis(dim, self.ndim)) if self.ndim else x.clone()

    def logcumsumexp(self, dim: _int) -> Tensor:
        """log(cumsum(exp(x))), shifted by the maximum along ``dim`` so exp never overflows."""
        d = _axis(dim, self.ndim)
        m = self.detach().amax(d, keepdim=True) if self.numel() else self.detach().sum(d, keepdim=True)
        m = m.masked_fill(~m.isfinite(), 0)
        return (self - m).exp().cumsum(d).log() + m

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: _bool = False, dtype: Any = None) -> Tensor:
        """The vector p-norm over ``dim`` (all elements when None): ``p`` a number > 0, inf, -inf or 'fro'."""
        x = _floating(self if dtype is None else self.to(dtype))
        if p == "fro" or p is None:
            p = 2.0
        if isinstance(p, str) or not isinstance(p, numbers.Real):
            raise ValueError(f"norm: p must be a number, inf or 'fro', got {p!r}")
        if p == float("inf"):
            return x.abs().amax(() if dim is None else dim, keepdim)
        if p == float("-inf"):
            return x.abs().amin(() if dim is None else dim, keepdim)
        if p == 0:
            return (x != 0).sum(dim, keepdim).to(x.dtype)
        if p < 0:
            raise ValueError(f"norm: p must be positive (or 0, inf, -inf), got {p}")
        return _ops.Norm.apply(x, p=float(p), axis=_axes(dim, self.ndim), keepdims=keepdim)

    def var(self, dim: Any = None, unbiased: Any = None, keepdim: _bool = False, *, correction: Any = None) -> Tensor:
        """Variance over ``dim`` with Bessel's ``correction`` (1 by default; the legacy ``unbiased`` says 1 or 0)."""
        if isinstance(unbiased, _bool) or unbiased is None:
            if unbiased is not None and correction is not None:
                raise TypeError("var: give either unbiased or correction, not both")
            if correction is None:
                correction = 1 if unbiased is None or unbiased else 0
        else:  # var(dim, keepdim) in the order older code used is not PyTorch's: refuse rather than misread
            raise TypeError(f"var: unbiased must be a bool, got {type(unbiased).__name__}")
        axes = _axes(dim, self.ndim)
        n = self.numel() if axes is None else _prod(self.shape[a] for a in axes)
        centred = self - self.mean(dim, keepdim=True)
        return (centred * centred).sum(dim, keepdim=keepdim) / max(0, n - correction)

    def std(self, dim: Any = None, unbiased: Any = None, keepdim: _bool = False, *, correction: Any = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def var_mean(self, dim: Any = None, unbiased: Any = None, keepdim: _bool = False, *,
                 correction: Any = None) -> tuple[Tensor, Tensor]:
        return self.var(dim, unbiased, keepdim, correction=correction), self.mean(dim, keepdim)

    def std_mean(self, dim: Any = None, unbiased: Any = None, keepdim: _bool = False, *,
                 correction: Any = None) -> tuple[Tensor, Tensor]:
        return self.std(dim, unbiased, keepdim, correction=correction), self.mean(dim, keepdim)

    def max(self, dim: Any = None, keepdim: _bool = False) -> Any:
        """The maximum: of all elements (a tensor), or along ``dim`` as ``(values, indices)``, or ``max(other)``.

        Along a dim the gradient goes to the element whose index is returned; over all elements
        it is shared equally between ties (as PyTorch).
        """
        if isinstance(dim, Tensor):
            return _binary(_ops.Maximum, self, dim)
        if dim is None:
            _check_nonempty("max", self)
            return _ops.Max.apply(self, axis=None, keepdims=False)
        return _select_along("max", self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: _bool = False) -> Any:
        """The minimum, as :meth:`max`."""
        if isinstance(dim, Tensor):
            return _binary(_ops.Minimum, self, dim)
        if dim is None:
            _check_nonempty("min", self)
            return _ops.Min.apply(self, axis=None, keepdims=False)
        return _select_along("min", self, dim, keepdim)

    def amax(self, dim: Any = (), keepdim: _bool = False) -> Tensor:
        """The maximum over ``dim`` (an int or a tuple; all dims when empty); the gradient is shared between ties."""
        axes = None if dim == () or dim is None else _axes(dim, self.ndim)
        _check_reduction_dims("amax", self, axes)
        return _ops.Max.apply(self, axis=axes, keepdims=keepdim)

    def amin(self, dim: Any = (), keepdim: _bool = False) -> Tensor:
        axes = None if dim == () or dim is None else _axes(dim, self.ndim)
        _check_reduction_dims("amin", self, axes)
        return _ops.Min.apply(self, axis=axes, keepdims=keepdim)

    def aminmax(self, *, dim: _int | None = None, keepdim: _bool = False) -> Any:
        d = () if dim is None else dim
        return return_types.aminmax(self.amin(d, keepdim), self.amax(d, keepdim))

    def sort(self, dim: _int = -1, descending: _bool = False, *, stable: _bool = False) -> Any:
        """``(values, indices)`` sorted along ``dim``: stable (ties keep their order), NaN counts as largest."""
        d = _axis(dim, self.ndim)
        if self.ndim == 0:
            return return_types.sort(self.clone(), Tensor._wrap(self.xp.zeros((), dtype="int64"), self.device))
        index = _sort_index(self.xp, self.array, d, descending)
        return return_types.sort(_ops.Gather.apply(self, index=index, axis=d), Tensor._wrap(index, self.device))

    def argsort(self, dim: _int = -1, descending: _bool = False, *, stable: _bool = False) -> Tensor:
        if self.ndim == 0:
            return Tensor._wrap(self.xp.zeros((), dtype="int64"), self.device)
        return Tensor._wrap(_sort_index(self.xp, self.array, _axis(dim, self.ndim), descending), self.device)

    def msort(self) -> Tensor:
        return self.sort(0).values

    def topk(self, k: _int, dim: _int = -1, largest: _bool = True, sorted: _bool = True) -> Any:
        """The ``k`` largest (or smallest) elements along ``dim`` and their indices, largest first."""
        d = _axis(dim, self.ndim)
        n = self.shape[d] if self.ndim else 1
        if not isinstance(k, numbers.Integral) or not 0 <= k <= n:
            raise RuntimeError(f"topk: k ({k}) is out of range for dim {dim} of size {n}")
        values, indices = self.sort(d, descending=largest)
        lead = (slice(None),) * d
        return return_types.topk(values[lead + (slice(0, k),)], indices[lead + (slice(0, k),)])

    def kthvalue(self, k: _int, dim: _int = -1, keepdim: _bool = False) -> Any:
        """The ``k``-th smallest element (k from 1) along ``dim`` and its index."""
        d = _axis(dim, self.ndim)
        n = self.shape[d] if self.ndim else 1
        if not isinstance(k, numbers.Integral) or not 1 <= k <= n:
            raise RuntimeError(f"kthvalue: k ({k}) is out of range for dim {dim} of size {n}")
        return _pick_sorted(self, d, k - 1, keepdim, return_types.kthvalue)

    def median(self, dim: Any = None, keepdim: _bool = False) -> Any:
        """The lower median: of all elements (a tensor), or along ``dim`` as ``(values, indices)``."""
        if dim is None:
            _check_nonempty("median", self)
            flat = self.reshape(-1)
            return flat.sort(0).values[(flat.shape[0] - 1) // 2]
        d = _axis(dim, self.ndim)
        n = self.shape[d] if self.ndim else 1
        if n == 0:
            raise IndexError(f"median(): Expected reduction dim {dim} to have non-zero size.")
        return _pick_sorted(self, d, (n - 1) // 2, keepdim, return_types.median)

    def quantile(self, q: Any, dim: _int | None = None, keepdim: _bool = False, *,
                 interpolation: str = "linear") -> Tensor:
        """The ``q``-th quantiles along ``dim`` (of all elements when None): a number, or a 1-D tensor of them,
        whose dim then comes first. ``interpolation``: linear, lower, higher, midpoint or nearest."""
        if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
            raise ValueError(f"quantile: interpolation must be linear, lower, higher, midpoint or nearest, "
                             f"got {interpolation!r}")
        qs = q.tolist() if isinstance(q, Tensor) else q
        scalar = isinstance(qs, numbers.Real)
        qs = [float(qs)] if scalar else [float(v) for v in qs]
        if any(not 0.0 <= v <= 1.0 for v in qs):
            raise RuntimeError(f"quantile() q values must be in the range [0, 1], got {qs}")
        x = _floating(self.reshape(-1) if dim is None else self)
        d = 0 if dim is None else _axis(dim, self.ndim)
        n = x.shape[d] if x.ndim else 1
        if n == 0:
            raise RuntimeError("quantile() input tensor must be non-empty")
        ordered = x.sort(d).values if x.ndim else x.reshape(1)
        pos = [v * (n - 1) for v in qs]
        lo = [math.floor(p) for p in pos]
        hi = [math.ceil(p) for p in pos]
        if interpolation == "nearest":  # half-way rounds to even, as PyTorch
            lo = hi = [_int(round(p)) for p in pos]
        elif interpolation == "lower":
            hi = lo
        elif interpolation == "higher":
            lo = hi
        pick = (lambda i: ordered.index_select(d, Tensor._wrap(self.xp.asarray(i, dtype="int64"), self.device)))
        low, high = pick(lo), pick(hi)
        if interpolation == "midpoint":
            frac = [0.5 if a != b else 0.0 for a, b in zip(lo, hi)]
        elif interpolation == "linear":
            frac = [p - a for p, a in zip(pos, lo)]
        else:
            frac = [0.0] * len(qs)
        shape = [1] * low.ndim
        shape[d] = len(qs)
        weight = Tensor._wrap(self.xp.asarray(frac, dtype=low.array.dtype).reshape(shape), self.device)
        out = low + (high - low) * weight  # (..., len(q) at d, ...)
        out = out.movedim(d, 0)  # q's dim first, as PyTorch
        if keepdim:
            out = out.unsqueeze(d + 1) if dim is not None else out.reshape((len(qs),) + (1,) * self.ndim)
        return out[0] if scalar else out

    def nanquantile(self, q: Any, dim: _int | None = None, keepdim: _bool = False, *,
                    interpolation: str = "linear") -> Tensor:
        if bool(self.isnan().any()):
            raise NotImplementedError("nanquantile: inputs holding NaN are not supported yet")
        return self.quantile(q, dim, keepdim, interpolation=interpolation)

    def mode(self, dim: _int = -1, keepdim: _bool = False) -> Any:
        """The most frequent value along ``dim`` (the smallest of equally frequent ones) and an index of it."""
        d = _axis(dim, self.ndim)
        xp = self.xp
        a = xp.moveaxis(self.array, d, -1) if self.ndim else self.array.reshape(1)
        n = a.shape[-1]
        if n == 0:
            raise IndexError(f"mode(): Expected reduction dim {dim} to have non-zero size.")
        s = xp.sort(a, axis=-1)
        counts = (s[..., :, None] == s[..., None, :]).sum(-1)  # (..., n): how often each sorted value occurs
        best = xp.argmax(counts, axis=-1)[..., None]  # the first of the most frequent: the smallest value
        value = xp.take_along_axis(s, best, axis=-1)
        last = n - 1 - xp.argmax(xp.flip(a == value, -1), axis=-1)[..., None]  # PyTorch returns the last index
        index = last if self.ndim == 0 else xp.moveaxis(last, -1, d)
        if self.ndim == 0:
            index = index.reshape(())
        values = _ops.Gather.apply(self, index=index, axis=d) if self.ndim else self.clone()
        if not keepdim and self.ndim:
            values, index = values.squeeze(d), index.squeeze(d)
        return return_types.mode(values, Tensor._wrap(index.astype("int64"), self.device))

    def all(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return Tensor._wrap(self.xp.asarray(self.array.astype(bool).all(axis=_axes(dim, self.ndim), keepdims=keepdim)),
                            self.device)

    def any(self, dim: Any = None, keepdim: _bool = False) -> Tensor:
        return Tensor._wrap(self.xp.asarray(self.array.astype(bool).any(axis=_axes(dim, self.ndim), keepdims=keepdim)),
                            self.device)

    def count_nonzero(self, dim: Any = None) -> Tensor:
        counts = self.xp.count_nonzero(self.array, axis=_axes(dim, self.ndim))
        return Tensor._wrap(self.xp.asarray(counts).astype("int64"), self.device)

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
        try:
            shape = _shape_arg(shape)
        except TypeError:
            if len(shape) == 1 and isinstance(shape[0], (dtypes.DType, str)):
                raise TypeError(f"reshape/view: expected a shape, got the dtype {shape[0]!r} "
                                "(view(dtype) is not supported)") from None
            raise
        n = self.array.size
        if min(shape, default=0) >= 0:
            fits = _prod(shape) == n
        elif min(shape) < -1 or shape.count(-1) > 1:  # one -1 at most, no other negative size
            fits = False
        else:
            known = _prod(s for s in shape if s != -1)
            fits = known > 0 and n % known == 0
        if not fits:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} ({n} elements) into {shape}")
        return _ops.Reshape.apply(self, shape=shape)

    view = reshape

    def contiguous(self, memory_format: Any = None) -> Tensor:
        _check_memory_format("contiguous", memory_format)
        return self

    def clone(self, *, memory_format: Any = None) -> Tensor:
        _check_memory_format("clone", memory_format)
        return _ops.Clone.apply(self)

    def transpose(self, dim0: _int, dim1: _int) -> Tensor:
        axes = list(range(self.ndim))
        d0, d1 = _axis(dim0, self.ndim), _axis(dim1, self.ndim)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return _ops.Permute.apply(self, axes=tuple(axes))

    def permute(self, *dims: Any) -> Tensor:
        dims = _shape_arg(dims)
        ndim = self.array.ndim
        axes = tuple([_axis(d, ndim) for d in dims])
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {ndim} dims of shape {self.shape}")
        return _ops.Permute.apply(self, axes=axes)

    @property
    def T(self) -> Tensor:
        return _ops.Permute.apply(self, axes=tuple(range(self.array.ndim - 1, -1, -1)))

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

    def broadcast_to(self, size: Any) -> Tensor:
        return self.expand(*_shape_arg((size,)))

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

    def ravel(self) -> Tensor:
        return self.reshape(-1)

    def tensor_split(self, indices_or_sections: Any, dim: _int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim``: ``n`` nearly equal ones (the first ``size % n`` one longer), or cut at indices."""
        d = _axis(dim, self.ndim)
        size = self.shape[d]
        if isinstance(indices_or_sections, Tensor):
            indices_or_sections = indices_or_sections.tolist()
        if isinstance(indices_or_sections, numbers.Integral):
            n = _int(indices_or_sections)
            if n <= 0:
                raise RuntimeError(f"tensor_split: number of sections must be larger than 0, got {n}")
            sizes = [size // n + (1 if i < size % n else 0) for i in range(n)]
        else:
            cuts = [min(max(_int(c) + (size if c < 0 else 0), 0), size) for c in indices_or_sections]
            bounds = [0, *cuts, size]
            sizes = [max(0, b - a) for a, b in zip(bounds, bounds[1:])]
        return _Split.apply(self, sizes=tuple(sizes), axis=d) if len(sizes) > 1 else (self[(slice(None),) * d],)

    def hsplit(self, sections: Any) -> tuple[Tensor, ...]:
        return self.tensor_split(sections, 1 if self.ndim > 1 else 0)

    def vsplit(self, sections: Any) -> tuple[Tensor, ...]:
        return self.tensor_split(sections, 0)

    def dsplit(self, sections: Any) -> tuple[Tensor, ...]:
        return self.tensor_split(sections, 2)

    def split_with_sizes(self, split_sizes: Any, dim: _int = 0) -> tuple[Tensor, ...]:
        return self.split(list(split_sizes), dim)

    unsafe_split, unsafe_split_with_sizes = split, split_with_sizes

    def unsafe_chunk(self, chunks: _int, dim: _int = 0) -> tuple[Tensor, ...]:
        return self.chunk(chunks, dim)

    def rot90(self, k: _int = 1, dims: Any = (0, 1)) -> Tensor:
        """Rotated by 90 degrees ``k`` times in the plane of ``dims``, from the first dim towards the second."""
        d0, d1 = (_axis(d, self.ndim) for d in dims)
        if d0 == d1:
            raise RuntimeError(f"rot90: the two dims must differ, got {tuple(dims)}")
        k %= 4
        if k == 1:
            return self.flip(d1).transpose(d0, d1)
        if k == 2:
            return self.flip(d0, d1)
        if k == 3:
            return self.transpose(d0, d1).flip(d1)
        return self.clone()

    def diff(self, n: _int = 1, dim: _int = -1, prepend: Any = None, append: Any = None) -> Tensor:
        """The ``n``-th forward difference along ``dim`` (after joining ``prepend`` and ``append``)."""
        from .creation import cat

        d = _axis(dim, self.ndim)
        x = self
        if prepend is not None or append is not None:
            parts = [p for p in (prepend, self, append) if p is not None]
            x = cat([_tensor_like(p, self) for p in parts], d)
        for _ in range(n):
            m = x.shape[d]
            x = x.narrow(d, 1, max(m - 1, 0)) - x.narrow(d, 0, max(m - 1, 0))
        return x

    def cummax(self, dim: _int) -> Any:
        """Running maxima along ``dim`` and where they were reached (the latest index among equal values)."""
        return self._running("cummax", dim)

    def cummin(self, dim: _int) -> Any:
        return self._running("cummin", dim)

    def _running(self, name: str, dim: _int) -> Any:
        d = _axis(dim, self.ndim)
        kind = getattr(return_types, name)
        if self.ndim == 0:
            return kind(self.clone(), Tensor._wrap(self.xp.zeros((), dtype="int64"), self.device))
        xp = self.xp
        a = xp.moveaxis(self.array, d, 0)
        index = xp.zeros(a.shape, dtype="int64")
        best = a[0].copy() if a.shape[0] else a[:0]
        for i in range(1, a.shape[0]):  # better = at least as large (small): PyTorch keeps the latest index
            better = (a[i] >= best) if name == "cummax" else (a[i] <= best)
            better = better | xp.isnan(a[i])
            best = xp.where(better, a[i], best)
            index[i] = xp.where(better, i, index[i - 1])
        index = xp.moveaxis(index, 0, d)
        return kind(_ops.Gather.apply(self, index=index, axis=d), Tensor._wrap(index, self.device))

    def index_fill(self, dim: _int, index: Tensor, value: Any) -> Tensor:
        """A copy with ``value`` at positions ``index`` along ``dim``."""
        d = _axis(dim, self.ndim)
        index = _tensor_like(index, self)
        mask = self.xp.zeros(self.shape[d] if self.ndim else 1, dtype=bool)
        mask[index.array.reshape(-1)] = True
        shape = [1] * self.ndim
        if self.ndim:
            shape[d] = -1
        return self.masked_fill(Tensor._wrap(mask.reshape(shape) if self.ndim else mask.reshape(()), self.device),
                                value)

    def index_copy(self, dim: _int, index: Tensor, source: Tensor) -> Tensor:
        """A copy with ``source[..., i, ...]`` written at ``index[i]`` along ``dim``."""
        d = _axis(dim, self.ndim)
        index = _tensor_like(index, self)
        shape = [1] * self.ndim
        shape[d] = -1
        full = Tensor._wrap(self.xp.broadcast_to(index.array.reshape(shape), source.shape), self.device)
        return self.scatter(d, full, source)

    def index_put(self, indices: Any, values: Any, accumulate: _bool = False) -> Tensor:
        """A copy with ``self[indices] = values`` (``+=`` when ``accumulate``: repeated indices add up)."""
        index, _ = _normalise_index(tuple(indices), self)
        values = _tensor_like(values, self).to(self.dtype)
        if accumulate:
            return _ops.IndexAccumulate.apply(self, values, index=index)
        return _ops.IndexPut.apply(self, values, index=index)

    def index_put_(self, indices: Any, values: Any, accumulate: _bool = False) -> Tensor:
        return _inplace(self, "index_put_", lambda: self.index_put(indices, values, accumulate))

    def masked_scatter(self, mask: Tensor, source: Tensor) -> Tensor:
        """A copy with the first elements of ``source``, in order, written where ``mask`` is True."""
        mask = _tensor_like(mask, self)
        shape = _broadcast_shapes("masked_scatter", self.shape, mask.shape)
        x = self if shape == self.shape else self.expand(shape)
        m = self.xp.broadcast_to(mask.array, shape)
        count = int(m.sum())
        if source.numel() < count:
            raise RuntimeError(f"masked_scatter: source has {source.numel()} elements, the mask selects {count}")
        return _ops.IndexPut.apply(x, source.reshape(-1)[:count], index=m)

    def take(self, index: Tensor) -> Tensor:
        """Elements of the flattened tensor at ``index`` (the result has index's shape)."""
        index = _tensor_like(index, self)
        n = self.numel()
        _check_index_range("take", self.xp.where(index.array < 0, index.array + n, index.array), n, self.xp)
        return self.reshape(-1)[self.xp.where(index.array < 0, index.array + n, index.array)]

    def dist(self, other: Tensor, p: Any = 2) -> Tensor:
        return (self - other).norm(p)

    def unique(self, sorted: _bool = True, return_inverse: _bool = False, return_counts: _bool = False,
               dim: Any = None) -> Any:
        """The distinct values (sorted), and optionally where each element went and how often each occurs."""
        if dim is not None:
            raise NotImplementedError("unique: dim= is not supported")
        values, inverse, counts = self.xp.unique(self.array, return_inverse=True, return_counts=True)
        out = [Tensor._wrap(values, self.device)]
        if return_inverse:
            out.append(Tensor._wrap(inverse.reshape(self.shape).astype("int64"), self.device))
        if return_counts:
            out.append(Tensor._wrap(counts.astype("int64"), self.device))
        return out[0] if len(out) == 1 else tuple(out)

    def bincount(self, weights: Any = None, minlength: _int = 0) -> Tensor:
        if self.ndim != 1 or self.array.dtype.kind not in "iu":
            raise RuntimeError(f"bincount only supports 1-d non-negative integral inputs, got {self.dtype} "
                               f"of shape {self.shape}")
        w = None if weights is None else _tensor_like(weights, self).array
        return Tensor._wrap(self.xp.bincount(self.array, weights=w, minlength=minlength), self.device)

    def is_nonzero(self) -> _bool:
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'no' if self.numel() == 0 else 'more than one'} "
                               "value is ambiguous")
        return _bool(self.array.reshape(()))

    def is_same_size(self, other: Tensor) -> _bool:
        return self.shape == other.shape

    def is_signed(self) -> _bool:
        return self.array.dtype.kind in "fi"

    def is_complex(self) -> _bool:
        return False

    def is_conj(self) -> _bool:
        return False

    def is_neg(self) -> _bool:
        return False

    def is_inference(self) -> _bool:
        return False

    def isreal(self) -> Tensor:
        return Tensor._wrap(self.xp.ones(self.shape, dtype=bool), self.device)

    def conj(self) -> Tensor:
        return self

    conj_physical = resolve_conj = resolve_neg = real = conj

    @property
    def H(self) -> Tensor:  # noqa: N802 - PyTorch's name
        if self.ndim != 2:
            raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors), got {self.ndim}-D")
        return self.transpose(0, 1)

    @property
    def mH(self) -> Tensor:  # noqa: N802 - PyTorch's name
        return self.mT

    def adjoint(self) -> Tensor:
        return self.mT

    @property
    def is_cpu(self) -> _bool:
        return self.device == "cpu"

    @property
    def itemsize(self) -> _int:
        return _int(self.array.dtype.itemsize)

    @property
    def nbytes(self) -> _int:
        return _int(self.array.nbytes)

    @property
    def output_nr(self) -> _int:
        return self._output_nr

    def is_pinned(self) -> _bool:
        return False

    def pin_memory(self) -> Tensor:
        return self

    def share_memory_(self) -> Tensor:
        return self

    def stride(self, dim: Any = None) -> Any:
        """Element strides (NumPy's byte strides divided by the item size), as PyTorch reports them."""
        strides = tuple(_int(s) // self.array.dtype.itemsize for s in self.array.strides)
        return strides if dim is None else strides[_axis(dim, self.ndim)]

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def unflatten(self, dim: _int, sizes: Any) -> Tensor:
        """Dim ``dim`` split into ``sizes`` (one of them may be -1)."""
        d = _axis(dim, self.ndim)
        sizes = tuple(sizes)
        n = self.shape[d]
        if sizes.count(-1) == 1:
            known = _prod(s for s in sizes if s != -1)
            sizes = tuple(n // known if s == -1 else s for s in sizes) if known and n % known == 0 else sizes
        if _prod(sizes) != n or min(sizes, default=0) < 0:
            raise RuntimeError(f"unflatten: sizes {tuple(sizes)} don't multiply up to the size of dim {dim} ({n}) "
                               f"of a tensor of shape {self.shape}")
        return self.reshape(self.shape[:d] + sizes + self.shape[d + 1 :])

    def narrow(self, dim: _int, start: Any, length: _int) -> Tensor:
        """Elements ``start`` to ``start + length`` of dim ``dim`` (a view)."""
        d = _axis(dim, self.ndim)
        n = self.shape[d]
        start = _int(start)
        if start < 0:
            start += n
        if not 0 <= start <= n or length < 0 or start + length > n:
            raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dim {dim} of size {n}")
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def select(self, dim: _int, index: _int) -> Tensor:
        d = _axis(dim, self.ndim)
        n = self.shape[d]
        if not -n <= index < n:
            raise IndexError(f"select: index {index} is out of range for dim {dim} of size {n}")
        return self[(slice(None),) * d + (index,)]

    def movedim(self, source: Any, destination: Any) -> Tensor:
        src: list[Any] = [source] if isinstance(source, numbers.Integral) else list(source)
        dst: list[Any] = [destination] if isinstance(destination, numbers.Integral) else list(destination)
        if len(src) != len(dst):
            raise ValueError(f"movedim: source {source} and destination {destination} name different numbers of dims")
        src = [_axis(d, self.ndim) for d in src]
        dst = [_axis(d, self.ndim) for d in dst]
        if len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ValueError(f"movedim: repeated dim in source {source} or destination {destination}")
        order = [d for d in range(self.ndim) if d not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return self.permute(*order)

    moveaxis = movedim

    def swapaxes(self, axis0: _int, axis1: _int) -> Tensor:
        return self.transpose(axis0, axis1)

    swapdims = swapaxes

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.transpose(0, 1) if self.ndim == 2 else self

    def flip(self, *dims: Any) -> Tensor:
        axes = _axes(_shape_arg(dims) if dims else (), self.ndim) or ()
        return self[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(self.ndim))]

    def fliplr(self) -> Tensor:
        if self.ndim < 2:
            raise RuntimeError(f"fliplr: input must be >= 2-d, got shape {self.shape}")
        return self.flip(1)

    def flipud(self) -> Tensor:
        if self.ndim < 1:
            raise RuntimeError("flipud: input must be >= 1-d")
        return self.flip(0)

    def roll(self, shifts: Any, dims: Any = None) -> Tensor:
        """Elements shifted along ``dims`` (over the flattened tensor when None), wrapping around."""
        if dims is None:
            if not isinstance(shifts, numbers.Integral):
                raise RuntimeError("roll: with dims=None, shifts must be a single int")
            return self.flatten().roll(shifts, 0).reshape(self.shape)
        shift_list: list[Any] = [shifts] if isinstance(shifts, numbers.Integral) else list(shifts)
        dim_list: list[Any] = [dims] if isinstance(dims, numbers.Integral) else list(dims)
        if len(shift_list) != len(dim_list):
            raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
        axes = tuple(_axis(dim, self.ndim) for dim in dim_list)
        shift_ints = tuple(_int(shift) for shift in shift_list)
        return _ops.Roll.apply(self, shifts=shift_ints, axes=axes)

    def repeat(self, *sizes: Any) -> Tensor:
        """The tensor tiled ``sizes[i]`` times along each dim (new leading dims where there are more sizes)."""
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(f"repeat: the number of repeat dims ({len(sizes)}) can not be smaller than the number "
                               f"of dims of the tensor ({self.ndim})")
        if min(sizes, default=0) < 0:
            raise RuntimeError(f"repeat: negative repeats {sizes}")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        x = self.reshape(shape)
        interleaved = tuple(v for pair in ((1, n) for n in shape) for v in pair)
        target = tuple(v for pair in zip(sizes, shape) for v in pair)
        return x.reshape(interleaved).expand(*target).reshape(tuple(r * n for r, n in zip(sizes, shape)))

    def tile(self, *dims: Any) -> Tensor:
        dims_t = _shape_arg(dims)
        return self.repeat((1,) * (self.ndim - len(dims_t)) + dims_t)

    def repeat_interleave(self, repeats: Any, dim: _int | None = None, *, output_size: _int | None = None) -> Tensor:
        """Each element repeated ``repeats`` times (an int, or a tensor of one count per element) along ``dim``."""
        x = self.flatten() if dim is None else self
        d = 0 if dim is None else _axis(dim, self.ndim)
        n = x.shape[d]
        xp = self.xp
        counts = repeats.array if isinstance(repeats, Tensor) else xp.asarray(repeats)
        if counts.dtype.kind not in "iu" or (counts.ndim and counts.shape != (n,)) or counts.ndim > 1:
            raise RuntimeError(f"repeat_interleave: repeats must be an int or {n} ints, "
                               f"got shape {tuple(counts.shape)}")
        if bool((counts < 0).any()):
            raise RuntimeError("repeat_interleave: repeats can not be negative")
        index = xp.repeat(xp.arange(n), counts.tolist() if counts.ndim else int(counts))  # (CuPy takes no array)
        return x[(slice(None),) * d + (index,)]

    def unbind(self, dim: _int = 0) -> tuple[Tensor, ...]:
        d = _axis(dim, self.ndim)
        if self.shape[d] == 0:
            return ()
        return tuple(p.squeeze(d) for p in self.split(1, d))

    def index_select(self, dim: _int, index: Tensor) -> Tensor:
        index = _tensor_like(index, self)
        if index.dtype.kind not in "iu" or index.ndim > 1:
            raise RuntimeError(f"index_select: index must be a 1-D integer tensor, got {index.dtype} of shape "
                               f"{index.shape}")
        d = _axis(dim, self.ndim)
        _check_index_range("index_select", index.array, self.shape[d] if self.ndim else 1, self.xp)
        if self.ndim == 0:
            return self.reshape(1)[index.reshape(-1)].reshape(index.shape)
        return self[(slice(None),) * d + (index.reshape(-1),)]

    def take_along_dim(self, indices: Tensor, dim: _int | None = None) -> Tensor:
        """``gather`` with the index broadcast against the tensor outside ``dim`` (flattened when None)."""
        if dim is None:
            return self.flatten().gather(0, indices.flatten())
        d = _axis(dim, self.ndim)
        if indices.ndim != self.ndim:
            raise RuntimeError(f"take_along_dim: indices have {indices.ndim} dims, the tensor {self.ndim}")
        shape = []
        for i, (a, b) in enumerate(zip(self.shape, indices.shape)):
            if i != d and a != b and 1 not in (a, b):
                raise RuntimeError(f"take_along_dim: shapes {self.shape} and {indices.shape} do not broadcast "
                                   f"outside dim {dim}")
            shape.append(max(a, b))
        src_shape = tuple(self.shape[i] if i == d else n for i, n in enumerate(shape))
        idx_shape = tuple(indices.shape[i] if i == d else n for i, n in enumerate(shape))
        src = self if src_shape == self.shape else self.expand(src_shape)
        idx = Tensor._wrap(self.xp.broadcast_to(indices.array, idx_shape), self.device)
        return src.gather(d, idx)

    def masked_select(self, mask: Tensor) -> Tensor:
        mask = _tensor_like(mask, self)
        if mask.dtype.kind != "b":
            raise RuntimeError(f"masked_select: expected a bool mask, got {mask.dtype}")
        _check_same_device("masked_select", self, mask)
        x = self
        if mask.shape != self.shape:
            shape = _broadcast_shapes("masked_select", self.shape, mask.shape)
            x = self.expand(shape) if shape != self.shape else self
            mask = Tensor._wrap(self.xp.broadcast_to(mask.array, shape), self.device)
        return x[mask]

    def nonzero(self, *, as_tuple: _bool = False) -> Any:
        """The indices of the non-zero elements: an (n, ndim) int64 tensor, or one 1-D tensor per dim."""
        found = self.xp.nonzero(self.array) if self.ndim else self.xp.nonzero(self.array.reshape(1))
        if as_tuple:
            return tuple(Tensor._wrap(i.astype("int64", copy=False), self.device) for i in found)
        stacked = self.xp.stack(found, axis=1) if found else self.xp.zeros((0, 0), dtype="int64")
        if self.ndim == 0:
            stacked = stacked[:, :0]
        return Tensor._wrap(stacked.astype("int64", copy=False), self.device)

    argwhere = nonzero

    def where(self, condition: Tensor, other: Any) -> Tensor:
        from .creation import where

        return where(condition, self, other)

    def _scatter_args(self, name: str, dim: _int, index: Tensor) -> tuple[_int, Tensor]:
        index = _tensor_like(index, self)
        if index.dtype.kind not in "iu":
            raise RuntimeError(f"{name}: index must be an integer tensor, got {index.dtype}")
        if index.ndim != self.ndim:
            raise RuntimeError(f"{name}: index has {index.ndim} dims but the tensor has {self.ndim} (shape "
                               f"{self.shape})")
        d = _axis(dim, self.ndim)
        for i, (m, n) in enumerate(zip(index.shape, self.shape)):
            if i != d and m > n:
                raise RuntimeError(f"{name}: index shape {index.shape} exceeds the tensor's {self.shape} in dim {i}")
        _check_same_device(name, self, index)
        _check_index_range(name, index.array, self.shape[d] if self.ndim else 1, self.xp)
        return d, index

    def scatter(self, dim: _int, index: Tensor, src: Any = None, *, value: Any = None, reduce: Any = None) -> Tensor:
        """A copy with ``src`` (a tensor, or the number ``value``) written at ``index`` along ``dim``."""
        if reduce is not None:
            if reduce == "add":
                if not isinstance(src, Tensor):
                    src = self.new_full(_tensor_like(index, self).shape, src if value is None else value)
                return self.scatter_add(dim, index, src)
            raise ValueError(f"scatter: reduce={reduce!r} is not supported (use scatter_add, or reduce='add')")
        if src is None and value is None:
            raise TypeError("scatter: give src (a Tensor) or value (a number)")
        d, index = self._scatter_args("scatter", dim, index)
        if isinstance(src if src is not None else value, Tensor):
            src = src if src is not None else value
            _check_same_device("scatter", self, src)
            if any(m > n for m, n in zip(index.shape, src.shape)) or src.ndim != index.ndim:
                raise RuntimeError(f"scatter: src shape {src.shape} is smaller than index shape {index.shape}")
            if src.array.dtype != self.array.dtype:
                src = src.to(self.dtype)
            return _ops.Scatter.apply(self, src, index=index.array, axis=d)
        return _ops.Scatter.apply(self, _scalar_value(src if src is not None else value), index=index.array, axis=d)

    def scatter_add(self, dim: _int, index: Tensor, src: Tensor) -> Tensor:
        """A copy with ``src`` added at ``index`` along ``dim`` (repeated indices add up)."""
        d, index = self._scatter_args("scatter_add", dim, index)
        if not isinstance(src, Tensor):
            raise TypeError(f"scatter_add: src must be a Tensor, got {type(src).__name__}")
        _check_same_device("scatter_add", self, src)
        if any(m > n for m, n in zip(index.shape, src.shape)) or src.ndim != index.ndim:
            raise RuntimeError(f"scatter_add: src shape {src.shape} is smaller than index shape {index.shape}")
        if src.array.dtype != self.array.dtype:
            src = src.to(self.dtype)
        return _ops.ScatterAdd.apply(self, src, index=index.array, axis=d)

    def scatter_(self, dim: _int, index: Tensor, src: Any = None, *, value: Any = None, reduce: Any = None) -> Tensor:
        return _inplace(self, "scatter_", lambda: self.scatter(dim, index, src, value=value, reduce=reduce))

    def scatter_add_(self, dim: _int, index: Tensor, src: Tensor) -> Tensor:
        return _inplace(self, "scatter_add_", lambda: self.scatter_add(dim, index, src))

    def index_add(self, dim: _int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
        """A copy with ``alpha * source[..., i, ...]`` added at ``index[i]`` along ``dim``."""
        index = _tensor_like(index, self)
        d = _axis(dim, self.ndim)
        if index.ndim != 1 or index.dtype.kind not in "iu" or source.shape[d] != index.shape[0]:
            raise RuntimeError(f"index_add: index must be a 1-D integer tensor with one entry per slice of source "
                               f"along dim {dim}, got {index.shape} for source {source.shape}")
        shape = [1] * self.ndim
        shape[d] = -1
        full = Tensor._wrap(self.xp.broadcast_to(index.array.reshape(shape), source.shape), self.device)
        return self.scatter_add(d, full, source if alpha == 1 else source * alpha)

    def index_add_(self, dim: _int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
        return _inplace(self, "index_add_", lambda: self.index_add(dim, index, source, alpha=alpha))

    def diag(self, diagonal: _int = 0) -> Tensor:
        """A 1-D tensor as the ``diagonal``-th diagonal of a square matrix, or that diagonal of a 2-D tensor."""
        xp = self.xp
        k = diagonal
        if self.ndim == 1:
            n = self.shape[0] + abs(k)
            rows = xp.arange(self.shape[0]) + max(-k, 0)
            cols = xp.arange(self.shape[0]) + max(k, 0)
            base = Tensor._wrap(xp.zeros((n, n), dtype=self.array.dtype), self.device)
            return _ops.IndexPut.apply(base, self, index=(rows, cols))
        if self.ndim == 2:
            return self.diagonal(k)
        raise RuntimeError(f"diag: expected a 1-D or 2-D tensor, got shape {self.shape}")

    def diagonal(self, offset: _int = 0, dim1: _int = 0, dim2: _int = 1) -> Tensor:
        d1, d2 = _axis(dim1, self.ndim), _axis(dim2, self.ndim)
        x = self.movedim((d1, d2), (-2, -1))
        rows, cols = x.shape[-2], x.shape[-1]
        n = max(0, min(rows - max(-offset, 0), cols - max(offset, 0)))
        r = self.xp.arange(n) + max(-offset, 0)
        c = self.xp.arange(n) + max(offset, 0)
        return x[..., r, c]

    def trace(self) -> Tensor:
        if self.ndim != 2:
            raise RuntimeError(f"trace: expected a matrix, got shape {self.shape}")
        return self.diagonal().sum()

    def new_tensor(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: _bool = False) -> Tensor:
        from .creation import tensor

        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_zeros(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: _bool = False) -> Tensor:
        from .creation import zeros

        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: _bool = False) -> Tensor:
        from .creation import ones

        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_full(self, size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
                 requires_grad: _bool = False) -> Tensor:
        from .creation import full

        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: _bool = False) -> Tensor:
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def is_floating_point(self) -> _bool:
        return self.array.dtype.kind == "f"

    def is_contiguous(self, memory_format: Any = None) -> _bool:
        return True

    def element_size(self) -> _int:
        return int(self.array.dtype.itemsize)

    def nelement(self) -> _int:
        return int(self.array.size)

    def __getitem__(self, index: Any) -> Tensor:
        index, advanced = _normalise_index(index, self)
        out = _ops.GetItem.apply(self, index=index, advanced=advanced)
        vc = out._vc
        if vc is self._vc and vc is not None:  # a view: note its base and index, so _rebind can regenerate it
            _note_indexing_view(vc, out, self, index)
        return out

    def __setitem__(self, index: Any, value: Any) -> None:
        """``x[index] = value`` in place; while recording the graph, differentiable for both (see ``_rebind``)."""
        _check_leaf_inplace("setitem", self)
        index, advanced = _normalise_index(index, self)
        if isinstance(value, Tensor):
            _check_same_device("setitem", self, value)
            if autograd._modes.grad_enabled and (self.requires_grad or value.requires_grad):
                if value.array.dtype != self.array.dtype:
                    value = value.to(self.dtype)
                self._rebind("setitem", _ops.IndexPut.apply(self, value, index=index))
                return
        elif autograd._modes.grad_enabled and self.requires_grad:
            self._rebind("setitem", _ops.IndexPut.apply(self, _scalar_value(value), index=index))
            return
        _check_writable("setitem", self)
        try:
            self.array[index] = value.array if isinstance(value, Tensor) else value
        except (ValueError, IndexError, TypeError) as err:
            kind = next(k for k in (IndexError, ValueError, TypeError) if isinstance(err, k))
            raise kind(f"setitem on a tensor of shape {self.shape}: {err}") from None
        self._bump_version()


_new = object.__new__


# ---------------------------------------------------------------------- in-place helpers
def _check_memory_format(name: str, memory_format: Any) -> None:
    if memory_format is not None and memory_format not in ("contiguous_format", "preserve_format"):
        raise ValueError(f"{name}: memory_format={memory_format} is not supported (tensors are always contiguous)")


def _integer_op(name: str, a: Tensor, b: Any) -> Tensor:
    other = _tensor_like(b, a)
    if a.array.dtype.kind not in "iu" or other.array.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: expected integer tensors, got {a.dtype} and {other.dtype}")
    return Tensor._wrap(getattr(a.xp, name)(a.array, other.array), a.device)


def _scaled_sum(a: Tensor, beta: Any, b: Tensor, alpha: Any) -> Tensor:
    """``beta * a + alpha * b`` (beta = 0 ignores a, NaN included, as PyTorch)."""
    b = b if alpha == 1 else b * alpha
    if beta == 0:
        return b
    return (a if beta == 1 else a * beta) + b


def _note_indexing_view(counter: list[Any], view: Tensor, base: Tensor, index: Any) -> None:
    """Mark ``view``'s entry among the counter's sharers as made by ``base[index]`` (see autograd.share_counter)."""
    refs = counter[1]
    last = refs[-1]
    if type(last) is not tuple and last is not autograd._unknown_sharer and last() is view:
        refs[-1] = (last, _weakref(base), index)  # (CPython hands back the tensor's one plain weak reference)


def _memory_family(name: str, t: Tensor, refs: list[Any]) -> tuple[Any, list[Any]]:
    """The live tensors sharing ``t``'s memory, as ``_rebind`` needs them.

    Returns ``((base, index), [])`` when ``t`` is a view made by indexing a live base (the change then goes
    into the base), else ``(None, views)``: the indexing views hanging from ``t``, directly or through each
    other, parents first, to regenerate once ``t`` is redirected. Any other live sharer (a reshape,
    ``detach()``, a view whose base is gone) could not follow: that raises.
    """
    entries = []
    for r in refs:
        ref, parent_ref, index = r if type(r) is tuple else (r, None, None)
        other = ref()
        if other is None:
            continue
        parent = parent_ref() if parent_ref is not None else None
        if other is t:
            if parent is not None:
                return (parent, index), []
            continue
        entries.append((other, parent, index))
    family = [t]
    views = []
    grew = True
    while grew:
        grew = False
        for entry in entries:
            other, parent = entry[0], entry[1]
            if parent is not None and any(parent is f for f in family) and not any(other is f for f in family):
                family.append(other)
                views.append(entry)
                grew = True
    if len(views) != len(entries):
        raise RuntimeError(
            f"{name}: in-place operation on a tensor that shares memory with other tensors (a reshape or "
            "transpose of it, a detach()ed copy, or a view made under no_grad) while recording the graph is "
            "not supported; use the out-of-place form, or clone() first"
        )
    return None, views


def _check_leaf_inplace(name: str, t: Tensor) -> None:
    if t.requires_grad and t.grad_fn is None and autograd._modes.grad_enabled:
        raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place operation "
                           "(change its values under tl.no_grad(), as optimizers do)")


def _check_writable(name: str, t: Tensor) -> None:
    flags = t.array.flags
    if not getattr(flags, "writeable", True):
        raise RuntimeError(f"{name}: unsupported operation: more than one element of the written-to tensor refers "
                           "to a single memory location (an expand()ed tensor is read-only); clone() it first")


def _check_cast(name: str, src: Any, dst: Any) -> None:
    """PyTorch's in-place rule: the result may not lose kind (a float result into an int tensor, say)."""
    if _KIND_RANK[src.kind] > _KIND_RANK[dst.kind]:
        raise RuntimeError(f"{name}: result type {src} can't be cast to the desired output type {dst}")


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}  # bool < integers < floats (torch.can_cast)


def _check_broadcast(name: str, src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    ok = len(src) <= len(dst) and all(a in (1, b) for a, b in zip(reversed(src), reversed(dst)))
    if not ok:
        raise RuntimeError(f"{name}: output with shape {dst} doesn't match the broadcast shape of {src}")


def _inplace(t: Tensor, name: str, compute: Any) -> Tensor:
    """Run ``compute()`` (the out-of-place op) and make its result ``t``'s value, in place."""
    _check_leaf_inplace(name, t)
    result = compute()
    if autograd._modes.grad_enabled and (t.requires_grad or result.requires_grad):
        return t._rebind(name, result)
    out = result.array
    if out.shape != t.shape:
        raise RuntimeError(f"{name}: output with shape {t.shape} doesn't match the broadcast shape {out.shape}")
    if out.dtype != t.array.dtype:
        _check_cast(name, out.dtype, t.array.dtype)
    _check_writable(name, t)
    if out is not t.array:
        t.array[...] = out
    t._bump_version()
    return t


_INPLACE_UFUNCS = {"add_": "add", "sub_": "subtract", "mul_": "multiply", "div_": "true_divide"}
_OUT_OF_PLACE = {"add_": "add", "sub_": "sub", "mul_": "mul", "div_": "div"}


def _inplace_arith(t: Tensor, name: str, other: Any, alpha: Any) -> Tensor:
    """add_/sub_/mul_/div_: straight into ``t``'s memory (one ufunc) when no graph is recorded."""
    _check_leaf_inplace(name, t)
    needs = t.requires_grad or (isinstance(other, Tensor) and other.requires_grad)
    recording = autograd._modes.grad_enabled and needs
    if recording or not (isinstance(other, Tensor) or type(other) in (int, float, bool)):
        method = getattr(t, _OUT_OF_PLACE[name])
        return _inplace(t, name, lambda: method(other, alpha=alpha) if alpha != 1 else method(other))
    a = t.array
    if isinstance(other, Tensor):
        _check_same_device(name, t, other)
        _check_cast(name, _promoted_dtype(a.dtype, other.array.dtype), a.dtype)
        _check_broadcast(name, other.shape, t.shape)
        b = other.array
    else:
        if isinstance(other, float) and a.dtype.kind != "f":
            raise RuntimeError(f"{name}: result type Float can't be cast to the desired output type {a.dtype}")
        b = other
    if name == "div_" and a.dtype.kind != "f":
        raise RuntimeError(f"{name}: result type Float can't be cast to the desired output type {a.dtype}")
    _check_writable(name, t)
    if alpha != 1:
        b = b * alpha
    getattr(t.xp, _INPLACE_UFUNCS[name])(a, b, out=a, casting="unsafe")
    t._bump_version()
    return t


def _unary_inplace(name: str) -> Any:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return _inplace(self, name + "_", lambda: getattr(self, name)(*args, **kwargs))

    method.__name__ = name + "_"
    method.__doc__ = f"In-place :meth:`{name}`."
    return method


# ---------------------------------------------------------------------- helpers
def _prod(values: Any) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _axis(dim: int, ndim: int) -> int:
    """A dim in [-ndim, ndim) as a non-negative axis (0-d tensors accept 0 and -1)."""
    if type(dim) is int and -ndim <= dim < ndim:  # (the usual case, without the ABC check below)
        return dim % ndim
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
    for n in shape:  # (plain ints, the usual case, skip the ABC checks below: they cost a microsecond a dim)
        if type(n) is not int:
            break
    else:
        return shape
    for n in shape:
        if not isinstance(n, numbers.Integral) or isinstance(n, bool):
            raise TypeError(f"shape entries must be ints, got {shape}")
    return tuple(int(n) for n in shape)


class return_types:  # noqa: N801 - PyTorch's torch.return_types
    """The named tuples reductions along a dim return, as ``torch.return_types``: ``values, indices = x.max(1)``."""

    max = namedtuple("max", ["values", "indices"])
    min = namedtuple("min", ["values", "indices"])
    sort = namedtuple("sort", ["values", "indices"])
    topk = namedtuple("topk", ["values", "indices"])
    kthvalue = namedtuple("kthvalue", ["values", "indices"])
    median = namedtuple("median", ["values", "indices"])
    mode = namedtuple("mode", ["values", "indices"])
    aminmax = namedtuple("aminmax", ["min", "max"])
    frexp = namedtuple("frexp", ["mantissa", "exponent"])
    cummax = namedtuple("cummax", ["values", "indices"])
    cummin = namedtuple("cummin", ["values", "indices"])


def _check_reduction_dims(name: str, t: Tensor, axes: tuple[int, ...] | None) -> None:
    """A max/min over an empty dim has no value: PyTorch's error, naming the dim."""
    if t.array.size:
        return
    if axes is None:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           f"Specify the reduction dim with the 'dim' argument (shape {t.shape}).")
    for a in axes:
        if t.shape[a] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {a} to have non-zero size (shape {t.shape}).")


def _select_along(name: str, t: Tensor, dim: Any, keepdim: bool) -> Any:
    """max/min along one dim: ``(values, indices)``; the gradient goes to the returned index (a gather)."""
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{name}(): dim must be an int, got {type(dim).__name__} (use amax/amin for several dims)")
    d = _axis(dim, t.ndim)
    kind = getattr(return_types, name)
    if t.ndim == 0:
        return kind(t.clone(), Tensor._wrap(t.xp.zeros((), dtype="int64"), t.device))
    _check_reduction_dims(name, t, (d,))
    arg = t.array.argmax if name == "max" else t.array.argmin
    index = arg(axis=d, keepdims=True)
    values = _ops.Gather.apply(t, index=index, axis=d)
    if not keepdim:
        values, index = values.squeeze(d), index.squeeze(d)
    return kind(values, Tensor._wrap(index.astype("int64", copy=False), t.device))


def _sort_index(xp: Any, a: Any, axis: int, descending: bool) -> Any:
    """Stable sort order along ``axis``; descending keeps equal elements in order and puts NaN first."""
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable").astype("int64", copy=False)
    n = a.shape[axis]
    reverse = xp.argsort(xp.flip(a, axis), axis=axis, kind="stable")
    return xp.flip(n - 1 - reverse, axis).astype("int64", copy=False)


def _pick_sorted(t: Tensor, d: int, position: int, keepdim: bool, kind: Any) -> Any:
    """The element at ``position`` of ``t`` sorted along ``d``, and its index."""
    if t.ndim == 0:
        return kind(t.clone(), Tensor._wrap(t.xp.zeros((), dtype="int64"), t.device))
    order = _sort_index(t.xp, t.array, d, False)
    lead = (slice(None),) * d
    index = order[lead + (slice(position, position + 1),)]
    values = _ops.Gather.apply(t, index=index, axis=d)
    if not keepdim:
        values, index = values.squeeze(d), index.squeeze(d)
    return kind(values, Tensor._wrap(index, t.device))


def _broadcast_shapes(name: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise RuntimeError(f"{name}: shapes {a} and {b} do not broadcast")
    return tuple(max(x, y) if 0 not in (x, y) else 0 for x, y in zip(a, b))


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
    return Tensor._wrap(t.array.astype(dtypes.get_default_dtype()), t.device)


def _tensor_like(value: Any, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    return Tensor(value, device=like.device)


def _promoted_dtype(da: Any, db: Any) -> Any:
    """PyTorch's result dtype for two dtypes: a float meeting an int or bool stays that float."""
    if da == db:
        return da
    fa, fb = _is_float(da), _is_float(db)
    if fa and not fb:
        return da
    if fb and not fa:
        return db
    return dtypes.result_type(da, db)


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


def _bitwise(name: str, a: Tensor, b: Any) -> Tensor:
    """&, |, ^ on bool or integer tensors (no gradient)."""
    other = b.array.dtype if isinstance(b, Tensor) else None
    if a.array.dtype.kind not in "iub" or (other is not None and other.kind not in "iub") or isinstance(b, float):
        raise TypeError(f"{name} is only defined for integer and bool tensors, got {a.dtype}"
                        f" and {other if other is not None else type(b).__name__}")
    return _compare(name, a, b)


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
        except ValueError as err:  # ragged nested lists, as PyTorch's ValueError
            raise ValueError(f"cannot make a tensor from {type(data).__name__}: {err}") from None
        except TypeError as err:
            raise TypeError(f"cannot make a tensor from {type(data).__name__}: {err}") from None
        if array.dtype.kind == "O" or array.dtype.kind in "USV":
            raise TypeError(f"cannot make a tensor from {type(data).__name__} (got NumPy dtype {array.dtype})")
        if dtype is None and array.dtype.kind == "f":
            array = array.astype(dtypes.get_default_dtype())
        elif dtype is None and array.dtype.kind in "iu":
            array = array.astype("int64")
        src = "cpu"
    if dtype is not None:
        dt = dtypes.check_dtype(dtype)
        if array.dtype != dt:
            array = array.astype(dt)
    else:
        dtypes.check_dtype(array.dtype)
    if device is not None:
        dev = backend.canonical_device(device)
    else:  # tensors and GPU arrays stay where they are; host data goes to the default device
        dev = src if isinstance(data, Tensor) or src != "cpu" else backend.get_default_device()
    return backend.to_device(array, dev), dev


for _name in ("exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "neg", "sin", "cos", "square", "exp2", "expm1",
              "log2", "log10", "log1p", "rsqrt", "reciprocal", "tan", "asin", "acos", "atan", "sinh", "cosh", "erf",
              "floor", "ceil", "round", "trunc", "sign", "frac", "fmod", "remainder", "floor_divide", "lerp",
              "addcmul", "addcdiv", "atan2", "clamp_min", "clamp_max", "logical_not", "logical_and", "logical_or",
              "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "gelu", "asinh", "acosh",
              "atanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "arctan2", "deg2rad", "rad2deg",
              "sgn", "logit", "xlogy", "hypot", "copysign", "heaviside", "nan_to_num", "sinc", "float_power",
              "ldexp", "gcd", "lcm", "nextafter", "fix", "negative", "absolute", "subtract", "multiply", "divide",
              "true_divide", "addmm", "addmv", "addbmm", "baddbmm", "addr", "index_fill", "index_copy",
              "masked_scatter", "tril", "triu", "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal",
              "less", "less_equal", "not_equal", "cumsum", "cumprod", "erfc"):
    setattr(Tensor, _name + "_", _unary_inplace(_name))

autograd.Tensor = Tensor
