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
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any

_grad_enabled = True
_anomaly_mode = False
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
        global _grad_enabled
        self._prev.append(_grad_enabled)
        _grad_enabled = self._mode

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self._prev.pop()


class no_grad(_GradMode):
    """Context manager and decorator: record no graph inside (inference, optimizer updates)."""

    _mode = False


class enable_grad(_GradMode):
    """Context manager and decorator: record the graph again inside a ``no_grad`` block."""

    _mode = True


class set_grad_enabled(contextlib.ContextDecorator):
    """Switch grad mode to ``mode`` (at once, and back on leaving a ``with`` block)."""

    def __init__(self, mode: bool) -> None:
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = bool(mode)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self._prev


def is_grad_enabled() -> bool:
    return _grad_enabled


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


class Function:
    """Base class of every differentiable op.

    Subclasses define ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad) -> array | tuple`` (one gradient per positional input,
    ``None`` where there is none). Inside them, ``self.xp`` is the array module of
    the inputs' device and ``self.needs_grad[i]`` says whether input ``i`` wants a
    gradient. Whatever ``forward`` stores on ``self`` is freed after backward.
    """

    __slots__ = ("inputs", "needs_grad", "xp", "device", "__dict__")
    inputs: Any  # the positional inputs (tensors and constants); None once backward has freed the node
    needs_grad: tuple[bool, ...]
    xp: Any  # numpy or cupy
    device: str

    differentiable = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        """Run ``forward`` on the inputs' arrays; record a graph node when needed."""
        ctx = cls.__new__(cls)
        device = None
        requires_grad = False
        arrays = []
        for x in inputs:
            if isinstance(x, Tensor):
                if device is None:
                    device = x.device
                elif x.device != device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, found {device} and {x.device}"
                    )
                requires_grad = requires_grad or x.requires_grad
                arrays.append(x.data)
            else:
                arrays.append(x)
        if device is None:
            raise TypeError(f"{cls.__name__} needs at least one Tensor input")
        ctx.device = device
        ctx.xp = Tensor._xp_of(device)
        try:
            out = ctx.forward(*arrays, **params)
        except (ValueError, IndexError) as err:
            shapes = " and ".join(str(tuple(a.shape)) for a in arrays if hasattr(a, "shape"))
            raise type(err)(f"{cls.__name__} failed for input shapes {shapes}: {err}") from None
        result = Tensor._wrap(out, ctx.device)
        if requires_grad and _grad_enabled and cls.differentiable and out.dtype.kind in "fc":
            ctx.inputs = inputs
            ctx.needs_grad = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
            result.grad_fn = ctx
            result.requires_grad = True
            if _anomaly_mode:
                ctx.__dict__["_created_at"] = _creation_site()
        if _anomaly_mode:
            _check_finite(out, f"{cls.__name__}.forward", ctx)
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


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


def _check_finite(array: Any, what: str, ctx: Function) -> None:
    if array is None or array.dtype.kind not in "fc":
        return
    xp = ctx.xp
    if not bool(xp.isfinite(array).all()):
        where = ctx.__dict__.get("_created_at")
        if where is None and what.endswith(".forward"):  # a node not kept for backward: it is being created now
            where = _creation_site()
        if where is None:
            raise AnomalyError(
                f"{what} produced NaN or Inf (run the forward pass inside detect_anomaly() to see where the op "
                "was created)"
            )
        raise AnomalyError(f"{what} produced NaN or Inf; the op was created at {where}")


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


def _topological_order(root: Function) -> list[Function]:
    """Nodes reachable from ``root`` so that every node comes after all nodes that use its output."""
    order: list[Function] = []
    visited = {id(root)}
    stack: list[tuple[Function, int]] = [(root, 0)]
    while stack:
        node, i = stack[-1]
        inputs = node.inputs
        if inputs is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors after "
                "they have already been freed). Specify retain_graph=True on the first backward() if you need to "
                "backward twice, or detach() tensors carried between iterations (truncated BPTT)."
            )
        while i < len(inputs):
            x = inputs[i]
            i += 1
            fn = getattr(x, "grad_fn", None)
            if fn is not None and id(fn) not in visited:
                visited.add(id(fn))
                stack[-1] = (node, i)
                stack.append((fn, 0))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    return order


def backward(tensor: Any, grad: Any, retain_graph: bool = False) -> None:
    """Accumulate d(tensor)/d(leaf) * grad into ``.grad`` of every leaf that requires it."""
    root = tensor.grad_fn
    if root is None:
        if tensor.requires_grad:
            _accumulate_leaf(tensor, grad)
        return
    order = _topological_order(root)
    grads: dict[int, Any] = {id(root): grad}
    with no_grad():
        for node in order:
            g = grads.pop(id(node), None)
            if g is None:  # no gradient reached this node (only through inputs that need none)
                if not retain_graph:
                    _free(node)
                continue
            ref = node.__dict__.get("_retain_ref")  # set by Tensor.retain_grad() on this node's output
            kept = ref() if ref is not None else None
            if kept is not None:
                _accumulate_leaf(kept, g)
            in_grads = node.backward(g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if _anomaly_mode:
                for gx in in_grads:
                    if gx is not None and not isinstance(gx, (int, float)):
                        _check_finite(gx, f"{type(node).__name__}.backward", node)
            for x, gx, needed in zip(node.inputs, in_grads, node.needs_grad):
                if not needed or gx is None:
                    continue
                shape = x.data.shape
                if gx.shape != shape:
                    gx = unbroadcast(gx, shape)
                if gx.dtype != x.data.dtype:
                    raise RuntimeError(
                        f"{type(node).__name__}.backward returned a {gx.dtype} gradient for a {x.data.dtype} input"
                    )
                fn = x.grad_fn
                if fn is None:
                    _accumulate_leaf(x, gx)
                else:
                    key = id(fn)
                    prev = grads.get(key)
                    grads[key] = gx if prev is None else prev + gx
            if not retain_graph:
                _free(node)


def _free(node: Function) -> None:
    """Drop a node's inputs and saved arrays: its graph cannot be backpropagated again."""
    node.inputs = None
    node.__dict__.clear()


def _accumulate_leaf(x: Any, g: Any) -> None:
    """``x.grad += g`` (a leaf's, or a non-leaf's kept by ``retain_grad``)."""
    if x.grad is None:
        # Own the array: backward results may be views of, or shared with, other gradients.
        x.grad = Tensor._wrap(g.copy(), x.device)
    else:
        x.grad.data += g
