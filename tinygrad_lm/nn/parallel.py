"""``DistributedDataParallel``: data-parallel training, one model replica per process.

Every rank holds the same parameters and runs forward and backward on its own share of the
batch; before the optimizer steps, each gradient is replaced by its average over the ranks,
so every replica takes the same step, the one a single process would take on the whole batch:

    grad(theta) = 1/N sum_r grad_r(theta)

The averaging overlaps backward (PyTorch's reducer). The parameters are put, in reverse order
(roughly the order backward produces their gradients), into buckets of about ``bucket_cap_mb``
megabytes. A hook on each parameter (``Tensor.register_post_accumulate_grad_hook``) copies its
gradient into its bucket's flat buffer as soon as backward has finished it; when a bucket is
complete its all-reduce is started, non-blocking (MPI's ``Iallreduce``, or NCCL on a side
stream), while backward goes on computing the gradients of earlier layers. Buckets are started
in bucket order on every rank (collectives must be issued in the same order everywhere). A
callback queued on the engine (``autograd.queue_callback``) runs when backward is done: it waits
for every bucket and writes the averages back into ``.grad``.
"""
from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any, Iterator

from .. import autograd
from .. import distributed as dist
from ..tensor import Tensor
from .module import Module, Parameter

_FIRST_BUCKET_BYTES = 1 << 20  # PyTorch's first bucket is small, so that communication starts early


class _Bucket:
    """Parameters whose gradients are averaged in one all-reduce of one flat buffer."""

    def __init__(self, index: int, params: list[tuple[str, Parameter]]) -> None:
        self.index = index
        self.names = [n for n, _ in params]
        self.params = [p for _, p in params]
        self.offsets: list[int] = []
        total = 0
        for p in self.params:
            self.offsets.append(total)
            total += p.numel()
        first = self.params[0]
        self.buffer = first.xp.zeros(total, dtype=first.dtype)  # the flat gradients, (total,)
        self.nbytes = self.buffer.nbytes
        self.ready: set[int] = set()  # positions in self.params whose gradient is in the buffer
        self.work: Any = None

    def view(self, i: int) -> Any:
        p = self.params[i]
        return self.buffer[self.offsets[i]:self.offsets[i] + p.numel()].reshape(p.shape)


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``backward`` leaves every rank with the gradients averaged over all ranks.

    Rank 0's parameters and buffers are broadcast at construction (after checking that every rank
    has the same names, shapes and dtypes). ``forward`` calls ``module``. Inside ``no_sync()``
    gradients only accumulate locally. A parameter that got no gradient in a backward is an
    error naming it, unless ``find_unused_parameters=True``: it then counts as a zero gradient.
    ``init_sync=False`` skips the broadcast (the check stays). ``device_ids``, ``output_device``,
    ``dim``, ``check_reduction``, ``static_graph`` and ``skip_all_reduce_unused_params`` are
    accepted for PyTorch's signature and change nothing here; with ``gradient_as_bucket_view=True``
    each ``.grad`` after the reduction is a view of its bucket (no copy).
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, init_sync: bool = True, process_group: Any = None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False, static_graph: bool = False,
                 delay_all_reduce_named_params: Any = None, param_to_hook_all_reduce: Any = None,
                 mixed_precision: Any = None, device_mesh: Any = None,
                 skip_all_reduce_unused_params: bool = False) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps an nn.Module, got {type(module).__name__}")
        for name, value in (("delay_all_reduce_named_params", delay_all_reduce_named_params),
                            ("param_to_hook_all_reduce", param_to_hook_all_reduce),
                            ("mixed_precision", mixed_precision), ("device_mesh", device_mesh)):
            if value is not None:
                raise NotImplementedError(f"DistributedDataParallel: {name} is not supported")
        self.process_group = dist._get(process_group)
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.require_backward_grad_sync = True
        self.bucket_cap_mb = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not self.bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module has no parameter that "
                               "requires a gradient")
        self._check_same_model(module)
        if init_sync:
            self._sync_from_rank0(module)
        self._buckets = self._make_buckets(named)
        self._where: dict[int, tuple[_Bucket, int]] = {}
        for b in self._buckets:
            for i, p in enumerate(b.params):
                self._where[id(p)] = (b, i)
        self._expect_hooks = False  # set by a forward that will be followed by a synchronising backward
        self._callback_queued = False
        self._next_bucket = 0
        self.comm_bytes = sum(b.nbytes for b in self._buckets)  # sent (and received) by each all-reduce round
        self.last_wait_seconds = 0.0  # time the last backward spent waiting for communication at its end
        ref = weakref.ref(self)
        self._handles = [p.register_post_accumulate_grad_hook(_hook(ref)) for _, p in named]

    def __del__(self) -> None:
        for handle in self.__dict__.get("_handles", ()):  # the parameters outlive their wrapper
            handle.remove()

    # ------------------------------------------------------------------ construction
    def _check_same_model(self, module: Module) -> None:
        """Every rank must have the same names, shapes and dtypes of parameters and buffers; else say where not."""
        pg = self.process_group
        mine = [("parameter", n, tuple(p.shape), str(p.dtype)) for n, p in module.named_parameters()]
        mine += [("buffer", n, tuple(b.shape), str(b.dtype)) for n, b in module.named_buffers()]
        every: list[Any] = [None] * pg.size
        dist.all_gather_object(every, mine)
        reference = every[0]
        for rank, theirs in enumerate(every):
            for k in range(max(len(reference), len(theirs))):
                a = reference[k] if k < len(reference) else None
                b = theirs[k] if k < len(theirs) else None
                if a != b:
                    raise RuntimeError(
                        "DistributedDataParallel: the model differs between ranks: " + _describe(a, b, rank)
                        + ". Every rank must build the same model.")

    def _sync_from_rank0(self, module: Module) -> None:
        with autograd.no_grad():
            for p in module.parameters():
                dist.broadcast(p, src=0)
            for b in module.buffers():
                dist.broadcast(b, src=0)

    def _make_buckets(self, named: list[tuple[str, Parameter]]) -> list[_Bucket]:
        """Parameters in reverse order, cut into buckets of at most ``bucket_cap_mb`` (one dtype and device each)."""
        cap = int(self.bucket_cap_mb * 1024 * 1024)
        buckets: list[_Bucket] = []
        current: list[tuple[str, Parameter]] = []
        size = 0
        limit = min(_FIRST_BUCKET_BYTES, cap)
        for name, p in reversed(named):
            nbytes = p.numel() * p.dtype.itemsize
            if current and (size + nbytes > limit or (p.dtype, p.device) != (current[0][1].dtype,
                                                                                 current[0][1].device)):
                buckets.append(_Bucket(len(buckets), current))
                current, size, limit = [], 0, cap
            current.append((name, p))
            size += nbytes
        buckets.append(_Bucket(len(buckets), current))
        return buckets

    # ------------------------------------------------------------------ forward and no_sync
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        self._finish_pending()
        if self.broadcast_buffers and self.training and self.process_group.size > 1:
            with autograd.no_grad():
                for b in self.module.buffers():
                    dist.broadcast(b, src=0)
        self._expect_hooks = self.require_backward_grad_sync and autograd.is_grad_enabled()
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, backward accumulates gradients locally; the first backward after it averages the sum."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def _finish_pending(self) -> None:
        """Forget a reduction left half done by a backward that raised (its buckets are still waited for)."""
        for b in self._buckets:
            if b.work is not None:
                b.work.wait()
                b.work = None
            b.ready.clear()
        self._next_bucket = 0
        self._callback_queued = False

    # ------------------------------------------------------------------ during backward
    def _grad_ready(self, p: Parameter) -> None:
        if not self._expect_hooks:
            return
        if not self._callback_queued:
            autograd.queue_callback(self._finalize)
            self._callback_queued = True
        bucket, i = self._where[id(p)]
        if i in bucket.ready:
            return
        grad = p.grad
        assert grad is not None
        bucket.view(i)[...] = grad.array
        bucket.ready.add(i)
        self._launch_ready_buckets()
        if self._next_bucket:  # MPI moves non-blocking messages on only inside its calls: test one now and then
            work = self._buckets[self._next_bucket - 1].work
            if work is not None:
                work.is_completed()

    def _launch_ready_buckets(self) -> None:
        while self._next_bucket < len(self._buckets):
            b = self._buckets[self._next_bucket]
            if len(b.ready) < len(b.params):
                return
            b.work = dist.all_reduce(Tensor._wrap(b.buffer, b.params[0].device), op=dist.ReduceOp.AVG,
                                     async_op=True)
            self._next_bucket += 1

    def _finalize(self) -> None:
        """At the end of backward: every bucket started, waited for, and copied back into ``.grad``."""
        self._expect_hooks = False
        self._callback_queued = False
        started = time.perf_counter()
        unused = [(b, i) for b in self._buckets for i in range(len(b.params)) if i not in b.ready]
        if unused and not self.find_unused_parameters:
            for b in self._buckets[:self._next_bucket]:
                b.work.wait()
            names = ", ".join(b.names[i] for b, i in unused)
            self._finish_pending()
            raise RuntimeError(
                f"DistributedDataParallel (rank {self.process_group.rank}): these parameters received no gradient "
                f"in this backward: {names}. Every parameter must take part in computing the loss, or pass "
                "find_unused_parameters=True to DistributedDataParallel (their gradient then counts as zero), "
                "or set requires_grad=False on the ones that are not trained.")
        locally_used = None
        if self.find_unused_parameters:
            xp = self._buckets[0].params[0].xp
            locally_used = xp.ones(sum(len(b.params) for b in self._buckets), dtype=xp.int32)  # (P,)
            k = 0
            for b in self._buckets:
                for i in range(len(b.params)):
                    if i not in b.ready:
                        b.view(i)[...] = 0
                        b.ready.add(i)
                        locally_used[k] = 0
                    k += 1
            self._launch_ready_buckets()
            used_anywhere = Tensor._wrap(locally_used, self._buckets[0].params[0].device)
            dist.all_reduce(used_anywhere, op=dist.ReduceOp.MAX)
            locally_used = used_anywhere.array
        k = 0
        for b in self._buckets:
            b.work.wait()
            b.work = None
            for i, p in enumerate(b.params):
                if locally_used is not None and not int(locally_used[k]):
                    k += 1
                    continue  # no rank used it: its .grad stays as it is (None after zero_grad)
                k += 1
                averaged = b.view(i)
                if self.gradient_as_bucket_view:
                    p.grad = Tensor._wrap(averaged, p.device)
                elif p.grad is None:
                    p.grad = Tensor._wrap(averaged.copy(), p.device)
                else:
                    p.grad.array[...] = averaged
            b.ready.clear()
        self._next_bucket = 0
        self.last_wait_seconds = time.perf_counter() - started


def _hook(ref: Any) -> Any:
    def hook(p: Parameter) -> None:
        ddp = ref()
        if ddp is not None:
            ddp._grad_ready(p)
    return hook


def _describe(a: Any, b: Any, rank: int) -> str:
    if a is None:
        return f"rank {rank} has an extra {b[0]} {b[1]!r} {b[2]} {b[3]} that rank 0 lacks"
    if b is None:
        return f"rank {rank} lacks rank 0's {a[0]} {a[1]!r} {a[2]} {a[3]}"
    if a[:2] == b[:2]:
        return f"{a[0]} {a[1]!r} is {a[3]} {a[2]} on rank 0 but {b[3]} {b[2]} on rank {rank}"
    return f"rank 0 has {a[0]} {a[1]!r} {a[2]} where rank {rank} has {b[0]} {b[1]!r} {b[2]}"


__all__ = ["DistributedDataParallel"]
