"""How tensors print: PyTorch's print options, applied to NumPy's array formatting."""
from __future__ import annotations

import sys
from typing import Any

import numpy

from .backend import to_host

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
