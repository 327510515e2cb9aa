"""Adagrad: per-coordinate learning rates from the sum of all past squared gradients."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, descent_grad


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011), PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t = 1, 2, ...``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}                 (if weight_decay != 0)
        eta_t = lr / (1 + (t - 1) lr_decay)
        s_t = s_{t-1} + g_t^2                                  (s_0 = initial_accumulator_value)
        theta_t = theta_{t-1} - eta_t g_t / (sqrt(s_t) + eps)

    State per parameter: ``step`` and ``sum`` (s). As in PyTorch the state exists from the start, so
    ``state_dict()`` lists every parameter before the first step; a group's own
    ``initial_accumulator_value`` starts its sums (PyTorch uses the constructor's for every group).
    """

    _state_buffers = ("sum",)
    _state_scalars = ("step",)
    _required_state = ("step", "sum")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
            differentiable=differentiable, fused=fused,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            self._init_state(p, group, self.state[p])

    @staticmethod
    def _init_state(p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = 0
        state["sum"] = p.xp.full_like(p.array, float(group["initial_accumulator_value"]))

    def _check_group(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']} (must be >= 0)")
        if not group["lr_decay"] >= 0.0:
            raise ValueError(f"Invalid lr_decay value: {group['lr_decay']} (must be >= 0)")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")
        if not group["initial_accumulator_value"] >= 0.0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {group['initial_accumulator_value']} (must be >= 0)"
            )
        if not group["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']} (must be >= 0)")

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, lr_decay, eps = float(group["lr"]), float(group["lr_decay"]), float(group["eps"])
        if not state:
            self._init_state(p, group, state)
        state["step"] = step = int(state["step"]) + 1

        g = descent_grad(xp, p, grad, group)
        clr = lr / (1 + (step - 1) * lr_decay)

        total = state["sum"]
        scratch = xp.multiply(g, g, out=xp.empty_like(p.array))  # (an array even for a 0-d parameter)
        total += scratch
        std = xp.sqrt(total, out=scratch)
        std += eps
        update = xp.divide(g, std, out=scratch)
        update *= clr
        p.array -= update
