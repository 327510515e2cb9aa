"""Elementwise ops. Inputs are raw arrays (or Python scalars for constants).

Binary ops broadcast; the engine reduces their gradients back to each input's
shape, so the ``backward`` methods here return full-size gradients.
"""
from __future__ import annotations

import math
from typing import Any

from .. import backend
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


class Gelu(Function):
    """gelu(x) = x Phi(x); d gelu(x) = (Phi(x) + x phi(x)) dx.

    ``approximate='tanh'`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    """

    def forward(self, x: Any, approximate: str = "none") -> Any:
        xp = self.xp
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + backend.erf(x * _INV_SQRT_2))
        return x * self.cdf

    def backward(self, g: Any) -> Any:
        x = self.x
        if self.approximate == "tanh":
            t = self.t
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)
        pdf = _INV_SQRT_2PI * self.xp.exp(-0.5 * x * x)
        return g * (self.cdf + x * pdf)


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
