"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..fast import fused_optim
from ..tensor import Tensor
from .optimizer import Optimizer, descent_grad


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t = 1, 2, ...``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}            (L2 penalty, if weight_decay != 0)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t             (first moment, m_0 = 0)
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2           (second moment, v_0 = 0)
        v_max_t = max(v_max_{t-1}, v_t)                   (amsgrad only; replaces v_t below)
        theta_t = theta_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    that is ``theta -= lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected moments
    ``m_hat = m_t / (1 - beta1^t)`` and ``v_hat = v_t / (1 - beta2^t)``.
    State per parameter: ``step`` (an int), ``exp_avg`` (m), ``exp_avg_sq`` (v), and
    ``max_exp_avg_sq`` with ``amsgrad=True``. ``decoupled_weight_decay=True`` makes it :class:`AdamW`.
    """

    _state_buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _state_scalars = ("step",)
    _required_state = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, (tuple, list)) else betas, eps=eps,
            weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, fused=fused, decoupled_weight_decay=decoupled_weight_decay,
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
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.array)
        state["step"] = step = int(state["step"]) + 1
        m, v = state["exp_avg"], state["exp_avg_sq"]

        g = descent_grad(xp, p, grad, group)
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
        v_max = None
        if group["amsgrad"]:
            v_max = state.get("max_exp_avg_sq")
            if v_max is None:
                v_max = state["max_exp_avg_sq"] = xp.zeros_like(p.array)
        # the same update as one compiled pass (tinygrad_lm/fast/fused_optim.py), where the fast path can run it
        if fused_optim.adam_step(p.array, g, m, v, v_max, beta1, beta2, lr / bias_correction1, bias_correction2_sqrt,
                                 eps):
            return

        scratch = xp.multiply(g, 1.0 - beta1, out=xp.empty_like(m))  # (an array even for a 0-d parameter)
        m *= beta1
        m += scratch
        xp.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v *= beta2
        v += scratch

        if v_max is not None:
            xp.maximum(v_max, v, out=v_max)
            v = v_max
        denom = xp.sqrt(v, out=scratch)
        denom /= bias_correction2_sqrt
        denom += eps
        update = xp.divide(m, denom, out=scratch)
        update *= lr / bias_correction1
        p.array -= update


def check_adam_group(group: dict[str, Any]) -> None:
    """The checks every Adam-like optimizer makes, with PyTorch's messages: lr, eps, betas, weight_decay."""
    if not group["lr"] >= 0.0:
        raise ValueError(f"Invalid learning rate: {group['lr']} (must be >= 0)")
    if not group["eps"] >= 0.0:
        raise ValueError(f"Invalid epsilon value: {group['eps']} (must be >= 0)")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))")
    if not group["weight_decay"] >= 0.0:
        raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), PyTorch's update rule.

    Before each Adam step (see :class:`Adam`, run with no L2 term), the parameter decays on its own::

        theta_{t-1} <- theta_{t-1} - lr * weight_decay * theta_{t-1}

    so the decay is not rescaled by the adaptive denominator ``sqrt(v_hat) + eps``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused, decoupled_weight_decay=True,
        )
