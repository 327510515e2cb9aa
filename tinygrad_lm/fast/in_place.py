"""Backward passes that write their result into the gradient they are given, when the engine hands it over.

The engine tells a node when only it holds the gradient of the node's output (``Function.owns_grad``:
no hook saw it and no tensor keeps it as ``.grad``). An op whose input's gradient is that gradient
changed element by element can then write it where it lies: no new array is made, and the memory
the pass goes over was written by the op before it, so it is still in the cache, where a new array's
memory is often not: at ``gpt``'s (32, 4, 64, 64) attention scores, a multiply into a new array
took 250-400 us inside a training step against 60-90 us in place.

The ops that do this: a product or quotient by a Python number (here), ``masked_fill``
(:mod:`.fused_masked_fill`), softmax and log-softmax (:mod:`.fused_softmax`), tanh and the sigmoid
(:mod:`.fused_activations`) and GELU (:mod:`.fused_nn`). Where a compiled loop does it, the loop is
one of its own (``g[k] *= ...``): given the same array as input and output, the compiler cannot rule
out an overlap and does not vectorise the usual loop, which then runs 2-3x slower. Attention written
by hand is where it counts most: its scores are scaled and masked before the softmax, so the
softmax's gradient goes through three such passes, which the fused call does in one.
"""
from __future__ import annotations

from typing import Any

from .. import ops
from . import register


def _number(x: Any) -> bool:
    return isinstance(x, (int, float))


@register(ops.Mul)
class Mul(ops.Mul):
    """The reference product, whose backward scales a gradient it owns in place when one factor is a number."""

    def backward(self, g: Any) -> Any:
        a_is_number = _number(self.a)
        if not (self.owns_grad and (a_is_number or _number(self.b))):
            return super().backward(g)
        self.xp.multiply(g, self.a if a_is_number else self.b, out=g)  # the bits of ``g * number``
        return (None, g) if a_is_number else (g, None)


@register(ops.Div)
class Div(ops.Div):
    """The reference quotient, whose backward divides a gradient it owns in place when the divisor is a number."""

    def backward(self, g: Any) -> Any:
        if not (self.owns_grad and _number(self.b)):
            return super().backward(g)
        self.xp.true_divide(g, self.b, out=g)  # the bits of ``g / number``
        return g, None
