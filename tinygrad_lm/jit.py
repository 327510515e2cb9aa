"""Compiled loops for the CPU (optional): the ``jit`` extra, Numba.

NumPy runs a formula like ``c = f * c_prev + i * g`` as one call per operator, and
each call is a pass over memory plus a microsecond of dispatch. Inside a training
step that does this thousands of times (an LSTM's time steps, LayerNorm's rows),
those passes cost as much as the matrix products. A few ops therefore write the
formula once more as a plain Python loop over elements, a *kernel*, and run it
compiled by Numba when the ``jit`` extra is installed: one pass, no temporaries.

A kernel is ordinary Python. It reads like the lecture's equations, one element
at a time, and it also runs (slowly) as plain Python. Inside a kernel, :func:`exp`
and :func:`tanh` stand for the math functions: in float64 they are libm's, in float32
they are written out below in arithmetic that the compiler can vectorise (libm's
one-element-at-a-time calls would cost more than NumPy's passes they replace).

``TINYGRAD_LM_JIT=off`` (or :func:`set_jit`) turns the kernels off; the ops then
take their NumPy paths, which compute the same values.
"""
from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from typing import Any

import numpy

_CHOICES = ("auto", "numba", "off")
_choice = os.environ.get("TINYGRAD_LM_JIT", "auto").strip().lower() or "auto"
_numba: Any = None  # the module once imported, False when it is not installed
_compiled: dict[Callable[..., Any], Any] = {}

# Numba's compiler may reorder sums (so that they vectorise), fuse a multiply and an add,
# and divide by multiplying with a reciprocal. It may not assume away inf or nan: those
# must reach the user exactly as NumPy would produce them.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


def exp(x: float) -> float:
    """e^x inside a kernel (compiled: see :func:`_exp32` for float32)."""
    return math.exp(x)


def tanh(x: float) -> float:
    """tanh x inside a kernel (compiled: see :func:`_tanh32` for float32)."""
    return math.tanh(x)


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = HI + LO, with n * HI exact in float32 for |n| < 2^9


def _pow2(n: Any) -> Any:
    """2^n as float32 for a whole number n in [-126, 127] held in a float32. Compiled, :func:`_register`
    replaces it with an intrinsic that writes n + 127 into the exponent bits of a float32."""
    return numpy.float32(2.0**n)


def _exp32(x: Any) -> Any:
    """e^x in float32 within 2 ulp: e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln(2) / 2.

    r = x - n ln 2 is computed in two parts (Cody and Waite) so that it is exact; e^r is its Taylor
    series to r^7 (the first term left out, r^8 / 8!, is below 2^-24 for |r| <= ln(2) / 2).
    Above 88.7 the result is inf, below -87.3 it is 0 (e^x would be subnormal), nan stays nan.
    """
    f = numpy.float32
    y = min(max(x, f(-87.3)), f(88.7))
    n = numpy.floor(y * f(_LOG2E) + f(0.5))  # a float32 (math.floor would give an int64, slow to vectorise)
    r = (y - n * f(_LN2_HI)) - n * f(_LN2_LO)
    p = f(1 / 5040)
    p = p * r + f(1 / 720)
    p = p * r + f(1 / 120)
    p = p * r + f(1 / 24)
    p = p * r + f(1 / 6)
    p = p * r + f(1 / 2)
    p = p * r + f(1)
    p = p * r + f(1)
    p *= _pow2(n)
    if x > f(88.7):
        p = f(numpy.inf)
    if x < f(-87.3):
        p = f(0)
    return p if x == x else x


def _tanh32(x: Any) -> Any:
    """tanh x in float32 to a few ulp: its odd Taylor series for |x| < 0.4 (terms to x^13; the next
    is below 2^-25 relative), else sign(x) (1 - 2 / (e^{2|x|} + 1)), with |x| capped at 10
    (tanh 10 rounds to 1 in float32)."""
    f = numpy.float32
    ax = abs(x)
    if ax < f(0.4):
        x2 = x * x
        p = f(21844 / 6081075)
        p = p * x2 + f(-1382 / 155925)
        p = p * x2 + f(62 / 2835)
        p = p * x2 + f(-17 / 315)
        p = p * x2 + f(2 / 15)
        p = p * x2 + f(-1 / 3)
        return x + x * x2 * p
    t = f(1) - f(2) / (_exp32(f(2) * min(ax, f(10.0))) + f(1))
    return t if x >= f(0) else -t


def _register(numba: Any) -> None:
    """Compiled :func:`exp` and :func:`tanh`: float32 by :func:`_exp32` and :func:`_tanh32`, float64 by libm."""
    global _pow2, _exp32, _tanh32
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def pow2(typingctx: Any, n: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            v = builder.fptosi(args[0], ir.IntType(32))
            bits = builder.shl(builder.add(v, ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
            return builder.bitcast(bits, ir.FloatType())

        return (types.float32(n), codegen) if n == types.float32 else None

    # Compiled as functions of their own (which LLVM then inlines into each kernel) so that they keep
    # their own fast-math flags: without "reassoc", the compiler may not fold (y - n HI) - n LO back
    # into y - n ln 2, which would lose the exactness of r that the formula relies on.
    options = {"fastmath": _FASTMATH - {"reassoc"}, "error_model": "numpy"}
    _pow2 = pow2  # type: ignore[assignment]  # the compiled stand-in for the Python function
    _exp32 = numba.njit(_exp32, **options)
    _tanh32 = numba.njit(_tanh32, **options)

    @overload(exp, inline="always")
    def _exp(x):  # type: ignore[no-untyped-def]  # Numba wants the same signature as exp's, unannotated
        return (lambda x: _exp32(x)) if x == types.float32 else (lambda x: math.exp(x))

    @overload(tanh, inline="always")
    def _tanh(x):  # type: ignore[no-untyped-def]
        return (lambda x: _tanh32(x)) if x == types.float32 else (lambda x: math.tanh(x))


def _load() -> Any:
    global _numba
    if _numba is None:
        try:
            _numba = importlib.import_module("numba")
        except ImportError:
            _numba = False
        else:
            _register(_numba)
    return _numba


def set_jit(name: str) -> None:
    """``"numba"`` (an error if Numba is not installed), ``"off"``, or ``"auto"`` (Numba where installed)."""
    global _choice
    choice = str(name).strip().lower()
    if choice not in _CHOICES:
        raise ValueError(f"set_jit: expected one of {', '.join(_CHOICES)}, got {name!r}")
    if choice == "numba" and not _load():
        raise RuntimeError("set_jit('numba'): Numba is not installed; install the 'jit' extra "
                           "(pip install 'tinygrad_lm[jit]')")
    _choice = choice


def jit_name() -> str:
    """``"numba"`` when the compiled kernels are in use, else ``"off"``."""
    return "numba" if _choice != "off" and _load() else "off"


def compiled(kernel: Callable[..., Any], *arrays: Any) -> Callable[..., Any] | None:
    """The compiled ``kernel`` if kernels are on and every array is a NumPy float32/float64 array, else None.

    Compiled on first use in each process (about a second per kernel and dtype). Not cached on disk:
    Numba would not notice when the helpers here, which a kernel inlines, change.
    """
    if _choice == "off" or not _load():
        if _choice == "numba":
            raise RuntimeError("TINYGRAD_LM_JIT=numba but Numba is not installed; install the 'jit' extra")
        return None
    for a in arrays:
        if type(a) is not numpy.ndarray or a.dtype.char not in "fd":
            return None
    fn = _compiled.get(kernel)
    if fn is None:
        fn = _compiled[kernel] = _numba.njit(kernel, nogil=True, fastmath=_FASTMATH, error_model="numpy")
    return fn
