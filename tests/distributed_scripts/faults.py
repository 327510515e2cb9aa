"""Fault cases, one per command-line argument; run as ``mpiexec -n 2 python faults.py CASE``.

- ``raise``: rank 1 raises while rank 0 waits in an all-reduce: the job must end non-zero (MPI abort).
- ``uneven``: rank 1 runs out of data one step early: rank 0's DDP wait times out and the job ends.
- ``mismatch``: rank 1's model has another shape: DDP's constructor raises on every rank, naming it.
- ``unused``: a parameter without a gradient is an error naming it; with ``find_unused_parameters``
  it counts as zero (its ``.grad`` stays None where no rank used it).
- ``caught``: inside ``abort_on_error`` (the command line), an error on one rank aborts the job even
  when it is caught and turned into an exit status; one raised on every rank alike does not.
"""
from __future__ import annotations

import datetime
import sys

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.distributed as dist
from tinygrad_lm import nn
from tinygrad_lm.nn.parallel import DistributedDataParallel as DDP


class TwoHeads(nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.body = nn.Linear(3, hidden)
        self.head_a = nn.Linear(hidden, 1)
        self.head_b = nn.Linear(hidden, 1)

    def forward(self, x: tl.Tensor, use_b: bool = False) -> tl.Tensor:
        h = self.body(x).tanh()
        return (self.head_b(h) if use_b else self.head_a(h)).sum()


def case_raise() -> None:
    dist.init_process_group("mpi")
    if dist.get_rank() == 1:
        raise ValueError("rank 1 fails on purpose")
    dist.all_reduce(tl.ones(3))  # never completes: rank 1 is gone
    print("rank 0 got past the all_reduce", flush=True)


def case_uneven() -> None:
    dist.init_process_group("mpi", timeout=datetime.timedelta(seconds=2))
    rank = dist.get_rank()
    model = DDP(nn.Linear(3, 2))
    for _ in range(3 - rank):  # rank 1 has one batch less
        model(tl.randn(2, 3)).sum().backward()
    if rank == 0:
        print("rank 0 finished a step that rank 1 never joined", flush=True)


def case_mismatch() -> None:
    dist.init_process_group("mpi")
    rank = dist.get_rank()
    try:
        DDP(TwoHeads(hidden=4 + rank))
    except RuntimeError as err:
        print(f"rank {rank} error: {err}", flush=True)
        return
    raise AssertionError("DDP accepted models of different shapes")


def case_unused() -> None:
    dist.init_process_group("mpi")
    rank = dist.get_rank()
    model = DDP(TwoHeads())
    try:
        model(tl.randn(2, 3)).backward()
    except RuntimeError as err:
        assert "head_b.weight" in str(err) and "head_b.bias" in str(err) and "head_a" not in str(err), err
        assert "find_unused_parameters" in str(err), err
    else:
        raise AssertionError("a parameter without a gradient was not reported")
    model = DDP(TwoHeads(), find_unused_parameters=True)
    model.zero_grad()
    model(tl.randn(2, 3, dtype=tl.float32)).backward()  # head_b unused on every rank
    assert model.module.head_b.weight.grad is None and model.module.body.weight.grad is not None
    model.zero_grad()
    model(tl.ones(2, 3) * (rank + 1), use_b=rank == 1).backward()  # head_b used on rank 1 only
    grad_b = model.module.head_b.weight.grad
    assert grad_b is not None, f"rank {rank}: head_b's gradient from rank 1 did not arrive"
    every: list = [None] * dist.get_world_size()
    dist.all_gather_object(every, np.asarray(grad_b.numpy()))
    assert all(np.array_equal(every[0], g) for g in every), "ranks disagree on head_b's averaged gradient"
    if rank == 0:
        print("unused OK", flush=True)


def case_caught() -> None:
    """As the command line does: errors are caught and turned into an exit status."""
    from tinygrad_lm.distributed.data_parallel import abort_on_error, share_from_main

    dist.init_process_group("mpi")
    rank = dist.get_rank()

    def bad_settings() -> None:
        raise ValueError("bad settings")

    try:
        with abort_on_error():
            share_from_main(bad_settings)  # raised on every rank alike: no abort, every rank handles it
    except ValueError as err:
        print(f"rank {rank} got: {err}", flush=True)
        # also in a file: rank 1's abort below may end mpiexec before it has passed this line's output on
        with open(f"{sys.argv[2]}.{rank}", "w") as f:
            f.write(f"rank {rank} got: {err}")
    try:
        with abort_on_error():
            if rank == 1:
                raise RuntimeError("rank 1 fails inside the command")
            dist.all_reduce(tl.ones(2))  # rank 1 never joins
    except RuntimeError:
        sys.exit(1)  # without the abort, rank 0 would wait for rank 1 until the timeout


if __name__ == "__main__":
    {"raise": case_raise, "uneven": case_uneven, "mismatch": case_mismatch, "unused": case_unused,
     "caught": case_caught}[sys.argv[1]]()
