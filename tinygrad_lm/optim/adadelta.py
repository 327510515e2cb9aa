"""Adadelta: step sizes from running averages of squared gradients and of squared updates."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, descent_grad


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}                 (if weight_decay != 0)
        v_t = rho v_{t-1} + (1 - rho) g_t^2                    (v_0 = 0)
        d_t = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g_t      (the update, in the parameter's units)
        u_t = rho u_{t-1} + (1 - rho) d_t^2                    (u_0 = 0)
        theta_t = theta_{t-1} - lr d_t

    State per parameter: ``step``, ``square_avg`` (v) and ``acc_delta`` (u).
    """

    _state_buffers = ("square_avg", "acc_delta")
    _state_scalars = ("step",)
    _required_state = ("step", "square_avg", "acc_delta")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']} (must be >= 0)")
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']} (must be in [0, 1])")
        if not group["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']} (must be >= 0)")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, rho, eps = float(group["lr"]), float(group["rho"]), float(group["eps"])
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.array)
            state["acc_delta"] = xp.zeros_like(p.array)
        state["step"] = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)

        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        scratch = xp.multiply(g, g, out=xp.empty_like(p.array))  # (an array even for a 0-d parameter)
        scratch *= 1.0 - rho
        square_avg *= rho
        square_avg += scratch
        std = xp.add(square_avg, eps, out=xp.empty_like(square_avg))
        xp.sqrt(std, out=std)
        delta = xp.add(acc_delta, eps, out=scratch)
        xp.sqrt(delta, out=delta)
        delta /= std
        delta *= g
        xp.multiply(delta, delta, out=std)  # (std is no longer needed: it holds d_t^2)
        std *= 1.0 - rho
        acc_delta *= rho
        acc_delta += std
        delta *= lr
        p.array -= delta
