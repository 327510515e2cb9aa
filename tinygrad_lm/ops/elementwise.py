"""Elementwise ops. Inputs are raw arrays (or Python scalars for constants).

Binary ops broadcast; the engine reduces their gradients back to each input's
shape, so the ``backward`` methods here return full-size gradients.
"""
from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..fast import compiler as jit
from ..autograd import Function


class Add(Function):
    """d(a + b) = da + db"""

    def forward(self, a: Any, b: Any) -> Any:
        return a + b

    def backward(self, g: Any) -> tuple[Any, Any]:
        return g, g


class Sub(Function):
    """d(a - b) = da - db"""

    def forward(self, a: Any, b: Any) -> Any:
        return a - b

    def backward(self, g: Any) -> tuple[Any, Any]:
        return g, (-g if self.needs_grad[1] else None)


class Mul(Function):
    """d(a * b) = b da + a db"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return a * b

    def backward(self, g: Any) -> tuple[Any, Any]:
        return (g * self.b if self.needs_grad[0] else None), (g * self.a if self.needs_grad[1] else None)


class Div(Function):
    """d(a / b) = da / b - a db / b^2"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return a / b

    def backward(self, g: Any) -> tuple[Any, Any]:
        ga = g / self.b
        gb = -ga * self.a / self.b if self.needs_grad[1] else None
        return ga, gb


class Pow(Function):
    """d(a ** b) = b a^(b-1) da + a^b log(a) db"""

    def forward(self, a: Any, b: Any) -> Any:
        out = a**b
        self.a, self.b, self.out = a, b, out
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.a, self.b
        ga = g * b * a ** (b - 1) if self.needs_grad[0] else None
        gb = None
        if self.needs_grad[1]:
            log_a = math.log(a) if isinstance(a, (int, float)) else self.xp.log(a)
            gb = g * self.out * log_a
        return ga, gb


class Maximum(Function):
    """d max(a, b) = da where a > b, db where b > a, half each where they tie"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return self.xp.maximum(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.a, self.b
        share = (a > b) + 0.5 * (a == b)
        return g * share.astype(g.dtype), g * (1 - share).astype(g.dtype)


class Minimum(Function):
    """d min(a, b) = da where a < b, db where b < a, half each where they tie"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return self.xp.minimum(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.a, self.b
        share = (a < b) + 0.5 * (a == b)
        return g * share.astype(g.dtype), g * (1 - share).astype(g.dtype)


class Neg(Function):
    """d(-x) = -dx"""

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, g: Any) -> Any:
        return -g


class Exp(Function):
    """d exp(x) = exp(x) dx"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.exp(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * self.out


class Log(Function):
    """d log(x) = dx / x"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.log(x)

    def backward(self, g: Any) -> Any:
        return g / self.x


class Sqrt(Function):
    """d sqrt(x) = dx / (2 sqrt(x))"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.sqrt(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g / (2 * self.out)


class Abs(Function):
    """d |x| = sign(x) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.abs(x)

    def backward(self, g: Any) -> Any:
        return g * self.xp.sign(self.x)


class Tanh(Function):
    """d tanh(x) = (1 - tanh(x)^2) dx"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.tanh(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * (1 - self.out * self.out)


def sigmoid(xp: Any, x: Any) -> Any:
    """A numerically stable logistic function: never overflows exp for large |x|."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    """d sigma(x) = sigma(x) (1 - sigma(x)) dx"""

    def forward(self, x: Any) -> Any:
        self.out = sigmoid(self.xp, x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * self.out * (1 - self.out)


class Relu(Function):
    """d relu(x) = [x > 0] dx"""

    def forward(self, x: Any) -> Any:
        self.mask = x > 0
        return self.xp.maximum(x, 0)  # not x * mask: relu(-inf) is 0, not nan

    def backward(self, g: Any) -> Any:
        return g * self.mask


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_CUBIC = 0.044715

# The A&S erf approximation (backend.ERF_P, backend.ERF_A) that backend.erf uses for large float32 arrays.
_ERF_P, _ERF_A = backend.ERF_P, backend.ERF_A

# Float32 CPU inputs of at least this many elements take a fused GELU: Phi from MKL's vector
# math where MKL is installed (_gelu_cdf_kernel, about 2x faster again), else from A&S (the size
# from which backend.erf switches to the same formula); smaller ones, float64 and CuPy use erf.
GELU_FAST_MIN_SIZE = 4096
# A chain of ~20 elementwise passes runs over the flattened array in pieces of this many
# elements (256 KiB in float32): each piece and its temporaries stay in the L2 cache between
# passes instead of streaming the whole array from memory ~20 times. On a (2048, 512) float32
# GELU, 2^16 measured best: about 2x faster than whole-array passes, 2^13 is call-overhead bound.
BLOCK = 1 << 16


def _gelu_erf_kernel(xp: Any, x: Any, out: Any, dx: Any, t: Any) -> None:
    """out = x Phi(x), dx = Phi(x) + x phi(x), written in place, with Phi from A&S 7.1.26.

    With z = |x| / sqrt(2): Phi(-|x|) = erfc(z) / 2 = t P(t) exp(-x^2/2) / 2, and
    Phi(x) = 1/2 + sign(x) (1/2 - Phi(-|x|)). The same exp(-x^2/2) = sqrt(2 pi) phi(x)
    gives the derivative, so the whole GELU and its derivative cost one exp.
    """
    xp.abs(x, out=t)
    t *= _ERF_P * _INV_SQRT_2
    t += 1.0
    xp.reciprocal(t, out=t)  # t = 1 / (1 + p z)
    xp.multiply(t, 0.5 * _ERF_A[0], out=dx)
    for a in _ERF_A[1:]:
        dx += 0.5 * a
        dx *= t  # dx = t P(t) / 2 (Horner)
    xp.multiply(x, x, out=out)
    out *= -0.5
    xp.exp(out, out=out)  # out = exp(-x^2 / 2)
    dx *= out  # dx = Phi(-|x|)
    xp.subtract(0.5, dx, out=dx)
    xp.copysign(dx, x, out=dx)
    dx += 0.5  # dx = Phi(x)
    xp.multiply(x, out, out=t)
    t *= _INV_SQRT_2PI  # t = x phi(x)
    xp.multiply(x, dx, out=out)  # out = x Phi(x)
    dx += t


def _gelu_cdf_kernel(xp: Any, x: Any, out: Any, dx: Any, t: Any) -> None:
    """out = x Phi(x), dx = Phi(x) + x phi(x), written in place, with Phi from backend.normal_cdf (MKL)."""
    backend.normal_cdf(x, dx)  # dx = Phi(x)
    xp.multiply(x, x, out=t)
    t *= -0.5
    xp.exp(t, out=t)
    t *= x
    t *= _INV_SQRT_2PI  # t = x phi(x) = x exp(-x^2 / 2) / sqrt(2 pi)
    xp.multiply(x, dx, out=out)  # out = x Phi(x)
    dx += t


def _gelu_tanh_kernel(xp: Any, x: Any, out: Any, dx: Any, t: Any) -> None:
    """out = x h, dx = h + x (1 - tanh^2 u) u' / 2, written in place, where

    u = sqrt(2/pi) (x + c x^3), u' = sqrt(2/pi) (1 + 3 c x^2), h = (1 + tanh u) / 2.
    """
    xp.multiply(x, x, out=dx)
    dx *= 3.0 * _TANH_CUBIC
    dx += 1.0
    dx *= _SQRT_2_OVER_PI  # dx = u' = sqrt(2/pi) (1 + 3 c x^2)
    dx *= x
    dx *= 0.5  # dx = x u' / 2
    xp.multiply(x, x, out=t)
    t *= _TANH_CUBIC
    t += 1.0
    t *= x
    t *= _SQRT_2_OVER_PI
    xp.tanh(t, out=t)  # t = tanh u
    xp.multiply(t, t, out=out)
    xp.subtract(1.0, out, out=out)
    dx *= out  # dx = x (1 - tanh^2 u) u' / 2
    t += 1.0
    t *= 0.5  # t = h
    dx += t
    xp.multiply(x, t, out=out)  # out = x h


def _gelu_jit_float32(x: Any, out: Any, dx: Any) -> None:
    """The float32 kernel: out = x Phi(x) and dx = Phi(x) + x phi(x), one element at a time, with Phi
    from A&S 7.1.26 and one exp shared by Phi and phi, as in :func:`_gelu_erf_kernel` (flat arrays)."""
    f = x.dtype.type
    p = f(_ERF_P * _INV_SQRT_2)
    a5, a4, a3 = f(0.5 * _ERF_A[0]), f(0.5 * _ERF_A[1]), f(0.5 * _ERF_A[2])  # A&S's a_k / 2, a5 first
    a2, a1 = f(0.5 * _ERF_A[3]), f(0.5 * _ERF_A[4])
    half, one, c = f(0.5), f(1), f(_INV_SQRT_2PI)
    for k in range(x.size):
        v = x[k]
        t = one / (one + p * abs(v))
        e = jit.exp(-half * v * v)  # sqrt(2 pi) phi(v)
        tail = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * e  # Phi(-|v|)
        cdf = one - tail if v >= 0 else tail
        out[k] = v * cdf
        dx[k] = cdf + c * v * e


def _gelu_jit_exact(x: Any, out: Any, dx: Any) -> None:
    """The float64 kernel: the same with Phi(v) = (1 + erf(v / sqrt 2)) / 2 from libm (flat arrays)."""
    for k in range(x.size):
        v = x[k]
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT_2))
        out[k] = v * cdf
        dx[k] = cdf + _INV_SQRT_2PI * v * math.exp(-0.5 * v * v)


class Gelu(Function):
    """gelu(x) = x Phi(x); d gelu(x) = (Phi(x) + x phi(x)) dx.

    ``approximate='tanh'`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    The derivative is computed in forward from the same intermediates (one exp or one tanh
    per element for both) and saved, so backward is a single product dy * gelu'(x). Large
    CPU inputs run the chain of passes block by block (:func:`_elementwise_chain`).
    """

    def forward(self, x: Any, approximate: str = "none") -> Any:
        xp = self.xp
        on_cpu = self.device == "cpu"
        if approximate == "tanh":
            out, self.dx = _elementwise_chain(xp, _gelu_tanh_kernel, x, blocked=on_cpu and x.size > BLOCK)
            return out
        kernel = jit.compiled(_gelu_jit_float32 if x.dtype == "float32" else _gelu_jit_exact, x)
        if kernel is not None:  # one compiled pass computes both
            flat = xp.ascontiguousarray(x).reshape(-1)
            out, self.dx = xp.empty_like(flat), xp.empty_like(flat)
            kernel(flat, out, self.dx)
            self.dx = self.dx.reshape(x.shape)
            return out.reshape(x.shape)
        if on_cpu and x.dtype == "float32" and x.size >= GELU_FAST_MIN_SIZE:
            kernel = _gelu_cdf_kernel if backend.fast_normal_cdf_available(x) else _gelu_erf_kernel
            out, self.dx = _elementwise_chain(xp, kernel, x, blocked=x.size > BLOCK)
            return out
        cdf = 0.5 * (1 + backend.erf(x * _INV_SQRT_2))
        self.dx = cdf + x * (_INV_SQRT_2PI * xp.exp(-0.5 * x * x))
        return x * cdf

    def backward(self, g: Any) -> Any:
        return g * self.dx


def _elementwise_chain(xp: Any, kernel: Any, x: Any, blocked: bool) -> tuple[Any, Any]:
    """(out, dx) from ``kernel(xp, x, out, dx, tmp)``: over the whole array at once, or, when
    ``blocked``, over consecutive BLOCK-element pieces of the flattened array (same values)."""
    flat = x.reshape(-1)
    n = flat.size
    out, dx = xp.empty_like(flat), xp.empty_like(flat)
    step = BLOCK if blocked else max(n, 1)
    tmp = xp.empty(min(step, n), dtype=flat.dtype)
    for i in range(0, n, step):
        j = min(i + step, n)
        kernel(xp, flat[i:j], out[i:j], dx[i:j], tmp[: j - i])
    return out.reshape(x.shape), dx.reshape(x.shape)


class Sin(Function):
    """d sin(x) = cos(x) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.sin(x)

    def backward(self, g: Any) -> Any:
        return g * self.xp.cos(self.x)


class Cos(Function):
    """d cos(x) = -sin(x) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.cos(x)

    def backward(self, g: Any) -> Any:
        return -g * self.xp.sin(self.x)


class Clamp(Function):
    """d clamp(x, lo, hi) = [lo <= x <= hi] dx"""

    def forward(self, x: Any, min: Any = None, max: Any = None) -> Any:
        self.mask = None
        out = x
        if min is not None:
            out = self.xp.maximum(out, min)
        if max is not None:
            out = self.xp.minimum(out, max)
        if min is not None or max is not None:
            self.mask = out == x
        return out.astype(x.dtype, copy=False)

    def backward(self, g: Any) -> Any:
        return g if self.mask is None else g * self.mask


class Where(Function):
    """d where(c, a, b) = [c] da + [not c] db"""

    def forward(self, cond: Any, a: Any, b: Any) -> Any:
        self.cond = cond
        return self.xp.where(cond, a, b)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        zero = g.dtype.type(0)
        ga = self.xp.where(self.cond, g, zero) if self.needs_grad[1] else None
        gb = self.xp.where(self.cond, zero, g) if self.needs_grad[2] else None
        return None, ga, gb


class Cast(Function):
    """d cast(x) = cast back(dx)"""

    def forward(self, x: Any, dtype: Any = None) -> Any:
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g: Any) -> Any:
        return g.astype(self.dtype)


_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Exp2(Function):
    """d 2^x = ln(2) 2^x dx"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.exp2(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * self.out * _LN2


class Expm1(Function):
    """d (e^x - 1) = e^x dx"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.expm1(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * (self.out + 1)


class Log2(Function):
    """d log2(x) = dx / (x ln 2)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.log2(x)

    def backward(self, g: Any) -> Any:
        return g / (self.x * _LN2)


class Log10(Function):
    """d log10(x) = dx / (x ln 10)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.log10(x)

    def backward(self, g: Any) -> Any:
        return g / (self.x * _LN10)


class Log1p(Function):
    """d log(1 + x) = dx / (1 + x)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.log1p(x)

    def backward(self, g: Any) -> Any:
        return g / (1 + self.x)


class Rsqrt(Function):
    """d x^(-1/2) = -x^(-3/2) / 2 dx"""

    def forward(self, x: Any) -> Any:
        self.out = 1 / self.xp.sqrt(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * (-0.5 * self.out * self.out * self.out)


class Reciprocal(Function):
    """d (1/x) = -dx / x^2"""

    def forward(self, x: Any) -> Any:
        self.out = 1 / x
        return self.out

    def backward(self, g: Any) -> Any:
        return -g * self.out * self.out


class Tan(Function):
    """d tan(x) = (1 + tan(x)^2) dx"""

    def forward(self, x: Any) -> Any:
        self.out = self.xp.tan(x)
        return self.out

    def backward(self, g: Any) -> Any:
        return g * (1 + self.out * self.out)


class Asin(Function):
    """d asin(x) = dx / sqrt(1 - x^2)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arcsin(x)

    def backward(self, g: Any) -> Any:
        return g / self.xp.sqrt(1 - self.x * self.x)


class Acos(Function):
    """d acos(x) = -dx / sqrt(1 - x^2)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arccos(x)

    def backward(self, g: Any) -> Any:
        return -g / self.xp.sqrt(1 - self.x * self.x)


class Atan(Function):
    """d atan(x) = dx / (1 + x^2)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arctan(x)

    def backward(self, g: Any) -> Any:
        return g / (1 + self.x * self.x)


class Atan2(Function):
    """d atan2(a, b) = (b da - a db) / (a^2 + b^2)"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return self.xp.arctan2(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.a, self.b
        scale = g / (a * a + b * b)
        return (scale * b if self.needs_grad[0] else None), (-scale * a if self.needs_grad[1] else None)


class Sinh(Function):
    """d sinh(x) = cosh(x) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.sinh(x)

    def backward(self, g: Any) -> Any:
        return g * self.xp.cosh(self.x)


class Cosh(Function):
    """d cosh(x) = sinh(x) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.cosh(x)

    def backward(self, g: Any) -> Any:
        return g * self.xp.sinh(self.x)


class Erf(Function):
    """d erf(x) = 2 / sqrt(pi) exp(-x^2) dx"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return backend.erf(x).astype(x.dtype, copy=False)

    def backward(self, g: Any) -> Any:
        return g * (_TWO_OVER_SQRT_PI * self.xp.exp(-self.x * self.x))


class Piecewise(Function):
    """floor, ceil, round, trunc, sign: piecewise constant, so d f(x) = 0 (as PyTorch)"""

    def forward(self, x: Any, fn: str = "floor", decimals: int = 0) -> Any:
        self.shape = x.shape
        if fn == "round" and decimals:
            return self.xp.round(x, decimals)
        return getattr(self.xp, fn)(x)

    def backward(self, g: Any) -> Any:
        return self.xp.zeros(self.shape, dtype=g.dtype)


class Fmod(Function):
    """fmod(a, b) = a - trunc(a / b) b; d = da - trunc(a / b) db"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return self.xp.fmod(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        gb = -g * self.xp.trunc(self.a / self.b) if self.needs_grad[1] else None
        return g, gb


class Remainder(Function):
    """remainder(a, b) = a - floor(a / b) b (the sign of b, Python's %); d = da - floor(a / b) db"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a, self.b = a, b
        return self.xp.remainder(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        gb = -g * self.xp.floor(self.a / self.b) if self.needs_grad[1] else None
        return g, gb


class FloorDivide(Function):
    """floor(a / b), piecewise constant: d = 0 for both"""

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = (getattr(a, "shape", ()), getattr(b, "shape", ()))
        return self.xp.floor_divide(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        zero = self.xp.zeros_like(g)
        return zero, zero


class Asinh(Function):
    """d asinh(x) = dx / sqrt(x^2 + 1)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arcsinh(x)

    def backward(self, g: Any) -> Any:
        return g / self.xp.sqrt(self.x * self.x + 1)


class Acosh(Function):
    """d acosh(x) = dx / sqrt(x^2 - 1)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arccosh(x)

    def backward(self, g: Any) -> Any:
        return g / self.xp.sqrt(self.x * self.x - 1)


class Atanh(Function):
    """d atanh(x) = dx / (1 - x^2)"""

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.xp.arctanh(x)

    def backward(self, g: Any) -> Any:
        return g / (1 - self.x * self.x)
