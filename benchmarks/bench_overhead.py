"""Per-op overhead of tinygrad_lm's autograd on small tensors.

Small models spend their time in Python around each op, not in the math. This
script builds the same small graph (a chain of adds, multiplies, tanh and
matmuls on 8x8 tensors) three ways and times forward+backward:

- ``numpy``: the raw array work alone, forward and backward written by hand;
- ``tinygrad_lm``: the same graph recorded and differentiated by the engine;
- ``torch`` (when installed): PyTorch eager on the CPU, same thread count.

It reports microseconds per recorded op (forward and backward together) and the
overhead over NumPy. Medians of repeated runs, interleaved so that machine noise
hits every contender alike.

    python benchmarks/bench_overhead.py [--ops 200] [--repeats 30] [--size 8]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tinygrad_lm as tl


def numpy_chain(a: np.ndarray, w: np.ndarray, n_blocks: int) -> None:
    """Forward and hand-written backward of the chain, raw NumPy: the floor."""
    xs = []
    x = a
    for _ in range(n_blocks):
        y = x @ w
        z = y + x
        t = np.tanh(z)
        xs.append((x, t))
        x = t * 0.5
    g = np.ones_like(x)
    gw = np.zeros_like(w)
    for x, t in reversed(xs):
        g = g * 0.5
        g = g * (1 - t * t)
        gx = g.copy()
        gw += x.T @ g
        gx += g @ w.T
        g = gx
    return None


def tl_chain(a: tl.Tensor, w: tl.Tensor, n_blocks: int) -> None:
    x = a
    for _ in range(n_blocks):
        x = ((x @ w) + x).tanh() * 0.5
    x.sum().backward()


def torch_chain(torch, a, w, n_blocks: int) -> None:  # noqa: ANN001
    x = a
    for _ in range(n_blocks):
        x = ((x @ w) + x).tanh() * 0.5
    x.sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200, help="recorded ops per graph (4 per block)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    n_blocks = max(1, args.ops // 4)
    n_ops = 4 * n_blocks + 1  # matmul, add, tanh, mul per block, plus the final sum

    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((args.size, args.size)).astype(np.float32)
    w_np = (rng.standard_normal((args.size, args.size)) * 0.3).astype(np.float32)
    a = tl.tensor(a_np, requires_grad=True)
    w = tl.tensor(w_np, requires_grad=True)

    contenders = {
        "numpy (floor)": lambda: numpy_chain(a_np, w_np, n_blocks),
        "tinygrad_lm": lambda: tl_chain(a, w, n_blocks),
    }
    try:
        import torch

        torch.set_num_threads(1)
        at = torch.tensor(a_np, requires_grad=True)
        wt = torch.tensor(w_np, requires_grad=True)
        contenders["torch eager"] = lambda: torch_chain(torch, at, wt, n_blocks)
    except ImportError:
        pass

    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():  # warm up
        fn()
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        a.grad = w.grad = None

    floor = statistics.median(times["numpy (floor)"])
    print(f"graph: {n_ops} recorded ops on {args.size}x{args.size} float32, forward+backward, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'contender':<16}{'total ms':>10}{'us/op':>10}{'overhead us/op':>16}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16}{med * 1e3:>10.3f}{med / n_ops * 1e6:>10.2f}{(med - floor) / n_ops * 1e6:>16.2f}")


if __name__ == "__main__":
    main()
