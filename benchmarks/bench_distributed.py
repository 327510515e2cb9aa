"""Data-parallel training on this machine: 1 process x 2 threads against 2 processes x 1 thread.

    python benchmarks/bench_distributed.py                       # lstm and gpt, 10 steps after 3 warm-up
    python benchmarks/bench_distributed.py --configs lstm --steps 20 --nproc 2 --threads 1

For each configuration (``benchmarks/models.py``) at the same global batch it reports:

- tokens/s of one process with ``--threads * nproc`` BLAS threads (no DDP);
- tokens/s of ``nproc`` ranks under ``mpiexec`` with ``--threads`` each, DDP averaging the gradients
  (each rank reads batch / nproc rows);
- the gradient bytes each rank all-reduces per step and the time of that all-reduce alone;
- the time DDP still waits for communication when backward has finished ("exposed", on the rank
  that finished backward last, so that waiting for a slower rank does not count), and the overlap:
  the share of the all-reduce's time hidden behind backward, ``1 - exposed / allreduce``;
- the step time of the ranks without any all-reduce (``no_sync``), with one blocking all-reduce
  of every gradient after backward (no overlap), and with DDP's buckets started during backward.

The modes run interleaved, step by step (each after a barrier), and each figure is the median over
the steps of the slowest rank's time. The ranks run the workers of this very file
(``--worker``); rank 0 prints one JSON line the launcher reads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_train_step import median_seconds  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="lstm,gpt", help="comma-separated names from benchmarks/models.py")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--nproc", type=int, default=2, help="ranks of the data-parallel run")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per rank (the single process gets nproc x)")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for each run")
    p.add_argument("--worker", choices=["single", "ddp"], help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _limit_threads(n: int) -> None:
    import threadpoolctl

    threadpoolctl.threadpool_limits(limits=n)


def _setup(cfg_name: str, rows: slice, seed: int = 0) -> tuple[Any, Any, Any, Any, Any]:
    import numpy as np
    from models import build, get_config

    import tinygrad_lm as tl
    import tinygrad_lm.nn.functional as F

    cfg = get_config(cfg_name)
    tl.manual_seed(seed)
    model = build(cfg, tl.nn, F)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab, size=(cfg.batch, cfg.seq + 1))  # (B, T+1), the global batch
    idx = tl.tensor(ids[rows, :-1])  # (B/N, T)
    tgt = tl.tensor(ids[rows, 1:])  # (B/N, T)
    return cfg, model, idx, tgt, F


def _loss(model: Any, idx: Any, tgt: Any, F: Any) -> Any:
    logits = model(idx)  # (b, T, V)
    b, t, v = logits.shape
    return F.cross_entropy(logits.reshape(b * t, v), tgt.reshape(b * t))


def worker_single(args: argparse.Namespace) -> dict[str, Any]:
    from tinygrad_lm import optim

    _limit_threads(args.threads)
    cfg, model, idx, tgt, F = _setup(args.config, slice(None))
    opt = optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = _loss(model, idx, tgt, F)
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds = median_seconds(step, args.steps, args.warmup)
    return {"step_s": seconds, "tokens_per_s": cfg.tokens / seconds}


def worker_ddp(args: argparse.Namespace) -> dict[str, Any] | None:
    import numpy as np

    import tinygrad_lm as tl
    import tinygrad_lm.distributed as dist
    from tinygrad_lm import optim
    from tinygrad_lm.nn.parallel import DistributedDataParallel as DDP

    _limit_threads(args.threads)
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg0 = __import__("models").get_config(args.config)
    if cfg0.batch % world:
        raise ValueError(f"the batch of {args.config} ({cfg0.batch}) does not split over {world} ranks")
    share = cfg0.batch // world
    cfg, model, idx, tgt, F = _setup(args.config, slice(rank * share, (rank + 1) * share))
    ddp = DDP(model, bucket_cap_mb=args.bucket_cap_mb)
    opt = optim.SGD(ddp.parameters(), lr=0.01)
    params = list(model.parameters())
    flat = np.zeros(sum(p.numel() for p in params), dtype=params[0].dtype)  # every gradient, for the blocking run

    def step_ddp() -> None:
        loss = _loss(ddp, idx, tgt, F)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def step_local() -> None:
        with ddp.no_sync():
            step_ddp()

    def step_blocking() -> None:  # all-reduce after backward: what DDP does minus the overlap
        with ddp.no_sync():
            loss = _loss(ddp, idx, tgt, F)
            opt.zero_grad()
            loss.backward()
        offset = 0
        for p in params:
            flat[offset:offset + p.numel()] = p.grad.array.reshape(-1)
            offset += p.numel()
        dist.all_reduce(tl.from_numpy(flat), op=dist.ReduceOp.AVG)
        offset = 0
        for p in params:
            p.grad.array[...] = flat[offset:offset + p.numel()].reshape(p.shape)
            offset += p.numel()
        opt.step()

    def allreduce_only() -> None:
        dist.all_reduce(tl.from_numpy(flat), op=dist.ReduceOp.AVG)

    modes = {"local": step_local, "blocking": step_blocking, "ddp": step_ddp, "allreduce": allreduce_only}
    for fn in modes.values():
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in (*modes, "exposed")}
    for _ in range(args.steps):  # interleaved, so that the machine's moods hit every mode alike
        for name, fn in modes.items():
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            if name == "ddp":
                times["exposed"].append(ddp.last_wait_seconds)  # waiting for the all-reduce after backward
    results = {}
    for name, mine in times.items():
        every: list[Any] = [None] * world
        dist.all_gather_object(every, mine)
        # A step ends with its slowest rank. The wait after backward is taken on the rank that finished
        # backward last: the others' waits include the time they waited for it, not only communication.
        pick = min if name == "exposed" else max
        results[name] = statistics.median(pick(step) for step in zip(*every))
    if rank != 0:
        return None
    return {"step_s": results["ddp"], "tokens_per_s": cfg.batch * cfg.seq / results["ddp"],
            "local_step_s": results["local"], "blocking_step_s": results["blocking"],
            "allreduce_s": results["allreduce"], "comm_bytes": ddp.comm_bytes, "buckets": len(ddp._buckets),
            "exposed_s": results["exposed"], "overlap": 1 - results["exposed"] / results["allreduce"]}


def launch(args: argparse.Namespace, cfg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from tinygrad_lm.distributed.launch import mpiexec_command

    common = [sys.executable, str(Path(__file__).resolve()), "--config", cfg, "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--bucket-cap-mb", str(args.bucket_cap_mb)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = {}
    for mode, cmd, threads in (
        ("single", common + ["--worker", "single", "--threads", str(args.threads * args.nproc)],
         args.threads * args.nproc),
        ("ddp", mpiexec_command(args.nproc, common + ["--worker", "ddp", "--threads", str(args.threads)]),
         args.threads),
    ):
        run_env = dict(env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                       OPENBLAS_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=run_env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{mode} run of {cfg} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        runs[mode] = json.loads(lines[-1])
    return runs["single"], runs["ddp"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker == "single":
        print(json.dumps(worker_single(args)), flush=True)
        return
    if args.worker == "ddp":
        out = worker_ddp(args)
        if out is not None:
            print(json.dumps(out), flush=True)
        return
    n, t = args.nproc, args.threads
    print(f"{os.cpu_count()} CPUs; {args.steps} steps after {args.warmup} warm-up, medians; "
          f"1 process x {n * t} threads against {n} processes x {t} thread(s); bucket_cap_mb={args.bucket_cap_mb}")
    header = (f"{'config':8} {'1p tok/s':>10} {f'{n}p tok/s':>10} {'speedup':>8} {'grad MB':>8} {'buckets':>7} "
              f"{'allreduce':>10} {'exposed':>9} {'overlap':>8} {'no comm':>9} {'blocking':>9} {'DDP':>9}")
    print(header)
    for cfg in args.configs.split(","):
        single, ddp = launch(args, cfg)
        print(f"{cfg:8} {single['tokens_per_s']:10,.0f} {ddp['tokens_per_s']:10,.0f} "
              f"{ddp['tokens_per_s'] / single['tokens_per_s']:7.2f}x {ddp['comm_bytes'] / 2**20:8.2f} "
              f"{ddp['buckets']:7d} {ddp['allreduce_s'] * 1e3:8.2f}ms {ddp['exposed_s'] * 1e3:7.2f}ms "
              f"{ddp['overlap']:8.0%} {ddp['local_step_s'] * 1e3:7.1f}ms {ddp['blocking_step_s'] * 1e3:7.1f}ms "
              f"{ddp['step_s'] * 1e3:7.1f}ms", flush=True)


if __name__ == "__main__":
    main()
