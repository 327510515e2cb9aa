"""Padding layers, PyTorch's ``{Zero,Constant,Reflection,Replication,Circular}Pad{1,2,3}d``: each is
``F.pad`` with its mode over the last 1, 2 or 3 dims. ``padding`` is an int (the same on every side) or
a tuple ``(left, right[, top, bottom[, front, back]])``, last dim first."""
from __future__ import annotations

from typing import Sequence

from ..tensor import Tensor
from . import functional as F
from .module import Module


class _PadNd(Module):
    _dims = 1
    _mode = "constant"

    def __init__(self, padding: int | Sequence[int], value: float = 0.0) -> None:
        super().__init__()
        n = 2 * self._dims
        if isinstance(padding, int):
            self.padding: tuple[int, ...] = (padding,) * n
        elif isinstance(padding, (tuple, list)) and len(padding) == n and all(isinstance(p, int) for p in padding):
            self.padding = tuple(padding)
        else:
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple of {n} ints, got {padding!r}")
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        if self._mode != "constant" and input.ndim not in (self._dims + 1, self._dims + 2):
            raise ValueError(
                f"{type(self).__name__}: expected {self._dims + 1}D or {self._dims + 2}D input "
                f"(got {input.ndim}D input)"
            )
        if self._mode == "constant":
            return F.pad(input, self.padding, "constant", self.value)
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    def __init__(self, padding: int | Sequence[int], value: float) -> None:
        super().__init__(padding, value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class _ZeroPadNd(_PadNd):
    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding, 0.0)


class ZeroPad1d(_ZeroPadNd):
    """Pad the last dim with zeros."""

    _dims, _mode = 1, "constant"


class ZeroPad2d(_ZeroPadNd):
    """Pad the last 2 dims with zeros."""

    _dims, _mode = 2, "constant"


class ZeroPad3d(_ZeroPadNd):
    """Pad the last 3 dims with zeros."""

    _dims, _mode = 3, "constant"


class ConstantPad1d(_ConstantPadNd):
    """Pad the last dim with ``value``."""

    _dims, _mode = 1, "constant"


class ConstantPad2d(_ConstantPadNd):
    """Pad the last 2 dims with ``value``."""

    _dims, _mode = 2, "constant"


class ConstantPad3d(_ConstantPadNd):
    """Pad the last 3 dims with ``value``."""

    _dims, _mode = 3, "constant"


class ReflectionPad1d(_PadNd):
    """Pad the last dim with the mirror image without the edge."""

    _dims, _mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    """Pad the last 2 dims with the mirror image without the edge."""

    _dims, _mode = 2, "reflect"


class ReflectionPad3d(_PadNd):
    """Pad the last 3 dims with the mirror image without the edge."""

    _dims, _mode = 3, "reflect"


class ReplicationPad1d(_PadNd):
    """Pad the last dim with copies of the edge."""

    _dims, _mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    """Pad the last 2 dims with copies of the edge."""

    _dims, _mode = 2, "replicate"


class ReplicationPad3d(_PadNd):
    """Pad the last 3 dims with copies of the edge."""

    _dims, _mode = 3, "replicate"


class CircularPad1d(_PadNd):
    """Pad the last dim with the other end (wrap around)."""

    _dims, _mode = 1, "circular"


class CircularPad2d(_PadNd):
    """Pad the last 2 dims with the other end (wrap around)."""

    _dims, _mode = 2, "circular"


class CircularPad3d(_PadNd):
    """Pad the last 3 dims with the other end (wrap around)."""

    _dims, _mode = 3, "circular"


__all__ = [
    "CircularPad1d", "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
]
