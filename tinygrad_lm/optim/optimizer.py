"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and state dicts.

An optimizer holds ``param_groups``, a list of dicts each with a ``'params'``
list and every hyperparameter (missing ones filled from the optimizer's
defaults, so a group can override, say, its learning rate), and ``state``, a
dict from parameter to that parameter's buffers (momentum, moment estimates).
Subclasses implement ``step``; updates run in place on ``p.array`` with the
parameter's array module, so state and parameters stay on the same device.

``state_dict()`` has PyTorch's layout: parameters are replaced by their index
in the order they appear across the groups,
``{'state': {0: {'exp_avg': array, ...}, ...}, 'param_groups': [{'lr': ..., 'params': [0, 1]}]}``.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable

from .. import autograd, backend
from ..tensor import Tensor


class Optimizer:
    """Base class of all optimizers: ``Optimizer(params, defaults)``."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts (e.g. model.parameters()), got a Tensor")
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                "params must be an iterable of Tensors or of dicts (e.g. model.parameters()), "
                f"got {type(params).__name__}"
            ) from None
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate one group's hyperparameters (subclasses raise ``ValueError``)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters, with hyperparameters not given taken from the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen: set[int] = set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed by an op); optimize its leaves")
            if p.dtype.kind != "f":
                raise ValueError(f"can only optimize floating point Tensors, got one of dtype {p.dtype}")
            if id(p) in seen:
                raise ValueError("a parameter group contains the same parameter twice")
            seen.add(id(p))
        for group in self.param_groups:
            if any(id(q) in seen for q in group["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        group = {k: v for k, v in param_group.items() if k != "params"}
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        _check_numbers(type(self).__name__, group)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set ``.grad`` to ``None`` (default) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.array[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        with autograd.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad.array, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        """Update ``p.array`` in place from ``grad`` (a raw array); subclasses define the rule."""
        raise NotImplementedError(f"{type(self).__name__} does not implement an update rule")

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {name: host array or number}}, 'param_groups': [...]}``, host copies."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: backend.to_host(v).copy() if backend.is_backend_array(v) else v
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (checked against this optimizer's groups)."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("an optimizer state_dict is a dict with 'state' and 'param_groups' entries")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i} of the loaded state dict has {len(saved['params'])} parameter(s), "
                    f"this optimizer's group {i} has {len(group['params'])}"
                )
            for idx, p in zip(saved["params"], group["params"]):
                by_index[int(idx)] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for idx, entries in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {idx}, which is in no parameter group")
            new_state[p] = {name: self._restore(value, p, name, idx) for name, value in entries.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k == "params":
                    continue
                group[k] = tuple(v) if isinstance(group.get(k), tuple) and isinstance(v, list) else v
        self.state = new_state

    @staticmethod
    def _restore(value: Any, p: Tensor, name: str, idx: Any) -> Any:
        """A saved state entry on ``p``'s device (floating arrays in ``p``'s dtype); numbers unchanged."""
        if isinstance(value, Tensor):
            value = value.array
        if not backend.is_backend_array(value):
            return value
        if value.ndim > 0 and tuple(value.shape) != p.shape:
            raise ValueError(
                f"state {name!r} of parameter {idx} has shape {tuple(value.shape)}, the parameter has shape {p.shape}"
            )
        if value.dtype.kind == "f":
            value = value.astype(p.dtype, copy=False)
        return backend.to_device(value, p.device).copy()


def _is_number(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_numbers(owner: str, group: dict[str, Any]) -> None:
    """The numeric hyperparameters must be numbers (``betas`` a pair of them) before their ranges are checked."""
    for name in ("lr", "momentum", "dampening", "weight_decay", "eps"):
        value = group.get(name, 0.0)
        if not _is_number(value):
            raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    betas = group.get("betas", ())
    if not isinstance(betas, (tuple, list)) or not all(_is_number(b) for b in betas):
        raise TypeError(f"{owner}: betas must be a pair of numbers, got {type(betas).__name__} {betas!r}")
