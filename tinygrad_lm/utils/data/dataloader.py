"""The DataLoader of ``torch.utils.data``: a dataset, a sampler and a collate function make batches.

``DataLoader(dataset, batch_size, shuffle=True)`` is the lecture's mini-batch SGD epoch:
``BatchSampler(RandomSampler(dataset), batch_size, drop_last)`` yields disjoint lists of
indices covering every example once, and each list is fetched and collated into a batch.
With ``num_workers > 0`` the batches are built by worker processes (see ``worker.py``)
and handed out in the sampler's order.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import multiprocessing.context
import pickle
import queue
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import _random
from ._collate import default_collate, default_convert
from ._fetch import IterableFetcher, MapFetcher
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from .worker import STATUS_INTERVAL, WorkerError, start_objects, worker_loop

__all__ = ["DataLoader"]

_JOIN_TIMEOUT = 1.0  # seconds the workers get to exit at shutdown before they are terminated (an idle one
# exits at once; a busy one would fetch a batch nobody will read)


class _InfiniteConstantSampler(Sampler[None]):
    """The sampler of an IterableDataset: ``None`` forever (the dataset decides when to stop)."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class DataLoader:
    """Batches of ``dataset``, as ``torch.utils.data.DataLoader`` (same arguments, same errors).

    ``shuffle=True`` draws a new permutation each epoch from ``generator`` (or from the
    global generator that ``tl.manual_seed`` seeds); ``num_workers > 0`` fetches batches
    in that many processes (``multiprocessing_context``: the platform's default start
    method, or ``'spawn'``/``'forkserver'``/a context), each seeded with
    ``base_seed + worker_id``; ``persistent_workers`` keeps them between epochs.
    ``in_order=False`` hands out batches as they arrive. ``pin_memory`` is accepted and has
    no effect (no page-locked host memory here).
    """

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(
        self,
        dataset: Dataset[Any] | Iterable[Any],
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler[Any] | Iterable[Any] | None = None,
        batch_sampler: Sampler[Sequence[Any]] | Iterable[Sequence[Any]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if not _is_int(num_workers):
            raise TypeError(f"num_workers option should be an int, but got num_workers={num_workers!r}")
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing. let num_workers > 0 to enable "
                "multiprocessing, otherwise set prefetch_factor to None."
            )
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and (not _is_int(prefetch_factor) or prefetch_factor < 0):
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        is_iterable = isinstance(dataset, IterableDataset)
        if is_iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified sampler option, but got sampler={sampler}"
                )
            if batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                    f"but got batch_sampler={batch_sampler}"
                )
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
                )
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
            )
        if sampler is None:
            if is_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
            else:
                sampler = SequentialSampler(dataset)  # type: ignore[arg-type]
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_sampler is not None else default_convert
        )
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.multiprocessing_context = multiprocessing_context
        self._is_iterable = is_iterable
        self._iterator: _MultiProcessIter | None = None
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_initialized", False) and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def multiprocessing_context(self) -> multiprocessing.context.BaseContext | None:
        return self._multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context: Any) -> None:
        if context is not None:
            if self.num_workers == 0:
                raise ValueError(
                    "multiprocessing_context can only be used with multi-process loading (num_workers > 0), "
                    f"but got num_workers={self.num_workers}"
                )
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError(
                        f"multiprocessing_context option should specify a valid start method in {methods!r}, "
                        f"but got multiprocessing_context={context!r}"
                    )
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError(
                    "multiprocessing_context option should be a valid context object or a string specifying the "
                    f"start method, but got multiprocessing_context={context!r}"
                )
        self._multiprocessing_context = context

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator.is_shut_down:  # first epoch, or a worker died
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator.reset(self)
        return self._iterator

    def __len__(self) -> int:
        if self._is_iterable:
            length = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)


def _fetcher(loader: DataLoader) -> Any:
    if loader._is_iterable:
        return IterableFetcher(loader.dataset, loader._auto_collation, loader.collate_fn, loader.drop_last)
    return MapFetcher(loader.dataset, loader._auto_collation, loader.collate_fn)


class _SingleProcessIter:
    """One epoch in the main process: fetch and collate the batches as the sampler yields their indices."""

    def __init__(self, loader: DataLoader) -> None:
        _random.seed(loader.generator)  # drawn as with workers, so the shuffle does not depend on num_workers
        self._index_sampler = loader._index_sampler
        self._sampler_iter = iter(self._index_sampler)
        self._fetcher = _fetcher(loader)

    def __iter__(self) -> _SingleProcessIter:
        return self

    def __next__(self) -> Any:
        indices = next(self._sampler_iter)
        return self._fetcher.fetch(indices)

    def __len__(self) -> int:
        return len(self._index_sampler)


class _MultiProcessIter:
    """One epoch (or, with persistent workers, every epoch) with ``num_workers`` worker processes.

    Task ``k`` (the ``k``-th item of the index sampler) goes to the next worker in turn;
    at most ``prefetch_factor`` tasks per worker are outstanding. Results arrive in any
    order and wait in ``_results`` until every earlier task has been handed out.
    """

    def __init__(self, loader: DataLoader) -> None:
        self._num_workers = loader.num_workers
        self._prefetch = max(loader.prefetch_factor or 0, 1)  # tasks in flight per worker
        self._timeout = loader.timeout
        self._is_iterable = loader._is_iterable
        self._index_sampler = loader._index_sampler
        self._persistent = loader.persistent_workers
        self._in_order = loader.in_order
        self._shut_down = False
        self._workers: list[Any] = []
        self._index_queues: list[Any] = []
        base_seed = _random.seed(loader.generator)
        context: Any = loader.multiprocessing_context or multiprocessing.get_context()
        objects = start_objects(loader.dataset, loader.collate_fn, loader.worker_init_fn, context.get_start_method())
        self._result_queue = context.Queue()
        for worker_id in range(self._num_workers):
            index_queue = context.Queue()
            index_queue.cancel_join_thread()
            process = context.Process(
                target=worker_loop,
                args=(worker_id, self._num_workers, objects, base_seed + worker_id, self._is_iterable,
                      loader._auto_collation, loader.drop_last, index_queue, self._result_queue),
                daemon=True,
            )
            process.start()
            self._index_queues.append(index_queue)
            self._workers.append(process)
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._sampler_iter = iter(self._index_sampler)
        self._send_idx = 0  # the next task to send
        self._rcvd_idx = 0  # the next task to hand out
        self._task_worker: dict[int, int] = {}  # task -> worker, for tasks not yet handed out
        self._results: dict[int, Any] = {}  # results that arrived ahead of their turn
        self._active = [True] * self._num_workers  # an exhausted IterableDataset copy makes its worker inactive
        self._next_worker = itertools.cycle(range(self._num_workers))
        for _ in range(self._prefetch * self._num_workers):
            self._send_task()

    def reset(self, loader: DataLoader) -> None:
        """Start a new epoch with the same (persistent) workers, dropping what is left of the last one.

        A seed is drawn from the loader's generator as for a new iterator (and discarded: the
        workers keep theirs), so the shuffle is the same with or without persistent workers.
        """
        _random.seed(loader.generator)
        for index_queue in self._index_queues:
            index_queue.put(("resume",))
        waiting = self._num_workers
        while waiting:
            if self._receive()[0] == "resumed":
                waiting -= 1
        self._start_epoch()

    def _send_task(self) -> None:
        if not any(self._active):
            return
        try:
            indices = next(self._sampler_iter)
        except StopIteration:
            return
        worker_id = next(self._next_worker)
        while not self._active[worker_id]:
            worker_id = next(self._next_worker)
        self._index_queues[worker_id].put(("fetch", self._send_idx, indices))
        self._task_worker[self._send_idx] = worker_id
        self._send_idx += 1

    def _receive(self) -> tuple[str, int, int, Any]:
        """The next message of any worker; raises when ``timeout`` passes or a worker died."""
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = STATUS_INTERVAL if deadline is None else min(STATUS_INTERVAL, deadline - time.monotonic())
            try:
                return self._result_queue.get(timeout=max(wait, 0.0))
            except queue.Empty:
                dead = [str(w.pid) for w in self._workers if not w.is_alive()]
                if dead:
                    self.shutdown()
                    raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(dead)}) exited unexpectedly") from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None

    def __iter__(self) -> _MultiProcessIter:
        return self

    def __next__(self) -> Any:
        if not self._in_order:
            return self._next_arrived()
        while True:
            while self._rcvd_idx < self._send_idx and self._rcvd_idx not in self._results:
                worker_id = self._task_worker.get(self._rcvd_idx)
                if worker_id is not None and self._active[worker_id]:
                    break
                self._task_worker.pop(self._rcvd_idx, None)  # sent to a worker whose dataset copy ran out
                self._rcvd_idx += 1
            if self._rcvd_idx >= self._send_idx:
                self._end_epoch()
            if self._rcvd_idx in self._results:
                self._rcvd_idx += 1
                return self._hand_out(self._rcvd_idx - 1)
            self._wait_for_result()

    def _next_arrived(self) -> Any:
        """``in_order=False``: the first batch to arrive, whatever its place in the sampler's order."""
        while not self._results:
            if not self._task_worker:
                self._end_epoch()
            self._wait_for_result()
        return self._hand_out(next(iter(self._results)))

    def _wait_for_result(self) -> None:
        kind, task_id, worker_id, payload = self._receive()
        if kind == "exhausted":
            self._active[worker_id] = False
            self._task_worker.pop(task_id, None)
            self._send_task()
        else:
            self._results[task_id] = (kind, payload)

    def _end_epoch(self) -> None:
        if not self._persistent:
            self.shutdown()
        raise StopIteration

    def _hand_out(self, task_id: int) -> Any:
        kind, payload = self._results.pop(task_id)
        self._task_worker.pop(task_id, None)
        self._send_task()
        if kind == "error":
            assert isinstance(payload, WorkerError)
            payload.reraise()
        return pickle.loads(payload)

    def __len__(self) -> int:
        return len(self._index_sampler)

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def shutdown(self) -> None:
        """Stop the workers (each gets ``None``; one that does not exit in time is terminated)."""
        if self._shut_down:
            return
        self._shut_down = True
        for index_queue in self._index_queues:
            try:
                index_queue.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for process in self._workers:
            process.join(timeout=max(deadline - time.monotonic(), 0.0))
            if process.is_alive():
                process.terminate()
                process.join()
        for q in [*self._index_queues, self._result_queue]:
            q.cancel_join_thread()
            q.close()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass
