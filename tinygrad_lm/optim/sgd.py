"""Stochastic gradient descent, with optional momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from typing import Any, Iterable

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, PyTorch's update rule.

    For each parameter ``theta`` with gradient ``g_t`` at step ``t``::

        g_t = -grad if maximize else grad
        g_t = g_t + weight_decay * theta_{t-1}                  (if weight_decay != 0)
        b_t = g_t  at t = 1,  b_t = mu * b_{t-1} + (1 - tau) g_t  after  (if momentum mu != 0)
        g_t = g_t + mu * b_t if nesterov else b_t               (if momentum != 0)
        theta_t = theta_{t-1} - lr * g_t

    with ``tau`` the dampening (not applied at the first step, whose buffer is the gradient itself).
    The momentum buffer ``b`` is stored in ``state[p]['momentum_buffer']``.
    """

    _state_buffers = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
            maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']} (must be >= 0)")
        if not group["momentum"] >= 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']} (must be >= 0)")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        xp = p.xp
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening, weight_decay = float(group["dampening"]), float(group["weight_decay"])
        maximize = bool(group["maximize"])

        owned = True  # whether d_p is a scratch array this step may overwrite
        if weight_decay != 0:
            d_p = xp.multiply(p.array, weight_decay)
            if maximize:
                d_p -= grad
            else:
                d_p += grad
        elif maximize:
            d_p = xp.negative(grad)
        else:
            d_p, owned = grad, False

        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.array(d_p, copy=True)
            else:
                buf *= momentum
                buf += d_p if dampening == 0 else xp.multiply(d_p, 1.0 - dampening)
            if group["nesterov"]:
                step = xp.multiply(buf, momentum)
                step += d_p
                d_p, owned = step, True
            else:
                d_p, owned = buf, False

        if owned:
            d_p *= lr
            p.array -= d_p
        else:
            add_scaled_(p.array, -lr, d_p)  # p -= lr d_p (one kernel on a GPU)


_axpy_kernel: Any = None  # CuPy's y += alpha * x kernel once built


def add_scaled_(y: Any, alpha: float, x: Any) -> Any:
    """``y += alpha * x`` in place (SGD's update); one kernel on a GPU instead of two calls."""
    if backend.device_of(y) == "cpu" or y.dtype != x.dtype or y.shape != x.shape:
        y += alpha * x
        return y
    global _axpy_kernel
    if _axpy_kernel is None:
        _axpy_kernel = backend.cupy_module().ElementwiseKernel("T x, T alpha", "T y", "y += alpha * x",
                                                               "tinygrad_lm_axpy")
    _axpy_kernel(x, y.dtype.type(alpha), y)
    return y
