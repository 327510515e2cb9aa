"""RMSprop: divide the gradient by a running root mean square of recent gradients."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, descent_grad, lerp_


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e; Graves 2013 for the centered form), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}                 (if weight_decay != 0)
        v_t = alpha v_{t-1} + (1 - alpha) g_t^2                (v_0 = 0)
        a_t = alpha a_{t-1} + (1 - alpha) g_t                  (centered only, a_0 = 0)
        d_t = sqrt(max(v_t - a_t^2, 0)) if centered else sqrt(v_t),  then  d_t = d_t + eps
        b_t = momentum b_{t-1} + g_t / d_t,  theta_t = theta_{t-1} - lr b_t     (if momentum > 0, b_0 = 0)
        theta_t = theta_{t-1} - lr g_t / d_t                   (otherwise)

    State per parameter: ``step``, ``square_avg`` (v), ``momentum_buffer`` (b, with momentum) and
    ``grad_avg`` (a, when centered).
    """

    _state_buffers = ("square_avg", "momentum_buffer", "grad_avg")
    _state_scalars = ("step",)
    _required_state = ("step", "square_avg")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
            capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']} (must be >= 0)")
        if not group["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']} (must be >= 0)")
        if not group["momentum"] >= 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']} (must be >= 0)")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")
        if not 0.0 <= group["alpha"] <= 1.0:
            raise ValueError(f"Invalid alpha value: {group['alpha']} (must be in [0, 1])")

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
        momentum = float(group["momentum"])
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.array)
        state["step"] = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)

        square_avg = state["square_avg"]
        scratch = xp.multiply(g, g, out=xp.empty_like(p.array))  # (an array even for a 0-d parameter)
        scratch *= 1.0 - alpha
        square_avg *= alpha
        square_avg += scratch
        if group["centered"]:
            grad_avg = state.get("grad_avg")
            if grad_avg is None:
                grad_avg = state["grad_avg"] = xp.zeros_like(p.array)
            lerp_(xp, grad_avg, g, 1.0 - alpha, scratch)  # (alpha = 0: a = g exactly, and v - a^2 = 0 below)
            xp.multiply(grad_avg, grad_avg, out=scratch)
            xp.subtract(square_avg, scratch, out=scratch)
            # v - a^2 >= 0 in exact arithmetic (an average of squares is at least the square of the average);
            # rounding can take it just below 0 when the gradients barely vary, where PyTorch's sqrt gives NaN
            xp.maximum(scratch, 0.0, out=scratch)
            avg = xp.sqrt(scratch, out=scratch)
        else:
            avg = xp.sqrt(square_avg, out=scratch)
        avg += eps

        if momentum > 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.zeros_like(p.array)
            buf *= momentum
            buf += xp.divide(g, avg, out=scratch)
            xp.multiply(buf, lr, out=scratch)
        else:
            xp.divide(g, avg, out=scratch)
            scratch *= lr
        p.array -= scratch
