"""Elementwise ops. Inputs are raw arrays (or Python scalars for constants).

Binary ops broadcast; the engine reduces their gradients back to each input's
shape, so the ``backward`` methods here return full-size gradients.
"""
from __future__ import annotations

import math
from typing import Any

from .. import backend, generators
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
        # A Python number is a constant: no gradient goes to it, so the other factor, needed only for that
        # gradient, is not kept (attention scores scaled by hand, ``(q @ k^T) * scale``, are then freed at once).
        self.a = None if isinstance(b, (int, float)) else a
        self.b = None if isinstance(a, (int, float)) else b
        return a * b

    def backward(self, g: Any) -> tuple[Any, Any]:
        return (g * self.b if self.needs_grad[0] else None), (g * self.a if self.needs_grad[1] else None)


class Div(Function):
    """d(a / b) = da / b - a db / b^2"""

    def forward(self, a: Any, b: Any) -> Any:
        self.a = None if isinstance(b, (int, float)) else a  # needed only for the gradient of b (as in Mul)
        self.b = b
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


class Gelu(Function):
    """gelu(x) = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2; d gelu(x) = (Phi(x) + x phi(x)) dx, phi = Phi'.

    ``approximate='tanh'``: gelu(x) = x h(x), h = (1 + tanh u) / 2, u = sqrt(2/pi) (x + 0.044715 x^3);
    d gelu(x) = (h + x (1 - tanh^2 u) u' / 2) dx, u' = sqrt(2/pi) (1 + 3 0.044715 x^2).
    Forward computes the derivative from the same Phi (or tanh u) and saves it, so backward is dy gelu'(x).
    """

    def forward(self, x: Any, approximate: str = "none") -> Any:
        xp = self.xp
        if approximate == "tanh":
            u = _SQRT_2_OVER_PI * (x + _TANH_CUBIC * x * x * x)
            tanh_u = xp.tanh(u)
            h = 0.5 * (1 + tanh_u)
            du = _SQRT_2_OVER_PI * (1 + 3 * _TANH_CUBIC * x * x)  # u'
            self.dx = h + 0.5 * x * (1 - tanh_u * tanh_u) * du
            return x * h
        cdf = 0.5 * (1 + backend.erf(x * _INV_SQRT_2))  # Phi(x)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)  # phi(x)
        self.dx = cdf + x * pdf
        return x * cdf

    def backward(self, g: Any) -> Any:
        return g * self.dx


class Dropout(Function):
    """y = x m / (1 - p) with m ~ Bernoulli(1 - p) per element (inverted dropout); dx = dy m / (1 - p)"""

    def forward(self, x: Any, p: float = 0.5) -> Any:
        if p >= 1.0:
            self.mask = self.xp.zeros(x.shape, dtype=x.dtype)
            return self.mask.copy()
        u = generators.generator(self.device).random(x.shape, dtype="float32")
        mask = (u >= p).astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
        self.mask = mask
        return x * mask

    def backward(self, g: Any) -> Any:
        return g * self.mask


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
