"""Backward passes that write their result into the gradient they are given, when the engine hands it over.

The engine tells a node when only it holds the gradient of the node's output (``Function.owns_grad``:
no hook saw it and no tensor keeps it as ``.grad``). An op whose input's gradient is that gradient
changed element by element can then write it where it lies: no new array is made, and the memory
the pass goes over was written by the op before it, so it is still in the cache, where a new array's
memory is often not. Attention written by hand is where it counts: the scores are scaled
(``* scale`` or ``/ sqrt(d)``) and masked (``masked_fill``, in :mod:`.fused_masked_fill`) before the
softmax, so the softmax's (B, heads, T, T) gradient goes through two such passes.
"""
from __future__ import annotations

from typing import Any

from .. import ops
from ..autograd import _writable
from . import register


def _number(x: Any) -> bool:
    return isinstance(x, (int, float))


@register(ops.Mul)
class Mul(ops.Mul):
    """The reference product, whose backward scales a gradient it owns in place when one factor is a number."""

    def backward(self, g: Any) -> Any:
        a_is_number = _number(self.a)
        if not (self.owns_grad and (a_is_number or _number(self.b)) and _writable(g)):
            return super().backward(g)
        self.xp.multiply(g, self.a if a_is_number else self.b, out=g)  # the bits of ``g * number``
        return (None, g) if a_is_number else (g, None)


@register(ops.Div)
class Div(ops.Div):
    """The reference quotient, whose backward divides a gradient it owns in place when the divisor is a number."""

    def backward(self, g: Any) -> Any:
        if not (self.owns_grad and _number(self.b) and _writable(g)):
            return super().backward(g)
        self.xp.true_divide(g, self.b, out=g)  # the bits of ``g / number``
        return g, None
