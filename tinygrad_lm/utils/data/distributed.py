"""``DistributedSampler``: each rank of a data-parallel job reads its own share of a dataset (PyTorch's).

Every rank draws the same permutation (seeded by ``seed + epoch``, so call ``set_epoch`` at the start
of each epoch for a new one), pads it by repeating its start until it divides evenly (or, with
``drop_last``, cuts the tail), and takes every ``num_replicas``-th index from position ``rank`` on.
The shares are disjoint, cover the dataset, and have the same length on every rank, so no rank runs
out of batches before the others (a rank left waiting in an all-reduce would otherwise hang).
"""
from __future__ import annotations

import math
from typing import Iterator, Sized, TypeVar

import numpy as np

from . import _random
from .sampler import Sampler

T_co = TypeVar("T_co", covariant=True)

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler[T_co]):
    """Indices of ``dataset`` for rank ``rank`` of ``num_replicas`` (both default to the process group's)."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist

            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler needs num_replicas and rank, or an initialized process "
                                   "group (tinygrad_lm.distributed.init_process_group)")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if isinstance(num_replicas, bool) or int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(f"num_replicas should be a positive integer, got {num_replicas!r}")
        if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)  # the tail is dropped
        else:
            self.num_samples = math.ceil(n / self.num_replicas)  # the start is repeated to fill the last round
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self) -> Iterator[T_co]:
        n = len(self.dataset)
        if self.shuffle:
            indices = _random.randperm(n, np.random.default_rng(self.seed + self.epoch))
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        elif self.total_size > n:
            padding = self.total_size - n
            indices += (indices * math.ceil(padding / n))[:padding]
        return iter(indices[self.rank : self.total_size : self.num_replicas])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Shuffle with ``seed + epoch`` from now on: a different order each epoch, the same on every rank."""
        self.epoch = int(epoch)
