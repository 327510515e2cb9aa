"""RAdam: Adam whose adaptive step is switched on only once the variance estimate is trustworthy."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..tensor import Tensor
from .adam import check_adam_group
from .optimizer import Optimizer, descent_grad, lerp_


class RAdam(Optimizer):
    r"""RAdam, rectified Adam (Liu et al., 2020), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t = 1, 2, ...``::

        g_t = -grad if maximize else grad
        theta_{t-1} <- (1 - lr weight_decay) theta_{t-1}       (decoupled_weight_decay, if weight_decay != 0)
        g_t = g_t + weight_decay * theta_{t-1}                 (otherwise, if weight_decay != 0)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t,   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        theta_t = theta_{t-1} - lr m_t / (1 - beta1^t) * r_t sqrt(1 - beta2^t) / (sqrt(v_t) + eps)   (rho_t > 5)
        theta_t = theta_{t-1} - lr m_t / (1 - beta1^t)                                            (otherwise)

    State per parameter: ``step``, ``exp_avg`` (m) and ``exp_avg_sq`` (v).
    """

    _state_buffers = ("exp_avg", "exp_avg_sq")
    _state_scalars = ("step",)
    _required_state = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, (tuple, list)) else betas, eps=eps,
            weight_decay=weight_decay, maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_group(group)

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, eps = float(group["lr"]), float(group["eps"])
        beta1, beta2 = (float(b) for b in group["betas"])
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.array)
            state["exp_avg_sq"] = xp.zeros_like(p.array)
        state["step"] = step = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)

        m, v = state["exp_avg"], state["exp_avg_sq"]
        scratch = xp.empty_like(p.array)
        lerp_(xp, m, g, 1.0 - beta1, scratch)
        xp.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v *= beta2
        v += scratch

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        update = xp.divide(m, bias_correction1, out=scratch)
        update *= lr
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        if rho_t > 5.0:  # the variance of the adaptive rate is tractable: use it, rectified
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive = xp.sqrt(v)
            adaptive += eps
            xp.divide(bias_correction2**0.5, adaptive, out=adaptive)
            update *= adaptive
            update *= rect
        p.array -= update
