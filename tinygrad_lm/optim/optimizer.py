"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and state dicts.

An optimizer holds ``param_groups``, a list of dicts each with a ``'params'``
list and every hyperparameter (missing ones filled from the optimizer's
defaults, so a group can override, say, its learning rate), and ``state``, a
dict from parameter to that parameter's buffers (momentum, moment estimates).
Subclasses implement ``_update``, the rule for one parameter; it runs in place on
``p.array`` with the parameter's array module, so state and parameters stay on
the same device. Each update bumps the parameter's version counter, so a backward
through a graph that saved the parameter before the step raises instead of using
the new values.

``state_dict()`` has PyTorch's layout: parameters are replaced by their index
in the order they appear across the groups,
``{'state': {0: {'step': 3, 'exp_avg': Tensor, ...}, ...}, 'param_groups': [{'lr': ..., 'params': [0, 1]}]}``,
with every buffer a host copy (a CPU ``Tensor``), so ``tl.save`` stores it as is.
"""
from __future__ import annotations

import collections
import functools
import math
import numbers
from typing import Any, Callable, Iterable

from .. import autograd, backend
from ..tensor import Tensor

# PyTorch's switches between implementations of the same rule (multi-tensor, fused kernels, CUDA graphs,
# a differentiable step). tinygrad_lm has one implementation, so only the values that mean "the plain one" pass.
_IMPLEMENTATION_FLAGS: dict[str, tuple[Any, ...]] = {
    "foreach": (None, False),
    "fused": (None, False),
    "capturable": (False,),
    "differentiable": (False,),
}
_NUMBERS = ("lr", "momentum", "dampening", "weight_decay", "eps", "alpha", "lr_decay", "initial_accumulator_value",
            "rho", "momentum_decay")
_SWITCHES = ("nesterov", "maximize", "amsgrad", "centered", "decoupled_weight_decay")


class Optimizer:
    """Base class of all optimizers: ``Optimizer(params, defaults)``.

    Subclasses name the per-parameter state they keep: ``_state_buffers`` (arrays shaped like the
    parameter), ``_state_scalars`` (numbers: the count ``step``, NAdam's ``mu_product``) and, of those,
    ``_required_state``
    (what a non-empty state must hold); ``load_state_dict`` checks a saved state against them.
    An optimizer written PyTorch's way (a subclass with its own ``step``) declares nothing, and its
    state loads as PyTorch loads it: arrays as Tensors on the parameter's device, floating ones in its dtype.
    """

    _state_buffers: tuple[str, ...] | None = None
    _state_scalars: tuple[str, ...] = ()
    _required_state: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass with its own ``step`` (PyTorch's way of writing an optimizer) still records that it
        stepped, so that a scheduler stepped first can warn, as PyTorch's do."""
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is None or getattr(step, "_records_call", False):
            return

        @functools.wraps(step)
        def recorded_step(self: Optimizer, *args: Any, **kw: Any) -> Any:
            self._opt_called = True
            return step(self, *args, **kw)

        recorded_step._records_call = True  # type: ignore[attr-defined]
        cls.step = recorded_step  # type: ignore[method-assign]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts (e.g. model.parameters()), got a Tensor")
        self.defaults = dict(defaults)
        self.state: collections.defaultdict[Tensor, dict[str, Any]] = collections.defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, (set, frozenset)):
            raise TypeError("params must be an ordered collection (a list), not a set: a set's order changes "
                            "between runs, and the state dict refers to parameters by position")
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
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k not in ("params", "param_names"))
        return "\n".join(lines) + "\n)"

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate one group's hyperparameters (subclasses raise ``ValueError`` with PyTorch's messages)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters, with hyperparameters not given taken from the defaults.

        ``params`` may be Tensors or ``(name, Tensor)`` pairs (``model.named_parameters()``); with names the
        group keeps them under ``'param_names'``, as PyTorch does.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = param_group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError("a parameter group's params must be an ordered collection (a list), not a set")
        params = [params] if isinstance(params, Tensor) else list(params)
        names = None
        if params and isinstance(params[0], tuple):
            if not all(isinstance(item, tuple) and len(item) == 2 for item in params):
                raise ValueError("params mixes (name, Tensor) pairs with plain Tensors; give all or none names")
            names = [name for name, _ in params]
            params = [p for _, p in params]
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
            if (names is None) != ("param_names" not in group):
                raise ValueError("all optimizer params should be with or without names: some param names are missing")
        group = {k: v for k, v in param_group.items() if k not in ("params", "param_names")}
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._validate(group, type(self).__name__)
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        self.param_groups.append(group)

    def _validate(self, group: dict[str, Any], owner: str) -> None:
        """Types first (numbers, switches, implementation flags), then the subclass's ranges."""
        for name in _NUMBERS:
            if name in group and not _is_number(group[name]):
                raise TypeError(f"{owner}: {name} must be a number, got {type(group[name]).__name__} {group[name]!r}")
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or not all(_is_number(b) for b in betas):
                raise TypeError(f"{owner}: betas must be a pair of numbers, got {type(betas).__name__} {betas!r}")
            group["betas"] = tuple(betas)
        for name in _SWITCHES:
            if name in group and not (isinstance(group[name], bool) or group[name] in (0, 1)):
                raise TypeError(f"{owner}: {name} must be True or False, got {group[name]!r}")
        for name, allowed in _IMPLEMENTATION_FLAGS.items():
            if name in group and not any(group[name] is a or (a is False and group[name] == 0) for a in allowed):
                raise ValueError(
                    f"{owner}: {name}={group[name]!r} is not supported: tinygrad_lm has one implementation of "
                    f"each update rule; leave {name} at its default ({allowed[0]})"
                )
        self._check_group(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set ``.grad`` to ``None`` (default) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    if p.grad.grad_fn is not None:  # a gradient made with create_graph=True leaves its graph
                        p.grad = p.grad.detach()
                    p.grad.array[...] = 0
                    p.grad._bump_version()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        self._opt_called = True  # (the schedulers warn when they step before their optimizer ever did)
        state = self.state
        with autograd.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad.array, group, state[p])
                        p._bump_version()  # a graph that saved p before this step now refuses to backward
        return loss

    def _update(self, p: Tensor, grad: Any, group: dict[str, Any], state: dict[str, Any]) -> None:
        """Update ``p.array`` in place from ``grad`` (a raw array); subclasses define the rule."""
        raise NotImplementedError(f"{type(self).__name__} does not implement an update rule")

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {name: host Tensor or number}}, 'param_groups': [...]}``: a snapshot."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
            if "param_names" in group:
                groups[-1]["param_names"] = list(group["param_names"])
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):  # (an empty entry is no state: SGD without momentum keeps none)
                    state[index[id(p)]] = {k: _snapshot(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by ``state_dict``.

        Everything is checked before anything changes: the layout (naming the key that is wrong), the number
        of groups and of parameters in each, the state entries this optimizer keeps and their shapes, and the
        loaded hyperparameters (as the constructor checks them). A problem raises ``ValueError``.
        """
        saved_groups, saved_state = _layout(state_dict)
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i} of the loaded state dict has {len(saved['params'])} parameter(s), "
                    f"this optimizer's group {i} has {len(group['params'])}"
                )
            for idx, p in zip(saved["params"], group["params"]):
                if idx in by_index:
                    raise ValueError(f"loaded state dict lists parameter index {idx} in more than one place")
                by_index[idx] = p
            merged = {**group, **{k: v for k, v in saved.items() if k not in ("params", "param_names")}}
            try:
                self._validate(merged, f"param_groups[{i}] of the loaded state dict")
            except TypeError as err:
                raise ValueError(str(err)) from None
            merged["params"] = group["params"]
            new_groups.append(merged)
        new_state: collections.defaultdict[Tensor, dict[str, Any]] = collections.defaultdict(dict)
        for idx, entries in saved_state.items():
            p = by_index.get(idx)
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {idx}, which is in no parameter group")
            new_state[p] = self._restore_entries(entries, p, idx)
        self.param_groups[:] = new_groups
        self.state = new_state

    def _restore_entries(self, entries: dict[str, Any], p: Tensor, idx: int) -> dict[str, Any]:
        """One parameter's saved state, checked, on ``p``'s device (buffers in ``p``'s dtype)."""
        owner = type(self).__name__
        missing = [name for name in self._required_state if entries and name not in entries]
        if missing:
            raise ValueError(f"state[{idx}] of the loaded state dict lacks {missing[0]!r}, which {owner} needs")
        restored = {}
        for name, value in entries.items():
            where = f"state[{idx}][{name!r}] of the loaded state dict"
            if self._state_buffers is None:
                restored[name] = _restore_any(value, p, name)
            elif name in self._state_scalars:
                restored[name] = _restore_scalar(value, where, whole=name == "step")
            elif name in self._state_buffers and value is None:
                continue  # PyTorch's SGD once saved ``momentum_buffer: None`` for "not made yet"
            elif name in self._state_buffers:
                restored[name] = _restore_buffer(value, p, where, idx)
            else:
                kept = ", ".join(repr(n) for n in self._state_scalars + self._state_buffers)
                raise ValueError(f"{where} is not state {owner} keeps (it keeps {kept})")
        return restored


def _layout(state_dict: Any) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """The groups and the state of a saved optimizer state dict, its structure checked key by key."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"an optimizer state_dict must be a dict with 'state' and 'param_groups', "
                         f"got {type(state_dict).__name__}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"the optimizer state_dict has no {key!r} entry "
                             "(it is a dict with 'state' and 'param_groups' entries)")
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)):
        raise ValueError(f"'param_groups' of the state dict must be a list of dicts, got {type(groups).__name__}")
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise ValueError(f"param_groups[{i}] of the state dict must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"param_groups[{i}] of the state dict has no 'params' entry")
        params = group["params"]
        if not isinstance(params, (list, tuple)) or not all(_is_index(idx) for idx in params):
            raise ValueError(f"param_groups[{i}]['params'] of the state dict must be a list of parameter indices, "
                             f"got {params!r}"[:300])
    state = state_dict["state"]
    if not isinstance(state, dict):
        raise ValueError(f"'state' of the state dict must be a dict from parameter index to a dict of buffers, "
                         f"got {type(state).__name__}")
    checked = {}
    for idx, entries in state.items():
        index: Any = int(idx) if isinstance(idx, str) and idx.isdigit() else idx
        if not _is_index(index):
            raise ValueError(f"'state' of the state dict has the key {idx!r}, which is not a parameter index")
        if not isinstance(entries, dict):
            raise ValueError(f"state[{idx!r}] of the state dict must be a dict of buffers, "
                             f"got {type(entries).__name__}")
        if not all(isinstance(name, str) for name in entries):
            raise ValueError(f"state[{idx!r}] of the state dict has a key that is not a string: {list(entries)!r}")
        checked[int(index)] = entries
    return [{**g, "params": [int(idx) for idx in g["params"]]} for g in groups], checked


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0


def _restore_scalar(value: Any, where: str, whole: bool) -> Any:
    """A saved number such as ``step`` (``whole``: a count) or NAdam's ``mu_product``; PyTorch saves them as
    0-d float tensors."""
    if isinstance(value, Tensor):
        value = value.array
    if backend.is_backend_array(value) or hasattr(value, "__array__"):
        host = backend.host_asarray(backend.to_host(value) if backend.is_backend_array(value) else value)
        if host.size != 1:
            raise ValueError(f"{where} must be a number, got an array of shape {tuple(host.shape)}")
        value = host.reshape(()).item()
    if not whole:
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if not _is_number(value) or not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"{where} must be a non-negative whole number, got {value!r}")
    return int(value)


def _restore_any(value: Any, p: Tensor, name: str) -> Any:
    """State of an optimizer that does not declare its own: arrays become Tensors on ``p``'s device (floating
    ones, but for ``step``, in ``p``'s dtype), as PyTorch's code expects; anything else is kept."""
    if isinstance(value, Tensor):
        value = value.array
    if not backend.is_backend_array(value):
        return value
    if value.dtype.kind == "f" and name != "step":
        value = value.astype(p.dtype, copy=False)
    return Tensor._wrap(backend.to_device(value, p.device).copy(), p.device)


def _snapshot(value: Any) -> Any:
    """A state entry as ``state_dict()`` gives it: arrays and Tensors as host-copy Tensors, the rest as is."""
    if isinstance(value, Tensor):
        value = value.array
    if backend.is_backend_array(value):
        return Tensor._wrap(backend.to_host(value).copy(), "cpu")
    return value


def _restore_buffer(value: Any, p: Tensor, where: str, idx: int) -> Any:
    """A saved buffer on ``p``'s device, in ``p``'s dtype, after checking that it has ``p``'s shape."""
    if isinstance(value, Tensor):
        value = value.array
    elif not backend.is_backend_array(value):
        if not hasattr(value, "__array__") or isinstance(value, (str, bytes)):
            raise ValueError(f"{where} must be an array or Tensor shaped like parameter {idx}, "
                             f"got {type(value).__name__}")
        value = backend.host_asarray(value)
    if tuple(value.shape) != p.shape:
        raise ValueError(
            f"{where} has shape {tuple(value.shape)}, but parameter {idx} has shape {p.shape}"
        )
    if value.dtype.kind not in "fiub":
        raise ValueError(f"{where} has dtype {value.dtype}, not a number type")
    return backend.to_device(value.astype(p.dtype, copy=False), p.device).copy()


def _is_number(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def descent_grad(xp: Any, p: Tensor, grad: Any, group: dict[str, Any]) -> Any:
    """The gradient an update rule follows: ``-grad`` with ``maximize``, plus ``weight_decay * p`` (L2, added to
    the gradient as PyTorch does), or, with ``decoupled_weight_decay``, ``p`` shrunk by ``lr * weight_decay``
    in place first (AdamW's rule). A new array whenever it differs from ``grad``."""
    g = xp.negative(grad, out=xp.empty_like(grad)) if group["maximize"] else grad  # (0-d: an array, not a scalar)
    weight_decay = float(group["weight_decay"])
    if weight_decay != 0:
        if group.get("decoupled_weight_decay", False):
            p.array *= 1.0 - float(group["lr"]) * weight_decay
        else:
            decayed = xp.multiply(p.array, weight_decay, out=xp.empty_like(p.array))
            decayed += g
            g = decayed
    return g


def lerp_(xp: Any, start: Any, end: Any, weight: float, scratch: Any) -> None:
    """``start += weight * (end - start)`` in place (``scratch``: an array of the same shape to use), rounded as
    PyTorch's ``lerp_``: for ``weight >= 0.5`` it computes ``end - (end - start) * (1 - weight)``, so that
    ``weight = 1`` gives ``end`` exactly."""
    xp.subtract(end, start, out=scratch)
    if weight < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= 1.0 - weight
        xp.subtract(end, scratch, out=start)
