"""Devices and array modules: the one place that imports CuPy.

Every tensor lives on a device: ``"cpu"`` (NumPy arrays) or ``"cuda:N"`` (CuPy
arrays). Ops never import an array library themselves; they get the array
module ``xp`` for their inputs' device from here. The few operations whose
spelling differs between the two libraries (scatter-add, host copies, the error
function) each sit behind one function below. Random generators live in
``generators.py``, dtypes in ``dtypes.py``.
"""
from __future__ import annotations

import builtins
import importlib
import os
from types import ModuleType
from typing import Any

import numpy

_cupy: ModuleType | None = None
_cupy_checked = False
_default_device = "cpu"


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """The setting in the environment variable ``name`` (case and spaces ignored; unset or empty: ``default``).

    A value outside ``choices`` is an error naming the variable and the allowed values, read at import,
    so that a typo (``TINYGRAD_LM_FAST=of``) is never silently taken for the default.
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower() or default
    if value not in choices:
        raise ValueError(f"the environment variable {name}={raw!r} is not one of {', '.join(choices)} "
                         f"(unset it for {default!r})")
    return value


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


def set_default_device(device: Any) -> None:
    global _default_device
    _default_device = canonical_device(device)


def get_default_device() -> str:
    return _default_device


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


def erf(array: Any) -> Any:
    """The error function, elementwise: SciPy's on NumPy arrays and scalars, cupyx's on CuPy arrays."""
    if isinstance(array, (numpy.ndarray, numpy.generic)):  # 0-d math gives NumPy scalars
        from scipy.special import erf as _erf

        return _erf(array)
    from cupyx.scipy.special import erf as _erf_gpu

    return _erf_gpu(array)


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


def unravel_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in numpy.unravel_index(flat, shape)) if shape else ()
