"""``save`` / ``load``: checkpoints as safetensors files, which never execute code on load.

A checkpoint is a state dict: nested dicts, lists and tuples of arrays (NumPy,
CuPy or Tensors), numbers, strings, booleans and ``None``, e.g.
``{'model': model.state_dict(), 'optimizer': opt.state_dict(), 'step': 10}``.
Every array is stored as a safetensors tensor under its dotted path
(``model.weight``, ``optimizer.state.0.exp_avg``), so a flat
``model.state_dict()`` saved here reads back with any safetensors loader (PyTorch's
included) under the same keys. Everything else is a JSON tree in the file's
metadata, under the key ``tinygrad_lm``, where each array is a reference to its
tensor. Loading reads that JSON and the raw tensor bytes, nothing else: there is
no pickle anywhere.

JSON tree nodes: ``null``, booleans, integers, strings and finite floats are
themselves; ``{"float": "nan"|"inf"|"-inf"}``; ``{"array": key}``; ``{"scalar": key}``
(a NumPy scalar, stored as a 0-d tensor); ``{"list": [...]}``, ``{"tuple": [...]}``;
``{"dict": [[key, node], ...]}`` (keys are strings or integers, order kept).

Saves are atomic: the file is written to a temporary file in the same directory,
flushed to disk, then renamed over the target, so a crash leaves either the old
checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy
import safetensors
import safetensors.numpy

from .. import backend
from ..tensor import Tensor
from .atomic import atomic_write_bytes

FORMAT_KEY = "tinygrad_lm"
FORMAT_VERSION = "1"

_SAFETENSORS_DTYPES = frozenset(
    numpy.dtype(d) for d in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
                             "float16", "float32", "float64")
)


class _Encoder:
    """Walks a state dict, collecting its arrays under unique dotted keys and building the JSON tree."""

    def __init__(self) -> None:
        self.arrays: dict[str, numpy.ndarray] = {}

    def _key(self, path: str) -> str:
        key, n = path or "_", 1
        while key in self.arrays:
            key, n = f"{path}#{n}", n + 1
        return key

    def _array(self, array: Any, path: str) -> str:
        host = backend.to_host(array)
        if not host.flags.c_contiguous:
            host = host.copy(order="C")  # (numpy.ascontiguousarray would turn 0-d arrays into 1-d ones)
        if host.dtype not in _SAFETENSORS_DTYPES:
            raise TypeError(f"save: array at {path or '<root>'!r} has dtype {host.dtype}, which cannot be saved")
        if host.dtype.byteorder == ">":
            host = host.astype(host.dtype.newbyteorder("<"))
        key = self._key(path)
        self.arrays[key] = host
        return key

    def encode(self, obj: Any, path: str = "") -> Any:
        child = (lambda k: f"{path}.{k}" if path else str(k))
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, Tensor):
            return {"array": self._array(obj.array, path)}
        if backend.is_backend_array(obj):
            return {"array": self._array(obj, path)}
        if isinstance(obj, numpy.generic):
            return {"scalar": self._array(numpy.asarray(obj), path)}
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"save: dict keys must be strings or integers, got {k!r} at {path or '<root>'!r}")
                items.append([k, self.encode(v, child(k))])
            return {"dict": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {kind: [self.encode(v, child(i)) for i, v in enumerate(obj)]}
        raise TypeError(
            f"save: cannot save {type(obj).__name__} at {path or '<root>'!r}; a checkpoint holds dicts, lists, "
            "arrays/Tensors, numbers, strings, booleans and None"
        )


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write the state dict ``obj`` to ``path`` as a safetensors file, atomically."""
    encoder = _Encoder()
    tree = encoder.encode(obj)
    metadata = {FORMAT_KEY: json.dumps({"version": FORMAT_VERSION, "tree": tree})}
    atomic_write_bytes(path, safetensors.numpy.save(encoder.arrays, metadata=metadata))


class _Decoder:
    def __init__(self, arrays: dict[str, Any], where: str) -> None:
        self.arrays, self.where = arrays, where

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where} is a corrupted tinygrad_lm checkpoint: {what}")

    def _tensor(self, key: Any) -> Any:
        if not isinstance(key, str) or key not in self.arrays:
            raise self._fail(f"its metadata refers to a missing tensor {key!r}")
        return self.arrays[key]

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, dict) and len(node) == 1:
            (kind, value), = node.items()
            if kind == "array":
                return self._tensor(value)
            if kind == "scalar":
                return self._tensor(value)[()]
            if kind == "float" and value in ("nan", "inf", "-inf"):
                return float(value)
            if kind in ("list", "tuple") and isinstance(value, list):
                items = [self.decode(v) for v in value]
                return items if kind == "list" else tuple(items)
            if kind == "dict" and isinstance(value, list):
                out = {}
                for item in value:
                    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                        raise self._fail(f"bad dict entry {item!r} in its metadata")
                    out[item[0]] = self.decode(item[1])
                return out
        raise self._fail(f"unknown node {str(node)[:80]!r} in its metadata")


def load(path: str | os.PathLike[str], map_location: Any = None) -> Any:
    """Read a checkpoint written by :func:`save`; arrays come back as NumPy arrays.

    ``map_location='cuda'`` (or ``'cuda:N'``) returns CuPy arrays on that GPU instead;
    ``None`` or ``'cpu'`` keeps them on the host. A safetensors file written by another
    library loads as a flat dict ``{name: array}``. Nothing in the file is executed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    device = backend.canonical_device(map_location) if map_location is not None else "cpu"
    not_checkpoint = f"{path!r} is not a tinygrad_lm checkpoint (a safetensors file)"
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, MemoryError):
        raise
    except Exception as err:  # safetensors' own error type for a bad header or truncated data
        raise ValueError(f"{not_checkpoint}: {err}") from None
    if device != "cpu":
        arrays = {k: backend.to_device(v, device) for k, v in arrays.items()}
    if FORMAT_KEY not in metadata:
        return arrays
    try:
        header = json.loads(metadata[FORMAT_KEY])
    except ValueError:
        raise ValueError(f"{path!r} is a corrupted tinygrad_lm checkpoint: its metadata is not valid JSON") from None
    if not isinstance(header, dict) or "tree" not in header:
        raise ValueError(f"{path!r} is a corrupted tinygrad_lm checkpoint: its metadata has no structure")
    if str(header.get("version")) != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} is a tinygrad_lm checkpoint of format version {header.get('version')!r}, "
            f"this version reads {FORMAT_VERSION!r}"
        )
    return _Decoder(arrays, repr(path)).decode(header["tree"])
