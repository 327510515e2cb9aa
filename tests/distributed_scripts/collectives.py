"""Every collective, for every dtype and ReduceOp, checked against NumPy on every rank.

Run as ``mpiexec -n N python collectives.py [cpu|cuda]``; prints ``collectives OK`` on rank 0,
raises (and so aborts the job) on the first difference.
"""
from __future__ import annotations

import sys

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.distributed as dist
from tinygrad_lm import backend
from tinygrad_lm.distributed import ReduceOp

DTYPES = [np.dtype(d) for d in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")]
OPS = [ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX]


def value(rank: int, dtype: np.dtype, shape: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """Rank ``rank``'s input: small values (products of a few ranks stay in range), negative ones where signed."""
    n = int(np.prod(shape))
    raw = (np.arange(n) * 7 + rank * 5) % 9
    if dtype.kind == "b":
        return ((raw + rank) % 3 == 0).reshape(shape)
    if dtype.kind == "u":
        return raw.astype(dtype).reshape(shape)
    out = (raw - 4).astype(np.float64)
    if dtype.kind == "f":
        out = out * 0.75 + 0.25 * rank
    return out.astype(dtype).reshape(shape)


def expected_reduce(inputs: list[np.ndarray], op: ReduceOp) -> np.ndarray:
    dtype = inputs[0].dtype
    wide = np.float32 if dtype == np.float16 else dtype  # we reduce half precision in float32, rounding once
    stack = np.stack([x.astype(wide) for x in inputs])
    if dtype.kind == "b":
        return (stack.any(0) if op in (ReduceOp.SUM, ReduceOp.MAX) else stack.all(0)).astype(dtype)
    if op in (ReduceOp.SUM, ReduceOp.AVG):
        out = stack.sum(0, dtype=wide)
        if op is ReduceOp.AVG:
            if dtype.kind == "f":
                out = out / np.asarray(len(inputs), dtype=wide)
            else:
                out = np.sign(out) * (np.abs(out) // len(inputs))
    elif op is ReduceOp.PRODUCT:
        out = stack.prod(0, dtype=wide)
    else:
        out = stack.min(0) if op is ReduceOp.MIN else stack.max(0)
    return out.astype(dtype)


def host(t: tl.Tensor) -> np.ndarray:
    return backend.to_host(t.array)


def make(a: np.ndarray, device: str) -> tl.Tensor:
    return tl.tensor(a, device=device)


def check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
        raise AssertionError(f"rank {dist.get_rank()}: {what}: got {got.dtype} {got.shape}\n{got}\nexpected "
                             f"{want.dtype} {want.shape}\n{want}")


def main(device: str) -> None:
    dist.init_process_group("nccl" if device.startswith("cuda") else "mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and (world >= 2 or device != "cpu"), "run with mpiexec -n 2 (or more)"
    for dtype in DTYPES:
        inputs = [value(r, dtype) for r in range(world)]
        for op in OPS:
            t = make(inputs[rank], device)
            if dtype.kind == "b" and op is ReduceOp.AVG:
                try:
                    dist.all_reduce(t, op=op)
                except ValueError as err:
                    assert "bool" in str(err), err
                else:
                    raise AssertionError("ReduceOp.AVG on a bool tensor did not raise")
                continue
            dist.all_reduce(t, op=op)
            check(host(t), expected_reduce(inputs, op), f"all_reduce {dtype} {op.name}")
            work = dist.all_reduce(make(inputs[rank], device), op=op, async_op=True)
            assert isinstance(work, dist.Work) and work.wait() and work.is_completed()
            # reduce_scatter: rank r's list holds world_size tensors; rank q receives the reduction of the q-th
            pieces = [value(r * world + q, dtype, (2, 3)) for r in range(world) for q in range(world)]
            mine = [make(pieces[rank * world + q], device) for q in range(world)]
            out = make(np.zeros((2, 3), dtype), device)
            dist.reduce_scatter(out, mine, op=op)
            want = expected_reduce([pieces[r * world + rank] for r in range(world)], op)
            check(host(out), want, f"reduce_scatter {dtype} {op.name}")
            t = make(inputs[rank], device)  # reduce: only rank dst gets the result
            dist.reduce(t, dst=world - 1, op=op)
            reduced = expected_reduce(inputs, op) if rank == world - 1 else inputs[rank]
            check(host(t), reduced, f"reduce {dtype} {op.name}")
            flat = make(np.concatenate([p.reshape(-1) for p in pieces[rank * world:(rank + 1) * world]]), device)
            out2 = make(np.zeros((2, 3), dtype), device)
            dist.reduce_scatter_tensor(out2, flat, op=op)
            check(host(out2), want, f"reduce_scatter_tensor {dtype} {op.name}")
        t = make(inputs[rank], device)
        dist.broadcast(t, src=world - 1)
        check(host(t), inputs[world - 1], f"broadcast {dtype}")
        outs = [make(np.zeros((3, 4), dtype), device) for _ in range(world)]
        dist.all_gather(outs, make(inputs[rank], device))
        for r in range(world):
            check(host(outs[r]), inputs[r], f"all_gather {dtype} [{r}]")
        if device == "cpu":  # gather and scatter: MPI only (NCCL has all_gather and broadcast)
            outs = [make(np.zeros((3, 4), dtype), device) for _ in range(world)] if rank == 0 else None
            dist.gather(make(inputs[rank], device), outs, dst=0)
            for r in range(world if rank == 0 else 0):
                check(host(outs[r]), inputs[r], f"gather {dtype} [{r}]")
            t = make(np.zeros((3, 4), dtype), device)
            dist.scatter(t, [make(x, device) for x in inputs] if rank == world - 1 else None, src=world - 1)
            check(host(t), inputs[rank], f"scatter {dtype}")
        if world > 1:  # a ring of point-to-point messages
            received = make(np.zeros((3, 4), dtype), device)
            works = [dist.isend(make(inputs[rank], device), (rank + 1) % world),
                     dist.irecv(received, (rank - 1) % world)]
            for w in works:
                w.wait()
            check(host(received), inputs[(rank - 1) % world], f"isend/irecv {dtype}")
        big = make(np.zeros((world * 3, 4), dtype), device)
        dist.all_gather_into_tensor(big, make(inputs[rank], device))
        check(host(big), np.concatenate(inputs), f"all_gather_into_tensor {dtype}")

    # a strided (non-contiguous) tensor is reduced and broadcast in place too
    base = [value(r, np.dtype("float64"), (4, 3)) for r in range(world)]
    t = make(base[rank], device).transpose(0, 1)
    assert not t.array.flags.c_contiguous
    dist.all_reduce(t, op=ReduceOp.MAX)
    check(host(t), np.stack(base).max(0).T, "all_reduce of a transposed view")
    t = make(base[rank], device).transpose(0, 1)
    dist.broadcast(t, src=0)
    check(host(t), base[0].T, "broadcast into a transposed view")

    # objects, barrier, errors
    objs: list[object] = [None] * world
    dist.all_gather_object(objs, {"rank": rank})
    assert objs == [{"rank": r} for r in range(world)], objs
    box: list[object] = [f"from {rank}", rank]
    dist.broadcast_object_list(box, src=world - 1)
    assert box == [f"from {world - 1}", world - 1], box
    assert dist.barrier() is None
    dist.barrier(async_op=True).wait()
    try:
        dist.all_gather([make(np.zeros(2), device)], make(np.zeros(2), device))
    except ValueError as err:
        assert "world_size" in str(err), err
    else:
        raise AssertionError("all_gather with a short tensor_list did not raise")
    try:
        dist.broadcast(make(np.zeros(2), device), src=world)
    except ValueError as err:
        assert f"src={world}" in str(err), err
    else:
        raise AssertionError("broadcast from a rank outside the group did not raise")
    dist.destroy_process_group()
    assert not dist.is_initialized()
    if rank == 0:
        print("collectives OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
