"""The one place that knows about NumPy and CuPy.

Every tensor lives on a device: ``"cpu"`` (NumPy arrays) or ``"cuda:N"`` (CuPy
arrays). Ops never import an array library themselves; they get the array
module ``xp`` for their inputs' device from here. The few operations whose
spelling differs between the two libraries (scatter-add, random numbers, host
copies, special functions) each sit behind one function below, and so do the
CPU's matrix products, which go to Intel's MKL when it is installed, and the
allocator setting that lets freed arrays serve the next training step.
"""
from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy

_cupy: ModuleType | None = None
_cupy_checked = False
_default_device = "cpu"
_default_dtype = numpy.dtype(numpy.float32)
_seed: int | None = None  # manual_seed's seed, for every device; None: each device seeds from the OS
_device_seeds: dict[str, int] = {}  # the seed each device's default generator started from
_generators: dict[str, Any] = {}

SUPPORTED_DTYPES = tuple(
    numpy.dtype(d) for d in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
)


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """The setting in the environment variable ``name`` (case and spaces ignored; unset or empty: ``default``).

    A value outside ``choices`` is an error naming the variable and the allowed values, read at import,
    so that a typo (``TINYGRAD_LM_BLAS=mlk``) is never silently taken for the default.
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower() or default
    if value not in choices:
        raise ValueError(f"the environment variable {name}={raw!r} is not one of {', '.join(choices)} "
                         f"(unset it for {default!r})")
    return value


_MALLOC_MMAP_THRESHOLD, _MALLOC_TRIM_THRESHOLD = -3, -1  # mallopt parameter numbers in glibc's malloc.h
_MALLOC_CHOICES = ("auto", "system")


def _keep_freed_arrays_in_the_heap() -> bool:
    """On glibc, let freed large arrays go back to the process heap instead of to the OS.

    glibc serves allocations above its mmap threshold (adjusted at run time, at most 32 MiB)
    with fresh pages from the OS and unmaps them on free. A training step allocates the same
    large activations every step, so each step then pays one page fault per 4 KiB page of
    them: measured here, 14,000 faults and about 25 ms of a 190 ms Transformer step, and 0.2 s
    of a 1.6 s two-layer LSTM step. Raising the mmap threshold to 256 MiB and the trim
    threshold to 1 GiB makes freed memory available to the next step's arrays; the resident
    size then stays at its high-water mark, as it does under PyTorch's caching allocators.
    ``TINYGRAD_LM_MALLOC=system`` (set before the import) keeps glibc's defaults. Returns
    whether the thresholds were set.
    """
    if env_choice("TINYGRAD_LM_MALLOC", _MALLOC_CHOICES, "auto") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and other C libraries have their own allocators
            return False
        return bool(libc.mallopt(_MALLOC_MMAP_THRESHOLD, 256 << 20)) and bool(
            libc.mallopt(_MALLOC_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


MALLOC_TUNED = _keep_freed_arrays_in_the_heap()


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


def cupy_module() -> ModuleType:
    """The CuPy module (for the CUDA kernels); a RuntimeError where CuPy or a GPU is missing."""
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError("CUDA is not available: CuPy is not installed or no GPU was found")
    return cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible."""
    return _load_cupy() is not None


class Device(str):
    """PyTorch's ``torch.device``: ``Device("cuda")``, ``Device("cuda:1")``, ``Device("cuda", 1)``, ``Device(1)``.

    It is a ``str`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), so it goes wherever a device string goes and
    ``tl.device("cpu") == "cpu"``; ``.type`` and ``.index`` are PyTorch's. ``Tensor.device`` is one.
    """

    __slots__ = ()

    def __new__(cls, type: Any, index: int | None = None) -> Device:  # noqa: A002 - PyTorch's argument name
        if isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string or an int, got {builtins.type(type).__name__}")
        text = type.strip().lower()
        kind, _, number = text.partition(":")
        if kind not in ("cpu", "cuda") or (number and not number.isdigit()):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type!r}")
        if number and index is not None:
            raise RuntimeError(f"device: index given twice, in {type!r} and as index={index}")
        if index is not None:
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise RuntimeError(f"Device index must not be negative (or a non-int), got {index!r}")
            number = str(index)
        if kind == "cpu" and number not in ("", "0"):
            raise RuntimeError(f"CPU device index must be -1 or zero, got {number}")
        return super().__new__(cls, kind + (":" + number if number and kind != "cpu" else ""))

    @property
    def type(self) -> str:
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:  # type: ignore[override]  # PyTorch's device.index, not str.index
        number = self.partition(":")[2]
        return int(number) if number else None

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __reduce__(self) -> Any:
        return (Device, (str(self),))


_DEVICES: dict[str, Device] = {}


def canonical_device(device: Any) -> str:
    """Normalise ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a :class:`Device`) to the Device ``"cpu"`` or ``"cuda:N"``."""
    if device is None:
        return _default_device
    dev = str(device).strip().lower()
    known = _DEVICES.get(dev)
    if known is not None:
        return known
    if dev == "cuda":
        dev = "cuda:0"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        if not cuda_is_available():
            raise RuntimeError(
                f"device {device!r} was requested but CUDA is not available "
                "(install the 'gpu' extra, e.g. pip install 'tinygrad_lm[gpu]', on a machine with an NVIDIA GPU)"
            )
    elif dev != "cpu":
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    known = _DEVICES[str(device).strip().lower()] = _DEVICES[dev] = Device(dev)
    return known


_default_device = canonical_device("cpu")


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
        cupy = cupy_module()
        add_at = getattr(cupy.add, "at", None)  # CuPy 13+; cupyx.scatter_add before (deprecated since)
        if add_at is not None:
            add_at(target, indices, values)
        else:
            import cupyx  # only reached for CuPy arrays

            cupyx.scatter_add(target, indices, values)


_axpy_kernel: Any = None  # CuPy's y += alpha * x kernel once built


def add_scaled_(y: Any, alpha: float, x: Any) -> Any:
    """``y += alpha * x`` in place (an optimizer's update); one kernel on a GPU instead of two calls."""
    if isinstance(y, numpy.ndarray) or y.dtype != x.dtype or y.shape != x.shape:
        y += alpha * x
        return y
    global _axpy_kernel
    if _axpy_kernel is None:
        _axpy_kernel = cupy_module().ElementwiseKernel("T x, T alpha", "T y", "y += alpha * x", "tinygrad_lm_axpy")
    _axpy_kernel(x, y.dtype.type(alpha), y)
    return y


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


# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26 (|error| < 1.5e-7):
# erfc(z) = t P(t) exp(-z^2) for z >= 0, t = 1 / (1 + p z), P(t) = a1 + a2 t + a3 t^2 + a4 t^3 + a5 t^4;
# ERF_A lists a5 first, for Horner's rule. Also used by the fused float32 GELU (ops/elementwise.py).
ERF_P = 0.3275911
ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def erf_float32(x: numpy.ndarray) -> numpy.ndarray:
    """erf(x) = sign(x) (1 - t (a5 + t (a4 + ... )) exp(-x^2)), t = 1 / (1 + p|x|), in float32.

    The approximation's own error is below 1.5e-7; computed in float32 the result is
    within 6e-7 of the exact erf (a few float32 ulps), with one exp and a Horner
    polynomial done in place on two buffers.
    """
    f32 = numpy.float32
    a = numpy.abs(x)
    t = numpy.multiply(a, f32(ERF_P))
    t += f32(1)
    numpy.reciprocal(t, out=t)
    y = numpy.multiply(t, f32(ERF_A[0]))
    for coef in ERF_A[1:]:
        y += f32(coef)
        y *= t
    numpy.multiply(a, a, out=a)
    numpy.negative(a, out=a)
    numpy.exp(a, out=a)
    y *= a
    numpy.subtract(f32(1), y, out=y)
    return numpy.copysign(y, x, out=y)


def new_generator(device: str, seed: int) -> Any:
    """A generator for ``device`` started from ``seed``: NumPy's PCG64 on the CPU, CuPy's cuRAND XORWOW on a GPU."""
    if device == "cpu":
        return numpy.random.default_rng(seed)
    cupy = get_xp(device)
    with cupy.cuda.Device(int(device.split(":")[1])):  # its state lives in the memory of the device it serves
        return cupy.random.default_rng(seed)


def generator(device: str) -> Any:
    """The default random generator for ``device`` (re-created from the seed by ``manual_seed``)."""
    gen = _generators.get(device)
    if gen is None:
        gen = _generators[device] = new_generator(device, initial_seed(device))
    return gen


def check_seed(seed: Any) -> int:
    """A seed as PyTorch takes it: ``int(seed)`` in [-2**63, 2**64), a negative one read as its uint64 value."""
    value = int(seed)
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"seed {value} is out of range: expected an integer in [-2**63, 2**64)")
    return value % (1 << 64)


def fresh_seed() -> int:
    """A 64-bit seed from the operating system's entropy (``Generator.seed()``, an unseeded process)."""
    return int.from_bytes(os.urandom(8), "little")


def initial_seed(device: str) -> int:
    """The seed the default generator of ``device`` started from (from the OS until ``manual_seed`` is called)."""
    seed = _device_seeds.get(device)
    if seed is None:
        seed = _device_seeds[device] = _seed if _seed is not None else fresh_seed()
    return seed


def seed_generator(device: str, seed: Any, state: numpy.ndarray | None = None) -> None:
    """Restart the default generator of ``device`` alone from ``seed`` (``default_generator.manual_seed``),
    then, when given, put it in ``state`` (:func:`generator_state`'s bytes; nothing changes if they do not fit)."""
    seed = check_seed(seed)
    gen = new_generator(device, seed)
    if state is not None:
        set_generator_state(gen, state)
    _device_seeds[device] = seed
    _generators[device] = gen


def manual_seed(seed: Any) -> None:
    """Seed the generators of every backend (present and future devices)."""
    global _seed
    _seed = check_seed(seed)
    _generators.clear()
    _device_seeds.clear()


def generator_state(gen: Any) -> numpy.ndarray:
    """The state of a generator made by :func:`new_generator`, as a uint8 host array.

    CPU (40 bytes): PCG64's 128-bit state and 128-bit increment, then its buffered 32-bit half
    (``has_uint32``, ``uinteger``), little-endian. GPU: the cuRAND states of CuPy's bit generator
    as they lie in device memory (one per thread of its launch grid, some MBs; CuPy keeps them in
    its private ``_state`` array, and exposes no other way to save them).
    """
    if isinstance(gen, numpy.random.Generator):
        state = gen.bit_generator.state
        if state["bit_generator"] != "PCG64":
            raise TypeError(f"generator_state handles PCG64 generators, not {state['bit_generator']}")
        words = (state["state"]["state"].to_bytes(16, "little") + state["state"]["inc"].to_bytes(16, "little")
                 + int(state["has_uint32"]).to_bytes(4, "little") + int(state["uinteger"]).to_bytes(4, "little"))
        return numpy.frombuffer(words, dtype=numpy.uint8).copy()
    return to_host(gen.bit_generator._state).view(numpy.uint8).copy()


def set_generator_state(gen: Any, state: numpy.ndarray) -> None:
    """Put back a state from :func:`generator_state` (a ValueError when its size does not fit ``gen``)."""
    raw = numpy.ascontiguousarray(state, dtype=numpy.uint8)
    if isinstance(gen, numpy.random.Generator):
        if raw.size != 40:
            raise ValueError(f"a CPU generator state has 40 bytes, this one has {raw.size}")
        data = raw.tobytes()
        gen.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int.from_bytes(data[:16], "little"), "inc": int.from_bytes(data[16:32], "little")},
            "has_uint32": int.from_bytes(data[32:36], "little"),
            "uinteger": int.from_bytes(data[36:40], "little"),
        }
        return
    target = gen.bit_generator._state
    if raw.size != target.nbytes:
        raise ValueError(f"this GPU generator's state has {target.nbytes} bytes, the one given has {raw.size}")
    target[...] = to_device(raw.view(target.dtype), device_of(target))


def permutation(gen: Any, n: int) -> Any:
    """A random permutation of 0 .. n-1 (int64) from ``gen``; CuPy's generator has none, so there the
    order is that of n uniform float64 keys (a tie, probability about n^2 / 2^54, keeps index order)."""
    if isinstance(gen, numpy.random.Generator):
        return gen.permutation(n)
    return gen.random(n).argsort().astype("int64", copy=False)


def search_cdf_rows(cdf: Any, u: Any) -> Any:
    """For every row b of ``cdf (B, V)`` (non-decreasing, ending at its total), and each ``u[b, j]`` in [0, 1):
    the first i with cdf[b, i] > u[b, j] * cdf[b, -1], int64 (B, n): inverse-CDF sampling. Rounding may give V
    for u near 1 (the caller clamps). ``cdf`` may be overwritten.

    NumPy has no batched searchsorted: for long rows one call per row is cheapest. Otherwise every row is scaled
    to end at exactly 1 and shifted by its row number b, so the rows make one sorted array, (b, b + 1] for row
    b, and one search serves them all (one kernel on a GPU).
    """
    B, V = cdf.shape
    if isinstance(cdf, numpy.ndarray) and V >= 1024:  # a call per row (some 5 us) beats two passes over B * V
        out = numpy.empty(u.shape, dtype=numpy.int64)
        for b in range(B):
            out[b] = numpy.searchsorted(cdf[b], u[b] * cdf[b, -1], side="right")
        return out
    xp = _array_module(cdf)
    rows = xp.arange(B, dtype=cdf.dtype)[:, None]  # (B, 1)
    cdf /= cdf[:, -1:].copy()  # copied: a view of cdf read while cdf is overwritten
    cdf += rows
    flat = xp.searchsorted(cdf.reshape(-1), (u + rows).reshape(-1), side="right").reshape(u.shape)
    return (flat - xp.arange(0, B * V, V, dtype=flat.dtype)[:, None]).astype(numpy.int64, copy=False)


def rng_snapshot(devices: list[str] | None = None) -> tuple[Any, ...]:
    """What the default generators are now (of ``devices`` only, when given): for :func:`rng_restore`."""
    states = {dev: generator_state(gen) for dev, gen in _generators.items() if devices is None or dev in devices}
    return _seed, dict(_device_seeds), states, devices


def rng_restore(snapshot: tuple[Any, ...]) -> None:
    """Put the default generators back as :func:`rng_snapshot` saw them (``fork_rng``'s exit).

    A generator the snapshot did not have is dropped, so that it starts afresh from its seed next time.
    """
    global _seed
    seed, seeds, states, devices = snapshot
    if devices is None:
        _seed = seed
    for dev in set(_generators) | set(_device_seeds) | set(seeds):
        if devices is not None and dev not in devices:
            continue
        if dev in states:
            gen = new_generator(dev, seeds[dev])
            set_generator_state(gen, states[dev])
            _device_seeds[dev], _generators[dev] = seeds[dev], gen
            continue
        _generators.pop(dev, None)
        if dev in seeds:
            _device_seeds[dev] = seeds[dev]
        else:
            _device_seeds.pop(dev, None)


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


class DType:
    """PyTorch's ``torch.dtype`` (``tl.float32``, ``tensor.dtype``), over a NumPy dtype.

    It compares equal to that NumPy dtype, to its name and to NumPy's scalar type
    (``tl.float32 == numpy.float32 == "float32"``), hashes like it, and NumPy and CuPy
    accept it wherever they take a dtype (through the ``.dtype`` attribute), so code
    written for NumPy dtypes keeps working. Other attributes (``kind``, ``char``,
    ``type``) are the NumPy dtype's.
    """

    __slots__ = ("dtype", "name", "kind", "itemsize", "is_floating_point", "is_complex", "is_signed")

    def __init__(self, np_dtype: numpy.dtype) -> None:
        self.dtype = np_dtype  # the NumPy protocol: numpy.dtype(obj) reads obj.dtype
        self.name = np_dtype.name
        self.kind = np_dtype.kind
        self.itemsize = np_dtype.itemsize
        self.is_floating_point = np_dtype.kind == "f"
        self.is_complex = np_dtype.kind == "c"
        self.is_signed = np_dtype.kind in "fic"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dtype, name)

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, DType):
            return self.dtype == other.dtype
        try:
            return bool(self.dtype == numpy.dtype(other))
        except (TypeError, ValueError):
            return False

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.dtype)

    def __repr__(self) -> str:
        return f"tinygrad_lm.{self.name}"

    def __str__(self) -> str:  # the bare name in messages, as NumPy's ("float32")
        return self.name

    def __reduce__(self) -> Any:
        return (as_dtype, (self.name,))

    def to_real(self) -> DType:
        return self


_DTYPES: dict[Any, DType] = {}


def as_dtype(dtype: Any) -> DType:
    """The :class:`DType` of a NumPy dtype, a name or a ``DType`` (one object per dtype)."""
    known = _DTYPES.get(dtype)
    if known is None:
        dt = check_dtype(dtype)
        known = _DTYPES.get(dt)
        if known is None:
            known = _DTYPES[dt] = DType(dt)
    return known


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


_PRINT_PROFILES = {
    "default": {"precision": 4, "threshold": 1000, "edgeitems": 3, "max_line_width": 80},
    "short": {"precision": 2, "threshold": 1000, "edgeitems": 2, "max_line_width": 80},
    "full": {"precision": 4, "threshold": sys.maxsize, "edgeitems": 3, "max_line_width": 80},
}
_print_options: dict[str, Any] = dict(_PRINT_PROFILES["default"])


def set_print_options(precision: int | None = None, threshold: int | None = None, edgeitems: int | None = None,
                      linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """PyTorch's ``set_printoptions``: a ``profile`` first, then the options given override it."""
    if profile is not None:
        if profile not in _PRINT_PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of {', '.join(_PRINT_PROFILES)}, got {profile!r}")
        _print_options.clear()
        _print_options.update(_PRINT_PROFILES[profile])
    for key, value in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                       ("max_line_width", linewidth)):
        if value is not None:
            _print_options[key] = value
    if sci_mode is not None:
        _print_options["floatmode"] = "maxprec" if sci_mode is False else "fixed"
        _print_options["suppress"] = not sci_mode


def format_array(array: Any, prefix: str) -> str:
    """The values of any backend array, 4 decimals as PyTorch prints them, wrapped lines aligned after ``prefix``."""
    opts = {k: v for k, v in _print_options.items() if k in ("precision", "threshold", "edgeitems", "max_line_width",
                                                              "suppress")}
    return numpy.array2string(to_host(array), separator=", ", prefix=prefix, **opts)


# Matrix products. NumPy multiplies float32 matrices with the BLAS it was built with
# (OpenBLAS for the wheels on PyPI). Intel's MKL runs the skinny products of a recurrent
# step (batch rows times a weight matrix) about 1.4x faster on x86 CPUs, and the large
# ones about 1.2x, so when the optional ``mkl`` package is installed (the ``mkl`` extra)
# CPU products go to MKL's GEMM through ctypes. Anything MKL cannot take as it is
# (integer dtypes, mixed dtypes, strides that are not a row or column layout, output
# overlapping an input) goes to NumPy unchanged. With MKL come two more helpers: a weight
# packed once for many products (:class:`RightFactor`) and the normal CDF of its vector math
# (:func:`normal_cdf`, for GELU). TINYGRAD_LM_BLAS=numpy (or :func:`set_blas`) turns MKL off.

_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162
# Multiply-adds of one GEMM below which NumPy is used: under it a ctypes call (some 7 us) costs more
# than MKL saves, and batches of such small matrices run faster in NumPy's loop over its BLAS.
_MKL_MIN_WORK = 1 << 20
_BLAS_CHOICES = ("auto", "mkl", "numpy")
_mkl: Any = None  # the loaded routines, False once looked for and not found, None before looking
_blas_choice = env_choice("TINYGRAD_LM_BLAS", _BLAS_CHOICES, "auto")


def _find_mkl_runtime() -> str | None:
    """The path of MKL's single dynamic library, from the ``mkl`` wheel or the system."""
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name.startswith(("libmkl_rt.so", "mkl_rt.", "libmkl_rt.")) and not f.name.endswith(".lib"):
            path = f.locate()
            if os.path.exists(path):
                return str(path)
    return ctypes.util.find_library("mkl_rt")


class _MKLRoutines:
    """ctypes bindings, for float32 and float64: GEMM, its pointer-array batch form, packed GEMM, normal CDF."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        i, p = ctypes.c_int, ctypes.c_void_p
        self.gemm = {}
        self.gemm_batch = {}
        self.packed = {}
        self.normal_cdf = {}
        for dt, prefix, real in ((numpy.dtype(numpy.float32), "s", ctypes.c_float),
                                 (numpy.dtype(numpy.float64), "d", ctypes.c_double)):
            gemm = getattr(lib, f"cblas_{prefix}gemm")
            gemm.restype = None
            gemm.argtypes = [i, i, i, i, i, i, real, p, i, p, i, real, p, i]
            batch = getattr(lib, f"cblas_{prefix}gemm_batch")
            batch.restype = None
            # one group: layout, &transa, &transb, &m, &n, &k, &alpha, a*[], &lda, b*[], &ldb, &beta, c*[], &ldc,
            # group count 1, &group size
            batch.argtypes = [i, p, p, p, p, p, p, p, p, p, p, p, p, p, i, p]
            self.gemm[dt] = gemm
            self.gemm_batch[dt] = (batch, real)
            get_size = getattr(lib, f"cblas_{prefix}gemm_pack_get_size")
            get_size.restype = ctypes.c_size_t
            get_size.argtypes = [i, i, i, i]  # identifier, m, n, k
            pack = getattr(lib, f"cblas_{prefix}gemm_pack")
            pack.restype = None
            pack.argtypes = [i, i, i, i, i, i, real, p, i, p]  # layout, which, trans, m, n, k, alpha, src, ld, dest
            compute = getattr(lib, f"cblas_{prefix}gemm_compute")
            compute.restype = None
            compute.argtypes = [i, i, i, i, i, i, p, i, p, i, real, p, i]
            self.packed[dt] = (get_size, pack, compute)
            cdf = getattr(lib, f"v{prefix}CdfNorm")  # vector math: r[i] = Phi(a[i]), n elements
            cdf.restype = None
            cdf.argtypes = [i, p, p]
            self.normal_cdf[dt] = cdf


def _load_mkl() -> Any:
    global _mkl
    if _mkl is None:
        _mkl = False
        path = _find_mkl_runtime() if _blas_choice != "numpy" else None
        if path is not None:
            try:
                _mkl = _MKLRoutines(ctypes.CDLL(path))
            except (OSError, AttributeError):
                _mkl = False
        if _mkl is False and _blas_choice == "mkl":
            raise RuntimeError(
                "TINYGRAD_LM_BLAS=mkl but MKL could not be loaded: install the 'mkl' extra "
                "(pip install 'tinygrad_lm[mkl]') or unset TINYGRAD_LM_BLAS"
            )
    return _mkl if _blas_choice != "numpy" else False


def _active_mkl() -> Any:
    """MKL's routines when CPU products go to MKL now, else False; after the first call, two lookups."""
    if _blas_choice == "numpy":
        return False
    return _mkl if _mkl is not None else _load_mkl()


def set_blas(name: str) -> None:
    """Choose who multiplies CPU matrices: ``"mkl"`` (an error if it is not installed), ``"numpy"`` or ``"auto"``."""
    global _blas_choice, _mkl
    choice = str(name).strip().lower()
    if choice not in _BLAS_CHOICES:
        raise ValueError(f"set_blas: expected one of {', '.join(_BLAS_CHOICES)}, got {name!r}")
    _blas_choice = choice
    if choice == "mkl" and _mkl is False:
        _mkl = None  # look again, and raise if it is still missing
    _load_mkl()


def blas_name() -> str:
    """``"mkl"`` when CPU matrix products go to MKL, else ``"numpy"`` (NumPy's own BLAS). Loads MKL if needed."""
    return "mkl" if _load_mkl() else "numpy"


def _layout(a: numpy.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) of a 2-D array as BLAS sees it, or None for other strides."""
    rows, cols = a.shape
    size = a.itemsize
    s0, s1 = a.strides
    if (s1 == size or cols == 1) and s0 % size == 0 and s0 // size >= max(cols, 1):
        return _NO_TRANS, s0 // size if rows > 1 else max(cols, 1)
    if (s0 == size or rows == 1) and s1 % size == 0 and s1 // size >= max(rows, 1):
        return _TRANS, s1 // size if cols > 1 else max(rows, 1)
    return None


def _gemm_2d(mkl: Any, a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray | None,
             beta: float = 0.0) -> numpy.ndarray | None:
    """out = a @ b (+ out, for beta = 1) for 2-D operands through MKL; None when the layouts need NumPy instead."""
    la, lb = _layout(a), _layout(b)
    if la is None or lb is None:
        return None
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = numpy.empty((m, n), dtype=a.dtype)
    lc = _layout(out)
    if lc is None or lc[0] != _NO_TRANS:
        return None
    mkl.gemm[a.dtype](_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1],
                      beta, out.ctypes.data, lc[1])
    return out


def _pointers(arr: numpy.ndarray, batch_shape: tuple[int, ...]) -> numpy.ndarray:
    """The address of every matrix of ``arr`` (batch axes broadcast to ``batch_shape``), as one int64 array."""
    strides = numpy.broadcast_to(arr, batch_shape + arr.shape[-2:]).strides[: len(batch_shape)]
    offsets = numpy.zeros(batch_shape, dtype=numpy.int64)
    for axis, (length, stride) in enumerate(zip(batch_shape, strides)):
        if stride and length > 1:
            shape = [1] * len(batch_shape)
            shape[axis] = length
            offsets += (numpy.arange(length, dtype=numpy.int64) * stride).reshape(shape)
    return (offsets + arr.ctypes.data).ravel()


def _gemm_batched(mkl: Any, a: numpy.ndarray, b: numpy.ndarray, out: numpy.ndarray | None) -> numpy.ndarray | None:
    """a @ b with batch axes (broadcast as NumPy does) in one MKL batch call; None to leave it to NumPy."""
    batch_shape = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if out is None:
        out = numpy.empty(batch_shape + (m, n), dtype=a.dtype)
    elif out.shape != batch_shape + (m, n):
        return None
    first = (0,) * len(batch_shape)
    la = _layout(a[(0,) * (a.ndim - 2)])
    lb = _layout(b[(0,) * (b.ndim - 2)])
    lc = _layout(out[first])
    if la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
        return None
    count = int(numpy.prod(batch_shape))
    if count == 0:
        return out
    batch, real = mkl.gemm_batch[a.dtype]
    c_int = ctypes.c_int
    ints = [c_int(v) for v in (la[0], lb[0], m, n, k, la[1], lb[1], lc[1], count)]
    alpha, beta = real(1.0), real(0.0)
    pa, pb, pc = _pointers(a, batch_shape), _pointers(b, batch_shape), _pointers(out, batch_shape)
    ref = ctypes.byref
    batch(_ROW_MAJOR, ref(ints[0]), ref(ints[1]), ref(ints[2]), ref(ints[3]), ref(ints[4]), ref(alpha),
          pa.ctypes.data, ref(ints[5]), pb.ctypes.data, ref(ints[6]), ref(beta), pc.ctypes.data, ref(ints[7]),
          1, ref(ints[8]))
    return out


def _mkl_can_take(mkl: Any, a: numpy.ndarray, b: numpy.ndarray, out: Any) -> bool:
    """Same float dtype, matrices on both sides, enough work to pay for the call, and an ``out`` apart from both."""
    if not (mkl and a.dtype == b.dtype and a.dtype in mkl.gemm and a.ndim >= 2 and b.ndim >= 2):
        return False
    if a.shape[-1] != b.shape[-2] or b.size == 0:
        return False
    # the work of one GEMM call: the whole product when it is one 2-D GEMM, else one matrix of the batch
    one_gemm = b.ndim == 2 and (a.ndim == 2 or a.flags.c_contiguous)
    if (a.size if one_gemm else a.shape[-2] * a.shape[-1]) * b.shape[-1] < _MKL_MIN_WORK:
        return False
    if out is None:
        return True
    return (type(out) is numpy.ndarray and out.dtype == a.dtype and out.flags.writeable
            and not numpy.may_share_memory(out, a) and not numpy.may_share_memory(out, b))


def _mkl_matmul(mkl: Any, a: numpy.ndarray, b: numpy.ndarray, out: Any) -> numpy.ndarray | None:
    """a @ b through MKL, or None where the shapes or layouts are left to NumPy."""
    if a.ndim == 2 and b.ndim == 2:
        if out is not None and out.shape != (a.shape[0], b.shape[1]):
            return None
        return _gemm_2d(mkl, a, b, out)
    if b.ndim == 2 and a.flags.c_contiguous:  # (..., m, k) @ (k, n) is one (B*m, k) @ (k, n) GEMM
        shape = a.shape[:-1] + b.shape[-1:]
        rows = a.size // a.shape[-1]
        if out is None:
            flat = _gemm_2d(mkl, a.reshape(rows, a.shape[-1]), b, None)
            return None if flat is None else flat.reshape(shape)
        if out.shape != shape or not out.flags.c_contiguous:
            return None
        return None if _gemm_2d(mkl, a.reshape(rows, a.shape[-1]), b, out.reshape(rows, -1)) is None else out
    try:
        return _gemm_batched(mkl, a, b, out)
    except ValueError:  # batch axes that do not broadcast: NumPy raises its usual error
        return None


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` (into ``out`` when given) on either backend, with NumPy's rules for shapes and batch axes.

    On the CPU, float32 and float64 products go to MKL when it is loaded (see above): 2-D
    operands in one GEMM, ``(..., m, k) @ (k, n)`` with a contiguous left side as one
    ``(B*m, k) @ (k, n)`` GEMM, and other batched products in one pointer-array batch call.
    """
    if type(a) is numpy.ndarray and type(b) is numpy.ndarray:
        mkl = _active_mkl()
        if _mkl_can_take(mkl, a, b, out):
            result = _mkl_matmul(mkl, a, b, out)
            if result is not None:
                return result
    elif not isinstance(a, (numpy.ndarray, numpy.generic)):
        if _is_cupy_float_2d(a, b) and a.shape[1] == b.shape[0]:
            if out is None:
                out = _load_cupy().empty((a.shape[0], b.shape[1]), dtype=a.dtype)  # type: ignore[union-attr]
            if _is_cupy_float_2d(a, out) and out.shape == (a.shape[0], b.shape[1]):
                return _cupy_gemm(a, b, out, beta=0.0)
        return _load_cupy().matmul(a, b, out=out)  # type: ignore[union-attr]
    return numpy.matmul(a, b, out=out) if out is not None else numpy.matmul(a, b)


def addmm(bias: Any, a: Any, b: Any) -> Any:
    """``a @ b + bias`` for a (m, k), b (k, n) and a bias row (n,): a Linear layer's forward.

    With MKL, the output is first filled with the bias rows and the GEMM adds the product to
    it (beta = 1), which is 3-5% faster on a Transformer's Linear shapes than a GEMM followed
    by a second pass over its output to add the bias.
    """
    if type(a) is numpy.ndarray and type(b) is numpy.ndarray and type(bias) is numpy.ndarray:
        mkl = _active_mkl()
        if (a.ndim == 2 and b.ndim == 2 and bias.shape == b.shape[1:] and bias.dtype == a.dtype
                and _mkl_can_take(mkl, a, b, None)):
            out = numpy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
            out[...] = bias
            if _gemm_2d(mkl, a, b, out, beta=1.0) is not None:
                return out
    if _is_cupy_float_2d(a, b) and bias.shape == b.shape[1:] and bias.dtype == a.dtype:
        out = _load_cupy().empty((a.shape[0], b.shape[1]), dtype=a.dtype)  # type: ignore[union-attr]
        out[...] = bias
        return _cupy_gemm(a, b, out, beta=1.0)  # cuBLAS adds the product to the bias rows: one pass fewer
    out = matmul(a, b)
    out += bias
    return out


def _is_cupy_float_2d(*arrays: Any) -> bool:
    """Whether every array is a 2-D float32/float64 CuPy array of one dtype (what :func:`_cupy_gemm` takes)."""
    first = arrays[0]
    return all(
        not isinstance(a, (numpy.ndarray, numpy.generic)) and getattr(a, "ndim", 0) == 2
        and a.dtype == first.dtype and a.dtype.char in "fd"
        for a in arrays
    )


def _cupy_gemm(a: Any, b: Any, out: Any, beta: float) -> Any:
    """``out = a @ b + beta * out`` on the GPU, one cuBLAS GEMM (a (m, k), b (k, n), out (m, n), one dtype)."""
    if out.size == 0:
        return out
    if a.shape[1] == 0:  # an empty sum: cuBLAS refuses k = 0
        if beta == 0:
            out.fill(0)  # (out may be uninitialised, and 0 * nan is nan)
        else:
            out *= beta
        return out
    if out.flags.c_contiguous and _cublas_row_major(a, b, out, beta):
        return out
    return importlib.import_module("cupy.cublas").gemm("N", "N", a, b, out=out, alpha=1.0, beta=beta)


_cublas: Any = None  # (CuPy's cuBLAS bindings, its handle getter) once loaded
_scalars: dict[tuple[str, float], numpy.ndarray] = {}  # host alpha and beta values that cuBLAS reads


def _cublas_row_major(a: Any, b: Any, out: Any, beta: float) -> bool:
    """One cuBLAS ``?gemm`` call into a C-contiguous ``out``, without cupy.cublas.gemm's Python around it
    (about 18 us per call, which an LSTM pays twice per time step).

    cuBLAS is column-major: the row-major C = A B it sees as C^T = B^T A^T, so B goes first. A row-major
    (C-contiguous) operand is its own transpose in column-major terms (op N, leading dimension = its
    row length); a transposed view (F-contiguous) is taken with op T (leading dimension = its column
    length). False, with nothing done, for other layouts or a handle not in host pointer mode."""
    layout_a, layout_b = _column_major_op(a), _column_major_op(b)
    if layout_a is None or layout_b is None:
        return False
    global _cublas
    if _cublas is None:
        _cublas = (importlib.import_module("cupy_backends.cuda.libs.cublas"),
                   importlib.import_module("cupy.cuda.device").get_cublas_handle)
    lib, get_handle = _cublas
    handle = get_handle()
    if lib.getPointerMode(handle) != lib.CUBLAS_POINTER_MODE_HOST:
        return False
    (op_a, ld_a), (op_b, ld_b) = layout_a, layout_b
    m, k = a.shape
    n = b.shape[1]
    one, beta_ = _host_scalar(a.dtype, 1.0), _host_scalar(a.dtype, beta)
    gemm = lib.sgemm if a.dtype.char == "f" else lib.dgemm
    ops = (lib.CUBLAS_OP_N, lib.CUBLAS_OP_T)
    gemm(handle, ops[op_b], ops[op_a], n, m, k, one.ctypes.data, b.data.ptr, ld_b, a.data.ptr, ld_a,
         beta_.ctypes.data, out.data.ptr, n)
    return True


def _column_major_op(x: Any) -> tuple[int, int] | None:
    """(0, its row length) for a C-contiguous 2-D array, (1 = transpose, its column length) for an
    F-contiguous one, None otherwise: how cuBLAS reads it as the transpose of itself (see above)."""
    if x.flags.c_contiguous:
        return 0, max(x.shape[1], 1)
    if x.flags.f_contiguous:
        return 1, max(x.shape[0], 1)
    return None


def _host_scalar(dtype: Any, value: float) -> numpy.ndarray:
    key = (dtype.char, value)
    scalar = _scalars.get(key)
    if scalar is None:
        scalar = _scalars[key] = numpy.array(value, dtype=dtype)
    return scalar


class RightFactor:
    """The right factor ``b (k, n)`` of many products ``a_t @ b``, ``a_t (m, k)``: a recurrent weight over a sequence.

    With MKL, ``b`` is copied once into MKL's packed internal format (``cblas_?gemm_pack``) and
    every step multiplies against that copy (``cblas_?gemm_compute``), instead of each GEMM
    call re-arranging ``b`` again; this makes the skinny per-step products 1.1-1.2x faster.
    Otherwise it keeps a contiguous copy of ``b``, which OpenBLAS multiplies faster than a
    transposed view. Use it through :func:`matmul_right` or :func:`matmul_right_steps`.
    """

    __slots__ = ("b", "m", "packed", "_compute")

    def __init__(self, b: Any, m: int) -> None:
        self.m = m
        self.packed: Any = None
        self._compute: Any = None
        mkl = _active_mkl()
        k, n = b.shape
        if (type(b) is numpy.ndarray and mkl and b.dtype in mkl.packed
                and m * k * n >= _MKL_MIN_WORK and (layout := _layout(b)) is not None):
            get_size, pack, compute = mkl.packed[b.dtype]
            self.packed = numpy.empty(-(-get_size(_B_MATRIX, m, n, k) // b.itemsize), dtype=b.dtype)
            pack(_ROW_MAJOR, _B_MATRIX, layout[0], m, n, k, 1.0, b.ctypes.data, layout[1], self.packed.ctypes.data)
            self._compute = compute
            self.b = b
        else:
            contiguous = isinstance(b, numpy.ndarray) and b.flags.c_contiguous
            self.b = b if contiguous else _array_module(b).ascontiguousarray(b)


def _array_module(array: Any) -> ModuleType:
    return numpy if isinstance(array, (numpy.ndarray, numpy.generic)) else _load_cupy()  # type: ignore[return-value]


def matmul_right(a: Any, right: RightFactor, out: Any, accumulate: bool = False) -> Any:
    """``out = a @ right.b``, or ``out += a @ right.b`` with ``accumulate``; ``a`` is (m, k), ``out`` (m, n)."""
    layouts = _packed_layouts(a, right, out)
    if layouts is not None:
        (op_a, ld_a), (_, ld_out) = layouts
        m, k = a.shape
        right._compute(_ROW_MAJOR, op_a, _PACKED, m, out.shape[1], k, a.ctypes.data, ld_a,
                       right.packed.ctypes.data, 0, 1.0 if accumulate else 0.0, out.ctypes.data, ld_out)
        return out
    if accumulate:
        if _is_cupy_float_2d(a, right.b, out) and out.flags.c_contiguous:
            return _cupy_gemm(a, right.b, out, beta=1.0)  # one cuBLAS call adds the product into out
        out += matmul(a, right.b)
        return out
    return matmul(a, right.b, out=out)


def matmul_right_steps(a: Any, right: RightFactor, out: Any, accumulate: bool = False) -> Callable[[int], None]:
    """A function of t that runs ``matmul_right(a[t], right, out[t], accumulate)``: a recurrence's T products.

    ``a`` is (T, m, k); ``out`` is (T, m, n), or one (m, n) array that every step writes. Where
    :func:`matmul_right` would call MKL's packed GEMM, the call's arguments are worked out here once and
    each step only adds t times the step strides to two addresses: NumPy's ``.ctypes`` addresses and the
    layout checks cost about 12 us a call, 10% of a (32, 256) @ (256, 1024) product. Otherwise each
    step calls :func:`matmul_right`. Steps outside 0 .. T-1 raise IndexError.
    """
    T = a.shape[0]
    per_step = out.ndim == 3
    k, n = right.b.shape
    if a.ndim != 3 or a.shape[2] != k or out.shape[-2:] != (a.shape[1], n) or (per_step and out.shape[0] != T):
        raise ValueError(f"matmul_right_steps: a {a.shape} and out {out.shape} do not fit a right factor of shape "
                         f"{right.b.shape} (expected (T, m, {k}) and (T, m, {n}) or (m, {n}))")

    def plain_step(t: int) -> None:
        if not 0 <= t < T:
            raise IndexError(f"matmul_right_steps: step {t} is outside 0 .. {T - 1}")
        matmul_right(a[t], right, out=out[t] if per_step else out, accumulate=accumulate)

    layouts = _packed_layouts(a[0], right, out[0] if per_step else out) if T else None
    if layouts is None:
        return plain_step
    (op_a, ld_a), (_, ld_out) = layouts
    m = a.shape[1]
    compute, packed, beta = right._compute, right.packed.ctypes.data, 1.0 if accumulate else 0.0
    a_ptr, a_step = a.ctypes.data, a.strides[0]
    out_ptr, out_step = out.ctypes.data, out.strides[0] if per_step else 0

    def step(t: int, _memory: Any = (a, out, right)) -> None:  # _memory: what the addresses point into
        if not 0 <= t < T:
            raise IndexError(f"matmul_right_steps: step {t} is outside 0 .. {T - 1}")
        compute(_ROW_MAJOR, op_a, _PACKED, m, n, k, a_ptr + t * a_step, ld_a, packed, 0, beta,
                out_ptr + t * out_step, ld_out)

    return step


def _packed_layouts(a: Any, right: RightFactor, out: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The BLAS layouts of a (m, k) and out (m, n) when ``a @ right.b`` can use right's MKL-packed copy, else None."""
    if (right.packed is None or type(a) is not numpy.ndarray or type(out) is not numpy.ndarray
            or a.shape[0] != right.m or not a.dtype == right.b.dtype == out.dtype):
        return None
    la, lc = _layout(a), _layout(out)
    return (la, lc) if la is not None and lc is not None and lc[0] == _NO_TRANS else None


def fast_normal_cdf_available(array: Any) -> bool:
    """Whether :func:`normal_cdf` runs MKL's vector math for this array (a CPU float32/float64 array, MKL loaded)."""
    mkl = _active_mkl()
    return bool(mkl) and type(array) is numpy.ndarray and array.dtype in mkl.normal_cdf


def normal_cdf(x: Any, out: Any) -> Any:
    """out = Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF, elementwise; returns ``out``.

    With MKL loaded, contiguous CPU float32/float64 arrays go to its vector math library
    (``vsCdfNorm``, within a few ulps and several times faster than the erf formula);
    everything else is computed from :func:`erf`.
    """
    if fast_normal_cdf_available(x) and x.flags.c_contiguous and out.flags.c_contiguous and out.dtype == x.dtype:
        if x.size:
            _mkl.normal_cdf[x.dtype](x.size, x.ctypes.data, out.ctypes.data)
        return out
    xp = _array_module(x)
    xp.multiply(x, 1.0 / 2**0.5, out=out)
    out[...] = erf(out)
    out += 1.0
    out *= 0.5
    return out
