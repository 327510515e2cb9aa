"""The collectives on CUDA tensors: NCCL through CuPy (``cupy.cuda.nccl``).

Rank 0 makes NCCL's unique id and MPI broadcasts it, so the NCCL communicator needs no
other rendezvous. Every collective runs on a side stream of its own: that stream first
waits for the work already queued on the current stream (the tensor's producer), and a
``Work`` makes the current stream wait for the collective, so a non-blocking all-reduce
overlaps the kernels queued after it (PyTorch's NCCL process group does the same).

Types NCCL lacks are handled here: bool reduces as uint8 (SUM and MAX are an or, MIN and
PRODUCT an and), int16 reduces in int32, and collectives that only move data move bytes.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .. import backend


class _Done:
    """What ``Work`` waits on: an event recorded on the side stream after the collective."""

    def __init__(self, event: Any, keep: tuple[Any, ...]) -> None:
        self.event = event
        self.keep = keep  # the arrays NCCL reads and writes, alive until the collective has run

    def wait(self) -> None:
        backend.cupy_module().cuda.get_current_stream().wait_event(self.event)
        self.keep = ()

    def done(self) -> bool:
        return bool(self.event.done)


class NcclGroup:
    """An NCCL communicator over the ranks of ``comm`` (an mpi4py communicator), one GPU per rank."""

    def __init__(self, comm: Any, rank: int, size: int) -> None:
        from mpi4py import MPI

        cp = backend.cupy_module()
        self.cp = cp
        self.nccl = importlib.import_module("cupy.cuda.nccl")
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank = local.Get_rank()
        local.Free()
        count = cp.cuda.runtime.getDeviceCount()
        self.device = local_rank % count  # one GPU per process on each machine
        cp.cuda.Device(self.device).use()
        uid = self.nccl.get_unique_id() if rank == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = self.nccl.NcclCommunicator(size, uid, rank)
        self.size = size
        self.rank = rank
        self.stream = cp.cuda.Stream(non_blocking=True)
        n = self.nccl
        self.types = {"float16": n.NCCL_FLOAT16, "float32": n.NCCL_FLOAT32, "float64": n.NCCL_FLOAT64,
                      "int8": n.NCCL_INT8, "uint8": n.NCCL_UINT8, "int32": n.NCCL_INT32, "int64": n.NCCL_INT64}

    def close(self) -> None:
        self.synchronize()
        self.comm.destroy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    # ------------------------------------------------------------------ the pattern every collective follows
    def _launch(self, arrays: tuple[Any, ...], call: Callable[[int], None], finish: Callable[[], None] | None,
                async_op: bool, what: str) -> Any:
        from . import Work, _get

        cp = self.cp
        ready = cp.cuda.Event()
        ready.record(cp.cuda.get_current_stream())
        self.stream.wait_event(ready)
        call(self.stream.ptr)
        finished = cp.cuda.Event()
        finished.record(self.stream)
        work = Work([_Done(finished, arrays)], finish, _get().timeout, what)
        if async_op:
            return work
        work.wait()
        return None

    def _reduce_type(self, array: Any, op: Any) -> tuple[Any, Any, Any]:
        """(buffer to reduce, NCCL type, NCCL op) for ``array`` under ``op`` (a ReduceOp)."""
        from . import ReduceOp

        n = self.nccl
        buf = array if array.flags.c_contiguous else self.cp.ascontiguousarray(array)
        if array.dtype.kind == "b":
            if op is ReduceOp.AVG:
                raise ValueError("ReduceOp.AVG is not defined for bool tensors")
            nop = n.NCCL_MAX if op in (ReduceOp.SUM, ReduceOp.MAX) else n.NCCL_MIN
            return buf.view(self.cp.uint8), n.NCCL_UINT8, nop
        nop = {ReduceOp.SUM: n.NCCL_SUM, ReduceOp.AVG: n.NCCL_SUM, ReduceOp.PRODUCT: n.NCCL_PROD,
               ReduceOp.MIN: n.NCCL_MIN, ReduceOp.MAX: n.NCCL_MAX}[op]
        if array.dtype.name == "int16":
            return buf.astype(self.cp.int32), n.NCCL_INT32, nop
        if array.dtype.name not in self.types:
            raise TypeError(f"NCCL cannot reduce {array.dtype} tensors")
        return buf, self.types[array.dtype.name], nop

    def _bytes(self, array: Any) -> Any:
        buf = array if array.flags.c_contiguous else self.cp.ascontiguousarray(array)
        return buf.reshape(-1).view(self.cp.uint8)

    # ------------------------------------------------------------------ collectives
    def all_reduce(self, array: Any, op: Any, async_op: bool) -> Any:
        from . import ReduceOp, _divide

        buf, dtype, nop = self._reduce_type(array, op)
        size = self.size

        def call(stream: int) -> None:
            self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, nop, stream)

        def finish() -> None:
            if op is ReduceOp.AVG:
                _divide(buf, size)
            if buf.data.ptr != array.data.ptr or buf.dtype != array.dtype:
                array[...] = buf.astype(array.dtype, copy=False)

        return self._launch((buf, array), call, finish, async_op, "all_reduce")

    def broadcast(self, array: Any, src: int, async_op: bool) -> Any:
        buf = self._bytes(array)

        def call(stream: int) -> None:
            self.comm.bcast(buf.data.ptr, buf.size, self.nccl.NCCL_UINT8, src, stream)

        def finish() -> None:
            if not array.flags.c_contiguous:
                array[...] = buf.view(array.dtype).reshape(array.shape)

        return self._launch((buf, array), call, finish, async_op, "broadcast")

    def all_gather(self, outs: list[Any], array: Any, async_op: bool) -> Any:
        send = self._bytes(array)
        recv = self.cp.empty(send.size * self.size, dtype=self.cp.uint8)

        def call(stream: int) -> None:
            self.comm.allGather(send.data.ptr, recv.data.ptr, send.size, self.nccl.NCCL_UINT8, stream)

        def finish() -> None:
            chunks = recv.reshape(self.size, -1)
            for r, o in enumerate(outs):
                o[...] = chunks[r].view(o.dtype).reshape(o.shape)

        return self._launch((send, recv, array), call, finish, async_op, "all_gather")

    def reduce_scatter(self, out: Any, inputs: list[Any], op: Any, async_op: bool) -> Any:
        from . import ReduceOp, _divide

        stacked = self.cp.stack(inputs)  # (world_size, *shape)
        send, dtype, nop = self._reduce_type(stacked, op)
        recv = self.cp.empty(out.size, dtype=send.dtype)
        size = self.size

        def call(stream: int) -> None:
            self.comm.reduceScatter(send.data.ptr, recv.data.ptr, recv.size, dtype, nop, stream)

        def finish() -> None:
            if op is ReduceOp.AVG:
                _divide(recv, size)
            out[...] = recv.reshape(out.shape).astype(out.dtype, copy=False)

        return self._launch((send, recv, out), call, finish, async_op, "reduce_scatter")

    def reduce(self, array: Any, root: int, op: Any, async_op: bool) -> Any:
        from . import ReduceOp, _divide

        buf, dtype, nop = self._reduce_type(array, op)
        size, mine = self.size, self.rank == root

        def call(stream: int) -> None:
            self.comm.reduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, nop, root, stream)

        def finish() -> None:
            if not mine:
                return
            if op is ReduceOp.AVG:
                _divide(buf, size)
            if buf.data.ptr != array.data.ptr or buf.dtype != array.dtype:
                array[...] = buf.astype(array.dtype, copy=False)

        return self._launch((buf, array), call, finish, async_op, "reduce")

    def send(self, array: Any, peer: int) -> Any:
        buf = self._bytes(array)

        def call(stream: int) -> None:
            self.comm.send(buf.data.ptr, buf.size, self.nccl.NCCL_UINT8, peer, stream)

        return self._launch((buf, array), call, None, True, "isend")

    def recv(self, array: Any, peer: int) -> Any:
        buf = self._bytes(array)

        def call(stream: int) -> None:
            self.comm.recv(buf.data.ptr, buf.size, self.nccl.NCCL_UINT8, peer, stream)

        def finish() -> None:
            if not array.flags.c_contiguous:
                array[...] = buf.view(array.dtype).reshape(array.shape)

        return self._launch((buf, array), call, finish, True, "irecv")
