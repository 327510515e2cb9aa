"""Small whole-number powers as products: ``x ** 3`` is ``x * x * x``.

NumPy computes a float array to a scalar power with libm's ``pow``, one element at a time, except
for a few exponents it special-cases (2, 0.5, -1). On the project's machine ``x ** 3`` of a
(512, 256) float32 array took 0.8 ms, ``x * x * x`` 0.04 ms. The tanh form of GELU as users write
it (``0.5 * x * (1 + tanh(c * (x + 0.044715 * x ** 3)))``, makemore's and nanoGPT's NewGELU) spends
most of its time there, and its backward computes ``x ** 2`` again. The products differ from
``pow`` by rounding only (an ulp or two).

Float arrays raised to a constant whole number from 2 to :data:`LARGEST` take products; anything
else (a tensor exponent, negative or fractional powers, integer arrays) goes to the reference op.
"""
from __future__ import annotations

from typing import Any

from .. import ops
from . import register

LARGEST = 4  # the largest exponent multiplied out (x ** 4 is two multiplications more than one pass)


def _whole_power(a: Any, b: Any) -> int | None:
    """b as an int when ``a ** b`` is a float array to a constant whole power from 1 to LARGEST, else None."""
    if type(b) not in (int, float) or getattr(a, "dtype", None) is None or a.dtype.kind != "f":
        return None
    if not 1 <= b <= LARGEST or b != int(b):  # (the range first: int() of inf or nan raises)
        return None
    return int(b)


def _product(a: Any, n: int) -> Any:
    """a^n for a whole n >= 1 as a product of n factors a, into a new array."""
    out = a * a if n >= 2 else a.copy()
    for _ in range(n - 2):
        out *= a
    return out


@register(ops.Pow)
class Pow(ops.Pow):
    """``a ** n`` and its derivative ``n a^(n-1)`` as products, for a constant whole n from 2 to LARGEST."""

    def forward(self, a: Any, b: Any) -> Any:
        n = _whole_power(a, b)
        if n is None or n < 2:
            return super().forward(a, b)
        out = _product(a, n)
        self.a, self.b, self.out = a, b, out
        return out

    def backward(self, g: Any) -> tuple[Any, Any]:
        n = _whole_power(self.a, self.b)
        if n is None or n < 2:
            return super().backward(g)
        da = _product(self.a, n - 1)  # a^(n-1)
        da *= n
        return g * da, None
