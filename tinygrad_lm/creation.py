"""Functions that make tensors: from data, filled, ranges, random."""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from . import backend, dtypes, generators
from . import ops as _ops
from .tensor import Tensor, _axis, _binary, _promote, _promoted_dtype, _shape_arg, _tensor_like


def _device(device: Any) -> str:
    return backend.canonical_device(device)


def _float_dtype(dtype: Any) -> Any:
    if dtype is None:
        return dtypes.get_default_dtype()
    dt = dtypes.check_dtype(dtype)
    return dt


def _new_shape(name: str, shape: Any) -> tuple[int, ...]:
    """The shape of a tensor to create: ints, none negative (the error names the offending size)."""
    shape = _shape_arg(shape)
    for n in shape:
        if n < 0:
            raise ValueError(f"{name}: negative dimension {n} in shape {shape}")
    return shape


# PyTorch's layout and memory-format markers; only the dense (strided) layout exists here.
strided = "strided"
contiguous_format = "contiguous_format"
preserve_format = "preserve_format"


def _check_unsupported(name: str, layout: Any = None, memory_format: Any = None) -> None:
    """Refuse, naming it, what would be silently different here (``pin_memory`` is accepted: on CPUs it is a no-op)."""
    if layout is not None and str(layout).replace("torch.", "") not in (strided, "tinygrad_lm.strided"):
        raise TypeError(f"{name}: layout={layout} is not supported (only the dense, strided layout exists)")
    if memory_format is not None and memory_format not in (contiguous_format, preserve_format):
        raise ValueError(f"{name}: memory_format={memory_format} is not supported (tensors are always contiguous)")


def _size_arg(shape: tuple[Any, ...], size: Any) -> Any:
    if size is not None:
        if shape:
            raise TypeError("give the shape either positionally or as size=, not both")
        return (size,) if isinstance(size, int) else tuple(size)
    return shape


def _finish(array: Any, device: str, requires_grad: bool) -> Tensor:
    t = Tensor._wrap(array, device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python numbers and lists, NumPy/CuPy arrays, tensors).

    Python floats become the default float dtype (float32), Python ints int64, bools bool;
    arrays keep their dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.array
    t = Tensor(data, dtype=dtype, device=device)
    if t.array is data:
        t.array = t.array.copy()
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_numpy(array: Any) -> Tensor:
    """A CPU tensor sharing memory with the NumPy array (dtype kept)."""
    if not backend.is_backend_array(array) or backend.device_of(array) != "cpu":
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    dtypes.check_dtype(array.dtype)
    return Tensor._wrap(array, "cpu")


def zeros(*shape: Any, size: Any = None, out: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
          requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    _check_unsupported("zeros", layout)
    dev = _device(device)
    shape = _new_shape("zeros", _size_arg(shape, size))
    return _out(out, _finish(Tensor._xp_of(dev).zeros(shape, dtype=_float_dtype(dtype)), dev, requires_grad))


def ones(*shape: Any, size: Any = None, out: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
         requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    _check_unsupported("ones", layout)
    dev = _device(device)
    shape = _new_shape("ones", _size_arg(shape, size))
    return _out(out, _finish(Tensor._xp_of(dev).ones(shape, dtype=_float_dtype(dtype)), dev, requires_grad))


def empty(*shape: Any, size: Any = None, out: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
          requires_grad: bool = False, pin_memory: bool = False, memory_format: Any = None) -> Tensor:
    """A tensor whose values are not set (zeros here: NumPy's uninitialised memory buys nothing at this scale)."""
    _check_unsupported("empty", layout, memory_format)
    dev = _device(device)
    shape = _new_shape("empty", _size_arg(shape, size))
    return _out(out, _finish(Tensor._xp_of(dev).zeros(shape, dtype=_float_dtype(dtype)), dev, requires_grad))


def full(size: Any, fill_value: Any, *, out: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
         requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    _check_unsupported("full", layout)
    dev = _device(device)
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        if isinstance(fill_value, bool):
            dtype = "bool"
        elif isinstance(fill_value, numbers.Integral):
            dtype = "int64"
    shape = _new_shape("full", size if isinstance(size, (tuple, list)) else (size,))
    array = Tensor._xp_of(dev).full(shape, fill_value, dtype=_float_dtype(dtype))
    return _out(out, _finish(array, dev, requires_grad))


def _out(out: Any, result: Tensor) -> Tensor:
    """PyTorch's ``out=`` of a creation function: ``out`` takes the result's shape, dtype and values."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a Tensor, got {type(out).__name__}")
    out.array = backend.to_device(result.array, out.device)
    out._bump_version()
    return out


def _like(name: str, t: Any, layout: Any, memory_format: Any) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(t).__name__}")
    _check_unsupported(name, layout, memory_format)


def zeros_like(t: Tensor, *, dtype: Any = None, layout: Any = None, device: Any = None, requires_grad: bool = False,
               memory_format: Any = None) -> Tensor:
    _like("zeros_like", t, layout, memory_format)
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, *, dtype: Any = None, layout: Any = None, device: Any = None, requires_grad: bool = False,
              memory_format: Any = None) -> Tensor:
    _like("ones_like", t, layout, memory_format)
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def empty_like(t: Tensor, *, dtype: Any = None, layout: Any = None, device: Any = None, requires_grad: bool = False,
               memory_format: Any = None) -> Tensor:
    _like("empty_like", t, layout, memory_format)
    return empty(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: Any, *, dtype: Any = None, layout: Any = None, device: Any = None,
              requires_grad: bool = False, memory_format: Any = None) -> Tensor:
    _like("full_like", t, layout, memory_format)
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def linspace(start: Any, end: Any, steps: int, *, out: Any = None, dtype: Any = None, layout: Any = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (computed in float64, then cast)."""
    _check_unsupported("linspace", layout)
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise RuntimeError(f"linspace: number of steps must be a non-negative int, got {steps!r}")
    start, end = _real(start), _real(end)
    dev = _device(device)
    values = Tensor._xp_of(dev).linspace(start, end, int(steps), dtype="float64")
    return _out(out, _finish(values.astype(_float_dtype(dtype)), dev, requires_grad))


def logspace(start: Any, end: Any, steps: int, base: float = 10.0, *, out: Any = None, dtype: Any = None,
             layout: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``base ** linspace(start, end, steps)``."""
    _check_unsupported("logspace", layout)
    exponents = linspace(start, end, steps, dtype="float64", device=device)
    values = Tensor._xp_of(exponents.device).power(float(base), exponents.array)
    return _out(out, _finish(values.astype(_float_dtype(dtype)), exponents.device, requires_grad))


def _real(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return value


def arange(start: Any, stop: Any = None, step: Any = 1, *, out: Any = None, dtype: Any = None, layout: Any = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` to ``stop`` (exclusive); int64 for integer arguments, else float32."""
    _check_unsupported("arange", layout)
    if stop is None:
        start, stop = 0, start
    start, stop, step = (v.item() if isinstance(v, Tensor) else v for v in (start, stop, step))
    for v in (start, stop, step):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"arange: start, stop and step must be numbers, got {type(v).__name__} {v!r}")
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    ints = all(isinstance(v, numbers.Integral) for v in (start, stop, step))
    if dtype is None:
        dtype = "int64" if ints else dtypes.get_default_dtype()
    dev = _device(device)
    xp = Tensor._xp_of(dev)
    dt = dtypes.check_dtype(dtype)
    if ints:
        values = xp.arange(start, stop, step, dtype=dt)
    else:  # start + i * step in float64, then cast (as PyTorch), not float32 steps added up
        n = max(0, math.ceil((stop - start) / step))
        values = (start + xp.arange(n, dtype="float64") * step).astype(dt)
    return _out(out, _finish(values, dev, requires_grad))


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    dev = _device(device)
    _new_shape("eye", (n,) if m is None else (n, m))
    return _finish(Tensor._xp_of(dev).eye(n, m, dtype=_float_dtype(dtype)), dev, requires_grad)


def _random_dtype(dtype: Any) -> Any:
    dt = _float_dtype(dtype)
    if dt.kind != "f" or dt.itemsize < 4:
        raise TypeError(f"random floats are drawn as float32 or float64, not {dt}")
    return dt


def randn(*shape: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the device's generator (seeded by ``manual_seed``)."""
    dev = _device(device)
    array = generators.generator(dev).standard_normal(_new_shape("randn", shape), dtype=_random_dtype(dtype))
    return _finish(array, dev, requires_grad)


def rand(*shape: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    dev = _device(device)
    array = generators.generator(dev).random(_new_shape("rand", shape), dtype=_random_dtype(dtype))
    return _finish(array, dev, requires_grad)


def randint(low: int, high: int | None = None, size: Any = None, dtype: Any = None, device: Any = None) -> Tensor:
    """Integers in [low, high) (int64), as ``torch.randint(low, high, size)``; ``randint(high, size)`` works too."""
    if size is None and high is not None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint needs (low, high, size) or (high, size)")
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint: size must be a tuple of ints, got {type(size).__name__} {size!r}")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    dev = _device(device)
    array = generators.generator(dev).integers(low, high, size=_new_shape("randint", tuple(size)))
    return Tensor._wrap(array.astype(dtypes.check_dtype(dtype or "int64")), dev)


def manual_seed(seed: int) -> None:
    """Seed the random generators of every backend."""
    generators.manual_seed(seed)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (all other dims must match)."""
    tensors = _check_joinable("cat", tensors)
    shape = tensors[0].array.shape
    d = _axis(dim, len(shape))
    for t in tensors[1:]:
        other = t.array.shape
        if len(other) != len(shape) or other[:d] != shape[:d] or other[d + 1:] != shape[d + 1:]:
            raise ValueError(f"cat: shapes {shape} and {other} differ outside dim {dim}")
    return _ops.Cat.apply(*tensors, axis=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dim."""
    tensors = _check_joinable("stack", tensors)
    shape = tensors[0].array.shape
    for t in tensors[1:]:
        if t.array.shape != shape:
            raise ValueError(f"stack: all tensors must have one shape, got {shape} and {t.array.shape}")
    return _ops.Stack.apply(*tensors, axis=_axis(dim, len(shape) + 1))


def where(condition: Tensor, input: Any = None, other: Any = None) -> Any:
    """``input`` where ``condition`` holds, else ``other`` (broadcast); gradients flow to both.

    ``where(condition)`` alone is ``condition.nonzero(as_tuple=True)``, as PyTorch.
    """
    if input is None and other is None:
        if not isinstance(condition, Tensor):
            raise TypeError(f"where(): argument 'condition' must be Tensor, not {type(condition).__name__}")
        return condition.nonzero(as_tuple=True)
    if input is None or other is None:
        raise TypeError("where(): give both input and other, or neither")
    like = input if isinstance(input, Tensor) else other
    if not isinstance(like, Tensor):
        raise TypeError("where: at least one of input and other must be a Tensor")
    condition = _tensor_like(condition, like)
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got {condition.dtype}")
    a = input if isinstance(input, Tensor) else _as_scalar(input)
    b = other if isinstance(other, Tensor) else _as_scalar(other)
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype != b.dtype:
        a, b = _promote(a, b)
    return _ops.Where.apply(condition, a, b)


def maximum(a: Tensor, b: Any) -> Tensor:
    """Elementwise maximum (gradient shared equally at ties)."""
    return _binary(_ops.Maximum, a, b)


def minimum(a: Tensor, b: Any) -> Tensor:
    return _binary(_ops.Minimum, a, b)


def _as_scalar(value: Any) -> Any:
    if type(value) in (int, float, bool):
        return value
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()
    raise TypeError(f"expected a Tensor or a number, got {type(value).__name__}")


def _check_joinable(name: str, tensors: Sequence[Tensor]) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected Tensors, got {type(t).__name__}")
    dtype = tensors[0].array.dtype
    if all(t.array.dtype == dtype for t in tensors):
        return tensors
    for t in tensors[1:]:
        dtype = _promoted_dtype(dtype, t.array.dtype)
    return [t.to(dtype=dtype) for t in tensors]
