"""BLAS strategy: how the fast ops hand their products to BLAS.

Three things make the same products cheaper than the reference ops' ``x @ w``:

- A Linear layer's bias goes into the GEMM's output before the product (cuBLAS's beta = 1 adds
  the product to it: one pass over the output fewer), and its gradient, a sum over the rows,
  is one vector-matrix product ``1^T dy`` (0.13 ms against 0.18 for a NumPy sum over axis 0 at
  2048 x 384, and nearer the float64 sum, as BLAS adds in blocks).
- A recurrent weight, multiplied once per time step, is made contiguous once for the whole
  sequence (:class:`RightFactor`): OpenBLAS multiplies a contiguous matrix faster than a
  transposed view.
- On a GPU, 2-D float products call cuBLAS's ``?gemm`` directly (:func:`_cublas_row_major`),
  without the 18 us of Python that ``cupy.matmul`` spends per call, which an LSTM pays twice
  per time step.

NumPy's own BLAS (OpenBLAS in the wheels on PyPI) does every product on the CPU: one BLAS
runtime, one thread pool per process (see ``tinygrad_lm.set_num_threads``).
"""
from __future__ import annotations

import ctypes
import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy

from .. import ops
from ..backend import cupy_module
from . import compiler, layouts, register, workers


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` (into ``out`` when given) on either backend, with NumPy's rules for shapes and batch axes;
    2-D float products on a GPU go straight to cuBLAS, large batches of products on the CPU are split
    between OpenBLAS's threads (:func:`batched_on_blas_pool`). An ``out`` whose matrices are stored by
    columns gets (b^T a^T)^T, so that BLAS writes it in place (NumPy would loop in C without BLAS)."""
    if isinstance(a, (numpy.ndarray, numpy.generic)):
        if out is not None and min(a.ndim, getattr(b, "ndim", 0), out.ndim) >= 2:
            layout = _blas_layout(out)
            if layout is not None and layout[0] == 1:  # stored by columns
                matmul(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out.swapaxes(-1, -2))
                return out
        if a.ndim > 2 or getattr(b, "ndim", 0) > 2:
            c = batched_on_blas_pool(a, b, out)
            if c is not None:
                return c
        return numpy.matmul(a, b) if out is None else numpy.matmul(a, b, out=out)
    if _is_cupy_float_2d(a, b) and a.shape[1] == b.shape[0]:
        if out is None:
            out = cupy_module().empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        if _is_cupy_float_2d(a, out) and out.shape == (a.shape[0], b.shape[1]):
            return _cupy_gemm(a, b, out, beta=0.0)
    return cupy_module().matmul(a, b, out=out)


def matmul_like(a: Any, b: Any, like: Any) -> Any:
    """``a @ b`` laid out in memory as ``like`` is (:func:`layouts.empty_like_inputs`), where the product has
    ``like``'s shape and dtype: an input's gradient in its input's layout; else a plain product."""
    if type(a) is numpy.ndarray and type(b) is numpy.ndarray and a.ndim >= 2 and b.ndim >= 2:
        # the usual case: a plain product is laid out as ``like`` is (this skips the 5-10 us of working out its shape)
        if type(like) is numpy.ndarray and like.flags.c_contiguous and not layouts.in_split(like):
            return matmul(a, b)
        try:
            shape = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        except ValueError:
            return matmul(a, b)  # (which says why)
        return matmul(a, b, out=layouts.empty_like_inputs([like], [shape], numpy.result_type(a, b))[0])
    return matmul(a, b)


# A batch of products is split between threads from this many multiply-adds on (the hand-off to a
# waiting thread costs 5-80 us; see fast/workers.py). NumPy runs a batch as one BLAS call per matrix,
# and OpenBLAS runs each small one on one thread: `gpt`'s attention products, 128 of 64 x 64 x 32,
# took 1.0-1.5 ms that way and 0.6-1.0 ms split in two, right after a large product.
MIN_BATCHED_WORK = 1 << 21
# ... and from this many per product: below, the hand-off costs more than half the products save (2 threads,
# in-process medians: 128 products of 16 x 64 x 16 took 192 us in one piece against 311 split, 32 x 32 x 32
# 311 against 368; 64 x 16 x 64, 65 K, 687 against 634).
MIN_PRODUCT_WORK = 1 << 16
MAX_BATCH_AXES = 4
_BATCH = 17  # where a task's batch shape starts; the operands' batch strides (bytes) follow, 4 words each


def batched_on_blas_pool(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` for NumPy arrays with batch axes (NumPy's broadcasting rules), its matrices shared out between
    OpenBLAS's threads (:func:`workers.run_on_blas_pool`), each product one ``cblas_?gemm`` call, into ``out``
    when given (any batch strides, rows of contiguous elements); None where that does not apply: other
    arrays, a batch too small to split, one thread, no such pool, or matrices that BLAS cannot read or
    write in place (then NumPy's own ``matmul`` is the one to use)."""
    if type(a) is not numpy.ndarray or type(b) is not numpy.ndarray or a.ndim < 2 or b.ndim < 2:
        return None
    dtype = a.dtype
    if b.dtype != dtype or dtype.char not in "fd" or not dtype.isnative:
        return None
    (m, k), (k_b, n) = a.shape[-2:], b.shape[-2:]
    if k != k_b or min(m, n, k) == 0:
        return None
    try:
        batch = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return None  # NumPy says why
    count = math.prod(batch)
    if len(batch) > MAX_BATCH_AXES or count * m * n * k < MIN_BATCHED_WORK or m * n * k < MIN_PRODUCT_WORK:
        return None
    layout_a, layout_b = _blas_layout(a), _blas_layout(b)
    if layout_a is None or layout_b is None:
        return None
    ldc = n
    if out is not None:
        layout_c = _blas_layout(out) if type(out) is numpy.ndarray and out.dtype == dtype else None
        if layout_c is None or layout_c[0] != 0 or out.shape != batch + (m, n) or not out.flags.writeable:
            return None
        ldc = layout_c[1]
    parts = workers.blas_pool_parts(count)
    blas = workers.numpy_blas()
    if parts < 2 or blas is None:
        return None
    c = numpy.empty(batch + (m, n), dtype=dtype) if out is None else out
    tasks = workers.new_tasks(parts)
    words = tasks[0]
    words[0], words[3], words[4] = blas.gemm[dtype.name], len(batch), dtype.itemsize
    words[5] = numpy.dtype(blas.int_like).itemsize
    words[6:17] = (m, n, k, *layout_a, *layout_b, ldc, a.ctypes.data, b.ctypes.data, c.ctypes.data)
    nd = len(batch)
    words[_BATCH:_BATCH + nd] = batch
    for i, x in enumerate((a, b, c)):  # a stride of 0 along an axis the operand is broadcast over
        start = _BATCH + MAX_BATCH_AXES * (i + 1)
        shape, strides = x.shape[:-2], x.strides[:-2]
        words[start + nd - len(shape):start + nd] = [0 if size == 1 else stride for size, stride in zip(shape, strides)]
    tasks[1:] = words
    for p in range(parts):
        tasks[p, 1], tasks[p, 2] = count * p // parts, count * (p + 1) // parts
    workers.run_on_blas_pool(_batched_part, tasks)
    return c


def _blas_layout(x: Any) -> tuple[int, int] | None:
    """How CBLAS (row-major) reads the last two axes of ``x`` in place: (0, row stride) for rows of
    contiguous elements, (1 = transposed, column stride) for contiguous columns; None otherwise."""
    rows, cols = x.shape[-2:]
    row_stride, col_stride = x.strides[-2:]
    size = x.itemsize
    if rows > 1 and cols > 1:
        if col_stride == size and row_stride % size == 0 and row_stride >= cols * size:
            return 0, row_stride // size
        if row_stride == size and col_stride % size == 0 and col_stride >= rows * size:
            return 1, col_stride // size
    return None


def _batched_piece(w: Any, like: Any, int_like: Any) -> None:
    """The products ``first .. last - 1`` of a batch, in floats of ``like``'s type with the BLAS integers of
    ``int_like``'s, from the words of :func:`_batched_part`."""
    nd = w[3]
    for i in range(w[1], w[2]):
        a, b, c = w[14], w[15], w[16]
        rest = i
        for axis in range(nd - 1, -1, -1):  # the product's position in the batch, last axis fastest
            size = w[_BATCH + axis]
            j = rest % size
            rest //= size
            a += j * w[_BATCH + MAX_BATCH_AXES + axis]
            b += j * w[_BATCH + 2 * MAX_BATCH_AXES + axis]
            c += j * w[_BATCH + 3 * MAX_BATCH_AXES + axis]
        compiler.gemm_addresses(w[0], int_like, like, w[9], w[11], w[6], w[7], w[8], a, w[10], b, w[12], 0.0, c, w[13])


compiler.callable_in_kernels(_batched_piece)


def _batched_part(task: int) -> None:
    """One thread's share of :func:`batched_on_blas_pool`: the products ``first .. last - 1`` of the batch.

    The task's words: 0 the ``cblas_?gemm`` address, 1-2 first and last, 3 the batch axes, 4 the float
    size, 5 the BLAS's integer size, 6-8 m, n, k, 9-10 a's transposition and leading dimension, 11-12
    b's, 13 c's leading dimension, 14-16 the addresses of a, b, c, then the batch shape and the three
    operands' batch strides in bytes (:data:`MAX_BATCH_AXES` words each)."""
    w = compiler.words(task, workers.TASK_WORDS)
    # (one call per type: compiled, `int64(0) if ... else int32(0)` would unify to int64)
    if w[4] == 4:
        if w[5] == 8:
            _batched_piece(w, numpy.float32(0), numpy.int64(0))
        else:
            _batched_piece(w, numpy.float32(0), numpy.int32(0))
    elif w[5] == 8:
        _batched_piece(w, numpy.float64(0), numpy.int64(0))
    else:
        _batched_piece(w, numpy.float64(0), numpy.int32(0))


def addmm(bias: Any, a: Any, b: Any) -> Any:
    """``a @ b + bias`` for a (m, k), b (k, n) and a bias row (n,): a Linear layer's forward.

    The output is first filled with the bias rows and the BLAS adds the product to it (beta = 1),
    one pass over the output fewer than a GEMM followed by the addition: cuBLAS on a GPU, NumPy's
    OpenBLAS on the CPU (:func:`_numpy_gemm_into`; with beta = 0, OpenBLAS would zero the output
    first). At `gpt`'s Linear sizes, (2048, 128) @ (128, 384) and the like, 7-8% faster on 2 threads
    than ``a @ b`` and ``+= bias``.
    """
    if _is_cupy_float_2d(a, b) and bias.shape == b.shape[1:] and bias.dtype == a.dtype:
        out = cupy_module().empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        out[...] = bias
        return _cupy_gemm(a, b, out, beta=1.0)
    out = _numpy_gemm_into(bias, a, b)
    if out is not None:
        return out
    out = matmul(a, b)
    out += bias
    return out


_numpy_gemms: dict[tuple[str, Any], Any] = {}  # (dtype name, BLAS integer type) -> cblas_?gemm as a ctypes function

# Below this many output elements, ``a @ b`` then ``+= bias`` is faster than one GEMM into the bias rows: the
# ctypes call and its three address lookups cost about 25 us on the project's machine, more than the bias pass
# over a small output (1 thread: (32, 128) @ (128, 64) took 15 us that way against 40; (256, 128) @ (128, 128)
# 156 against 151). The makemore RNN and GRU cells run such products at every time step.
ADDMM_MIN_OUTPUT = 1 << 16


def _numpy_gemm_into(bias: Any, a: Any, b: Any) -> Any:
    """``bias + a @ b`` as one ``cblas_?gemm`` of NumPy's OpenBLAS with beta = 1 into the bias rows, for NumPy
    float arrays that BLAS reads in place; None otherwise (or without such a BLAS)."""
    if type(a) is not numpy.ndarray or type(b) is not numpy.ndarray or type(bias) is not numpy.ndarray:
        return None
    dtype = a.dtype
    if a.ndim != 2 or b.ndim != 2 or dtype.char not in "fd" or not dtype.isnative or b.dtype != dtype:
        return None
    (m, k), (k_b, n) = a.shape, b.shape
    if k != k_b or bias.shape != (n,) or bias.dtype != dtype or min(m, n, k) < 2 or m * n < ADDMM_MIN_OUTPUT:
        return None
    layout_a, layout_b = _blas_layout(a), _blas_layout(b)
    blas = workers.numpy_blas()
    if layout_a is None or layout_b is None or blas is None:
        return None
    key = (dtype.name, blas.int_like)
    gemm = _numpy_gemms.get(key)
    if gemm is None:
        real = ctypes.c_float if dtype.char == "f" else ctypes.c_double
        integer = ctypes.c_int64 if blas.int_like is numpy.int64 else ctypes.c_int32
        signature = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer, real,
                                     ctypes.c_void_p, integer, ctypes.c_void_p, integer, real, ctypes.c_void_p, integer)
        gemm = _numpy_gemms[key] = signature(blas.gemm[dtype.name])
    out = numpy.empty((m, n), dtype=dtype)
    out[...] = bias
    (transpose_a, lda), (transpose_b, ldb) = layout_a, layout_b
    gemm(101, 112 if transpose_a else 111, 112 if transpose_b else 111, m, n, k, 1.0, a.ctypes.data, lda,
         b.ctypes.data, ldb, 1.0, out.ctypes.data, n)  # CblasRowMajor, CblasNoTrans (111) or CblasTrans (112)
    return out


def _is_cupy_float_2d(*arrays: Any) -> bool:
    """Whether every array is a 2-D float32/float64 CuPy array of one dtype (what :func:`_cupy_gemm` takes)."""
    first = arrays[0]
    if isinstance(first, (numpy.ndarray, numpy.generic)):  # (the CPU's case, without the generator below)
        return False
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

    It keeps a C-contiguous copy of ``b`` (``b`` itself when it already is one), which BLAS
    multiplies faster than a transposed view, for every step. Use it through
    :func:`matmul_right` or :func:`matmul_right_steps`.
    """

    __slots__ = ("b",)

    def __init__(self, b: Any) -> None:
        contiguous = b.flags.c_contiguous
        self.b = b if contiguous else _array_module(b).ascontiguousarray(b)


def _array_module(array: Any) -> Any:
    return numpy if isinstance(array, (numpy.ndarray, numpy.generic)) else cupy_module()


def matmul_right(a: Any, right: RightFactor, out: Any, accumulate: bool = False) -> Any:
    """``out = a @ right.b``, or ``out += a @ right.b`` with ``accumulate``; ``a`` is (m, k), ``out`` (m, n)."""
    if accumulate:
        if _is_cupy_float_2d(a, right.b, out) and out.flags.c_contiguous:
            return _cupy_gemm(a, right.b, out, beta=1.0)  # one cuBLAS call adds the product into out
        out += matmul(a, right.b)
        return out
    return matmul(a, right.b, out=out)


def matmul_right_steps(a: Any, right: RightFactor, out: Any, accumulate: bool = False) -> Callable[[int], None]:
    """A function of t that runs ``matmul_right(a[t], right, out[t], accumulate)``: a recurrence's T products.

    ``a`` is (T, m, k); ``out`` is (T, m, n), or one (m, n) array that every step writes.
    Steps outside 0 .. T-1 raise IndexError.
    """
    T = a.shape[0]
    per_step = out.ndim == 3
    k, n = right.b.shape
    if a.ndim != 3 or a.shape[2] != k or out.shape[-2:] != (a.shape[1], n) or (per_step and out.shape[0] != T):
        raise ValueError(f"matmul_right_steps: a {a.shape} and out {out.shape} do not fit a right factor of shape "
                         f"{right.b.shape} (expected (T, m, {k}) and (T, m, {n}) or (m, {n}))")

    def step(t: int) -> None:
        if not 0 <= t < T:
            raise IndexError(f"matmul_right_steps: step {t} is outside 0 .. {T - 1}")
        matmul_right(a[t], right, out=out[t] if per_step else out, accumulate=accumulate)

    return step


@register(ops.Matmul)
class Matmul(ops.Matmul):
    """The reference product, with 2-D float products on a GPU sent straight to cuBLAS, and each input's
    gradient laid out in memory as its input (:func:`matmul_like`)."""

    product = staticmethod(matmul)
    product_like = staticmethod(matmul_like)


_ones_rows: dict[Any, Any] = {}  # dtype -> a read-only vector of ones, the longest asked for so far


def _ones(n: int, dtype: Any) -> Any:
    """A read-only NumPy vector of ``n`` ones (a view of one kept per dtype: a Linear's bias gradient is 1^T dy)."""
    ones = _ones_rows.get(dtype)
    if ones is None or ones.shape[0] < n:
        ones = numpy.ones(max(n, 1024), dtype=dtype)
        ones.flags.writeable = False
        _ones_rows[dtype] = ones
    return ones[:n]


@register(ops.Linear)
class Linear(ops.Linear):
    """The reference Linear with the bias inside the GEMM (a GPU's forward) and db = 1^T dy (a CPU's backward)."""

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        out_features, in_features = weight.shape
        x2 = x.reshape(math.prod(x.shape[:-1]), in_features)  # (M, in)
        out = matmul(x2, weight.T) if bias is None else addmm(bias, x2, weight.T)  # (M, out)
        self.x2, self.weight, self.x_shape, self.has_bias = x2, weight, x.shape, bias is not None
        return out.reshape(x.shape[:-1] + (out_features,))  # (..., out)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        need_x, need_w, need_b = self.needs_grad[0], self.needs_grad[1], self.has_bias and self.needs_grad[2]
        g2 = g.reshape(self.x2.shape[0], self.weight.shape[0])  # (M, out)
        g2 = self.xp.ascontiguousarray(g2)  # a broadcast gradient (from sum()) has zero strides
        gx = matmul(g2, self.weight).reshape(self.x_shape) if need_x else None  # (..., in)
        gw = matmul(g2.T, self.x2) if need_w else None  # (out, in)
        gb = None
        if need_b:  # (out,): a vector-matrix product on the CPU; CuPy's einsum costs 100 us to parse
            gb = matmul(_ones(g2.shape[0], g2.dtype), g2) if self.device == "cpu" else g2.sum(axis=0)
        return gx, gw, gb
