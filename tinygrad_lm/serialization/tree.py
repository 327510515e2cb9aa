"""A checkpoint's structure as a JSON tree; its arrays go to safetensors tensors, referred to by key.

Nodes: ``null``, booleans, integers, strings and finite floats are themselves;
``{"float": "nan"|"inf"|"-inf"}``; ``{"list": [...]}``, ``{"tuple": [...]}``;
``{"dict": [[key, node], ...]}`` (keys are strings or integers, order kept);
``{"array": key}`` (a NumPy or CuPy array); ``{"scalar": key}`` (a NumPy scalar, stored
as a 0-d tensor); ``{"tensor": key, "requires_grad": bool, "parameter": bool}`` (a Tensor or
an ``nn.Parameter``).

Each tensor is stored under the dotted path where it first appears (``model.weight``,
``optimizer.state.0.exp_avg``). Arrays that are one and the same object (a Tensor and its
``.array``, ``t`` and ``t.data``, one array under two names) are stored once, and load back
as one array shared by every place that referred to it, as PyTorch shares a storage.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy

from .. import backend
from ..tensor import Tensor

MAX_DEPTH = 100  # nesting levels of dicts, lists and tuples; deeper is refused on save and on load

_SAFETENSORS_DTYPES = frozenset(
    numpy.dtype(d) for d in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
                             "float16", "float32", "float64")
)


def format_path(path: tuple[Any, ...]) -> str:
    """``('optimizer', 'state', 0, 'fn')`` -> ``'optimizer.state.0.fn'``."""
    return ".".join(str(k) for k in path) if path else "<root>"


class Encoder:
    """Walks the object to save, collecting its arrays (host, little-endian, C order) and building the tree."""

    def __init__(self) -> None:
        self.arrays: dict[str, numpy.ndarray] = {}
        self.devices: dict[str, str] = {}  # key -> the device the array was saved from
        self._key_of: dict[int, str] = {}  # id(array) -> key, for arrays met before
        self._alive: list[Any] = []  # the arrays in _key_of, kept alive so that their ids stay theirs
        self._open: dict[int, tuple[Any, ...]] = {}  # id -> path of each container being walked

    def encode(self, obj: Any, path: tuple[Any, ...] = ()) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, Tensor):
            from ..nn.module import Parameter

            return {"tensor": self._array(obj.array, path), "requires_grad": bool(obj.requires_grad),
                    "parameter": isinstance(obj, Parameter)}
        if backend.is_backend_array(obj):
            return {"array": self._array(obj, path)}
        if isinstance(obj, numpy.generic):
            return {"scalar": self._array(numpy.asarray(obj), path)}
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
        if isinstance(obj, (dict, list, tuple)):
            return self._container(obj, path)
        raise TypeError(
            f"save: cannot save {type(obj).__name__} at {format_path(path)!r}; a checkpoint holds dicts, lists, "
            "tuples, Tensors, arrays, numbers, strings, booleans and None"
        )

    def _container(self, obj: dict[Any, Any] | list[Any] | tuple[Any, ...], path: tuple[Any, ...]) -> Any:
        if id(obj) in self._open:
            raise ValueError(
                f"save: cannot save a structure that contains itself: {format_path(path)!r} is "
                f"{format_path(self._open[id(obj)])!r} again"
            )
        if len(path) >= MAX_DEPTH:
            raise ValueError(f"save: {format_path(path[:5])}... is nested more than {MAX_DEPTH} levels deep")
        self._open[id(obj)] = path
        try:
            if isinstance(obj, dict):
                items = []
                for k, v in obj.items():
                    if isinstance(k, bool) or not isinstance(k, (str, int)):
                        raise TypeError(f"save: dict keys must be strings or integers, got {type(k).__name__} "
                                        f"{k!r} at {format_path(path)!r}")
                    items.append([k, self.encode(v, (*path, k))])
                return {"dict": items}
            kind = "list" if isinstance(obj, list) else "tuple"
            return {kind: [self.encode(v, (*path, i)) for i, v in enumerate(obj)]}
        finally:
            del self._open[id(obj)]

    def _array(self, array: Any, path: tuple[Any, ...]) -> str:
        key = self._key_of.get(id(array))
        if key is not None:
            return key
        host = backend.to_host(array)
        if host.dtype.byteorder == ">":
            host = host.astype(host.dtype.newbyteorder("<"))  # safetensors is little-endian
        if host.dtype not in _SAFETENSORS_DTYPES:
            raise TypeError(f"save: array at {format_path(path)!r} has dtype {host.dtype}, which cannot be saved")
        if not host.flags.c_contiguous:
            host = host.copy(order="C")  # (numpy.ascontiguousarray would turn 0-d arrays into 1-d ones)
        key = self._new_key(path)
        self.arrays[key] = host
        self.devices[key] = backend.device_of(array)
        self._key_of[id(array)] = key
        self._alive.append(array)
        return key

    def _new_key(self, path: tuple[Any, ...]) -> str:
        name = ".".join(str(k) for k in path) or "_"
        key, n = name, 1
        while key in self.arrays:
            key, n = f"{name}#{n}", n + 1
        return key


class Decoder:
    """Rebuilds the saved object from the tree; ``fetch(key, kind)`` gives the array of a tensor key."""

    def __init__(self, fetch: Callable[[str, str], Any], where: str) -> None:
        self.fetch, self.where = fetch, where

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where} is a corrupted tinygrad_lm checkpoint: {what}")

    def decode(self, node: Any, depth: int = 0) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if depth > MAX_DEPTH:
            raise ValueError(f"{self.where}: its structure is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict) and isinstance(node.get("tensor"), str) and set(node) == {
                "tensor", "requires_grad", "parameter"}:
            return self._tensor(node)
        if isinstance(node, dict) and len(node) == 1:
            (kind, value), = node.items()
            if kind in ("array", "scalar") and isinstance(value, str):
                array = self.fetch(value, kind)
                return array[()] if kind == "scalar" else array
            if kind == "float" and value in ("nan", "inf", "-inf"):
                return float(value)
            if kind in ("list", "tuple") and isinstance(value, list):
                items = [self.decode(v, depth + 1) for v in value]
                return items if kind == "list" else tuple(items)
            if kind == "dict" and isinstance(value, list):
                out = {}
                for item in value:
                    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                        raise self._fail(f"bad dict entry {str(item)[:80]!r} in its metadata")
                    out[item[0]] = self.decode(item[1], depth + 1)
                return out
        raise self._fail(f"unknown node {str(node)[:80]!r} in its metadata")

    def _tensor(self, node: dict[str, Any]) -> Tensor:
        array = self.fetch(node["tensor"], "tensor")
        device = backend.device_of(array)
        try:
            tensor = Tensor(array, device=device, requires_grad=bool(node["requires_grad"]))
            if node["parameter"]:
                from ..nn.module import Parameter

                return Parameter(tensor, requires_grad=bool(node["requires_grad"]))
        except (TypeError, ValueError, RuntimeError) as err:
            raise self._fail(f"tensor {node['tensor']!r} cannot be a Tensor: {err}") from None
        return tensor
