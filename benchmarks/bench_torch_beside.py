"""tinygrad_lm's training step in a process that also imports PyTorch: is it slowed?

A program may import PyTorch beside tinygrad_lm (for its data tools, say). Two thread pools in one
process can slow each other: PyTorch's OpenMP threads spin for a while after each of its parallel
ops, on the cores that OpenBLAS's workers (which run tinygrad_lm's products and split kernels)
need. This script times tinygrad_lm's steps of a ``bench_train_step.py`` configuration in fresh
processes of three kinds, alternating, for ``--rounds`` rounds:

- ``plain``: PyTorch not imported;
- ``imported``: ``import torch`` first;
- ``used``: ``import torch``, then a 512x512 product on PyTorch's threads (its OpenMP pool started),
  right before tinygrad_lm's steps.

It prints each kind's median step time over the rounds (each round a median of ``--steps`` steps
after 3 warm-up steps) and the ratio to ``plain`` (above 1: slower beside PyTorch).

    python benchmarks/bench_torch_beside.py [--configs lstm,gpt] [--threads 2] [--steps 12] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("plain", "imported", "used")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="lstm,gpt", help="comma-separated names from models.CONFIGS")
    p.add_argument("--threads", type=int, default=2, help="tl.set_num_threads (and torch.set_num_threads for 'used')")
    p.add_argument("--steps", type=int, default=12, help="timed steps per process")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per kind and config")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(kind: str, config: str, threads: int, steps: int) -> float:
    """The median step time (ms) of ``config`` in this process, set up as ``kind`` says."""
    if kind != "plain":
        import torch

        if kind == "used":
            torch.set_num_threads(threads)
            a = torch.randn(512, 512)
            float((a @ a).sum())
    import numpy as np

    sys.path.insert(0, HERE)
    import models

    import tinygrad_lm as tl
    import tinygrad_lm.nn.functional as F
    from tinygrad_lm import nn, optim

    tl.set_num_threads(threads)
    cfg = models.get_config(config)
    tl.manual_seed(0)
    model = models.build(cfg, nn, F)
    opt = optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    idx, targets = (tl.tensor(rng.integers(0, cfg.vocab, (cfg.batch, cfg.seq))) for _ in range(2))
    for _ in range(3):
        models.train_step(model, opt, idx, targets, F)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        models.train_step(model, opt, idx, targets, F)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(worker(args.worker[0], args.worker[1], args.threads, args.steps))
        return
    print(f"tinygrad_lm steps in fresh processes, {args.threads} threads, median of {args.steps} steps per process, "
          f"{args.rounds} rounds; ratio = kind / plain (above 1: slower beside PyTorch)\n")
    print(f"{'config':10s}" + "".join(f"{k + ' ms':>14s}" for k in KINDS) + f"{'imported':>10s}{'used':>8s}")
    for config in args.configs.split(","):
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        for r in range(args.rounds):
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                argv = [sys.executable, __file__, "--worker", kind, config, "--threads", str(args.threads),
                        "--steps", str(args.steps)]
                out = subprocess.run(argv, capture_output=True, text=True, check=True)
                times[kind].append(float(out.stdout.split()[-1]))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{config:10s}" + "".join(f"{med[k]:14.2f}" for k in KINDS)
              + f"{med['imported'] / med['plain']:10.2f}{med['used'] / med['plain']:8.2f}")


if __name__ == "__main__":
    main()
