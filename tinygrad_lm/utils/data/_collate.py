"""``default_collate`` and ``default_convert``: from fetched examples to batches of Tensors, as PyTorch.

``default_collate`` stacks a list of examples along a new first dimension, recursively:

- Tensors are stacked (``tl.stack``), NumPy arrays and NumPy scalars become Tensors of
  their dtype, Python ints become int64, floats float64, bools bool (PyTorch's choices);
- dicts, namedtuples, tuples and lists are collated field by field (a tuple or list of
  fields becomes a list, a namedtuple the same namedtuple, a dict the same mapping type);
- strings and bytes stay as a list.
"""
from __future__ import annotations

import collections.abc
import copy
from typing import Any, Sequence

import numpy as np

from ...creation import stack
from ...tensor import Tensor

__all__ = ["default_collate", "default_convert"]

_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_text_array(array: np.ndarray) -> bool:
    return array.dtype.kind in "SaUO"


def is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _stack_tensors(batch: Sequence[Tensor]) -> Tensor:
    first = batch[0]
    for i, t in enumerate(batch):
        if not isinstance(t, Tensor):
            raise TypeError(f"default_collate: entry {i} of the batch is a {type(t).__name__}, entry 0 a Tensor")
        if t.shape != first.shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(first.shape)} at entry 0 "
                f"and {list(t.shape)} at entry {i}"
            )
    return stack(list(batch), dim=0)


def default_collate(batch: Sequence[Any]) -> Any:
    """Collate a list of examples into a batch (see the module docstring for the rules)."""
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate expects a sequence of examples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate needs at least one example")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_tensors(batch)
    if isinstance(elem, np.ndarray):
        if _is_text_array(elem):
            raise TypeError(_ERROR.format(elem.dtype))
        return _stack_tensors([Tensor(np.asarray(b)) for b in batch])
    if isinstance(elem, (np.number, np.bool_)):
        return Tensor(np.array(batch))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):  # as tl.tensor(batch): ints int64, bools bool, a float among them the default dtype
        return Tensor(list(batch))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        if isinstance(elem, collections.abc.MutableMapping):
            clone = copy.copy(elem)
            clone.update(collated)
            return clone
        try:
            return type(elem)(collated)  # type: ignore[call-arg]
        except TypeError:
            return collated
    if is_namedtuple(elem):
        return type(elem)(*(default_collate(field) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(field) for field in zip(*batch)]
        if isinstance(elem, tuple):
            return fields
        try:
            return type(elem)(fields)  # type: ignore[call-arg]
        except TypeError:
            return fields
    raise TypeError(_ERROR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """Turn NumPy arrays and scalars inside ``data`` into Tensors (the ``collate_fn`` when ``batch_size=None``)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _is_text_array(data) else Tensor(data)
    if isinstance(data, (np.number, np.bool_)):
        return Tensor(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(value) for key, value in data.items()}
        if isinstance(data, collections.abc.MutableMapping):
            clone = copy.copy(data)
            clone.update(converted)
            return clone
        try:
            return type(data)(converted)  # type: ignore[call-arg]
        except TypeError:
            return converted
    if is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        try:
            return type(data)([default_convert(d) for d in data])  # type: ignore[call-arg]
        except TypeError:
            return [default_convert(d) for d in data]
    return data
