"""NAdam: Adam with Nesterov momentum."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .adam import check_adam_group
from .optimizer import Optimizer, descent_grad, lerp_


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016), PyTorch's update rule, with the momentum schedule ``mu_t`` of the paper.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t = 1, 2, ...``::

        g_t = -grad if maximize else grad
        theta_{t-1} <- (1 - lr weight_decay) theta_{t-1}       (decoupled_weight_decay, if weight_decay != 0)
        g_t = g_t + weight_decay * theta_{t-1}                 (otherwise, if weight_decay != 0)
        mu_t = beta1 (1 - 0.96^(t psi) / 2)                    (psi: momentum_decay)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t,   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        d_t = sqrt(v_t / (1 - beta2^t)) + eps
        theta_t = theta_{t-1} - lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) g_t / d_t
                              - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m_t / d_t

    State per parameter: ``step``, ``mu_product`` (the product of the ``mu_i`` so far), ``exp_avg`` (m)
    and ``exp_avg_sq`` (v).
    """

    _state_buffers = ("exp_avg", "exp_avg_sq")
    _state_scalars = ("step", "mu_product")
    _required_state = ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, (tuple, list)) else betas, eps=eps,
            weight_decay=weight_decay, momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_group(group)
        if not group["momentum_decay"] >= 0.0:
            raise ValueError(f"Invalid momentum_decay value: {group['momentum_decay']} (must be >= 0)")

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, eps = float(group["lr"]), float(group["eps"])
        beta1, beta2 = (float(b) for b in group["betas"])
        momentum_decay = float(group["momentum_decay"])
        if not state:
            state["step"] = 0
            state["mu_product"] = 1.0
            state["exp_avg"] = xp.zeros_like(p.array)
            state["exp_avg_sq"] = xp.zeros_like(p.array)
        state["step"] = step = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)

        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        state["mu_product"] = mu_product = float(state["mu_product"]) * mu
        m, v = state["exp_avg"], state["exp_avg_sq"]
        scratch = xp.empty_like(p.array)
        lerp_(xp, m, g, 1.0 - beta1, scratch)
        xp.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v *= beta2
        v += scratch

        denom = xp.divide(v, 1.0 - beta2**step, out=xp.empty_like(v))
        xp.sqrt(denom, out=denom)
        denom += eps
        step_g = xp.divide(g, denom, out=scratch)
        step_g *= -lr * (1.0 - mu) / (1.0 - mu_product)
        p.array += step_g
        step_m = xp.divide(m, denom, out=scratch)
        step_m *= -lr * mu_next / (1.0 - mu_product * mu_next)
        p.array += step_m
