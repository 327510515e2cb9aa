"""Compiled loops for the CPU: Numba.

NumPy runs a formula like ``c = f * c_prev + i * g`` as one call per operator, and
each call is a pass over memory plus a microsecond of dispatch. Inside a training
step that does this thousands of times (an LSTM's time steps, LayerNorm's rows),
those passes cost as much as the matrix products. A few ops therefore write the
formula once more as a plain Python loop over elements, a *kernel*, and run it
compiled by Numba when the ``jit`` extra is installed: one pass, no temporaries.

A kernel is ordinary Python. It reads like the lecture's equations, one element
at a time, and it also runs (slowly) as plain Python. Inside a kernel, :func:`scratch`
makes a small work array, and :func:`exp` and :func:`tanh` stand for e^x and tanh x:
compiled, they are written out below in arithmetic that the compiler can vectorise
(libm's one-element-at-a-time calls would cost more than the NumPy passes they replace);
other math functions (``math.log``, ``math.sqrt``) are used directly.

On a GPU, the same kernels run as CUDA twins written in :mod:`tinygrad_lm.fast.cuda_kernels`
(one launch instead of a dozen CuPy calls), whether or not Numba is installed.

The kernels are reached only through the fast ops (:mod:`tinygrad_lm.fast`), so the fast
path's switch (``TINYGRAD_LM_FAST=off``) turns them off too; without Numba, :func:`compiled`
returns None and the fast ops hand CPU arrays to their reference code.
"""
from __future__ import annotations

import hashlib
import importlib
import math
import os
from collections.abc import Callable
from typing import Any

import numpy

_numba: Any = None  # the module once imported, False when it is not installed
_compiled: dict[Callable[..., Any], Any] = {}

# Numba's compiler may reorder sums (so that they vectorise), fuse a multiply and an add,
# and divide by multiplying with a reciprocal. It may not assume away inf or nan: those
# must reach the user exactly as NumPy would produce them.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


def exp(x: float) -> float:
    """e^x inside a kernel (compiled: :func:`_exp32` and :func:`_exp64`, which vectorise)."""
    return math.exp(x)


def tanh(x: float) -> float:
    """tanh x inside a kernel (compiled: :func:`_tanh32` and :func:`_tanh64`, which vectorise)."""
    return math.tanh(x)


def scratch(n: int, like: Any) -> Any:
    """Inside a kernel: a 1-D work array of ``n`` uninitialised elements of ``like``'s dtype."""
    return numpy.empty(n, dtype=like.dtype)


_LOG2E = 1.4426950408889634
# Per dtype: the range where e^x is finite and normal, ln 2 = HI + LO (HI with enough trailing zero bits
# that n * HI is exact for every n in range), and 1/k! for k = K .. 0, Horner's order, with K the last
# Taylor term needed: r^(K+1) / (K+1)! is below the dtype's rounding (2^-24, 2^-53) for |r| <= ln(2) / 2.
_EXP32 = (-87.3, 88.7, 0.693359375, -2.12194440e-4, tuple(1 / math.factorial(k) for k in range(7, -1, -1)))
_EXP64 = (-708.39, 709.78, 6.93147180369123816490e-01, 1.90821492927058770002e-10,
          tuple(1 / math.factorial(k) for k in range(13, -1, -1)))


def _pow2(n: Any) -> Any:
    """2^n for a whole number n held in a float (float32: n in [-126, 127]; float64: [-1022, 1023]).
    Compiled, :func:`_register` replaces it with an intrinsic that writes n + bias into the exponent bits."""
    return type(n)(2.0**n)


def _exp_of(x: Any, f: Any, lo: Any, hi: Any, ln2_hi: Any, ln2_lo: Any, inv_factorials: Any) -> Any:
    """e^x in the float type f within 2 ulp: e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln(2) / 2.

    r = x - n ln 2 is computed in two parts (Cody and Waite) so that it is exact; e^r is its Taylor
    series (``inv_factorials``); 2^n goes straight into the exponent bits (:func:`_pow2`). Above ``hi``
    the result is inf, below ``lo`` it is 0 (e^x would be subnormal), nan stays nan.
    """
    y = min(max(x, lo), hi)
    n = numpy.floor(y * f(_LOG2E) + f(0.5))  # a float (math.floor would give an int64, slow to vectorise)
    r = (y - n * ln2_hi) - n * ln2_lo
    p = f(0)
    for c in inv_factorials:
        p = p * r + f(c)
    p *= _pow2(n)
    if x > hi:
        p = f(numpy.inf)
    if x < lo:
        p = f(0)
    return p if x == x else x


def _exp32(x: Any) -> Any:
    """e^x in float32: :func:`_exp_of` with the Taylor series to r^7."""
    f = numpy.float32
    lo, hi, ln2_hi, ln2_lo, inv_factorials = _EXP32
    return _exp_of(x, f, f(lo), f(hi), f(ln2_hi), f(ln2_lo), inv_factorials)


def _exp64(x: Any) -> Any:
    """e^x in float64: :func:`_exp_of` with the Taylor series to r^13."""
    f = numpy.float64
    lo, hi, ln2_hi, ln2_lo, inv_factorials = _EXP64
    return _exp_of(x, f, f(lo), f(hi), f(ln2_hi), f(ln2_lo), inv_factorials)


# Per dtype: an |x| beyond which tanh x rounds to +-1 (float32: 1 - tanh 10 < 2^-25; float64: 1 - tanh 20 < 2^-54).
_TANH_LIMIT32, _TANH_LIMIT64 = 10.0, 20.0


def _tanh_of(x: Any, f: Any, limit: Any, ln2_hi: Any, ln2_lo: Any, inv_factorials: Any) -> Any:
    """tanh x in the float type f within a few ulp: tanh x = m / (m + 2) with m = e^{2x} - 1.

    m is computed as in :func:`_exp_of` (y = 2x = n ln 2 + r, |r| <= ln(2) / 2), but without ever
    forming e^r: m = 2^n (e^r - 1) + (2^n - 1), where e^r - 1 = r (1 + r/2! + r^2/3! + ...) keeps its
    relative accuracy as r goes to 0. So tanh x stays accurate for small x too (where 1 - 2 / (e^{2x} + 1)
    would cancel), with no branch. |x| is capped at ``limit``, where tanh rounds to +-1; +-0 and nan
    come back unchanged.
    """
    y = f(2) * min(max(x, -limit), limit)
    n = numpy.floor(y * f(_LOG2E) + f(0.5))
    r = (y - n * ln2_hi) - n * ln2_lo
    p = f(0)
    for c in inv_factorials[:-1]:  # 1/K! .. 1/1!
        p = p * r + f(c)
    s = _pow2(n)
    m = s * (p * r) + (s - f(1))  # e^y - 1
    t = m / (m + f(2))
    return t if x != f(0) and x == x else x


def _tanh32(x: Any) -> Any:
    """tanh x in float32: :func:`_tanh_of` with the Taylor series of e^r - 1 to r^7."""
    f = numpy.float32
    _, _, ln2_hi, ln2_lo, inv_factorials = _EXP32
    return _tanh_of(x, f, f(_TANH_LIMIT32), f(ln2_hi), f(ln2_lo), inv_factorials)


def _tanh64(x: Any) -> Any:
    """tanh x in float64: :func:`_tanh_of` with the Taylor series of e^r - 1 to r^13."""
    f = numpy.float64
    _, _, ln2_hi, ln2_lo, inv_factorials = _EXP64
    return _tanh_of(x, f, f(_TANH_LIMIT64), f(ln2_hi), f(ln2_lo), inv_factorials)


def _register(numba: Any) -> None:
    """Compiled :func:`exp` and :func:`tanh`: the float32 and float64 versions above, libm for anything else."""
    global _pow2, _exp_of, _exp32, _exp64, _tanh_of, _tanh32, _tanh64
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def pow2(typingctx: Any, n: Any) -> Any:
        bits, mantissa, bias = {types.float32: (32, 23, 127), types.float64: (64, 52, 1023)}.get(n, (0, 0, 0))

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            int_type = ir.IntType(bits)
            v = builder.fptosi(args[0], int_type)
            e = builder.shl(builder.add(v, ir.Constant(int_type, bias)), ir.Constant(int_type, mantissa))
            return builder.bitcast(e, context.get_value_type(n))

        return (n(n), codegen) if bits else None

    # Compiled as functions of their own (which LLVM then inlines into each kernel) so that they keep
    # their own fast-math flags: without "reassoc", the compiler may not fold (y - n HI) - n LO back
    # into y - n ln 2, which would lose the exactness of r that the formula relies on.
    options = {"fastmath": _FASTMATH - {"reassoc"}, "error_model": "numpy"}
    _pow2 = pow2  # type: ignore[assignment]  # the compiled stand-in for the Python function
    _exp_of = numba.njit(_exp_of, **options)
    _exp32 = numba.njit(_exp32, **options)
    _exp64 = numba.njit(_exp64, **options)
    _tanh_of = numba.njit(_tanh_of, **options)
    _tanh32 = numba.njit(_tanh32, **options)
    _tanh64 = numba.njit(_tanh64, **options)

    @overload(scratch, inline="always")
    def _scratch(n, like):  # type: ignore[no-untyped-def]
        return lambda n, like: numpy.empty(n, like.dtype)

    @overload(exp, inline="always")
    def _exp(x):  # type: ignore[no-untyped-def]  # Numba wants the same signature as exp's, unannotated
        if x == types.float32:
            return lambda x: _exp32(x)
        return (lambda x: _exp64(x)) if x == types.float64 else (lambda x: math.exp(x))

    @overload(tanh, inline="always")
    def _tanh(x):  # type: ignore[no-untyped-def]
        if x == types.float32:
            return lambda x: _tanh32(x)
        return (lambda x: _tanh64(x)) if x == types.float64 else (lambda x: math.tanh(x))


def _load() -> Any:
    global _numba
    if _numba is None:
        try:
            _numba = importlib.import_module("numba")
        except ImportError:
            _numba = False
        else:
            _register(_numba)
            _cache_on_disk(_numba)
    return _numba


def numba_available() -> bool:
    """Whether Numba is installed, so that CPU arrays get compiled kernels."""
    return bool(_load())


def numba_module() -> Any:
    """Numba if it has been loaded already, else None (this never imports it)."""
    return _numba or None


# Compiled kernels are cached on disk, so that only a process's first run pays for compiling (about
# a second per kernel and dtype). Numba keys its cache by the kernel's source file; but a kernel also
# compiles in this module's exp and tanh, so the key here is a hash of both files' contents: a change
# to either compiles afresh. The cache lives under the user's cache directory
# (``$XDG_CACHE_HOME/tinygrad_lm/numba``, else ``~/.cache/...``), or ``TINYGRAD_LM_CACHE_DIR``.
def cache_dir() -> str:
    """The directory of the compiled kernels' disk cache."""
    base = os.environ.get("TINYGRAD_LM_CACHE_DIR")
    if base:
        return os.path.join(base, "numba")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "tinygrad_lm", "numba")


def _cache_on_disk(numba: Any) -> None:
    """Register a Numba cache locator for the kernels of this package (see :func:`cache_dir`)."""
    from numba.core import caching

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    class KernelCacheLocator(caching._CacheLocator):  # type: ignore[misc]
        def __init__(self, py_func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self) -> str:
            return self._path

        def get_source_stamp(self) -> str:
            digest = hashlib.sha256()
            for path in (self._py_file, __file__):
                with open(path, "rb") as f:
                    digest.update(f.read())
            return digest.hexdigest()

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if not os.path.abspath(py_file).startswith(package + os.sep):
                return None
            locator = cls(py_func, py_file)
            try:
                locator.ensure_cache_path()
            except OSError:  # not writable: Numba's own locators are tried next (then no cache, see compiled)
                return None
            return locator

    caching.CacheImpl._locator_classes.insert(0, KernelCacheLocator)


def compiled(kernel: Callable[..., Any], *arrays: Any) -> Callable[..., Any] | None:
    """The compiled ``kernel`` for these arrays, or None (the op then takes its array path).

    NumPy float32/float64 arrays get the kernel compiled by Numba when it is installed: compiled on
    first use, or loaded from the disk cache (:func:`cache_dir`) that the first compile wrote. CuPy float32/float64
    arrays get the kernel's CUDA twin (:mod:`tinygrad_lm.fast.cuda_kernels`) where it has one. Other
    arrays get None.
    """
    # (an op asks this once or twice per call, so the usual case, NumPy arrays and a kernel compiled
    # before, comes first and costs a dictionary lookup: on 8x8 arrays the op's own work is a microsecond)
    if not arrays or type(arrays[0]) is not numpy.ndarray:
        if arrays and all(type(a).__module__.startswith("cupy") for a in arrays):
            if any(a.dtype.char not in "fd" for a in arrays):
                return None
            from . import cuda_kernels

            return cuda_kernels.twin(kernel)
    if not (_numba if _numba is not None else _load()):
        return None
    for a in arrays:
        if type(a) is not numpy.ndarray or a.dtype.char not in "fd":
            return None
    fn = _compiled.get(kernel)
    if fn is None:
        options = {"nogil": True, "fastmath": _FASTMATH, "error_model": "numpy"}
        # (only the package's own kernels are cached: Numba's cache must be able to import the kernel's module)
        try:
            fn = _numba.njit(kernel, cache=kernel.__module__.startswith("tinygrad_lm."), **options)
        except RuntimeError:  # "cannot cache function": no writable cache directory anywhere; compile in memory
            fn = _numba.njit(kernel, **options)
        _compiled[kernel] = fn
    return fn
