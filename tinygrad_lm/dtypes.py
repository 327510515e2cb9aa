"""PyTorch's dtypes over NumPy's: :class:`DType`, the supported set, the default float dtype.

``tl.float32`` and ``tensor.dtype`` are :class:`DType` objects; everywhere else (arrays, ops)
dtypes are NumPy's, which CuPy shares. Only the dtypes in :data:`SUPPORTED_DTYPES` make tensors.
"""
from __future__ import annotations

from typing import Any

import numpy

_default_dtype = numpy.dtype(numpy.float32)

SUPPORTED_DTYPES = tuple(
    numpy.dtype(d) for d in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
)


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
    if type(dtype) is DType:  # (a tensor's .dtype: NumPy's own conversion of it takes microseconds)
        return dtype.dtype
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported dtype {dt}: tinygrad_lm supports {', '.join(str(d) for d in SUPPORTED_DTYPES)}")
    return dt


def result_type(a: Any, b: Any) -> numpy.dtype:
    return numpy.result_type(a, b)
