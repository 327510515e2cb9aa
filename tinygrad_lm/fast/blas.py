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

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy

from .. import ops
from ..backend import cupy_module
from . import register


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` (into ``out`` when given) on either backend, with NumPy's rules for shapes and batch axes;
    2-D float products on a GPU go straight to cuBLAS."""
    if isinstance(a, (numpy.ndarray, numpy.generic)):
        return numpy.matmul(a, b, out=out) if out is not None else numpy.matmul(a, b)
    if _is_cupy_float_2d(a, b) and a.shape[1] == b.shape[0]:
        if out is None:
            out = cupy_module().empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        if _is_cupy_float_2d(a, out) and out.shape == (a.shape[0], b.shape[1]):
            return _cupy_gemm(a, b, out, beta=0.0)
    return cupy_module().matmul(a, b, out=out)


def addmm(bias: Any, a: Any, b: Any) -> Any:
    """``a @ b + bias`` for a (m, k), b (k, n) and a bias row (n,): a Linear layer's forward.

    On a GPU the output is first filled with the bias rows and cuBLAS adds the product to it
    (beta = 1), one pass over the output fewer than a GEMM followed by the addition.
    """
    if _is_cupy_float_2d(a, b) and bias.shape == b.shape[1:] and bias.dtype == a.dtype:
        out = cupy_module().empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        out[...] = bias
        return _cupy_gemm(a, b, out, beta=1.0)
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
    """The reference product, with 2-D float products on a GPU sent straight to cuBLAS."""

    product = staticmethod(matmul)


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
            gb = matmul(self.xp.ones(g2.shape[0], dtype=g2.dtype), g2) if self.device == "cpu" else g2.sum(axis=0)
        return gx, gw, gb
