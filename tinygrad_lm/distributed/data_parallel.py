"""What a training loop asks about a data-parallel job: one object, a no-op when there is one process.

The Trainer keeps one global batch of ``B`` rows per step, as a single process would; rank ``r`` of
``N`` trains on rows ``[r B/N, (r+1) B/N)`` of it (for BPTT streams: its own contiguous streams, so
the carried hidden state stays on its rank) and DDP averages the gradients. With the loss a mean
over tokens, the averaged gradient is the whole batch's, so N ranks take the steps one process
would. Everything that decides what the loop does next is agreed on by all ranks (the loss, a stop
signal, the time limit), so no rank leaves the loop while the others wait for it in an all-reduce.
Rank 0 alone prints and writes files; checkpoints hold the global state (the carried state of every
stream), so a run resumes on any number of ranks.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from ..tensor import Tensor
from . import ReduceOp, all_gather, all_reduce, get_rank, get_world_size, is_initialized


class TrainingGroup:
    """This process's place in the job, and the few collective steps a training loop needs."""

    def __init__(self, model: Any, batch_size: int, **ddp_options: Any) -> None:
        active = is_initialized() and get_world_size() > 1
        self.world_size = get_world_size() if active else 1
        self.rank = get_rank() if active else 0
        self.is_main = self.rank == 0
        self.active = active
        self.model = model  # what the loop calls forward on: DDP around the model when there are several ranks
        if active:
            if batch_size % self.world_size:
                raise ValueError(f"batch_size {batch_size} does not split evenly over {self.world_size} ranks: "
                                 f"use a multiple of {self.world_size}")
            from ..nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, **ddp_options)
        share = batch_size // self.world_size
        self.rows = slice(self.rank * share, (self.rank + 1) * share)

    # ------------------------------------------------------------------ data
    def shard(self, batch: Tensor) -> Tensor:
        """This rank's rows of a global batch ``(B, ...)``: ``(B/N, ...)``."""
        return batch[self.rows] if self.active else batch

    def shard_state(self, state: Any) -> Any:
        """This rank's streams of a carried recurrent state, whose tensors are ``(layers, B, H)``."""
        if not self.active or state is None:
            return state
        if isinstance(state, Tensor):
            return Tensor._wrap(state.array[:, self.rows].copy(), state.device)  # (layers, B/N, H)
        return tuple(self.shard_state(s) for s in state)

    def gather_state(self, state: Any) -> Any:
        """Every rank's streams of a carried state, in rank order: ``(layers, B, H)`` (collective)."""
        if not self.active or state is None:
            return state
        if isinstance(state, Tensor):
            parts = [Tensor._wrap(state.xp.empty_like(state.array), state.device) for _ in range(self.world_size)]
            all_gather(parts, Tensor._wrap(state.xp.ascontiguousarray(state.array), state.device))
            return Tensor._wrap(state.xp.concatenate([p.array for p in parts], axis=1), state.device)
        return tuple(self.gather_state(s) for s in state)

    # ------------------------------------------------------------------ agreement
    def _reduce(self, values: list[float], op: ReduceOp) -> np.ndarray:
        buf = np.asarray(values, dtype=np.float64)  # (k,)
        all_reduce(Tensor._wrap(buf, "cpu"), op=op)
        return buf

    def mean(self, value: float) -> float:
        """The mean over ranks of a number (the loss of each rank's share of the batch)."""
        if not self.active:
            return value
        return float(self._reduce([value], ReduceOp.SUM)[0] / self.world_size)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one."""
        if not self.active:
            return bool(flag)
        return bool(self._reduce([1.0 if flag else 0.0], ReduceOp.MAX)[0])

    def agree_signal(self, signum: int | None) -> int | None:
        """A stop signal that reached any rank (Ctrl-C reaches the ranks one by one), or None."""
        if not self.active:
            return signum
        got = int(self._reduce([float(signum or 0)], ReduceOp.MAX)[0])
        return got or None

    def main_only(self, context: Any) -> Any:
        """``context`` on rank 0, nothing elsewhere (the run directory's lock: rank 0 writes for all)."""
        return context if self.is_main else contextlib.nullcontext()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, evaluate: Callable[..., dict[str, float]], model: Any, ids: Any, batch_size: int,
                 seq_len: int, max_tokens: int | None, device: str, recurrent: bool) -> dict[str, float]:
        """``evaluate(model, ids, ...)`` with the work split over the ranks and the mean loss combined.

        ``evaluate`` reads recurrent models as ``S`` contiguous streams of ``L`` tokens and other
        models as consecutive windows; each rank evaluates its own streams (or windows), which are
        a contiguous piece of ``ids``, so the combined loss is the one-process loss up to rounding.
        Where the streams cannot be split that way, every rank evaluates everything.
        """
        if not self.active:
            return evaluate(model, ids, batch_size, seq_len, max_tokens, device)
        ids = np.asarray(ids)
        n = len(ids) - 1 if max_tokens is None else min(len(ids) - 1, int(max_tokens))
        piece: tuple[int, int, int] | None = None  # (first token, end token, batch size) of this rank's share
        if recurrent:
            streams = max(1, min(batch_size, n // seq_len))
            length = (n + 1) // streams  # L: each stream's tokens
            if streams >= self.world_size and length > seq_len:
                a, b = _split(streams, self.world_size, self.rank)
                piece = (a * length, b * length, b - a)
        else:
            T = min(seq_len, n)
            windows = n // T
            a, b = _split(windows, self.world_size, self.rank)
            piece = (a * T, b * T + 1, batch_size) if b > a else (0, 0, batch_size)
        if piece is None:
            return evaluate(model, ids[: n + 1], batch_size, seq_len, None, device)
        start, end, rows = piece
        total = count = 0.0
        if end > start:
            mine = evaluate(model, ids[start:end], rows, seq_len, None, device)
            total, count = mine["loss"] * mine["tokens"], float(mine["tokens"])
        total, count = (float(v) for v in self._reduce([total, count], ReduceOp.SUM))
        loss = total / count
        return {"loss": loss, "ppl": math.exp(loss) if loss < 700 else math.inf, "bpc": loss / math.log(2.0),
                "tokens": int(count)}


def _split(n: int, parts: int, index: int) -> tuple[int, int]:
    """Part ``index`` of ``range(n)`` cut into ``parts`` contiguous pieces whose sizes differ by at most one."""
    return index * n // parts, (index + 1) * n // parts


# ---------------------------------------------------------------------------------------------- the command line
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")  # MPICH/Intel MPI, Open MPI, PMIx


def launched_world_size() -> int:
    """How many ranks the MPI launcher started, from its environment (1 when not started by one)."""
    for name in _LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def launched_local_size() -> int:
    """How many ranks the MPI launcher started on this machine (its local-size variable where it sets one,
    else all of them), 1 when not started by one."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPIR_CVAR_CH4_NUM_LOCAL_RANKS"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return launched_world_size()


class LaunchedJob(NamedTuple):
    """This process in a job that ``mpiexec`` started: its rank, the world size and the device it trains on."""

    rank: int
    world_size: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_launched_job(device: str = "cpu") -> LaunchedJob | None:
    """Under ``mpiexec -n N`` (N > 1): join the job (MPI, and NCCL for CUDA) and say where; else None.

    ``"cuda"`` becomes this rank's own GPU (the one NCCL was set up on). From here on, ``stdout`` of
    every rank but 0 goes nowhere, so the job prints one progress bar.
    """
    from . import _get, init_process_group
    from . import is_initialized as initialized

    if launched_world_size() <= 1 and not initialized():
        return None
    if not initialized():
        init_process_group("nccl" if str(device).startswith("cuda") else "mpi")
    if get_world_size() <= 1:
        return None
    if str(device).startswith("cuda"):
        device = f"cuda:{_get().nccl().device}"
    job = LaunchedJob(get_rank(), get_world_size(), str(device))
    if not job.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    return job


def share_from_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and give every rank its result, or raise its exception on every rank."""
    from . import _get, broadcast_object_list

    pg = _get()
    box: list[Any] = [None]
    if pg.rank == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as err:  # every rank raises it, so none is left waiting
            box[0] = ("error", err)
    broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        value.on_every_rank = True  # see abort_on_error
        raise value
    return value


@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """An exception that leaves the block on one rank of a job ends the whole job (MPI abort, non-zero exit)
    instead of leaving the other ranks waiting for this one; an error raised on every rank alike passes."""
    try:
        yield
    except BaseException as err:
        clean_exit = isinstance(err, SystemExit) and not err.code
        if is_initialized() and get_world_size() > 1 and not clean_exit and not getattr(err, "on_every_rank", False):
            from . import _abort_on_uncaught

            _abort_on_uncaught(type(err), err, err.__traceback__)
        raise


def set_up_on_main(setup: Callable[[], tuple[Any, ...]], shared: int, size: int) -> tuple[Any, ...]:
    """``setup()`` on rank 0, which creates the run's files; returns its ``size`` results there. The other
    ranks get the first ``shared`` of them (pickled over MPI) and None for the rest, to build themselves."""
    result: tuple[Any, ...] | None = None

    def main_part() -> tuple[Any, ...]:
        nonlocal result
        result = tuple(setup())
        return result[:shared]

    head = share_from_main(main_part)
    return result if result is not None else tuple(head) + (None,) * (size - shared)


def relaunch(nproc: int, argv: list[str]) -> int:
    """``tinygrad-lm ARGV`` again as ``nproc`` ranks under ``mpiexec`` on this machine; their exit status.

    Ctrl-C reaches the ranks (they finish the step, save once and stop); this process only waits.
    """
    from .launch import mpiexec_command

    cmd = mpiexec_command(nproc, [sys.executable, "-m", "tinygrad_lm", *argv])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(cmd)
    finally:
        signal.signal(signal.SIGINT, previous)


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``--option VALUE`` / ``--option=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out
