"""The one place that knows about NumPy and CuPy.

Every tensor lives on a device: ``"cpu"`` (NumPy arrays) or ``"cuda:N"`` (CuPy
arrays). Ops never import an array library themselves; they get the array
module ``xp`` for their inputs' device from here. The few operations whose
spelling differs between the two libraries (scatter-add, random numbers, host
copies, special functions) each sit behind one function below.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy

_cupy: ModuleType | None = None
_cupy_checked = False
_default_device = "cpu"
_default_dtype = numpy.dtype(numpy.float32)
_seed: int | None = None
_generators: dict[str, Any] = {}

SUPPORTED_DTYPES = tuple(
    numpy.dtype(d) for d in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
)


def _load_cupy() -> ModuleType | None:
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            cupy = importlib.import_module("cupy")
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # no CuPy, no driver or no GPU: CUDA is simply unavailable
            _cupy = None
    return _cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible."""
    return _load_cupy() is not None


def canonical_device(device: Any) -> str:
    """Normalise ``"cpu"``, ``"cuda"``, ``"cuda:N"`` to ``"cpu"`` or ``"cuda:N"``."""
    if device is None:
        return _default_device
    dev = str(device).strip().lower()
    if dev == "cpu":
        return "cpu"
    if dev == "cuda":
        dev = "cuda:0"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        if not cuda_is_available():
            raise RuntimeError(
                f"device {device!r} was requested but CUDA is not available "
                "(install the 'gpu' extra, e.g. pip install 'tinygrad_lm[gpu]', on a machine with an NVIDIA GPU)"
            )
        return dev
    raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def get_xp(device: str) -> ModuleType:
    """The array module (numpy or cupy) that holds tensors on ``device``."""
    if device == "cpu":
        return numpy
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError(f"device {device!r} needs CuPy and a GPU, and CUDA is not available")
    return cupy


def device_of(array: Any) -> str:
    """The device string of a raw backend array (NumPy arrays and scalars are on the CPU)."""
    if isinstance(array, (numpy.ndarray, numpy.generic)):
        return "cpu"
    cupy = _load_cupy()
    if cupy is not None and isinstance(array, cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def is_backend_array(obj: Any) -> bool:
    """True for a NumPy or CuPy ndarray."""
    if isinstance(obj, numpy.ndarray):
        return True
    return type(obj).__module__.startswith("cupy") and hasattr(obj, "__cuda_array_interface__")


def to_device(array: Any, device: str) -> Any:
    """Copy a raw array to ``device`` (no copy when it is already there)."""
    src = device_of(array)
    if src == device:
        return array
    if device == "cpu":
        return to_host(array)
    cupy = get_xp(device)
    with cupy.cuda.Device(int(device.split(":")[1])):
        return cupy.asarray(array)


def to_host(array: Any) -> numpy.ndarray:
    """A NumPy copy (or view, for NumPy input) of any backend array."""
    if isinstance(array, numpy.ndarray):
        return array
    if isinstance(array, numpy.generic):
        return numpy.asarray(array)
    return _load_cupy().asnumpy(array)  # type: ignore[union-attr]


def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``target[indices] += values`` where repeated indices accumulate (in place)."""
    if isinstance(target, numpy.ndarray):
        numpy.add.at(target, indices, values)
    else:
        import cupyx  # only reached for CuPy arrays

        cupyx.scatter_add(target, indices, values)


def erf(array: Any) -> Any:
    """The error function, elementwise, on either backend.

    float64 (and every CuPy dtype) uses the library's erf. float32 on the CPU uses
    :func:`erf_float32`, because SciPy's erf is some 3x slower than the rest of a GELU.
    """
    if isinstance(array, (numpy.ndarray, numpy.generic)):  # 0-d math gives NumPy scalars
        if array.dtype == numpy.float32 and array.size >= 4096:
            return erf_float32(numpy.asarray(array))
        from scipy.special import erf as _erf

        return _erf(array)
    from cupyx.scipy.special import erf as _erf_gpu

    return _erf_gpu(array)


# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26.
_ERF_P = 0.3275911
_ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def erf_float32(x: numpy.ndarray) -> numpy.ndarray:
    """erf(x) = sign(x) (1 - t (a5 + t (a4 + ... )) exp(-x^2)), t = 1 / (1 + p|x|), in float32.

    The approximation's own error is below 1.5e-7; computed in float32 the result is
    within 6e-7 of the exact erf (a few float32 ulps), with one exp and a Horner
    polynomial done in place on two buffers.
    """
    f32 = numpy.float32
    a = numpy.abs(x)
    t = numpy.multiply(a, f32(_ERF_P))
    t += f32(1)
    numpy.reciprocal(t, out=t)
    y = numpy.multiply(t, f32(_ERF_A[0]))
    for coef in _ERF_A[1:]:
        y += f32(coef)
        y *= t
    numpy.multiply(a, a, out=a)
    numpy.negative(a, out=a)
    numpy.exp(a, out=a)
    y *= a
    numpy.subtract(f32(1), y, out=y)
    return numpy.copysign(y, x, out=y)


def generator(device: str) -> Any:
    """The random generator for ``device`` (re-created from the seed by ``manual_seed``)."""
    gen = _generators.get(device)
    if gen is None:
        xp = get_xp(device)
        gen = xp.random.default_rng(_seed)
        _generators[device] = gen
    return gen


def manual_seed(seed: int) -> None:
    """Seed the generators of every backend (present and future devices)."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def rng_state() -> dict[str, Any]:
    """The CPU generator's state as a plain dict (for checkpoints)."""
    return generator("cpu").bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    generator("cpu").bit_generator.state = state


def set_default_device(device: Any) -> None:
    global _default_device
    _default_device = canonical_device(device)


def get_default_device() -> str:
    return _default_device


def set_default_dtype(dtype: Any) -> None:
    global _default_dtype
    dt = numpy.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"default dtype must be a floating point dtype, got {dt}")
    _default_dtype = dt


def get_default_dtype() -> numpy.dtype:
    return _default_dtype


def check_dtype(dtype: Any) -> numpy.dtype:
    """Turn a dtype-like into a NumPy dtype, rejecting the ones tinygrad_lm does not support."""
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported dtype {dt}: tinygrad_lm supports {', '.join(str(d) for d in SUPPORTED_DTYPES)}")
    return dt


def host_asarray(data: Any, dtype: Any = None) -> numpy.ndarray:
    """Turn Python data (scalars, nested lists) into a NumPy array."""
    return numpy.asarray(data, dtype=dtype)


def numpy_ndarray_type() -> type:
    return numpy.ndarray


def is_numpy_scalar(obj: Any) -> bool:
    return isinstance(obj, numpy.generic)


def ensure_array(obj: Any) -> Any:
    """NumPy scalars (what NumPy's reductions return) as 0-d arrays; arrays unchanged."""
    if isinstance(obj, numpy.generic):
        return numpy.asarray(obj)
    return obj


def result_type(a: Any, b: Any) -> numpy.dtype:
    return numpy.result_type(a, b)


def generator_for_check(seed: int) -> numpy.random.Generator:
    """A private host generator (gradcheck's projection weights must not disturb the user's seed)."""
    return numpy.random.default_rng(seed)


def unravel_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in numpy.unravel_index(flat, shape)) if shape else ()


def format_array(array: Any, prefix: str) -> str:
    """The values of any backend array, 4 decimals as PyTorch prints them, wrapped lines aligned after ``prefix``."""
    return numpy.array2string(to_host(array), separator=", ", prefix=prefix, precision=4)
