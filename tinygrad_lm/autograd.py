"""The autograd engine: graph recording, the iterative backward pass, grad modes.

An op is a :class:`Function` subclass with ``forward`` and ``backward`` side by
side, both working on raw backend arrays. ``Function.apply`` runs ``forward``
and, when any input requires a gradient and grad mode is on, keeps the
Function instance as the ``grad_fn`` node of the output tensor. The node holds
its input tensors (never its output, so the graph has no reference cycles and
is freed by reference counting the moment the last tensor of it goes away).

``backward`` sorts the nodes reachable from the output topologically with an
explicit stack (no recursion: a 100,000-step unrolled RNN backprops), then
walks them in reverse, calling each node's ``backward`` with the gradient of
its output and handing the results on to its inputs. Broadcast gradients are
reduced to their input's shape here, once, not in every op.

When several gradients reach one tensor the engine adds them up, in place
where it alone holds one of the two arrays (a private array: see
:func:`_private`), so a residual stream or a reused weight costs no new
array. An op may have several outputs (``split``): its ``forward`` returns a
tuple of arrays and its ``backward`` gets one gradient per output.

In-place changes are checked as PyTorch checks them: a node notes when it was
recorded (``_epoch``), every in-place change notes which memory it changed
(:func:`note_inplace`), and backward refuses a node whose saved arrays were
changed after it was recorded, naming the op and the versions. ``grad``
(``tl.autograd.grad``) runs the same backward, capturing the gradients of its
inputs instead of accumulating ``.grad``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
import weakref
from typing import Any, Callable

from . import backend


class _ThreadModes(threading.local):
    """Grad mode and inference mode, one setting per thread, as PyTorch keeps them: a thread starts with grad
    mode on, and a ``no_grad`` block (or a backward pass) in one thread does not stop another recording."""

    grad_enabled = True
    inference_mode = 0  # how many inference_mode blocks are open


_modes = _ThreadModes()
_anomaly_mode = False
# The fast path (tinygrad_lm.fast): whether it is on, and the fast version registered for each reference op.
_fast_ops = True
_fast_registry: dict[type, type] = {}
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# Set by tensor.py once the Tensor class exists (tensor.py imports this module).
Tensor: Any = None


class _GradMode(contextlib.ContextDecorator):
    """Sets grad mode to ``_mode`` inside; usable as ``with``, ``@no_grad()`` and bare ``@no_grad``."""

    _mode = True
    _prev: list[bool]  # a stack: a decorated function may call itself

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        self._prev = []
        return self if func is None else self(func)

    def __enter__(self) -> None:
        self._prev.append(_modes.grad_enabled)
        _modes.grad_enabled = self._mode

    def __exit__(self, *exc: Any) -> None:
        _modes.grad_enabled = self._prev.pop()


class no_grad(_GradMode):
    """Context manager and decorator: record no graph inside (inference, optimizer updates)."""

    _mode = False


class enable_grad(_GradMode):
    """Context manager and decorator: record the graph again inside a ``no_grad`` block."""

    _mode = True


class set_grad_enabled(contextlib.ContextDecorator):
    """Switch grad mode to ``mode`` (at once, and back on leaving a ``with`` block)."""

    def __init__(self, mode: bool) -> None:
        self._prev = _modes.grad_enabled
        _modes.grad_enabled = bool(mode)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        _modes.grad_enabled = self._prev


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread (each thread has its own setting, as in PyTorch)."""
    return _modes.grad_enabled


class inference_mode(contextlib.ContextDecorator):
    """PyTorch's ``inference_mode(mode=True)``: no graph inside, as ``no_grad`` (``mode=False``: no change).

    Usable as ``with inference_mode():``, ``@inference_mode()``, ``@inference_mode(False)``, bare ``@inference_mode``.
    """

    _enabled: bool
    _prev: list[bool]

    def __new__(cls, mode: Any = True) -> Any:
        self = super().__new__(cls)
        self._prev = []
        if callable(mode):  # bare @inference_mode
            self._enabled = True
            return self(mode)
        self._enabled = bool(mode)
        return self

    def __init__(self, mode: Any = True) -> None:
        pass

    def __enter__(self) -> None:
        self._prev.append(_modes.grad_enabled)
        if self._enabled:
            _modes.grad_enabled = False
            _modes.inference_mode += 1

    def __exit__(self, *exc: Any) -> None:
        _modes.grad_enabled = self._prev.pop()
        if self._enabled:
            _modes.inference_mode -= 1


def is_inference_mode_enabled() -> bool:
    return _modes.inference_mode > 0


class AnomalyError(RuntimeError):
    """Raised in anomaly mode when an op produces NaN or Inf."""


class detect_anomaly(contextlib.ContextDecorator):
    """Inside this context every op's forward and backward output is checked for NaN/Inf.

    The error names the op and where in the user's code it was created. It makes
    every op slower (a full scan of each result), so it is for debugging only.
    """

    def __init__(self) -> None:
        self._prev: list[bool] = []  # a stack: a decorated function may call itself

    def __enter__(self) -> None:
        global _anomaly_mode
        self._prev.append(_anomaly_mode)
        _anomaly_mode = True

    def __exit__(self, *exc: Any) -> None:
        global _anomaly_mode
        _anomaly_mode = self._prev.pop()


def is_anomaly_enabled() -> bool:
    return _anomaly_mode


class _Edge:
    """What a graph node keeps of a non-leaf input: the node that made it, its place among that
    node's outputs, its shape and dtype, but not the tensor or its data.

    An intermediate result is then freed as soon as nothing but the graph refers to it, unless
    an op saved it for its backward (as PyTorch's graph keeps only saved tensors): a GELU's
    input, say, is not kept alive by the GELU node, which needs only its saved derivative.
    Leaves (parameters, inputs) stay in the graph as tensors, for their ``.grad``.
    """

    __slots__ = ("grad_fn", "_output_nr", "shape", "dtype", "requires_grad")

    def __init__(self, x: Any) -> None:
        self.grad_fn = x.grad_fn
        self._output_nr = x._output_nr
        data = x.array
        self.shape = data.shape
        self.dtype = data.dtype
        self.requires_grad = True


def _graph_inputs(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs as a node keeps them: an :class:`_Edge` for every tensor with a ``grad_fn``."""
    return tuple([_Edge(x) if isinstance(x, Tensor) and x.grad_fn is not None else x for x in inputs])


class Function:
    """Base class of every differentiable op.

    Subclasses define ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad) -> array | tuple`` (one gradient per positional input,
    ``None`` where there is none). Inside them, ``self.xp`` is the array module of
    the inputs' device and ``self.needs_grad[i]`` says whether input ``i`` wants a
    gradient. Whatever ``forward`` stores on ``self`` is freed after backward.

    An op with several outputs returns a tuple of arrays from ``forward``; ``apply``
    then returns a tuple of tensors, and ``backward`` gets a list with the gradient
    of each output (``None`` for the outputs no gradient reached).
    """

    __slots__ = ("inputs", "needs_grad", "xp", "device", "_epoch", "__dict__")
    inputs: Any  # the positional inputs (tensors and constants); None once backward has freed the node
    needs_grad: tuple[bool, ...]
    xp: Any  # numpy or cupy
    device: str
    _epoch: int  # the value of autograd._epoch when the node was recorded (see note_inplace)

    differentiable = True
    n_outputs: int | None = None  # the number of outputs of a node whose forward returned a tuple
    # True while the engine runs this node's backward for the last time (``retain_graph=False``): the
    # engine frees the node right after, so backward may overwrite the arrays forward saved on ``self``.
    last_backward = False
    # True while the engine runs this node's backward with a gradient array that nothing else holds (no
    # hook saw it, no tensor keeps it as .grad) and that may be written (C-contiguous, not read-only):
    # backward may write its result into it and return it.
    owns_grad = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        """Run ``forward`` on the inputs' arrays; record a graph node when needed.

        While the fast path is on, an op with a registered fast version (``tinygrad_lm.fast``) runs that.
        """
        if _fast_ops:
            cls = _fast_registry.get(cls, cls)
        ctx = cls.__new__(cls)
        device = None
        requires_grad = False
        arrays = []
        needs_grad = []
        for x in inputs:
            if isinstance(x, Tensor):
                if device is None:
                    device = x.device
                elif x.device != device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, found {device} and {x.device}"
                    )
                requires_grad = requires_grad or x.requires_grad
                arrays.append(x.array)
                needs_grad.append(x.requires_grad)
            else:
                arrays.append(x)
                needs_grad.append(False)
        if device is None:
            raise TypeError(f"{cls.__name__} needs at least one Tensor input")
        ctx.device = device
        ctx.xp = Tensor._xp_of(device)
        try:
            out = ctx.forward(*arrays, **params)
        except (ValueError, IndexError) as err:
            shapes = " and ".join(str(tuple(a.shape)) for a in arrays if hasattr(a, "shape"))
            raise type(err)(f"{cls.__name__} failed for input shapes {shapes}: {err}") from None
        if type(out) is tuple:
            return _wrap_outputs(ctx, out, inputs, tuple(needs_grad), requires_grad)
        result = Tensor._wrap(out, ctx.device)
        if result.array.base is not None:  # a view (reshape, slice, permute) of an input shares its version counter
            _share_version(result, inputs)
        if requires_grad and _modes.grad_enabled and cls.differentiable and out.dtype.kind in "fc":
            ctx.inputs = _graph_inputs(inputs)
            ctx.needs_grad = tuple(needs_grad)
            result.grad_fn = ctx
            result.requires_grad = True
            ctx._epoch = _epoch
            if _anomaly_mode:
                ctx.__dict__["_created_at"] = _creation_site()
        if _anomaly_mode:
            _check_finite(out, f"{cls.__name__}.forward", ctx, inputs)
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def _wrap_outputs(ctx: Function, outs: tuple[Any, ...], inputs: tuple[Any, ...], needs_grad: tuple[bool, ...],
                  requires_grad: bool) -> tuple[Any, ...]:
    """The tensors of a several-output op; each knows its place (``_output_nr``) among the node's outputs."""
    results = tuple(Tensor._wrap(out, ctx.device) for out in outs)
    for result in results:
        if result.array.base is not None:
            _share_version(result, inputs)
    if requires_grad and _modes.grad_enabled and ctx.differentiable and outs and outs[0].dtype.kind in "fc":
        ctx.inputs = _graph_inputs(inputs)
        ctx.needs_grad = needs_grad
        ctx.n_outputs = len(outs)
        for i, result in enumerate(results):
            result.grad_fn = ctx
            result.requires_grad = True
            result._output_nr = i
        ctx._epoch = _epoch
        if _anomaly_mode:
            ctx.__dict__["_created_at"] = _creation_site()
    if _anomaly_mode:
        for out in outs:
            _check_finite(out, f"{type(ctx).__name__}.forward", ctx, inputs)
    return results


_NDARRAY: Any = backend.numpy_ndarray_type()


def _root(array: Any) -> Any:
    """The array that owns the memory ``array`` looks into (itself when it owns it, or when it views a
    non-array buffer such as bytes or an mmap)."""
    base = array.base
    while base is not None and hasattr(base, "base"):
        array, base = base, base.base
    return array


def _share_version(result: Any, inputs: tuple[Any, ...]) -> None:
    """Give ``result`` the version counter of the input whose memory it views (as PyTorch's views share it)."""
    base = result.array.base
    for x in inputs:  # the usual case: a view of the input's own array
        if type(x) is Tensor and x.array is base:
            result._vc = share_counter(x, result)
            return
    if type(base) is _NDARRAY and base.base is None:  # base owns its memory: only it and its views share it
        for x in inputs:  # (NumPy's views name the array owning the memory as their base)
            if isinstance(x, Tensor) and (x.array is base or x.array.base is base):
                result._vc = share_counter(x, result)
                return
        return  # a view of a new array (a Linear's output, reshaped): nothing to share
    root = _root(result.array)
    for x in inputs:
        if isinstance(x, Tensor) and (x.array is root or _root(x.array) is root):
            result._vc = share_counter(x, result)
            return


def share_counter(source: Any, view: Any) -> list[Any]:
    """``source``'s version counter, noting that ``view`` now shares it (and the memory).

    The counter is ``[version, sharers, tracked]``, ``sharers`` weak references to the tensors
    sharing the memory (None while only one does); a view made by indexing is noted as
    ``(weak reference, weak reference to its base, index)`` so that ``Tensor._rebind`` can
    regenerate it when its base is redirected. Any other live sharer makes ``_rebind`` refuse, and so
    does a view made under ``no_grad`` (not followed, to keep inference free of this bookkeeping).
    """
    counter = source._vc
    if counter is None:
        counter = source._vc = [0, None, True]
    refs = counter[1]
    if not _modes.grad_enabled:  # no graph can be redirected now: note only that unknown tensors share the memory
        if refs is None:
            counter[1] = [_unknown_sharer]
        elif refs[0] is not _unknown_sharer:
            refs.insert(0, _unknown_sharer)
        return counter
    if refs is None:
        refs = counter[1] = [weakref.ref(source)]
    elif len(refs) >= 64 and len(refs) & (len(refs) - 1) == 0:  # at 64, 128, 256...: drop the tensors gone
        refs[:] = [r for r in refs if (r[0] if type(r) is tuple else r)() is not None]  # (amortised O(1))
    refs.append(weakref.ref(view))
    return counter


def _unknown_sharer() -> Any:
    """A sharer that never goes away: views made under no_grad are not followed (see share_counter)."""
    return _unknown_sharer


# In-place changes and the arrays ops saved for backward. Every change of a tensor's memory in place
# (Tensor._bump_version) counts up ``_epoch`` and notes, under the id of the array that owns the memory,
# when it happened and the tensor's new version. A node remembers ``_epoch`` as it was when recorded
# (one integer, all the forward pass pays). Backward looks at what a node saved only when something
# was changed in place since (``node._epoch < _epoch``), and raises PyTorch's error if an array it
# saved, or the memory that array views, was among the things changed: the gradient would be silently
# wrong. What an op did not save is never checked, as in PyTorch (``y = x + 1`` saves nothing, so
# ``x.add_(1)`` before ``y.backward()`` is fine).
_epoch = 0
_changed: dict[int, list[tuple[int, int]]] = {}  # id(owner array) -> its recent changes: (epoch, version)
_HISTORY = 16  # changes kept per array: enough to name the version a node expected


def note_inplace(array: Any, version: int) -> None:
    """Record that ``array``'s memory was just changed in place, its tensor now at ``version``."""
    global _epoch
    _epoch += 1
    owner = _root(array)
    key = id(owner)
    history = _changed.get(key)
    if history is None:
        history = _changed[key] = []
        try:  # forget the array when it is freed (its id may then be reused)
            weakref.finalize(owner, _changed.pop, key, None)
        except TypeError:  # no weak references to this array type: the entry stays; a reused id is harmless,
            pass  # as its changes happened before anything saved the new array
    history.append((_epoch, version))
    if len(history) > _HISTORY:
        del history[0]


def _saved_arrays(node: Function) -> Any:
    """The backend arrays ``node``'s forward saved (attributes, and arrays inside saved tuples and lists)."""
    for v in node.__dict__.values():
        if type(v) is _NDARRAY or _is_cupy_array(v):
            yield v
        elif type(v) in (tuple, list):
            for item in v:
                if type(item) is _NDARRAY or _is_cupy_array(item):
                    yield item


def _check_saved(node: Function) -> None:
    """Raise PyTorch's error if memory ``node`` saved for its backward was changed in place after it was recorded."""
    created = getattr(node, "_epoch", 0)
    for saved in _saved_arrays(node):
        history = _changed.get(id(_root(saved)))
        if history is None or history[-1][0] <= created:
            continue
        now = history[-1][1]
        before = [version for epoch, version in history if epoch <= created]
        expected = before[-1] if before else history[0][1] - 1
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an inplace operation: "
            f"[tensor of shape {tuple(saved.shape)}] is at version {now}; expected version {expected} instead. "
            f"It was saved for the backward of {type(node).__name__}; use an out-of-place op, or clone() it "
            "before changing it."
        )


def _is_cupy_array(v: Any) -> bool:
    cupy = backend._cupy
    return cupy is not None and type(v) is cupy.ndarray


def _creation_site() -> str:
    """Where the current op is being created: the innermost frame outside tinygrad_lm, then the recent stack."""
    top = sys._getframe(1)
    while top.f_back is not None and top.f_code.co_filename == __file__:  # skip the engine's own frames
        top = top.f_back
    frame: Any = top
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    site = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}" if frame else "an unknown place"
    return site + "\n" + "".join(traceback.format_stack(top, limit=8))


def _check_finite(array: Any, what: str, ctx: Function, inputs: tuple[Any, ...] = ()) -> None:
    if array is None or array.dtype.kind not in "fc":
        return
    xp = ctx.xp
    if not bool(xp.isfinite(array).all()):
        where = ctx.__dict__.get("_created_at")
        if where is None and what.endswith(".forward"):  # a node not kept for backward: it is being created now
            where = _creation_site()
        culprit = _nonfinite_input(inputs, xp)
        if where is None:
            raise AnomalyError(
                f"{what} produced NaN or Inf{culprit} (run the forward pass inside detect_anomaly() to see where "
                "the op was created)"
            )
        raise AnomalyError(f"{what} produced NaN or Inf{culprit}; the op was created at {where}")


def _nonfinite_input(inputs: tuple[Any, ...], xp: Any) -> str:
    """Name the first input that already held NaN or Inf, so that the op is not blamed for what it was given."""
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind in "fc" and not bool(xp.isfinite(x.array).all()):
            made = ("made outside the checked ops: your data or a parameter" if x.grad_fn is None
                    else f"made by {type(x.grad_fn).__name__} before detect_anomaly() was entered")
            return f" because its input {i} (a tensor of shape {x.shape}) already held NaN or Inf ({made})"
    return ""


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes along which an input of ``shape`` was broadcast."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


_FREED_GRAPH = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they have "
    "already been freed). Specify retain_graph=True on the first backward() if you need to backward twice, or "
    "detach() tensors carried between iterations (truncated BPTT)."
)


def _topological_order(root: Function) -> list[Function]:
    """Nodes reachable from ``root`` so that every node comes after all nodes that use its output.

    A depth-first search with an explicit stack: ``path`` holds the nodes being visited and
    ``pending`` an iterator over each one's inputs, resumed when the search comes back to it.
    """
    if root.inputs is None:
        raise RuntimeError(_FREED_GRAPH)
    order: list[Function] = []
    visited = {root}
    path = [root]
    pending = [iter(root.inputs)]
    while pending:
        for x in pending[-1]:
            fn = getattr(x, "grad_fn", None)
            if fn is not None and fn not in visited:
                if fn.inputs is None:
                    raise RuntimeError(_FREED_GRAPH)
                visited.add(fn)
                path.append(fn)
                pending.append(iter(fn.inputs))
                break
        else:
            pending.pop()
            order.append(path.pop())
    order.reverse()
    return order


def _refcount_is_exact() -> bool:
    """Whether this interpreter counts references as CPython does (what :func:`_private` relies on)."""
    if sys.implementation.name != "cpython":
        return False
    fresh = (bytearray(1),)
    shared_item = bytearray(1)
    shared = (shared_item,)
    view = (memoryview(bytearray(1)),)
    return (sys.getrefcount(fresh[0]) == 2 and sys.getrefcount(shared[0]) == 3
            and sys.getrefcount(view[0].obj) == 2)


_REFCOUNT_EXACT = _refcount_is_exact()


def _private(grads: tuple[Any, ...], i: int) -> bool:
    """Whether ``grads[i]``, as an op's backward returned it, may be written in place by the engine.

    It may when nothing else can see its memory: the tuple is its only reference (the op
    kept no copy, no tensor or other gradient shares it, it is not returned twice), and it
    owns its memory or is a view (a reshape) of an array that nothing else holds, so it is
    not a view of a saved array, of the incoming gradient, or a broadcast. Every view holds
    a reference to the array it looks into, so reference counts see them all; NumPy elides
    temporaries by the same count. (No name in here may refer to the arrays: it would count.)
    """
    if not _REFCOUNT_EXACT or sys.getrefcount(grads[i]) != 2:
        return False
    if grads[i].base is None:
        return True
    return sys.getrefcount(grads[i].base) == 2 and grads[i].base.base is None


def _writable(array: Any) -> bool:
    """C-contiguous (so no two elements share memory, as in a broadcast) and not marked read-only."""
    flags = array.flags
    return bool(flags.c_contiguous) and getattr(flags, "writeable", True)  # CuPy arrays have no such flag


# Hooks for data-parallel training (PyTorch's names), free when none is registered.
# ``register_post_accumulate_grad_hook`` keeps a leaf's hooks here, by id (a Tensor's ``==`` is elementwise, so
# tensors cannot be dictionary keys), with a weak reference that drops the entry when the leaf dies. They run
# once per backward, after the last node that feeds the leaf has added its gradient. ``queue_callback`` adds to
# the innermost running backward's list, run when that backward has finished (not when it raised).
_post_accumulate_grad_hooks: dict[int, tuple[weakref.ref[Any], dict[int, Callable[[Any], None]]]] = {}
_final_callbacks: list[list[Callable[[], None]]] = []


class RemovableHandle:
    """What registering a hook (on a tensor or a module) returns: ``handle.remove()``, or leaving a ``with``
    block, unregisters it (PyTorch's ``RemovableHandle``)."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Any], registry: dict[int, Any] | None = None, key: int = 0) -> None:
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1
        self._hooks = hooks
        self._registry, self._key = registry, key  # the tensor's entry in a leaf registry, dropped with its last hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)
        if self._registry is not None and not self._hooks:
            entry = self._registry.get(self._key)
            if entry is not None and entry[1] is self._hooks:
                del self._registry[self._key]  # no hook left: backward skips the search again

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _register_leaf_hook(registry: dict[int, Any], tensor: Any, hook: Callable[[Any], Any]) -> RemovableHandle:
    """Add ``hook`` to the leaf ``tensor``'s entry in ``registry``: id -> (weak reference, {handle id: hook}).

    Tensors cannot be dictionary keys (``==`` is elementwise), hence the id, checked against the weak
    reference, which also drops the entry when the tensor goes.
    """
    key = id(tensor)
    entry = registry.get(key)
    if entry is None or entry[0]() is not tensor:

        def forget(_: Any, key: int = key, registry: dict[int, Any] = registry) -> None:
            registry.pop(key, None)  # (the registry itself: at exit, module globals may already be None)

        hooks: dict[int, Callable[[Any], Any]] = {}
        entry = (weakref.ref(tensor, forget), hooks)
        registry[key] = entry
    handle = RemovableHandle(entry[1], registry, key)
    entry[1][handle.id] = hook
    return handle


def _registered_hooks(registry: dict[int, Any], x: Any) -> Any:
    """The hooks of the leaf ``x`` in ``registry``, or None."""
    entry = registry.get(id(x))
    return entry[1] if entry is not None and entry[0]() is x and entry[1] else None


def register_post_accumulate_grad_hook(tensor: Any, hook: Callable[[Any], None]) -> RemovableHandle:
    """Call ``hook(tensor)`` in every backward once the leaf ``tensor``'s ``.grad`` has all its contributions."""
    if tensor.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    return _register_leaf_hook(_post_accumulate_grad_hooks, tensor, hook)


# Tensor.register_hook on leaves: id(leaf) -> (weak reference, {handle id: hook}); non-leaf tensors keep
# theirs on their node (``_grad_hooks``: output number -> {handle id: hook}), freed with the graph.
_leaf_grad_hooks: dict[int, tuple[weakref.ref[Any], dict[int, Callable[[Any], Any]]]] = {}


def register_hook(tensor: Any, hook: Callable[[Any], Any]) -> RemovableHandle:
    """Call ``hook(grad)`` when the gradient of ``tensor`` has been computed in a backward pass.

    The hook may return a tensor that replaces the gradient (same shape) or None. A leaf's hooks see the
    sum of all the contributions of the pass, before it is added to ``.grad``; a non-leaf's see the
    gradient of that output before it flows on to the op that made it (and before ``retain_grad`` keeps it).
    """
    if not tensor.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    node = tensor.grad_fn
    if node is None:
        return _register_leaf_hook(_leaf_grad_hooks, tensor, hook)
    hooks = node.__dict__.setdefault("_grad_hooks", {}).setdefault(tensor._output_nr, {})
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def _leaf_hooks_of(x: Any) -> Any:
    return _registered_hooks(_leaf_grad_hooks, x)


def _run_grad_hooks(hooks: dict[int, Callable[[Any], Any]], g: Any, device: str, what: str) -> Any:
    """``g`` after each hook in turn (a hook returning None leaves it as it is)."""
    for hook in list(hooks.values()):
        out = hook(Tensor._wrap(g, device))
        if out is None:
            continue
        if not isinstance(out, Tensor):
            raise TypeError(f"a gradient hook of {what} must return a Tensor or None, got {type(out).__name__}")
        if out.shape != tuple(g.shape) or out.device != device:
            raise RuntimeError(f"a gradient hook of {what} returned a gradient of shape {out.shape} on {out.device}; "
                               f"expected shape {tuple(g.shape)} on {device}")
        g = out.array.astype(g.dtype, copy=False)
    return g


def _run_node_grad_hooks(node: Function, g: Any) -> Any:
    hooks = node.__dict__["_grad_hooks"]
    what = f"the output of {type(node).__name__}"
    if node.n_outputs is None:
        return _run_grad_hooks(hooks.get(0, {}), g, node.device, what)
    return [gi if gi is None or not hooks.get(nr) else _run_grad_hooks(hooks[nr], gi, node.device, what)
            for nr, gi in enumerate(g)]


def queue_callback(callback: Callable[[], None]) -> None:
    """Run ``callback()`` once the running backward has finished (PyTorch's ``_execution_engine.queue_callback``)."""
    if not _final_callbacks:
        raise RuntimeError("queue_callback: final callbacks can only be installed during the backward pass")
    _final_callbacks[-1].append(callback)


def _hooks_of(x: Any) -> Any:
    return _registered_hooks(_post_accumulate_grad_hooks, x)


def _last_uses(order: list[Function], hooks_of: Callable[[Any], Any] = _hooks_of) -> dict[Function, list[Any]]:
    """For each node, the hooked leaves it is the last node (in backward order) to hand a gradient to."""
    last: dict[int, tuple[Any, Function]] = {}
    for node in order:
        for x, needs in zip(node.inputs, node.needs_grad):
            if needs and isinstance(x, Tensor) and x.grad_fn is None and hooks_of(x) is not None:
                last[id(x)] = (x, node)
    by_node: dict[Function, list[Any]] = {}
    for x, node in last.values():
        by_node.setdefault(node, []).append(x)
    return by_node


def _run_post_accumulate_grad_hooks(leaves: list[Any]) -> None:
    """Call the post-accumulate hooks of ``leaves``, whose ``.grad`` now holds every contribution of this backward."""
    for x in leaves:
        hooks = _hooks_of(x)
        if hooks is not None and x.grad is not None:
            for hook in list(hooks.values()):
                hook(x)


def backward(tensor: Any, grad: Any, retain_graph: bool = False) -> None:
    """Accumulate d(tensor)/d(leaf) * grad into ``.grad`` of every leaf that requires it."""
    _final_callbacks.append([])
    try:
        _backward(tensor, grad, retain_graph)
    finally:
        callbacks = _final_callbacks.pop()
    for callback in callbacks:
        callback()


def _backward(tensor: Any, grad: Any, retain_graph: bool) -> None:
    """The walk of docs/tutorial.md's outline; every special case is in the helper called where it applies."""
    root = tensor.grad_fn
    if root is None:
        _backward_from_leaf(tensor, grad)
        return
    order = _topological_order(root)
    leaf_hooks = _LeafHooks.of(order)  # None when no leaf has a hook: the usual case pays nothing
    add_to_leaf = _accumulate_leaf if leaf_hooks is None else leaf_hooks.accumulate
    grads = {root: _output_gradient(root, tensor, grad)}  # the gradient of each node's output, until it is reached
    owned: set[Function] = set()  # the nodes whose gradient in ``grads`` only the engine holds (see _accumulate)
    grad_was = _modes.grad_enabled  # no_grad() for the walk (the context manager costs more than the flag)
    _modes.grad_enabled = False
    try:
        for node in order:
            g = grads.pop(node, None)  # None: no gradient reached it (only through inputs that need none)
            if g is not None:
                in_grads = _node_backward(node, g, retain_graph, node in owned)
                g = None  # an op handing ``g`` on unchanged (Clone, Expand) then leaves it private
                for i, x in enumerate(node.inputs):
                    if not node.needs_grad[i] or in_grads[i] is None:
                        continue
                    private = _private(in_grads, i)  # asked before any name here refers to the array
                    gx = in_grads[i]
                    want = x if type(x) is _Edge else x.array  # (a leaf's array: Tensor.shape is a property)
                    if gx.shape != want.shape or gx.dtype != want.dtype:
                        gx, private = _unbroadcast_checked(node, x, gx, private)
                    fn = x.grad_fn
                    if fn is None:
                        add_to_leaf(x, gx, private)
                    elif fn in grads or fn.n_outputs is not None:
                        _accumulate(grads, owned, x, gx, private)
                    else:  # the first gradient to reach fn's output
                        grads[fn] = gx
                        if private:
                            owned.add(fn)
                gx = None  # a name referring to a gradient would count as one more holder in _private
            if leaf_hooks is not None:
                leaf_hooks.node_done(node)
            if not retain_graph:
                _free(node)
    finally:
        _modes.grad_enabled = grad_was


def _backward_from_leaf(tensor: Any, grad: Any) -> None:
    """``backward`` called on a leaf: ``grad``, through the leaf's hooks, is its gradient."""
    if not tensor.requires_grad:
        return
    hooks = _leaf_hooks_of(tensor) if _leaf_grad_hooks else None
    if hooks is not None:
        grad = _run_grad_hooks(hooks, grad, tensor.device, "a leaf tensor")
    _accumulate_leaf(tensor, grad)
    if _post_accumulate_grad_hooks and not _captures:
        _run_post_accumulate_grad_hooks([tensor])


def _output_gradient(node: Function, tensor: Any, grad: Any) -> Any:
    """``grad``, the gradient of ``node``'s output ``tensor``, as ``grads`` holds it: a node with several outputs
    has a list, one slot per output (None for those no gradient reached)."""
    if node.n_outputs is None:
        return grad
    slots: list[Any] = [None] * node.n_outputs
    slots[tensor._output_nr] = grad
    return slots


def _node_backward(node: Function, g: Any, retain_graph: bool, own: bool) -> tuple[Any, ...]:
    """``node.backward(g)`` as a tuple (one gradient per input), with what must happen around the call.

    Before it, the hooks on the node's output see ``g`` (:func:`_output_hooks`), and, when memory was
    changed in place since the node was recorded, the arrays it saved are checked (:func:`_check_saved`);
    ``last_backward`` tells the op it may overwrite them, the node being freed right after, and
    ``owns_grad`` that it may overwrite ``g`` (``own``: only the engine holds it, and no hook saw it; and
    it is C-contiguous and writable).
    After it, in anomaly mode, every gradient is checked for NaN and Inf.
    """
    if _captures or "_grad_hooks" in node.__dict__ or "_retain_ref" in node.__dict__:
        g = _output_hooks(node, g)
        own = False  # a hook may keep it, and .grad does
    if getattr(node, "_epoch", 0) < _epoch:  # memory was changed in place since this node was recorded
        _check_saved(node)
    if not retain_graph:
        node.last_backward = True
    if own and _writable(g):
        node.owns_grad = True
    elif "owns_grad" in node.__dict__:  # said by an earlier backward through a retained graph
        del node.owns_grad
    in_grads = node.backward(g)
    if type(in_grads) is not tuple:
        in_grads = (in_grads,)
    if _anomaly_mode:
        _check_gradients_finite(node, in_grads)
    return in_grads


def _output_hooks(node: Function, g: Any) -> Any:
    """``g``, the gradient of ``node``'s output(s), after ``Tensor.register_hook``'s hooks on them; kept as
    ``.grad`` where ``Tensor.retain_grad`` asked, and captured inside ``autograd.grad``."""
    if "_grad_hooks" in node.__dict__:
        g = _run_node_grad_hooks(node, g)
    ref = node.__dict__.get("_retain_ref")
    if ref is not None:
        _keep_retained(ref, g)
    if _captures:
        _capture_node_gradient(node, g)
    return g


def _check_gradients_finite(node: Function, in_grads: tuple[Any, ...]) -> None:
    """In anomaly mode: raise if ``node``'s backward returned a gradient holding NaN or Inf."""
    for gx in in_grads:
        if gx is not None and not isinstance(gx, (int, float)):
            _check_finite(gx, f"{type(node).__name__}.backward", node)


def _unbroadcast_checked(node: Function, x: Any, gx: Any, private: bool) -> tuple[Any, bool]:
    """``gx``, the gradient ``node`` returned for its input ``x``, summed to ``x``'s shape where the op broadcast
    it, and whether it is still private (a sum is a new array). A dtype other than ``x``'s is the op's bug."""
    if gx.shape != x.shape:
        reduced = unbroadcast(gx, x.shape)
        private = private or reduced.size != gx.size  # a sum made a new array
        gx = reduced
    if gx.dtype != (x.dtype if type(x) is _Edge else x.array.dtype):  # (Tensor.dtype: a DType)
        raise RuntimeError(f"{type(node).__name__}.backward returned a {gx.dtype} gradient for a {x.dtype} input")
    return gx, private


def _free(node: Function) -> None:
    """Drop what ``node`` holds, its inputs and what its forward saved: the graph is freed as the walk goes."""
    node.inputs = None
    node.__dict__.clear()


class _LeafHooks:
    """The leaves' hooks during one backward, found once from the nodes in ``order``.

    ``register_hook``'s hooks on a leaf see the sum of all its contributions: those are summed in
    ``pending`` until the last node that feeds the leaf has run (``hooked``: node -> the leaves it
    feeds last), then hooked and added to ``.grad``. Post-accumulate hooks run once that last node
    has added its share (``last_uses``); inside ``autograd.grad``, which writes no ``.grad``, never.
    """

    __slots__ = ("hooked", "hooked_ids", "pending", "last_uses")

    @staticmethod
    def of(order: list[Function]) -> _LeafHooks | None:
        """The hooks for a walk over ``order``, or None when no leaf has one (nothing to look for)."""
        post = bool(_post_accumulate_grad_hooks) and not _captures
        return _LeafHooks(order, post) if _leaf_grad_hooks or post else None

    def __init__(self, order: list[Function], post: bool) -> None:
        self.last_uses = _last_uses(order) if post else None
        self.hooked = _last_uses(order, _leaf_hooks_of) if _leaf_grad_hooks else None
        self.hooked_ids = {id(x) for leaves in self.hooked.values() for x in leaves} if self.hooked else set()
        self.pending: dict[int, Any] = {}

    def accumulate(self, x: Any, gx: Any, private: bool) -> None:
        """Add ``gx`` to the leaf ``x``'s gradient: to its pending sum when it has hooks, else to ``.grad``."""
        key = id(x)
        if key in self.hooked_ids:
            self.pending[key] = gx.copy() if key not in self.pending else self.pending[key] + gx
        else:
            _accumulate_leaf(x, gx, private)

    def node_done(self, node: Function) -> None:
        """``node`` has run (or was skipped): the leaves it fed last have all their gradient, so their hooks run."""
        if self.hooked and node in self.hooked:
            _flush_hooked_leaves(self.hooked[node], self.pending)
        if self.last_uses and node in self.last_uses:
            _run_post_accumulate_grad_hooks(self.last_uses[node])


def _flush_hooked_leaves(leaves: list[Any], pending: dict[int, Any]) -> None:
    """A hooked leaf's last contribution is in: run its hooks on the sum, then add that to ``.grad``."""
    for x in leaves:
        g = pending.pop(id(x), None)
        if g is not None:
            hooks = _leaf_hooks_of(x)
            _accumulate_leaf(x, _run_grad_hooks(hooks, g, x.device, "a leaf tensor") if hooks else g, True)


def _accumulate(grads: dict[Function, Any], owned: set[Function], x: Any, gx: Any, private: bool) -> None:
    """Add ``gx`` to the gradient of the non-leaf ``x`` already in ``grads`` (under the node that made it), in
    place into whichever of the two the engine alone holds; a node with several outputs has one slot per output.

    Floating-point addition is commutative, so ``prev += gx`` and ``gx += prev`` give the
    bits ``prev + gx`` gives; both must be C-contiguous so the sum has the layout it
    would have had (later ops then see the same strides), and writable.
    """
    fn = x.grad_fn
    if fn.n_outputs is not None:
        slots = grads.setdefault(fn, [None] * fn.n_outputs)
        nr = x._output_nr
        slots[nr] = gx if slots[nr] is None else slots[nr] + gx
        return
    prev = grads[fn]
    if fn in owned and _writable(prev) and _writable(gx):
        prev += gx
        grads[fn] = prev  # (a NumPy scalar is immutable: += made a new one)
    elif private and _writable(prev) and _writable(gx):
        gx += prev
        grads[fn] = gx
        owned.add(fn)
    else:
        grads[fn] = prev + gx
        owned.add(fn)


def _keep_retained(ref: Any, g: Any) -> None:
    """Store ``g`` as ``.grad`` of the non-leaf output(s) that ``Tensor.retain_grad`` asked to keep."""
    if isinstance(ref, dict):  # a several-output node: output number -> weak reference
        for nr, r in ref.items():
            kept = r()
            if kept is not None and g[nr] is not None:
                _accumulate_leaf(kept, g[nr])
        return
    kept = ref()
    if kept is not None:
        _accumulate_leaf(kept, g)


def _accumulate_leaf(x: Any, g: Any, private: bool = False) -> None:
    """``x.grad += g`` (a leaf's, or a non-leaf's kept by ``retain_grad``).

    The first gradient becomes ``.grad`` as it is when it is private (nothing else holds it),
    C-contiguous and writable; otherwise ``.grad`` gets a copy, as backward results may be views of,
    or shared with, other gradients.
    """
    if _captures:  # inside autograd.grad: the gradient goes to its result, never to .grad
        slot = _captures[-1].get(id(x))
        if slot is not None and slot[0] is x:
            slot[1] = g.copy() if slot[1] is None else slot[1] + g
        return
    if x._grad is None:  # the engine's own write: no need for the checks of the .grad setter
        x._grad = Tensor._wrap(g if private and _writable(g) else g.copy(), x.device)
    else:
        x._grad.array += g


# autograd.grad's results while it runs backward: id(input) -> [input, gradient array or None]
# (non-leaf inputs under the key of their node and output number); a stack, as grad may nest in hooks.
_captures: list[dict[Any, list[Any]]] = []


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         materialize_grads: bool = False) -> tuple[Any, ...]:
    """PyTorch's ``torch.autograd.grad``: the gradients of ``outputs`` with respect to ``inputs``, returned
    (a tuple, one per input), leaving every ``.grad`` untouched. ``create_graph=True`` is not supported yet."""
    if create_graph:
        raise NotImplementedError("autograd.grad: create_graph=True is not supported (backward records no graph)")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,) * len(outputs) if grad_outputs is None else (grad_outputs,)
    grad_outputs = tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    capture: dict[Any, list[Any]] = {}
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: inputs must be Tensors, input {i} is a {type(x).__name__}")
        if not x.requires_grad:
            raise RuntimeError(f"One of the differentiated Tensors does not require grad (input {i})")
        key = id(x) if x.grad_fn is None else (x.grad_fn, x._output_nr)
        capture[key] = [x, None]
    _captures.append(capture)
    try:
        for k, (out, g) in enumerate(zip(outputs, grad_outputs)):
            out.backward(g, retain_graph=bool(retain_graph) or k < len(outputs) - 1)
    finally:
        _captures.pop()
    results = []
    for i, x in enumerate(inputs):
        g = capture[id(x) if x.grad_fn is None else (x.grad_fn, x._output_nr)][1]
        if g is None:
            if not (allow_unused or materialize_grads):
                raise RuntimeError(f"One of the differentiated Tensors (input {i}) appears to not have been used in "
                                   "the graph. Set allow_unused=True if this is the desired behavior.")
            results.append(Tensor._wrap(x.xp.zeros(x.shape, dtype=x.array.dtype), x.device)
                           if materialize_grads else None)
        else:
            results.append(Tensor._wrap(g, x.device))
    return tuple(results)


def _capture_node_gradient(node: Function, g: Any) -> None:
    """Inside autograd.grad: keep the gradient reaching ``node``'s output(s) when one is a non-leaf input."""
    capture = _captures[-1]
    for nr in range(node.n_outputs or 1):
        slot = capture.get((node, nr))
        if slot is not None:
            part = g if node.n_outputs is None else g[nr]
            if part is not None:
                slot[1] = part.copy() if slot[1] is None else slot[1] + part
