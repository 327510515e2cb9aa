"""``torch.distributed`` for tinygrad_lm: collectives across processes, on MPI (CPU) and NCCL (GPU).

Processes are started by an MPI launcher (``mpiexec -n 4 python train.py``); each one calls
``init_process_group()``, which reads its rank and the world size from MPI. Then:

    all_reduce(t)            t <- t_0 + t_1 + ... + t_{N-1} on every rank (in place; ReduceOp.AVG divides by N)
    broadcast(t, src)        t <- t_src
    all_gather(ts, t)        ts[r] <- t_r
    reduce_scatter(t, ts)    t on rank r <- sum over ranks of their ts[r]
    barrier()                every rank has arrived

CPU tensors go through MPI (``mpi4py``: the buffers are the tensors' NumPy arrays, no copies when
they are contiguous), CUDA tensors through NCCL (``cupy.cuda.nccl``, its unique id shared over MPI).
With ``async_op=True`` a collective returns a :class:`Work` at once (MPI's non-blocking ``Iallreduce``
and friends; NCCL on a side stream) and ``work.wait()`` completes it: this is how DDP starts the
gradient all-reduce while backward goes on (how much of it moves meanwhile is up to the MPI library's
progress engine: see benchmarks/README.md).

Once initialised with more than one rank, an uncaught exception on any rank calls ``MPI_Abort``, so
the whole job ends with a non-zero exit instead of the other ranks waiting forever in a collective.
"""
from __future__ import annotations

import datetime
import enum
import importlib.util
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

from ..tensor import Tensor

__all__ = [
    "Backend", "ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce",
    "barrier", "broadcast", "broadcast_object_list", "default_pg_timeout", "destroy_process_group", "gather",
    "get_backend", "get_rank", "get_world_size", "group", "init_process_group", "irecv", "is_available",
    "is_initialized", "is_mpi_available", "is_nccl_available", "isend", "recv", "reduce", "reduce_scatter",
    "reduce_scatter_tensor", "scatter", "send",
]

_ABORT_GRACE_S = 0.5  # how long a failing rank waits, its error printed, before it aborts the job


class ReduceOp(enum.Enum):
    """How ``all_reduce`` and ``reduce_scatter`` combine the ranks' values (PyTorch's names)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


class Backend(str, enum.Enum):
    MPI = "mpi"
    NCCL = "nccl"


class group:  # noqa: N801 - PyTorch's name
    """``group.WORLD``: the default group, every rank (the only group there is here)."""

    WORLD: Any = None


class Work:
    """A collective that was started with ``async_op=True``: ``wait()`` completes it."""

    def __init__(self, requests: list[Any], finish: Callable[[], None] | None = None,
                 timeout: float | None = None, what: str = "collective") -> None:
        self._requests = requests  # mpi4py Requests (MPI) or objects with wait()/done() (NCCL)
        self._finish = finish
        self._timeout = timeout
        self._what = what
        self._done = False

    def is_completed(self) -> bool:
        """Whether the communication has finished (``wait`` still has to be called to use the result)."""
        if self._done:
            return True
        return all(_test(r) for r in self._requests)

    def wait(self, timeout: datetime.timedelta | None = None) -> bool:
        """Block until the collective has finished and its result is in the tensor(s)."""
        if self._done:
            return True
        limit = timeout.total_seconds() if timeout is not None else self._timeout
        if limit is None:
            for r in self._requests:
                r.Wait() if hasattr(r, "Wait") else r.wait()
        else:  # test (which also drives MPI's progress) until done or out of time
            started = time.monotonic()
            pause = 0.0
            while not all(_test(r) for r in self._requests):
                waited = time.monotonic() - started
                if waited > limit:
                    raise RuntimeError(f"{self._what} did not complete within {limit:g} s: another rank has not "
                                       "joined it (it may have failed, be running different code, or have run "
                                       "out of data before the others)")
                if waited > 2e-3:  # spin through the first milliseconds, then sleep between tests (shared cores)
                    time.sleep(pause)
                    pause = min(1e-3, pause + 2e-5)
            for r in self._requests:
                if not hasattr(r, "Test"):
                    r.wait()  # NCCL: the current stream waits for the collective's stream
        self._requests = []
        if self._finish is not None:
            self._finish()
            self._finish = None
        self._done = True
        return True


def _test(request: Any) -> bool:
    return bool(request.Test()) if hasattr(request, "Test") else bool(request.done())


class _ProcessGroup:
    """The world: an MPI communicator of its own (a duplicate of ``COMM_WORLD``) and, for GPUs, NCCL's."""

    def __init__(self, backend: str, timeout: float | None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.backend = backend
        self.timeout = timeout
        self._nccl: Any = None
        if backend == "nccl":
            self.nccl()

    def nccl(self) -> Any:
        """The NCCL communicator, created (collectively, on every rank) the first time it is needed."""
        if self._nccl is None:
            from ._nccl import NcclGroup

            self._nccl = NcclGroup(self.comm, self.rank, self.size)
        return self._nccl


_world: _ProcessGroup | None = None
default_pg_timeout = datetime.timedelta(minutes=30)  # PyTorch's: how long a rank waits for the others
_previous_excepthook: Any = None


def is_available() -> bool:
    """Whether distributed training can run here: ``mpi4py`` (with an MPI library) is installed."""
    return is_mpi_available()


def is_mpi_available() -> bool:
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available() -> bool:
    """Whether CuPy with NCCL and a GPU are present."""
    from .. import backend as _backend

    if not _backend.cuda_is_available():
        return False
    return importlib.util.find_spec("cupy.cuda.nccl") is not None


def is_initialized() -> bool:
    return _world is not None


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | None = None, world_size: int = -1, rank: int = -1,
                       store: Any = None, group_name: str = "", pg_options: Any = None,
                       device_id: Any = None) -> None:
    """Join the job that the MPI launcher started: rank and world size come from MPI.

    ``backend`` is ``"mpi"`` (CPU tensors), ``"nccl"`` (CUDA tensors; CPU tensors still go through
    MPI) or None (MPI, and NCCL the first time a CUDA tensor is communicated). ``init_method`` may be
    None or ``"env://"``; ``world_size`` and ``rank``, when given, must agree with MPI's (a check that
    the script was started as intended). ``timeout`` (default 30 minutes, PyTorch's) bounds how long a
    collective waits for the other ranks before raising, which then aborts the job: a rank that stopped
    early (uneven data) or hangs ends the job instead of leaving the others waiting forever.
    """
    global _world, _previous_excepthook
    if _world is not None:
        raise RuntimeError("trying to initialize the default process group twice")
    name = "mpi" if backend is None else str(getattr(backend, "value", backend)).lower()
    if name not in ("mpi", "nccl"):
        raise ValueError(f"unknown backend {backend!r}: tinygrad_lm.distributed has 'mpi' (CPU tensors) and 'nccl' "
                         "(CUDA tensors)")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method {init_method!r} is not supported: ranks are found through MPI; start the "
                         "processes with mpiexec -n N")
    if store is not None:
        raise ValueError("store is not supported: ranks find each other through MPI")
    if not is_mpi_available():
        raise RuntimeError("tinygrad_lm.distributed needs mpi4py and an MPI library: "
                           "pip install 'tinygrad_lm[distributed]'")
    if name == "nccl" and not is_nccl_available():
        raise RuntimeError("backend 'nccl' needs CuPy with NCCL and a GPU: pip install 'tinygrad_lm[gpu]'")
    if timeout is None:
        timeout = default_pg_timeout
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)
    world = _ProcessGroup(name, seconds)
    if world_size not in (-1, None) and int(world_size) != world.size:
        raise ValueError(f"world_size={world_size} but MPI started {world.size} processes")
    if rank not in (-1, None) and int(rank) != world.rank:
        raise ValueError(f"rank={rank} but MPI says this process is rank {world.rank}")
    _world = world
    group.WORLD = world
    if world.size > 1 and _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _abort_on_uncaught


def _abort_on_uncaught(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """Print the error, then end every rank: the others may be waiting for this one in a collective."""
    rank = _world.rank if _world is not None else "?"
    # one write, flushed before Abort: mpiexec forwards a rank's stderr until Abort kills it, and under
    # load a second write could still be in flight (the traceback was lost once in a loaded test run)
    sys.stderr.write(f"[rank {rank}] uncaught {kind.__name__}; aborting the job\n"
                     + "".join(traceback.format_exception(kind, value, tb)))
    sys.stderr.flush()
    # mpiexec reads a rank's output and its abort request from different channels, in either order; an
    # abort read first kills the job with the message still unread in the pipe (seen once in CI, where
    # the failing rank's stderr came back empty). A moment's pause lets the output go out first.
    time.sleep(_ABORT_GRACE_S)
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(130 if issubclass(kind, KeyboardInterrupt) else 1)


def destroy_process_group(group: Any = None) -> None:
    """Leave the process group (MPI itself is finalised when the interpreter exits)."""
    global _world, _previous_excepthook
    if _world is None:
        return
    if _world._nccl is not None:
        _world._nccl.close()
    _world.comm.Free()
    _world = None
    globals()["group"].WORLD = None
    if _previous_excepthook is not None:
        sys.excepthook = _previous_excepthook
        _previous_excepthook = None


def _get(group: Any = None) -> _ProcessGroup:
    if _world is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")
    if group is not None and group is not _world:
        raise ValueError("only the default group (group=None or group.WORLD) is supported")
    return _world


def get_rank(group: Any = None) -> int:
    return _get(group).rank


def get_world_size(group: Any = None) -> int:
    return _get(group).size


def get_backend(group: Any = None) -> str:
    return _get(group).backend


# ---------------------------------------------------------------------------------------------- MPI helpers
_FLOAT16 = np.dtype(np.float16)


def _tensor(t: Any, what: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} expects a tinygrad_lm Tensor, got {type(t).__name__}")
    return t


def _mpi_op(pg: _ProcessGroup, op: ReduceOp, dtype: np.dtype) -> Any:
    MPI = pg.MPI
    if not isinstance(op, ReduceOp):
        raise TypeError(f"op must be a ReduceOp, got {op!r}")
    if dtype == np.bool_:  # PyTorch: SUM and MAX are a logical or, PRODUCT and MIN a logical and
        if op is ReduceOp.AVG:
            raise ValueError("ReduceOp.AVG is not defined for bool tensors")
        return MPI.LOR if op in (ReduceOp.SUM, ReduceOp.MAX) else MPI.LAND
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}[op]


def _divide(array: Any, n: int) -> None:
    """``array /= n`` in place; integers round toward zero, as NCCL's average does."""
    if array.dtype.kind in "fc":
        array /= n
    else:
        q = abs(array) // n
        array[...] = q * np.sign(array)


def _reduce_buffer(array: np.ndarray) -> np.ndarray:
    """A contiguous array MPI can reduce: ``array`` itself when it can, else a copy (float16: in float32)."""
    if array.dtype == _FLOAT16:
        return array.astype(np.float32)  # MPI has no standard half type; reduce in float32, round once
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _move_dtype(dtype: np.dtype) -> np.dtype:
    """The type collectives that only move data send ``dtype`` as: itself, or uint16 for half precision."""
    return np.dtype(np.uint16) if dtype == _FLOAT16 else dtype


def _move_buffer(array: np.ndarray) -> Any:
    """A contiguous buffer with a type every MPI has, for collectives that move data without combining it."""
    buf = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    return buf.view(np.uint16) if buf.dtype == _FLOAT16 else buf


def _cpu_array(t: Tensor, what: str) -> np.ndarray:
    if t.device != "cpu":
        raise RuntimeError(f"{what}: internal error, {t.device} tensor on the MPI path")
    return t.array


def _run(pg: _ProcessGroup, requests: list[Any], finish: Callable[[], None] | None, async_op: bool,
         what: str) -> Work | None:
    work = Work(requests, finish, pg.timeout, what)
    if async_op:
        return work
    work.wait()
    return None


def _all_cuda(tensors: list[Tensor], what: str) -> bool:
    kinds = {t.device == "cpu" for t in tensors}
    if len(kinds) > 1:
        raise RuntimeError(f"{what}: tensors on different devices ({', '.join(sorted({t.device for t in tensors}))})")
    return not kinds.pop()


# ---------------------------------------------------------------------------------------------- collectives
def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> Work | None:
    """Combine ``tensor`` over all ranks with ``op``; every rank gets the result, in place."""
    pg = _get(group)
    t = _tensor(tensor, "all_reduce")
    if _all_cuda([t], "all_reduce"):
        return pg.nccl().all_reduce(t.array, op, async_op)
    array = _cpu_array(t, "all_reduce")
    mpi_op = _mpi_op(pg, op, array.dtype)
    buf = _reduce_buffer(array)
    request = pg.comm.Iallreduce(pg.MPI.IN_PLACE, buf, op=mpi_op)

    def finish() -> None:
        if op is ReduceOp.AVG:
            _divide(buf, pg.size)
        if buf is not array:
            array[...] = buf

    return _run(pg, [request], finish, async_op, "all_reduce")


def broadcast(tensor: Tensor, src: int, group: Any = None, async_op: bool = False) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank."""
    pg = _get(group)
    t = _tensor(tensor, "broadcast")
    _check_rank(pg, src, "src")
    if _all_cuda([t], "broadcast"):
        return pg.nccl().broadcast(t.array, src, async_op)
    array = _cpu_array(t, "broadcast")
    buf = _move_buffer(array)
    request = pg.comm.Ibcast(buf, root=src)

    def finish() -> None:
        if not array.flags.c_contiguous:  # buf was a copy
            array[...] = buf.view(array.dtype)

    return _run(pg, [request], finish, async_op, "broadcast")


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group: Any = None, async_op: bool = False) -> Work | None:
    """``tensor_list[r]`` <- rank r's ``tensor``, on every rank."""
    pg = _get(group)
    t = _tensor(tensor, "all_gather")
    outs = [_tensor(o, "all_gather") for o in tensor_list]
    _check_list(pg, outs, t, "all_gather", "tensor_list")
    if _all_cuda(outs + [t], "all_gather"):
        return pg.nccl().all_gather([o.array for o in outs], t.array, async_op)
    send = _move_buffer(_cpu_array(t, "all_gather"))
    recv = np.empty((pg.size,) + send.shape, dtype=send.dtype)
    request = pg.comm.Iallgather(send, recv)

    def finish() -> None:
        for r, o in enumerate(outs):
            o.array[...] = recv[r].view(o.dtype)

    return _run(pg, [request], finish, async_op, "all_gather")


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group: Any = None,
                           async_op: bool = False) -> Work | None:
    """The ranks' ``input_tensor`` s concatenated (or stacked) into ``output_tensor``, in rank order."""
    pg = _get(group)
    out = _tensor(output_tensor, "all_gather_into_tensor")
    inp = _tensor(input_tensor, "all_gather_into_tensor")
    if out.dtype != inp.dtype or out.numel() != inp.numel() * pg.size:
        raise ValueError(f"all_gather_into_tensor: output_tensor must hold world_size ({pg.size}) times the input: "
                         f"got {out.dtype} {out.shape} for {inp.dtype} {inp.shape}")
    if _all_cuda([out, inp], "all_gather_into_tensor"):
        chunks = out.array.reshape(pg.size, *inp.shape)
        return pg.nccl().all_gather([chunks[r] for r in range(pg.size)], inp.array, async_op)
    send = _move_buffer(_cpu_array(inp, "all_gather_into_tensor"))
    target = out.array
    recv = _move_buffer(target) if target.flags.c_contiguous else np.empty(target.size, dtype=send.dtype)
    request = pg.comm.Iallgather(send, recv)

    def finish() -> None:
        if not target.flags.c_contiguous:  # recv was a buffer of its own
            target[...] = recv.view(target.dtype).reshape(target.shape)

    return _run(pg, [request], finish, async_op, "all_gather_into_tensor")


def reduce_scatter(output: Tensor, input_list: list[Tensor], op: ReduceOp = ReduceOp.SUM, group: Any = None,
                   async_op: bool = False) -> Work | None:
    """``output`` on rank r <- ``input_list[r]`` combined over all ranks with ``op``."""
    pg = _get(group)
    out = _tensor(output, "reduce_scatter")
    ins = [_tensor(i, "reduce_scatter") for i in input_list]
    _check_list(pg, ins, out, "reduce_scatter", "input_list")
    if _all_cuda(ins + [out], "reduce_scatter"):
        return pg.nccl().reduce_scatter(out.array, [i.array for i in ins], op, async_op)
    stacked = np.stack([i.array for i in ins])  # (world_size, *shape)
    return _reduce_scatter_cpu(pg, out.array, stacked, op, async_op, "reduce_scatter")


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM, group: Any = None,
                          async_op: bool = False) -> Work | None:
    """``output`` on rank r <- the r-th of ``world_size`` equal chunks of ``input``, combined over all ranks."""
    pg = _get(group)
    out = _tensor(output, "reduce_scatter_tensor")
    inp = _tensor(input, "reduce_scatter_tensor")
    if out.dtype != inp.dtype or inp.numel() != out.numel() * pg.size:
        raise ValueError(f"reduce_scatter_tensor: input must hold world_size ({pg.size}) times the output: "
                         f"got {inp.dtype} {inp.shape} for {out.dtype} {out.shape}")
    if _all_cuda([out, inp], "reduce_scatter_tensor"):
        chunks = inp.array.reshape(pg.size, *out.shape)
        return pg.nccl().reduce_scatter(out.array, [chunks[r] for r in range(pg.size)], op, async_op)
    return _reduce_scatter_cpu(pg, out.array, inp.array, op, async_op, "reduce_scatter_tensor")


def _reduce_scatter_cpu(pg: _ProcessGroup, target: np.ndarray, source: np.ndarray, op: ReduceOp, async_op: bool,
                        what: str) -> Work | None:
    mpi_op = _mpi_op(pg, op, target.dtype)
    send = _reduce_buffer(source)
    if send is source:
        send = send.reshape(-1)
    recv = np.empty(target.size, dtype=send.dtype)
    request = pg.comm.Ireduce_scatter_block(send, recv, op=mpi_op)

    def finish() -> None:
        if op is ReduceOp.AVG:
            _divide(recv, pg.size)
        target[...] = recv.reshape(target.shape)

    return _run(pg, [request], finish, async_op, what)


def reduce(tensor: Tensor, dst: int, op: ReduceOp = ReduceOp.SUM, group: Any = None,
           async_op: bool = False) -> Work | None:
    """Combine ``tensor`` over all ranks with ``op`` into ``tensor`` on rank ``dst`` (the others keep theirs)."""
    pg = _get(group)
    t = _tensor(tensor, "reduce")
    _check_rank(pg, dst, "dst")
    if _all_cuda([t], "reduce"):
        return pg.nccl().reduce(t.array, dst, op, async_op)
    array = _cpu_array(t, "reduce")
    buf = _reduce_buffer(array)
    mpi_op = _mpi_op(pg, op, array.dtype)
    if pg.rank == dst:
        request = pg.comm.Ireduce(pg.MPI.IN_PLACE, buf, op=mpi_op, root=dst)
    else:
        request = pg.comm.Ireduce(buf, None, op=mpi_op, root=dst)

    def finish() -> None:
        if pg.rank != dst:
            return
        if op is ReduceOp.AVG:
            _divide(buf, pg.size)
        if buf is not array:
            array[...] = buf

    return _run(pg, [request], finish, async_op, "reduce")


def gather(tensor: Tensor, gather_list: list[Tensor] | None = None, dst: int = 0, group: Any = None,
           async_op: bool = False) -> Work | None:
    """``gather_list[r]`` <- rank r's ``tensor``, on rank ``dst`` only (the others pass no list)."""
    pg = _get(group)
    t = _tensor(tensor, "gather")
    _check_rank(pg, dst, "dst")
    outs = [_tensor(o, "gather") for o in gather_list or []]
    if pg.rank == dst:
        _check_list(pg, outs, t, "gather", "gather_list")
    elif outs:
        raise ValueError(f"gather: only the destination rank {dst} passes a gather_list")
    if _all_cuda(outs + [t], "gather"):
        raise NotImplementedError("gather of CUDA tensors (NCCL): use all_gather")
    send = _move_buffer(_cpu_array(t, "gather"))
    recv = np.empty((pg.size,) + send.shape, dtype=send.dtype) if pg.rank == dst else None
    request = pg.comm.Igather(send, recv, root=dst)

    def finish() -> None:
        if recv is not None:
            for r, o in enumerate(outs):
                o.array[...] = recv[r].view(o.dtype)

    return _run(pg, [request], finish, async_op, "gather")


def scatter(tensor: Tensor, scatter_list: list[Tensor] | None = None, src: int = 0, group: Any = None,
            async_op: bool = False) -> Work | None:
    """``tensor`` on rank r <- ``scatter_list[r]`` of rank ``src`` (the others pass no list)."""
    pg = _get(group)
    t = _tensor(tensor, "scatter")
    _check_rank(pg, src, "src")
    ins = [_tensor(i, "scatter") for i in scatter_list or []]
    if pg.rank == src:
        _check_list(pg, ins, t, "scatter", "scatter_list")
    elif ins:
        raise ValueError(f"scatter: only the source rank {src} passes a scatter_list")
    if _all_cuda(ins + [t], "scatter"):
        raise NotImplementedError("scatter of CUDA tensors (NCCL): use broadcast")
    target = _cpu_array(t, "scatter")
    send = _move_buffer(np.stack([i.array for i in ins])) if pg.rank == src else None
    recv = np.empty(target.shape, dtype=_move_dtype(target.dtype))
    request = pg.comm.Iscatter(send, recv, root=src)

    def finish() -> None:
        target[...] = recv.view(target.dtype)

    return _run(pg, [request], finish, async_op, "scatter")


def isend(tensor: Tensor, dst: int, group: Any = None, tag: int = 0) -> Work:
    """Start sending ``tensor`` to rank ``dst``; ``wait()`` the returned Work before changing the tensor."""
    pg = _get(group)
    t = _tensor(tensor, "isend")
    _check_rank(pg, dst, "dst")
    if _all_cuda([t], "isend"):
        return pg.nccl().send(t.array, dst)
    buf = _move_buffer(_cpu_array(t, "isend"))
    return Work([pg.comm.Isend(buf, dest=dst, tag=tag)], None, pg.timeout, "isend")


def irecv(tensor: Tensor, src: int, group: Any = None, tag: int = 0) -> Work:
    """Start receiving into ``tensor`` from rank ``src``; the data is there once ``wait()`` returns."""
    pg = _get(group)
    t = _tensor(tensor, "irecv")
    _check_rank(pg, src, "src")
    if _all_cuda([t], "irecv"):
        return pg.nccl().recv(t.array, src)
    target = _cpu_array(t, "irecv")
    buf = _move_buffer(target) if target.flags.c_contiguous else np.empty(target.size, _move_dtype(target.dtype))

    def finish() -> None:
        if not target.flags.c_contiguous:
            target[...] = buf.view(target.dtype).reshape(target.shape)

    return Work([pg.comm.Irecv(buf, source=src, tag=tag)], finish, pg.timeout, "irecv")


def send(tensor: Tensor, dst: int, group: Any = None, tag: int = 0) -> None:
    """Send ``tensor`` to rank ``dst`` (returns once it may be changed)."""
    isend(tensor, dst, group, tag).wait()


def recv(tensor: Tensor, src: int, group: Any = None, tag: int = 0) -> int:
    """Receive into ``tensor`` from rank ``src``; returns ``src``."""
    irecv(tensor, src, group, tag).wait()
    return src


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    """Wait until every rank has called ``barrier``."""
    pg = _get(group)
    if pg._nccl is not None:
        pg._nccl.synchronize()
    return _run(pg, [pg.comm.Ibarrier()], None, async_op, "barrier")


def broadcast_object_list(object_list: list[Any], src: int = 0, group: Any = None, device: Any = None) -> None:
    """``object_list[:]`` <- rank ``src``'s list (picklable Python objects, sent between our own ranks)."""
    pg = _get(group)
    _check_rank(pg, src, "src")
    received = pg.comm.bcast(list(object_list) if pg.rank == src else None, root=src)
    if len(received) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(received)} objects, this rank's list "
                         f"holds {len(object_list)}")
    object_list[:] = received


def all_gather_object(object_list: list[Any], obj: Any, group: Any = None) -> None:
    """``object_list[r]`` <- rank r's ``obj`` (``object_list`` has ``world_size`` entries)."""
    pg = _get(group)
    if len(object_list) != pg.size:
        raise ValueError(f"all_gather_object: object_list must have world_size ({pg.size}) entries, "
                         f"got {len(object_list)}")
    object_list[:] = pg.comm.allgather(obj)


def _check_rank(pg: _ProcessGroup, rank: int, name: str) -> None:
    if not 0 <= int(rank) < pg.size:
        raise ValueError(f"{name}={rank} is not a rank of this group (world size {pg.size})")


def _check_list(pg: _ProcessGroup, tensors: list[Tensor], t: Tensor, what: str, name: str) -> None:
    if len(tensors) != pg.size:
        raise ValueError(f"{what}: {name} must have world_size ({pg.size}) tensors, got {len(tensors)}")
    for r, o in enumerate(tensors):
        if o.shape != t.shape or o.dtype != t.dtype:
            raise ValueError(f"{what}: {name}[{r}] is {o.dtype} {o.shape}, expected {t.dtype} {t.shape} like "
                             "the other tensor")
