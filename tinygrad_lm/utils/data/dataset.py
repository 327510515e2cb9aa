"""Datasets as in ``torch.utils.data``: indexable (map-style) and iterable collections of examples."""
from __future__ import annotations

import bisect
import itertools
import math
import warnings
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ... import backend
from ...tensor import Tensor
from . import _random

T_co = TypeVar("T_co", covariant=True)

__all__ = [
    "ChainDataset", "ConcatDataset", "Dataset", "IterableDataset", "StackDataset", "Subset", "TensorDataset",
    "random_split",
]


class Dataset(Generic[T_co]):
    """A map-style dataset: subclasses define ``__getitem__`` (and usually ``__len__``).

    A subclass may define ``__getitems__(indices)`` returning the list of examples
    (PyTorch's protocol), or ``get_batch(indices)`` returning the already collated
    batch for an int64 index array: the DataLoader then skips fetching and stacking
    examples one by one (ours; used only with the default ``collate_fn``).
    """

    def __getitem__(self, index: Any) -> T_co:
        raise NotImplementedError(f"Subclasses of Dataset should implement __getitem__ ({type(self).__name__})")

    def __add__(self, other: Dataset[T_co]) -> ConcatDataset[T_co]:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A stream of examples: subclasses define ``__iter__``.

    With ``num_workers > 0`` every worker iterates its own copy of the dataset; use
    ``get_worker_info()`` inside ``__iter__`` to give each worker its share.
    """

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"Subclasses of IterableDataset should implement __iter__ ({type(self).__name__})")

    def __add__(self, other: Dataset[T_co]) -> ChainDataset:  # type: ignore[override]
        return ChainDataset([self, other])


class TensorDataset(Dataset[tuple[Tensor, ...]]):
    """Examples are the rows of tensors of equal length: ``dataset[i] == (a[i], b[i], ...)``.

    Accepts Tensors (which stay on their device), NumPy arrays and Python lists.
    ``get_batch`` gathers a mini-batch with one fancy-index per tensor.
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        sizes = [t.shape[0] if t.ndim else None for t in self.tensors]
        if None in sizes or len(set(sizes)) != 1:
            shown = ", ".join("scalar" if s is None else str(s) for s in sizes)
            raise ValueError(f"Size mismatch between tensors: TensorDataset needs equal first dims, got {shown}")

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def get_batch(self, indices: np.ndarray) -> list[Tensor]:
        """The collated batch ``[a[indices], b[indices], ...]``, as ``default_collate`` would build it."""
        out = []
        for t in self.tensors:
            idx = backend.to_device(np.asarray(indices, dtype=np.int64), t.device)
            out.append(Tensor._wrap(t.array[idx], t.device))
        return out


class StackDataset(Dataset[Any]):
    """Zip datasets of equal length: ``StackDataset(a, b)[i] == (a[i], b[i])``, or a dict with keywords."""

    def __init__(self, *args: Dataset[Any], **kwargs: Dataset[Any]) -> None:
        if args and kwargs:
            raise ValueError("StackDataset takes datasets as positional args or as keywords, not both")
        datasets: Any = args if args else kwargs
        members = list(datasets) if args else list(datasets.values())
        if not members:
            raise ValueError("At least one dataset should be passed")
        self._length = len(members[0])
        if any(len(d) != self._length for d in members):
            raise ValueError("Size mismatch between datasets")
        self.datasets = datasets

    def __getitem__(self, index: Any) -> Any:
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __len__(self) -> int:
        return self._length


class ConcatDataset(Dataset[T_co]):
    """Map-style datasets one after the other; ``cumulative_sizes[k]`` is where dataset ``k`` ends."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> T_co:
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        if which == len(self.datasets):
            raise IndexError(f"index {idx} is out of range for a ConcatDataset of length {len(self)}")
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset[Any]):
    """Iterable datasets one after the other (chained lazily, each iterated afresh per epoch)."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets = datasets

    def __iter__(self) -> Iterator[Any]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            yield from d

    def __len__(self) -> int:
        total = 0
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            total += len(d)  # type: ignore[arg-type]
        return total


class Subset(Dataset[T_co]):
    """The examples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    @property
    def get_batch(self) -> Callable[[np.ndarray], Any] | None:
        """The whole-batch gather of the inner dataset through ``indices``, when it has one (see ``Dataset``)."""
        inner = getattr(self.dataset, "get_batch", None)
        if not callable(inner):
            return None
        positions = np.asarray(self.indices, dtype=np.int64)
        return lambda indices: inner(positions[np.asarray(indices, dtype=np.int64)])

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list[T_co]:
        inner = [self.indices[i] for i in indices]
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems(inner)
        return [self.dataset[i] for i in inner]

    def __len__(self) -> int:
        return len(self.indices)


def _split_lengths(n: int, lengths: Sequence[int | float]) -> list[int]:
    """Turn fractions that sum to 1 into lengths that sum to ``n`` (the remainder goes round-robin)."""
    total = sum(lengths)
    if not (math.isclose(total, 1) and total <= 1):
        return [int(x) for x in lengths]
    for i, frac in enumerate(lengths):
        if frac < 0 or frac > 1:
            raise ValueError(f"Fraction at index {i} is not between 0 and 1")
    counts = [int(math.floor(n * frac)) for frac in lengths]
    for i in range(n - sum(counts)):
        counts[i % len(counts)] += 1
    for i, count in enumerate(counts):
        if count == 0:
            warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.", stacklevel=3)
    return counts


def random_split(
    dataset: Dataset[T_co], lengths: Sequence[int | float], generator: Any = None
) -> list[Subset[T_co]]:
    """Split ``dataset`` at random into disjoint Subsets of the given ``lengths`` (or fractions summing to 1)."""
    n = len(dataset)  # type: ignore[arg-type]
    for i, x in enumerate(lengths):
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or x < 0:
            raise ValueError(f"lengths[{i}] must be a non-negative int or a fraction, got {x!r}")
    counts = _split_lengths(n, lengths)
    if sum(counts) != n:
        raise ValueError(
            f"Sum of input lengths does not equal the length of the input dataset! (lengths sum to {sum(counts)}, "
            f"dataset has {n})"
        )
    order = _random.randperm(n, generator, "random_split")
    bounds = list(itertools.accumulate(counts))
    return [Subset(dataset, order[end - count : end]) for count, end in zip(counts, bounds)]
