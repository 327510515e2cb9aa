"""Adamax: Adam with the infinity norm in place of the root mean square."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .adam import check_adam_group
from .optimizer import Optimizer, descent_grad, lerp_


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t = 1, 2, ...``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}                 (if weight_decay != 0)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t                  (m_0 = 0)
        u_t = max(beta2 u_{t-1}, |g_t| + eps)                  (u_0 = 0)
        theta_t = theta_{t-1} - lr / (1 - beta1^t) * m_t / u_t

    State per parameter: ``step``, ``exp_avg`` (m) and ``exp_inf`` (u).
    """

    _state_buffers = ("exp_avg", "exp_inf")
    _state_scalars = ("step",)
    _required_state = ("step", "exp_avg", "exp_inf")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, (tuple, list)) else betas, eps=eps,
            weight_decay=weight_decay, foreach=foreach, maximize=maximize, differentiable=differentiable,
            capturable=capturable,
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
            state["exp_inf"] = xp.zeros_like(p.array)
        state["step"] = step = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)

        m, u = state["exp_avg"], state["exp_inf"]
        scratch = xp.empty_like(p.array)
        lerp_(xp, m, g, 1.0 - beta1, scratch)
        xp.abs(g, out=scratch)
        scratch += eps
        u *= beta2
        xp.maximum(u, scratch, out=u)
        update = xp.divide(m, u, out=scratch)
        update *= lr / (1 - beta1**step)
        p.array -= update
