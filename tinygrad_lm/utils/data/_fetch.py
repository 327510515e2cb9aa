"""Fetchers: turn what the sampler yields (an index, or a list of them) into one collated batch.

The same fetcher runs in the main process (``num_workers=0``) and in every worker.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from ._collate import default_collate, is_namedtuple


class MapFetcher:
    """``collate_fn([dataset[i] for i in indices])``, or ``collate_fn(dataset[index])`` without auto-collation.

    With the default ``collate_fn`` a dataset's ``get_batch(indices)`` (ours) builds the
    batch in one gather; otherwise PyTorch's ``__getitems__(indices)`` is used when present.
    """

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable[[Any], Any]) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.get_batch = getattr(dataset, "get_batch", None) if collate_fn is default_collate else None
        self.getitems = getattr(dataset, "__getitems__", None)

    def fetch(self, indices: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[indices])
        if callable(self.get_batch):
            batch = self.get_batch(np.asarray(indices, dtype=np.int64))
            return list(batch) if isinstance(batch, tuple) and not is_namedtuple(batch) else batch
        if callable(self.getitems):
            return self.collate_fn(self.getitems(indices))
        return self.collate_fn([self.dataset[i] for i in indices])


class IterableFetcher:
    """The next ``len(indices)`` examples of the dataset's iterator, collated; ``StopIteration`` at its end.

    A short last batch is kept unless ``drop_last``.
    """

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Callable[[Any], Any], drop_last: bool) -> None:
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.iterator: Iterator[Any] | None = None
        self.ended = False

    def restart(self) -> None:
        self.iterator = None
        self.ended = False

    def fetch(self, indices: Any) -> Any:
        if self.ended:
            raise StopIteration
        if self.iterator is None:
            self.iterator = iter(self.dataset)
        if not self.auto_collation:
            try:
                return self.collate_fn(next(self.iterator))
            except StopIteration:
                self.ended = True
                raise
        examples = []
        for _ in indices:
            try:
                examples.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not examples or (self.drop_last and len(examples) < len(indices)):
            raise StopIteration
        return self.collate_fn(examples)
