"""Adam's update of one parameter as one compiled pass.

The reference update (:meth:`tinygrad_lm.optim.Adam._update`) is a dozen NumPy calls per
parameter: the two moments, their bias corrections, the square root, the quotient and the step,
each a pass over the parameter's elements. For the many small parameters of the models in the
course (makemore's Transformer has 53, most of them a few thousand elements) the calls cost more
than the arithmetic: tens of microseconds a parameter, against a few for :func:`_adam_kernel`, which
reads and writes each element once. The results differ from the reference's by rounding only
(the kernel may fuse a multiply and an add).

:func:`adam_step` runs the kernel where it can (the fast path on, NumPy float32/float64 arrays of
one shape and dtype, all C-contiguous) and returns False, having done nothing, elsewhere.
"""
from __future__ import annotations

import math
from typing import Any

from . import compiler, is_enabled


def _adam_kernel(p: Any, g: Any, m: Any, v: Any, v_max: Any, beta1: float, beta2: float, step_size: float,
                 bias_correction2_sqrt: float, eps: float) -> None:
    """In place, element by element (flat arrays): m <- beta1 m + (1 - beta1) g, v <- beta2 v + (1 - beta2) g^2,
    v_max <- max(v_max, v) (AMSGrad; ``v_max`` None otherwise, and v is used below), then
    p <- p - step_size m / (sqrt(v) / bias_correction2_sqrt + eps)."""
    f = p.dtype.type
    b1, b2, c1, c2 = f(beta1), f(beta2), f(1.0 - beta1), f(1.0 - beta2)
    step, bc2, eps_ = f(step_size), f(bias_correction2_sqrt), f(eps)
    for k in range(p.size):
        gk = g[k]
        mk = b1 * m[k] + c1 * gk
        vk = b2 * v[k] + c2 * (gk * gk)
        m[k] = mk
        v[k] = vk
        if v_max is not None:
            vk = max(v_max[k], vk)
            v_max[k] = vk
        p[k] -= step * (mk / (math.sqrt(vk) / bc2 + eps_))


def adam_step(p: Any, g: Any, m: Any, v: Any, v_max: Any, beta1: float, beta2: float, step_size: float,
              bias_correction2_sqrt: float, eps: float) -> bool:
    """Adam's update of ``p`` in place by :func:`_adam_kernel`; False, with nothing done, where it does not apply."""
    if not is_enabled():
        return False
    arrays = [a for a in (p, g, m, v, v_max) if a is not None]
    if any(a.shape != p.shape or a.dtype != p.dtype or not a.flags.c_contiguous for a in arrays):
        return False
    kernel = compiler.compiled(_adam_kernel, *arrays)
    if kernel is None:
        return False
    flat = [None if a is None else a.reshape(-1) for a in (p, g, m, v, v_max)]
    kernel(*flat, beta1, beta2, step_size, bias_correction2_sqrt, eps)
    return True
