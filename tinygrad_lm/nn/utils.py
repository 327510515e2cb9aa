"""Gradient clipping and flattening parameters into one vector, as ``torch.nn.utils``."""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

from .. import backend, dtypes
from ..autograd import no_grad
from ..creation import cat
from ..tensor import Tensor


def _as_list(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _norm_type(norm_type: float | str) -> float:
    try:
        value = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"norm_type must be a positive number or inf, got {norm_type!r}") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"norm_type must be a positive number or inf, got {norm_type!r}")
    return value


def _array_norm(xp: Any, g: Any, p: float) -> Any:
    """The p-norm of one gradient array as a 0-d array of its dtype."""
    a = xp.abs(g)
    if p == math.inf:
        return a.max() if a.size else xp.zeros((), dtype=g.dtype)
    if p == 1.0:
        return a.sum()
    if p == 2.0:
        return xp.sqrt((a * a).sum())
    return (a**p).sum() ** (1.0 / p)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients together so that their joint norm is at most ``max_norm``; return that norm.

    total = || (||g_1||_p, ..., ||g_k||_p) ||_p (the p-norm of all gradients as one vector; p = inf: max |g|),
    then every g_i *= min(1, max_norm / (total + 1e-6)), in place. Parameters without ``.grad`` are skipped.
    """
    p = _norm_type(norm_type)
    if isinstance(max_norm, bool) or not isinstance(max_norm, (numbers.Real, Tensor)):
        raise TypeError(f"clip_grad_norm_: max_norm must be a number, got {type(max_norm).__name__} {max_norm!r}")
    if not float(max_norm) >= 0:  # a negative max_norm would flip the gradients' sign
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    grads = [t.grad for t in _as_list(parameters) if t.grad is not None]
    if not grads:
        return Tensor._wrap(backend.get_xp("cpu").zeros((), dtype=dtypes.get_default_dtype()), "cpu")
    device, dtype = grads[0].device, grads[0].dtype
    xp = Tensor._xp_of(device)
    norms = []
    for g in grads:
        n = _array_norm(g.xp, g.array, p)
        norms.append(backend.to_device(g.xp.asarray(n), device).astype(dtype, copy=False))
    stacked = xp.stack(norms)  # (k,)
    total = _array_norm(xp, stacked, p)
    total = xp.asarray(total).astype(dtype, copy=False)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    coef = xp.minimum(float(max_norm) / (total + 1e-6), 1.0).astype(dtype, copy=False)
    with no_grad():
        for g in grads:
            g.array *= backend.to_device(coef, g.device).astype(g.dtype, copy=False)
    return Tensor._wrap(total, device)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient elementwise into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    with no_grad():
        for t in _as_list(parameters):
            if t.grad is not None:
                t.grad.xp.clip(t.grad.array, -clip_value, clip_value, out=t.grad.array)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined into one vector (differentiable, like ``torch.cat``)."""
    params = _as_list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: expected at least one parameter")
    device = params[0].device
    for t in params[1:]:
        if t.device != device:
            raise RuntimeError(f"parameters_to_vector: parameters are on different devices, {device} and {t.device}")
    return cat([t.reshape(-1) for t in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters (in place, outside the graph)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected vec to be a Tensor, but got {type(vec).__name__}")
    if vec.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {vec.shape}")
    params = _as_list(parameters)
    total = sum(t.numel() for t in params)
    if total != vec.numel():
        raise ValueError(f"vector_to_parameters: vec has {vec.numel()} elements but the parameters have {total}")
    start = 0
    with no_grad():
        for t in params:
            if t.device != vec.device:
                raise RuntimeError(f"vector_to_parameters: vec is on {vec.device} but a parameter is on {t.device}")
            n = t.numel()
            t.array = vec.array[start : start + n].reshape(t.shape).astype(t.dtype, copy=True)
            start += n


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
