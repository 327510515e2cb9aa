"""Worker processes of the DataLoader: what runs inside them, and what crosses process boundaries.

Each worker owns a copy of the dataset. It reads tasks ``("fetch", task_id, indices)``
from its own index queue, fetches and collates the batch, and puts the result on the
result queue shared by all workers; the main process puts the batches back in order.
Results are pickled by the worker itself with ``dumps``, which sends a Tensor as its
NumPy array (rebuilt by ``_rebuild_tensor``), so a failure to pickle is reported like
any other error instead of being lost in the queue's feeder thread.
"""
from __future__ import annotations

import io
import os
import pickle
import queue
import random
import traceback
from typing import Any, Callable

import numpy as np

from ... import generators
from ...tensor import Tensor
from ._fetch import IterableFetcher, MapFetcher

__all__ = ["WorkerInfo", "get_worker_info"]

STATUS_INTERVAL = 0.5  # seconds between checks that the other side is still alive


class WorkerInfo:
    """What ``get_worker_info()`` returns in a worker: its ``id``, ``num_workers``, ``seed`` and ``dataset`` copy."""

    id: int
    num_workers: int
    seed: int
    dataset: Any

    def __init__(self, id: int, num_workers: int, seed: int, dataset: Any) -> None:
        for name, value in (("id", id), ("num_workers", num_workers), ("seed", seed), ("dataset", dataset)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise RuntimeError(f"Cannot assign attributes to {type(self).__name__} objects")

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, dataset={self.dataset!r})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """The current worker's ``WorkerInfo``, or ``None`` in the main process."""
    return _worker_info


def _rebuild_tensor(array: np.ndarray, requires_grad: bool) -> Tensor:
    tensor = Tensor._wrap(array, "cpu")
    return tensor.requires_grad_() if requires_grad else tensor


class _TensorPickler(pickle.Pickler):
    """Pickles a Tensor as its NumPy array (no graph, no device state); CUDA tensors are refused."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            if obj.device != "cpu":
                raise RuntimeError(
                    "Tensors cross DataLoader process boundaries as NumPy arrays, so workers take and return only "
                    f"CPU tensors; got a tensor on {obj.device}: keep the dataset's tensors on the CPU and move "
                    "each batch to the GPU in the main process (or use num_workers=0)"
                )
            return _rebuild_tensor, (obj.array, obj.requires_grad)
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` for another process, Tensors as NumPy arrays."""
    buffer = io.BytesIO()
    _TensorPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _Message(str):
    """A message whose repr is itself, so ``KeyError(message)`` prints its lines unquoted."""

    def __repr__(self) -> str:
        return str(self)


class WorkerError:
    """An exception raised in a worker, carried to the main process and raised there."""

    def __init__(self, worker_id: int, exc: BaseException, where: str = "") -> None:
        self.worker_id = worker_id
        self.exc_type: type[BaseException] = type(exc)
        try:
            pickle.loads(pickle.dumps(self.exc_type))
        except Exception:
            self.exc_type = RuntimeError  # a class defined inside a function cannot cross processes
        self.where = where
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self) -> None:
        message = _Message(
            f"Caught {self.exc_type.__name__} in DataLoader worker process {self.worker_id}{self.where}.\n"
            f"Original {self.traceback}"
        )
        try:
            error = self.exc_type(message)
        except Exception:
            error = RuntimeError(message)
        raise error


def _seed_worker(seed: int, worker_id: int) -> None:
    """Seed every generator a dataset may draw from: tinygrad_lm's, Python's ``random`` and NumPy's global one."""
    generators.manual_seed(seed)
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([seed, worker_id]).generate_state(1)[0])


def _make_fetcher(dataset: Any, is_iterable: bool, auto_collation: bool, collate_fn: Any, drop_last: bool) -> Any:
    if is_iterable:
        return IterableFetcher(dataset, auto_collation, collate_fn, drop_last)
    return MapFetcher(dataset, auto_collation, collate_fn)


def worker_loop(
    worker_id: int,
    num_workers: int,
    objects: Any,
    seed: int,
    is_iterable: bool,
    auto_collation: bool,
    drop_last: bool,
    index_queue: Any,
    result_queue: Any,
) -> None:
    """The body of worker ``worker_id``: serve fetch tasks until the main process sends ``None`` or dies.

    ``objects`` is ``(dataset, collate_fn, worker_init_fn)``, or those pickled by ``dumps``
    when the workers are spawned rather than forked.
    """
    global _worker_info
    result_queue.cancel_join_thread()  # exit at shutdown even if a result is still in the pipe
    parent = os.getppid()
    try:
        if isinstance(objects, bytes):
            objects = pickle.loads(objects)
        dataset, collate_fn, worker_init_fn = objects
        _seed_worker(seed, worker_id)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        init_error = None
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception as exc:
        init_error = WorkerError(worker_id, exc, " while starting")
        dataset = collate_fn = None
    fetcher = None if init_error else _make_fetcher(dataset, is_iterable, auto_collation, collate_fn, drop_last)
    while True:
        try:
            task = index_queue.get(timeout=STATUS_INTERVAL)
        except queue.Empty:
            if os.getppid() != parent:
                return  # the main process is gone
            continue
        if task is None:
            return
        if task[0] == "resume":
            if isinstance(fetcher, IterableFetcher):
                fetcher.restart()
            result_queue.put(("resumed", -1, worker_id, None))
            continue
        _, task_id, indices = task
        if init_error is not None:
            result_queue.put(("error", task_id, worker_id, init_error))
            continue
        assert fetcher is not None
        try:
            payload = dumps(fetcher.fetch(indices))
        except StopIteration:
            result_queue.put(("exhausted", task_id, worker_id, None))
            continue
        except Exception as exc:
            result_queue.put(("error", task_id, worker_id, WorkerError(worker_id, exc)))
            continue
        result_queue.put(("batch", task_id, worker_id, payload))


def start_objects(dataset: Any, collate_fn: Callable[..., Any], worker_init_fn: Any, method: str) -> Any:
    """What ``worker_loop`` receives as ``objects``: as is for forked workers, pickled with ``dumps`` otherwise."""
    objects = (dataset, collate_fn, worker_init_fn)
    return objects if method == "fork" else dumps(objects)
