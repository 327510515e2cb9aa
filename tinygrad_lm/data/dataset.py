"""Datasets and the DataLoader that cuts them into mini-batches, as in PyTorch.

Mini-batch SGD visits the training set in epochs: each epoch shuffles the example
indices once and walks the permutation in consecutive slices of ``batch_size``,
so every example is used exactly once per epoch, in disjoint batches.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np

from .. import backend
from ..tensor import Tensor


class Dataset:
    """An indexable collection of examples: subclasses define ``__getitem__`` and ``__len__``.

    A dataset may also define ``get_batch(indices)`` that returns a whole mini-batch
    (already stacked) for an int64 index array; the DataLoader uses it when present,
    which avoids fetching examples one by one.
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Examples are the rows of arrays of equal length: ``dataset[i] == (a[i], b[i], ...)``.

    Accepts NumPy arrays, Python lists and Tensors (which stay on their device). A batch
    is gathered with one fancy-index per array; batches are plain data, never part of a graph.
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.tensors = tuple(a if isinstance(a, Tensor) else Tensor(a) for a in arrays)
        sizes = [t.shape[0] if t.ndim else None for t in self.tensors]
        if None in sizes or len(set(sizes)) != 1:
            shown = ", ".join("scalar" if s is None else str(s) for s in sizes)
            raise ValueError(f"TensorDataset: all arrays need the same size in their first dim, got sizes {shown}")

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices: np.ndarray) -> tuple[Tensor, ...]:
        out = []
        for t in self.tensors:
            idx = backend.to_device(indices, t.device)
            out.append(Tensor._wrap(t.array[idx], t.device))
        return tuple(out)


class DataLoader:
    """Iterate over a dataset in mini-batches of ``batch_size`` examples, as Tensors.

    ``shuffle`` draws a new permutation of the examples at the start of every epoch
    (every ``iter(loader)``), from a generator seeded by ``seed``; without a seed the
    permutation comes from tinygrad_lm's CPU generator (see ``tl.manual_seed``).
    The last batch is smaller when ``len(dataset)`` is not a multiple of ``batch_size``,
    unless ``drop_last``. Batches of a ``TensorDataset`` are tuples of Tensors; examples
    of other datasets are stacked by ``default_collate``. ``device`` moves batches
    there (default: where the data already is).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device: Any = None,
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.device = None if device is None else backend.canonical_device(device)
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        rng = self._rng if self._rng is not None else backend.generator("cpu")
        return backend.to_host(rng.permutation(n)).astype(np.int64)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        get_batch = getattr(self.dataset, "get_batch", None)
        for b in range(len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            if get_batch is not None:
                batch = get_batch(indices)
            else:
                batch = default_collate([self.dataset[int(i)] for i in indices])
            yield _to_device(batch, self.device)


def default_collate(samples: Sequence[Any]) -> Any:
    """Stack a list of examples into a batch: tuples of fields become tuples of stacked Tensors.

    A field may be a Tensor, a NumPy array or a Python number (ints become int64,
    floats the default float dtype, as ``tl.tensor`` does).
    """
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, Tensor):
        device = first.device
        xp = first.xp
        return Tensor._wrap(xp.stack([s.array for s in samples]), device)
    if isinstance(first, np.ndarray):
        return Tensor(np.stack(samples))
    return Tensor(list(samples))


def _to_device(batch: Any, device: str | None) -> Any:
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch
