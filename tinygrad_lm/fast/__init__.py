"""The fast path: everything that exists for speed, beside the reference ops it replaces.

``tinygrad_lm/ops`` is the reference: each op's forward and backward written as its
equations, in plain NumPy/CuPy array code. This package holds the faster versions,
one technique per module:

- :mod:`.compiler`: compiled CPU loops (Numba) and the ``exp``/``tanh`` they use;
- :mod:`.cuda_kernels`: the CUDA C twins of those loops, for CuPy arrays;
- :mod:`.blas`: how products reach BLAS (a Linear's bias in the GEMM, a recurrent weight
  kept contiguous across the steps, cuBLAS called directly);
- :mod:`.fused_activations`, :mod:`.fused_nn`, :mod:`.fused_recurrent`, :mod:`.fused_attention`,
  :mod:`.fused_softmax`, :mod:`.fused_masked_fill`: the ops that run as compiled kernels (tanh
  and the sigmoid, GELU, LayerNorm, cross-entropy, the embedding's backward, the LSTM and RNN
  layers, attention, softmax and log-softmax, masked_fill with a broadcast mask);
- :mod:`.fused_optim`: Adam's update of a parameter as one compiled pass (``optim.Adam`` asks it first);
- :mod:`.powers`: ``x ** 3`` and ``x ** 4`` as products (NumPy calls libm's ``pow`` per element);
- :mod:`.in_place`: backward passes that write into a gradient the engine hands over (a product
  or quotient by a number; ``masked_fill``'s is in :mod:`.fused_masked_fill`);
- :mod:`.layouts`: gradients laid out in memory as their inputs are (attention's q, k and v split
  from one product), and a split's backward that passes on gradients already side by side;
- :mod:`.allocator`: keeping freed arrays in the process's heap;
- :mod:`.workers`: one compiled kernel run as parts on several threads, calling NumPy's BLAS
  from inside (the LSTM layer split by hidden units).

Each technique module registers its ops when it is imported; ``tinygrad_lm/__init__.py``
imports them all, after the reference ops.

A fast op is a subclass of the reference op, registered against it with
:func:`register`. While the fast path is on (the default), ``Function.apply`` of the
reference op builds the registered subclass instead; the subclass takes the inputs it
was written for and hands anything else to its parent class with ``super()``. Nothing
in ``ops`` mentions this package: switch it off (``TINYGRAD_LM_FAST=off`` in the
environment, or :func:`set_enabled`) and every op runs as written in ``ops``, on NumPy
alone or on CuPy. The ``tests/test_fast_*.py`` files check every registered op against its
reference, in values and gradients (``tests/test_fast_registry.py`` checks that each has them).
"""
from __future__ import annotations

from typing import Any

from .. import autograd
from ..backend import env_choice

_CHOICES = ("on", "off")


def set_enabled(flag: bool) -> None:
    """Turn the fast path on (``True``) or off (``False``: every op runs its reference code)."""
    if not isinstance(flag, bool):
        raise TypeError(f"fast.set_enabled: expected True or False, got {flag!r}")
    autograd._fast_ops = flag


def is_enabled() -> bool:
    """Whether ops run their registered fast versions (``TINYGRAD_LM_FAST``, default ``on``)."""
    return autograd._fast_ops


class enabled:  # noqa: N801 - used as a context manager, like no_grad
    """``with fast.enabled(False):`` runs a block on the reference path (or on the fast one with ``True``)."""

    def __init__(self, flag: bool) -> None:
        if not isinstance(flag, bool):
            raise TypeError(f"fast.enabled: expected True or False, got {flag!r}")
        self.flag = flag

    def __enter__(self) -> None:
        self.before = autograd._fast_ops
        autograd._fast_ops = self.flag

    def __exit__(self, *exc: Any) -> None:
        autograd._fast_ops = self.before


def register(reference: type[autograd.Function]) -> Any:
    """Class decorator: the decorated subclass of ``reference`` replaces it while the fast path is on.

    A second technique for the same op subclasses the first (so each can hand what it does not
    take to the one before it); registering anything else raises.
    """
    def decorate(impl: type[autograd.Function]) -> type[autograd.Function]:
        current = _registry.get(reference, reference)
        if not issubclass(impl, current):
            raise TypeError(f"fast.register: {impl.__qualname__} must subclass {current.__qualname__}, "
                            f"the version of {reference.__qualname__} registered so far")
        _registry[reference] = impl
        return impl

    return decorate


def registry() -> dict[type[autograd.Function], type[autograd.Function]]:
    """Each reference op with a fast version, and that version."""
    return dict(_registry)


_registry = autograd._fast_registry  # read by Function.apply
autograd._fast_ops = env_choice("TINYGRAD_LM_FAST", _CHOICES, "on") == "on"



__all__ = ["enabled", "is_enabled", "register", "registry", "set_enabled"]
