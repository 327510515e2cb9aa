"""``Module``: the container that finds a model's parameters by attribute.

Assigning a :class:`Parameter` or a :class:`Module` to an attribute registers it,
under its attribute name; nested modules give the dotted names PyTorch uses
(``rnn.weight_ih_l0``), so a ``state_dict`` moves between the two frameworks as
plain NumPy arrays. The containers (``Sequential``, ``ModuleList``, ...) live in
:mod:`.container`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator, NamedTuple

from .. import backend, dtypes
from ..autograd import RemovableHandle
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module's learnable weight (``requires_grad=True`` by default).

    ``Parameter(t)`` shares ``t``'s memory, as in PyTorch.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = backend.host_asarray([], dtype=dtypes.get_default_dtype())
        if isinstance(data, Tensor):
            super().__init__(data.array, device=data.device)
        else:
            super().__init__(data)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class _IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` did not match: ``missing_keys`` and ``unexpected_keys``."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"

    def __str__(self) -> str:
        return self.__repr__()


def _add_hook(hooks: OrderedDict[int, Any], entry: Any, prepend: bool) -> RemovableHandle:
    """Put ``entry`` among a module's ``hooks`` (first with ``prepend``); the handle removes it again."""
    handle = RemovableHandle(hooks)
    hooks[handle.id] = entry
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name:
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')


def _torch_like_to_numpy(value: Any) -> Any:
    """A PyTorch tensor (duck-typed: ``detach``, ``cpu``, ``numpy``) as a NumPy array; anything else unchanged."""
    if not isinstance(value, Tensor) and all(hasattr(value, a) for a in ("detach", "cpu", "numpy")):
        return value.detach().cpu().numpy()
    return value


def _indent(text: str) -> str:
    """Indent every line but the first by two spaces (how a child's repr nests in its parent's)."""
    return text.replace("\n", "\n  ")


class Module:
    """Base class of every layer and model: subclass it, set attributes in ``__init__``, define ``forward``."""

    training: bool
    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, Tensor | None]
    _non_persistent: set[str]
    _modules: OrderedDict[str, Any]  # a slot may hold None, as in PyTorch
    _forward_pre_hooks: OrderedDict[int, Any]
    _forward_hooks: OrderedDict[int, Any]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        """Register Parameters and Modules by attribute name, as PyTorch.

        A slot keeps its kind: a parameter slot takes a Parameter or None, a module slot a
        Module or None, a buffer slot a Tensor or None (else ``TypeError``, as PyTorch).
        """
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            self._unregister(name)
            params[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} (nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._unregister(name)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} (Module or None expected)"
                )
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} (Tensor or None expected)")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def _unregister(self, name: str) -> None:
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __delattr__(self, name: str) -> None:
        self._unregister(name)
        object.__delattr__(self, name)

    def _check_new_attribute(self, kind: str, name: str, registry: dict[str, Any]) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        _check_name(kind, name)
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (a Parameter, or None for an absent one such as ``bias=False``) as ``name``."""
        self._check_new_attribute("parameter", name, self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign {type(param).__name__} object to parameter {name!r} (nn.Parameter or None required)"
            )
        self._unregister(name)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that is state but not a parameter (saved in ``state_dict`` unless ``persistent=False``)."""
        self._check_new_attribute("buffer", name, self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign {type(tensor).__name__} object to buffer {name!r} (Tensor or None required)"
            )
        self._unregister(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module (or None for an empty slot) as ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_new_attribute("module", name, self._modules)
        self._unregister(name)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The module at the dotted path ``target`` (``""`` is this module)."""
        module: Module = self
        if target == "":
            return module
        for item in target.split("."):
            if item not in module._modules or module._modules[item] is None:
                raise AttributeError(f"{module._get_name()} has no submodule `{item}` (looking up {target!r})")
            module = module._modules[item]
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at the dotted path ``target`` (e.g. ``"blocks.0.attn.c_attn.weight"``)."""
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if module._parameters.get(name) is None:
            raise AttributeError(f"{module._get_name()} has no parameter `{name}` (looking up {target!r})")
        return module._parameters[name]  # type: ignore[return-value]

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at the dotted path ``target``."""
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if module._buffers.get(name) is None:
            raise AttributeError(f"{module._get_name()} has no buffer `{name}` (looking up {target!r})")
        return module._buffers[name]  # type: ignore[return-value]

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_pre_hooks.values()):
            if with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"forward pre-hook must return None or a tuple of (new_args, new_kwargs), but got {result}"
                        )
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_hooks.values()):
            result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, args)`` before ``forward`` (``hook(module, args, kwargs)`` with ``with_kwargs``);
        a non-None result replaces the arguments. Returns a handle whose ``remove()`` unregisters it."""
        return _add_hook(self._forward_pre_hooks, (hook, with_kwargs), prepend)

    def register_forward_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False, always_call: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after ``forward`` (``hook(module, args, kwargs, output)`` with
        ``with_kwargs``); a non-None result replaces the output. Returns a handle with ``remove()``."""
        if always_call:
            raise NotImplementedError("register_forward_hook: always_call=True is not supported")
        return _add_hook(self._forward_hooks, (hook, with_kwargs), prepend)

    # ------------------------------------------------------------------ traversal
    def named_modules(
        self, memo: set[Module] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, this one first (pre-order), with its dotted name.

        A module reachable by two paths appears once (under its first name) unless ``remove_duplicate=False``.
        """
        if memo is None:
            memo = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate:
                if module in memo:
                    continue
                memo.add(module)
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[Module] = set()
        for name, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(
        self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool
    ) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        if recurse:
            modules: Iterator[tuple[str, Module]] = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
        else:
            modules = iter([(prefix, self)])
        for mod_name, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{mod_name}.{name}" if mod_name else name), t

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Any]]:
        """``(dotted name, parameter)`` pairs; a parameter shared by two modules (tied weights) appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every child (recursively, children first) and then on this module; returns ``self``."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and devices
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.array[...] = 0

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move (or cast) every parameter, buffer and gradient in place; returns ``self``.

        As PyTorch: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)`` (its device and
        dtype) or keywords ``device=``, ``dtype=``, ``non_blocking=`` (a copy here is always blocking).
        A dtype casts only floating point tensors and must itself be floating point.
        """
        device, dtype = _parse_to(args, kwargs)
        dev = backend.canonical_device(device) if device is not None else None
        dt = None
        if dtype is not None:
            dt = dtypes.check_dtype(dtype)
            if dt.kind != "f":
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dt}")
            if dt.itemsize < 4:
                raise TypeError(
                    f"nn.Module.to({dt}): float16 modules are not supported (not every op computes in float16); "
                    "use .float() or .double()"
                )
        for t in list(self.parameters()) + list(self.buffers()):
            _move_in_place(t, dev, dt)
            if t.grad is not None:
                _move_in_place(t.grad, dev, dt)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: Any = None) -> Module:
        if device is None:
            return self.to("cuda")
        return self.to(device if isinstance(device, str) else f"cuda:{int(device)}")

    def float(self) -> Module:
        return self.to(dtype="float32")

    def double(self) -> Module:
        return self.to(dtype="float64")

    def half(self) -> Module:
        """Raises ``TypeError``: float16 modules are not supported (see ``to``)."""
        return self.to(dtype="float16")

    def bfloat16(self) -> Module:
        raise TypeError("Module.bfloat16: tinygrad_lm has no bfloat16 dtype (NumPy has none); use float() or half()")

    def type(self, dst_type: Any) -> Module:
        return self.to(dtype=dst_type)

    # ------------------------------------------------------------------ state
    def _state_entries(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(key, tensor)`` for every parameter and persistent buffer, as PyTorch's state_dict walks them.

        Unlike ``named_parameters``, nothing is deduplicated: a tied weight appears under each of its
        names and a module reachable by two paths under both, so keys match PyTorch's state_dict.
        """
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            for key, t in module._parameters.items():
                if t is not None:
                    yield name + key, t
            for key, buf in module._buffers.items():
                if buf is not None and key not in module._non_persistent:
                    yield name + key, buf
            children = [(f"{name}{k}.", m) for k, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def state_dict(self, *, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """Parameter and persistent buffer name -> host NumPy copy (**differs** from PyTorch's tensors:
        arrays move between frameworks and to disk unchanged). ``keep_vars=True`` gives the tensors themselves.
        Keys are PyTorch's: tied weights appear under every name.
        """
        out: Any = OrderedDict() if destination is None else destination
        for key, t in self._state_entries(prefix):
            out[key] = t if keep_vars else backend.to_host(t.array).copy()
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
        """Copy values (NumPy arrays, Tensors, or PyTorch tensors) into the parameters and buffers.

        Returns ``_IncompatibleKeys(missing_keys, unexpected_keys)``. With ``strict=True`` any missing or
        unexpected key raises ``RuntimeError``; a shape mismatch raises ``RuntimeError`` naming the key
        whatever ``strict`` is (as PyTorch). Nothing is changed unless every check passes.
        """
        if assign:
            raise NotImplementedError("load_state_dict: assign=True is not supported; values are always copied")
        if not hasattr(state_dict, "items"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        own = dict(self._state_entries())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
            if missing:
                errors.append("missing key(s): " + ", ".join(repr(k) for k in missing))
        staged = []
        for key, t in own.items():
            if key not in state_dict:
                continue
            value = _torch_like_to_numpy(state_dict[key])
            array = value.array if isinstance(value, Tensor) else value
            if not backend.is_backend_array(array):
                try:
                    array = backend.host_asarray(array)
                except (TypeError, ValueError):
                    errors.append(f"state_dict entry {key!r} is not an array ({type(value).__name__})")
                    continue
            if tuple(array.shape) != t.shape:
                errors.append(
                    f"size mismatch for {key!r}: copying a param with shape {tuple(array.shape)} from checkpoint, "
                    f"the shape in current model is {t.shape}"
                )
            elif array.dtype.kind not in "fiub":
                errors.append(f"state_dict entry {key!r} has unsupported dtype {array.dtype}")
            else:
                staged.append((t, array))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t" + "\n\t".join(errors))
        for t, array in staged:
            t.array = backend.to_device(array, t.device).astype(t.dtype, copy=True)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """This module's own settings for its repr (e.g. ``in_features=4, out_features=3, bias=True``)."""
        return ""

    def _child_lines(self) -> list[str]:
        return [f"({name}): " + _indent(repr(m)) for name, m in self._modules.items()]

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        lines = extra_lines + self._child_lines()
        if not lines:
            return self._get_name() + "()"
        if len(lines) == 1 and extra_lines:
            return f"{self._get_name()}({extra_lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


def _parse_to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``Module.to``'s arguments as ``(device or None, dtype or None)``."""
    unknown = set(kwargs) - {"device", "dtype", "non_blocking", "copy"}
    if unknown:
        raise TypeError(f"Module.to() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    positional = list(args)
    if positional and isinstance(positional[-1], bool):  # to(device, dtype, non_blocking)
        positional.pop()
    if len(positional) > 2:
        raise TypeError(f"Module.to() takes at most a device and a dtype, got {len(args)} arguments")
    for a in positional:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, int) and not isinstance(a, bool):  # to(0): the CUDA device with that index
            device = f"cuda:{a}"
        elif _is_device_like(a):
            device = a
        else:
            dtype = a
    return device, dtype


def _is_device_like(value: Any) -> bool:
    text = str(value).strip().lower()
    return text == "cpu" or text.startswith("cuda")


def _move_in_place(t: Tensor, device: str | None, dtype: Any) -> None:
    data = t.array
    if dtype is not None and data.dtype.kind == "f" and data.dtype != dtype:
        data = data.astype(dtype)
    if device is not None and device != t.device:
        data = backend.to_device(data, device)
        t.device = device
    t.array = data


__all__ = ["Module", "Parameter"]
