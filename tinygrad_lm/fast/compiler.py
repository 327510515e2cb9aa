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


# For kernels that run as parts on several threads at once (:mod:`.workers`): a flag array that the
# threads share, BLAS called from inside the kernel, and a way to give the core away while waiting.
def atomic_load(flags: Any, i: int) -> int:
    """Inside a kernel: ``flags[i]`` (int64) read afresh from memory, after the writes that preceded its store."""
    return int(flags[i])


def atomic_store(flags: Any, i: int, value: int) -> None:
    """Inside a kernel: ``flags[i] = value`` (int64), visible to another thread's :func:`atomic_load` only
    after every write this thread made before it."""
    flags[i] = value


def gemm(address: int, int_like: Any, a: Any, b: Any, c: Any, beta: float) -> None:
    """Inside a kernel: ``c = a @ b + beta * c`` by the BLAS ``cblas_?gemm`` at ``address``.

    a (m, k), b (k, n) and c (m, n) are 2-D views of one float dtype whose rows are contiguous;
    ``int_like`` (numpy.int32 or numpy.int64) has the BLAS's integer width. In plain Python the
    product is NumPy's (the address is not used)."""
    c[...] = a @ b + beta * c


def words(address: int, n: int) -> Any:
    """Inside a kernel: the ``n`` int64 values at ``address`` (a task's description), as an array."""
    import ctypes

    return numpy.ctypeslib.as_array((ctypes.c_int64 * int(n)).from_address(int(address)))


def floats(address: int, shape: Any, like: Any) -> Any:
    """Inside a kernel: the C-contiguous array of ``shape`` (an int or a tuple) of ``like``'s float type whose
    first element is at ``address`` (part of an array made elsewhere)."""
    import ctypes

    element = ctypes.c_float if numpy.dtype(type(like)) == numpy.float32 else ctypes.c_double
    dims = tuple(int(d) for d in shape) if isinstance(shape, tuple) else (int(shape),)
    return numpy.ctypeslib.as_array((element * math.prod(dims)).from_address(int(address))).reshape(dims)


def gemm_addresses(address: int, int_like: Any, like: Any, transpose_a: int, transpose_b: int, m: int, n: int,
                   k: int, a: int, lda: int, b: int, ldb: int, beta: float, c: int, ldc: int) -> None:
    """Inside a kernel: ``C = op(A) @ op(B) + beta * C`` by the BLAS ``cblas_?gemm`` at ``address``, on matrices
    given by the addresses of their first elements (row-major, as CBLAS takes them).

    op(A) is (m, k), op(B) (k, n), C (m, n); ``transpose_a`` (0 or 1) says that A is stored as its
    transpose (k, m); ``lda``, ``ldb``, ``ldc`` are the stored rows' strides in elements. ``like`` is a
    value of the matrices' float type, ``int_like`` one of the BLAS's integer type."""
    import ctypes

    f = ctypes.c_float if numpy.dtype(type(like)) == numpy.float32 else ctypes.c_double
    i = ctypes.c_int64 if numpy.dtype(type(int_like)) == numpy.int64 else ctypes.c_int32
    p = ctypes.c_void_p
    function = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f, p, i)
    integers = [int(v) for v in (m, n, k, a, lda, b, ldb, c, ldc)]  # (NumPy integers are not ctypes arguments)
    m, n, k, a, lda, b, ldb, c, ldc = integers
    function(int(address))(101, 112 if transpose_a else 111, 112 if transpose_b else 111, m, n, k, 1.0, a, lda, b,
                           ldb, float(beta), c, ldc)


def call(address: int) -> None:
    """Inside a kernel: call the C function ``void f(void)`` at ``address`` (its return value is dropped)."""
    import ctypes

    ctypes.CFUNCTYPE(None)(address)()


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

    _register_threads(numba)

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


def _register_threads(numba: Any) -> None:
    """Compiled :func:`atomic_load`, :func:`atomic_store`, :func:`gemm` and :func:`call` (LLVM atomics and
    calls through a function pointer)."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic, overload

    def element_pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
        array = context.make_array(array_type)(context, builder, array)
        return cgutils.get_item_pointer(context, builder, array_type, array, [index])

    def int64_array(t: Any) -> bool:
        return isinstance(t, types.Array) and t.dtype == types.int64

    @intrinsic
    def load_acquire(typingctx: Any, flags: Any, i: Any) -> Any:
        if not int64_array(flags):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
            return builder.load_atomic(pointer, "acquire", 8)

        return types.int64(flags, i), codegen

    @intrinsic
    def store_release(typingctx: Any, flags: Any, i: Any, value: Any) -> Any:
        if not int64_array(flags) or not isinstance(value, types.Integer):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
            value = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(value, pointer, "release", 8)
            return context.get_dummy_value()

        return types.void(flags, i, value), codegen

    @intrinsic
    def gemm_at(typingctx: Any, address: Any, int_like: Any, a: Any, b: Any, c: Any, beta: Any) -> Any:
        arrays = (a, b, c)
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == a.dtype for t in arrays):
            return None
        if a.dtype not in (types.float32, types.float64) or int_like not in (types.int32, types.int64):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            int_type, float_type = context.get_value_type(int_like), context.get_value_type(a.dtype)
            pointer_type, i32 = float_type.as_pointer(), ir.IntType(32)
            function_type = ir.FunctionType(ir.VoidType(), [i32, i32, i32, int_type, int_type, int_type, float_type,
                                                            pointer_type, int_type, pointer_type, int_type, float_type,
                                                            pointer_type, int_type])
            function = builder.inttoptr(args[0], function_type.as_pointer())
            views = [context.make_array(t)(context, builder, v) for t, v in zip(arrays, args[2:5])]
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(float_type))

            def as_int(value: Any) -> Any:
                return builder.trunc(value, int_type) if int_type.width < value.type.width else value

            def rows_and_stride(view: Any) -> tuple[Any, Any, Any]:
                rows, cols = cgutils.unpack_tuple(builder, view.shape, 2)
                row_stride = cgutils.unpack_tuple(builder, view.strides, 2)[0]
                # the leading dimension in elements, at least the row length (BLAS checks it even for one row)
                lead = builder.sdiv(row_stride, itemsize)
                lead = builder.select(builder.icmp_signed("<", lead, cols), cols, lead)
                lead = builder.select(builder.icmp_signed("<", lead, context.get_constant(types.intp, 1)),
                                      context.get_constant(types.intp, 1), lead)
                return rows, cols, lead

            (m, k, lda), (_, n, ldb), (_, _, ldc) = (rows_and_stride(v) for v in views)
            beta_value = context.cast(builder, args[5], sig.args[5], a.dtype)
            row_major, no_transpose = ir.Constant(i32, 101), ir.Constant(i32, 111)  # CblasRowMajor, CblasNoTrans
            builder.call(function, [row_major, no_transpose, no_transpose, as_int(m), as_int(n), as_int(k),
                                    ir.Constant(float_type, 1.0), views[0].data, as_int(lda), views[1].data,
                                    as_int(ldb), beta_value, views[2].data, as_int(ldc)])
            return context.get_dummy_value()

        return types.void(address, int_like, a, b, c, beta), codegen

    @intrinsic
    def int64_pointer(typingctx: Any, address: Any) -> Any:
        if not isinstance(address, types.Integer):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], ir.IntType(64).as_pointer())

        return types.CPointer(types.int64)(address), codegen

    @intrinsic
    def float_pointer(typingctx: Any, address: Any, like: Any) -> Any:
        if not isinstance(address, types.Integer) or like not in (types.float32, types.float64):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(like).as_pointer())

        return types.CPointer(like)(address, like), codegen

    @intrinsic
    def gemm_at_addresses(typingctx: Any, address: Any, int_like: Any, like: Any, transpose_a: Any, transpose_b: Any,
                          m: Any, n: Any, k: Any, a: Any, lda: Any, b: Any, ldb: Any, beta: Any, c: Any,
                          ldc: Any) -> Any:
        integers = (address, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, c, ldc)
        if like not in (types.float32, types.float64) or int_like not in (types.int32, types.int64):
            return None
        if not all(isinstance(t, types.Integer) for t in integers):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            int_type, float_type = context.get_value_type(int_like), context.get_value_type(like)
            pointer_type, i32, i64 = float_type.as_pointer(), ir.IntType(32), ir.IntType(64)
            function_type = ir.FunctionType(ir.VoidType(), [i32, i32, i32, int_type, int_type, int_type, float_type,
                                                            pointer_type, int_type, pointer_type, int_type, float_type,
                                                            pointer_type, int_type])
            values = [context.cast(builder, v, t, types.int64) for v, t in zip(args, sig.args)]
            (address_, _, _, trans_a, trans_b, m_, n_, k_, a_, lda_, b_, ldb_, _, c_, ldc_) = values

            def as_int(value: Any) -> Any:
                return builder.trunc(value, int_type) if int_type.width < 64 else value

            def op(flag: Any) -> Any:  # CblasNoTrans = 111, CblasTrans = 112
                transposed = builder.icmp_signed("!=", flag, ir.Constant(i64, 0))
                return builder.add(ir.Constant(i32, 111), builder.zext(transposed, i32))

            beta_value = context.cast(builder, args[12], sig.args[12], like)
            function = builder.inttoptr(address_, function_type.as_pointer())
            builder.call(function, [ir.Constant(i32, 101), op(trans_a), op(trans_b), as_int(m_), as_int(n_),
                                    as_int(k_), ir.Constant(float_type, 1.0), builder.inttoptr(a_, pointer_type),
                                    as_int(lda_), builder.inttoptr(b_, pointer_type), as_int(ldb_), beta_value,
                                    builder.inttoptr(c_, pointer_type), as_int(ldc_)])
            return context.get_dummy_value()

        return types.void(address, int_like, like, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c,
                          ldc), codegen

    @intrinsic
    def call_at(typingctx: Any, address: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            function_type = ir.FunctionType(ir.IntType(32), [])
            builder.call(builder.inttoptr(args[0], function_type.as_pointer()), [])
            return context.get_dummy_value()

        return types.void(address), codegen

    @overload(atomic_load, inline="always")
    def _atomic_load(flags, i):  # type: ignore[no-untyped-def]
        return lambda flags, i: load_acquire(flags, i)

    @overload(atomic_store, inline="always")
    def _atomic_store(flags, i, value):  # type: ignore[no-untyped-def]
        return lambda flags, i, value: store_release(flags, i, value)

    @overload(gemm, inline="always")
    def _gemm(address, int_like, a, b, c, beta):  # type: ignore[no-untyped-def]
        return lambda address, int_like, a, b, c, beta: gemm_at(address, int_like, a, b, c, beta)

    @overload(words, inline="always")
    def _words(address, n):  # type: ignore[no-untyped-def]
        return lambda address, n: numba.carray(int64_pointer(address), n)

    @overload(floats, inline="always")
    def _floats(address, shape, like):  # type: ignore[no-untyped-def]
        return lambda address, shape, like: numba.carray(float_pointer(address, like), shape)

    @overload(gemm_addresses, inline="always")
    def _gemm_addresses(address, int_like, like, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c,
                        ldc):  # type: ignore[no-untyped-def]
        return (lambda address, int_like, like, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc:
                gemm_at_addresses(address, int_like, like, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta,
                                  c, ldc))

    @overload(call, inline="always")
    def _call(address):  # type: ignore[no-untyped-def]
        return lambda address: call_at(address)


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
            for kernel in _callable_kernels:
                _make_callable(kernel)
    return _numba


def numba_available() -> bool:
    """Whether Numba is installed, so that CPU arrays get compiled kernels."""
    return bool(_load())


def numba_module() -> Any:
    """Numba if it has been loaded already, else None (this never imports it)."""
    return _numba or None


# Compiled kernels are cached on disk, so that only a process's first run pays for compiling (about
# a second per kernel and dtype). Numba keys its cache by the kernel's source file; but a kernel also
# compiles in this module's exp and tanh (and workers.py's barrier and task layout), so the key here is
# a hash of the three files' contents: a change to any compiles afresh. The cache lives under the user's cache directory
# (``$XDG_CACHE_HOME/tinygrad_lm/numba``, else ``~/.cache/...``), or ``TINYGRAD_LM_CACHE_DIR``.
def cache_dir() -> str:
    """The directory of the compiled kernels' disk cache."""
    base = os.environ.get("TINYGRAD_LM_CACHE_DIR")
    if base:
        return os.path.join(base, "numba")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "tinygrad_lm", "numba")


_WORKERS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers.py")


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
            for path in (self._py_file, __file__, _WORKERS_FILE):
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


_callable_kernels: list[Callable[..., Any]] = []  # kernels that other kernels call (see callable_in_kernels)


def callable_in_kernels(*kernels: Callable[..., Any]) -> None:
    """Let other kernels call these kernels: compiled, a call is compiled into the caller, with the
    same options as :func:`compiled` uses. Python calls and :func:`compiled` are unaffected."""
    for kernel in kernels:
        if kernel not in _callable_kernels:
            _callable_kernels.append(kernel)
            if _numba:
                _make_callable(kernel)


def _make_callable(kernel: Callable[..., Any]) -> None:
    import numba.extending

    numba.extending.register_jitable(**_options())(kernel)


def _options() -> dict[str, Any]:
    return {"nogil": True, "fastmath": _FASTMATH, "error_model": "numpy"}


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
        options = _options()
        # (only the package's own kernels are cached: Numba's cache must be able to import the kernel's module)
        try:
            fn = _numba.njit(kernel, cache=kernel.__module__.startswith("tinygrad_lm."), **options)
        except RuntimeError:  # "cannot cache function": no writable cache directory anywhere; compile in memory
            fn = _numba.njit(kernel, **options)
        _compiled[kernel] = fn
    return fn


_callbacks: dict[Callable[..., Any], int] = {}


def callback(kernel: Callable[[int], None]) -> int | None:
    """The address of ``kernel`` compiled as the C function ``void f(void *task)``, for a thread pool written in
    C to call (:func:`tinygrad_lm.fast.workers.run_on_blas_pool`); None without Numba.

    The kernel receives ``task`` as an integer (an ``intptr_t``, passed exactly as a pointer is) and
    reads what it points to with :func:`words`. Compiled on first use, cached on disk like :func:`compiled`.
    """
    address = _callbacks.get(kernel)
    if address is None:
        numba = _load()
        if not numba:
            return None
        options = _options()
        del options["nogil"]  # (a C callback holds no GIL to release)
        signature = numba.types.void(numba.types.intp)
        try:
            function = numba.cfunc(signature, cache=kernel.__module__.startswith("tinygrad_lm."), **options)(kernel)
        except RuntimeError:  # "cannot cache function": no writable cache directory anywhere; compile in memory
            function = numba.cfunc(signature, **options)(kernel)
        address = _callbacks[kernel] = function.address
        _callback_objects.append(function)  # the compiled code lives as long as its object
    return address


_callback_objects: list[Any] = []
