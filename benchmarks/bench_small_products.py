"""The small matrix products that decide the multi-thread gaps, alone, against the machine's GEMM limit.

The training-step benchmark finds tinygrad_lm behind PyTorch at all cores on ``lstm`` and near
even on ``gpt`` (see benchmarks/README.md), and a profile puts the time in two kinds of small
products, which this script times on their own:

- an LSTM's recurrent products, T steps of ``(B, H) @ (H, 4H)`` forward and ``(B, 4H) @ (4H, H)``
  backward, each step's compiled step kernel included (the product's output is the kernel's input,
  so this is how they meet in a layer). Two layouts: rows, as the layer runs them (``h @ W_hh^T``
  into a (B, 4H) block), and columns (``W_hh @ h^T`` into a (4H, B) block, the kernel run on that
  block as one long row), which OpenBLAS multiplies faster on two threads but which the layer
  does not use: over a whole layer the transposes it needs took back the gain (README, "third
  session");
- the attention's batched products, ``q @ k^T`` and ``p @ v`` over (B, heads) pairs, with q, k and
  v the views a model gets from splitting one ``(B, T, 3C)`` projection, as models write it.

Each is timed at every thread count of ``--threads`` (through ``tl.set_num_threads``), median of
``--repeats``, with the GEMM limit (a 512x512 float32 product) measured at the same thread count.
Where PyTorch is installed, the same products run in a fresh process per thread count
(``torch.mm`` per step, ``torch.matmul`` on the same views), so the two runtimes' threads never
meet; the ratio is PyTorch's time over ours (above 1: tinygrad_lm is faster).

    python benchmarks/bench_small_products.py [--threads 1,2] [--batch 32] [--hidden 256] [--steps 64]
                                              [--heads 4] [--seq 64] [--head-size 32] [--repeats 15] [--no-torch]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_train_step import fmt_row, gemm_gflops, median_seconds  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts, or 'all'")
    p.add_argument("--batch", type=int, default=32, help="B, for both the LSTM and the attention")
    p.add_argument("--hidden", type=int, default=256, help="the LSTM's H")
    p.add_argument("--steps", type=int, default=64, help="the LSTM's time steps")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=64, help="the attention's T")
    p.add_argument("--head-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=15, help="timed runs of each product set (median)")
    p.add_argument("--no-torch", action="store_true", help="tinygrad_lm alone even if PyTorch is installed")
    p.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)  # one PyTorch run, JSON on stdout
    p.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def thread_counts(spec: str) -> list[int]:
    """'1,2' -> [1, 2]; 'all' -> [1, the cores this process may use] (one entry when that is one)."""
    if spec == "all":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return sorted({1, cores})
    try:
        counts = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"--threads: expected positive integers or 'all', got {spec!r}")
    return counts


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` in ms, after two untimed calls."""
    return 1e3 * median_seconds(fn, repeats, warmup=2)


def shapes(args: argparse.Namespace) -> dict[str, Any]:
    B, H, T = args.batch, args.hidden, args.steps
    nh, L, d = args.heads, args.seq, args.head_size
    return {
        # name: (FLOPs of the set, what it is)
        "lstm forward, rows": (T * 2 * B * H * 4 * H, f"{T} x ({B},{H})@({H},{4 * H}) + step kernel"),
        "lstm forward, columns": (T * 2 * B * H * 4 * H, f"{T} x ({4 * H},{H})@({H},{B}) + step kernel"),
        "lstm backward, rows": (T * 2 * B * H * 4 * H, f"{T} x ({B},{4 * H})@({4 * H},{H}) + step kernel"),
        "lstm backward, columns": (T * 2 * B * H * 4 * H, f"{T} x ({H},{4 * H})@({4 * H},{B}) + step kernel"),
        "attention q @ k^T": (2 * B * nh * L * L * d, f"({B},{nh},{L},{d})@({B},{nh},{d},{L})"),
        "attention p @ v": (2 * B * nh * L * L * d, f"({B},{nh},{L},{L})@({B},{nh},{L},{d})"),
    }


def ours(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Milliseconds of each product set on tinygrad_lm's path (NumPy's BLAS and the compiled step kernels),
    and how far the column layout's results are from the row layout's (the same inputs, transposed)."""
    import numpy as np

    from tinygrad_lm.fast import compiler, fused_recurrent
    from tinygrad_lm.fast.blas import matmul

    B, H, T = args.batch, args.hidden, args.steps
    nh, L, d = args.heads, args.seq, args.head_size
    G, HB = 4 * H, H * B
    rng = np.random.default_rng(0)
    f32: Callable[..., Any] = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    w_hh = f32(G, H) / np.float32(4 * np.sqrt(H))
    w_hh_t = np.ascontiguousarray(w_hh.T)  # (H, 4H), as RightFactor keeps it
    bias = f32(G)
    row = {"a": f32(T, B, G), "h": f32(T + 1, B, H), "c": f32(T + 1, B, H), "tc": np.tanh(f32(T, B, H)),
           "g": f32(T, B, H), "dh0": f32(B, H), "dc0": f32(B, H)}
    row["a"] = 1 / (1 + np.exp(-row["a"]))  # gates in (0, 1), as the backward reads them
    col = {k: np.ascontiguousarray(v.swapaxes(-1, -2)) for k, v in row.items()}  # the same arrays, transposed
    col["bias"] = np.repeat(bias, B)  # each gate unit's bias for its B sequences
    step = compiler.compiled(fused_recurrent._lstm_step_kernel, row["a"])
    back = compiler.compiled(fused_recurrent._lstm_step_back_kernel, row["a"], row["dh0"], row["dc0"])
    if step is None or back is None:
        raise SystemExit("the LSTM step kernels need Numba (pip install numba)")
    rec_row, rec_col = np.empty((B, G), np.float32), np.empty((G, B), np.float32)

    def forward_rows() -> None:
        for t in range(T):
            matmul(row["h"][t], w_hh_t, out=rec_row)
            step(rec_row, bias, row["c"][t], row["c"][t + 1], row["tc"][t], row["h"][t + 1])

    def forward_columns() -> None:
        for t in range(T):
            matmul(w_hh, col["h"][t], out=rec_col)
            step(rec_col.reshape(1, G * B), col["bias"], col["c"][t].reshape(1, HB), col["c"][t + 1].reshape(1, HB),
                 col["tc"][t].reshape(1, HB), col["h"][t + 1].reshape(1, HB))

    def backward_rows() -> None:
        dh, dc = row["dh"], row["dc"] = row["dh0"].copy(), row["dc0"].copy()
        for t in range(T - 1, -1, -1):
            back(row["a"][t], row["c"][t], row["tc"][t], row["g"][t], dh, dc, rec_row)
            matmul(rec_row, w_hh, out=dh)

    def backward_columns() -> None:
        dh, dc = col["dh"], col["dc"] = col["dh0"].copy(), col["dc0"].copy()
        for t in range(T - 1, -1, -1):
            back(col["a"][t].reshape(1, G * B), col["c"][t].reshape(1, HB), col["tc"][t].reshape(1, HB),
                 col["g"][t].reshape(1, HB), dh.reshape(1, HB), dc.reshape(1, HB), rec_col.reshape(1, G * B))
            matmul(w_hh_t, rec_col, out=dh)

    qkv = f32(B, L, 3 * nh * d)
    q, k, v = (qkv[..., i * nh * d:(i + 1) * nh * d].reshape(B, L, nh, d).transpose(0, 2, 1, 3) for i in range(3))
    p = f32(B, nh, L, L)
    runs = {
        "lstm forward, rows": forward_rows,
        "lstm forward, columns": forward_columns,
        "lstm backward, rows": backward_rows,
        "lstm backward, columns": backward_columns,
        "attention q @ k^T": lambda: matmul(q, k.swapaxes(-1, -2)),
        "attention p @ v": lambda: matmul(p, v),
    }
    times = {name: median_ms(fn, args.repeats) for name, fn in runs.items()}

    def gap(name: str) -> float:  # largest |rows - columns|, relative to the largest |rows|
        want, got = row[name], col[name].swapaxes(-1, -2)
        return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))

    return times, {"h_T": gap("h"), "C_T": gap("c"), "dh_0": gap("dh"), "dC_0": gap("dc")}


def torch_worker(args: argparse.Namespace) -> dict[str, float]:
    """The same products in PyTorch (its threads set to ``--worker-threads``): ``torch.mm`` per step, the views."""
    import torch

    torch.set_num_threads(args.worker_threads)
    B, H, T = args.batch, args.hidden, args.steps
    nh, L, d = args.heads, args.seq, args.head_size
    G = 4 * H
    torch.manual_seed(0)
    w_hh = torch.randn(G, H) * 0.1
    h, out_f = torch.randn(T + 1, B, H), torch.empty(B, G)
    da, out_b = torch.randn(T, B, G), torch.empty(B, H)

    def forward() -> None:
        for t in range(T):
            torch.mm(h[t], w_hh.t(), out=out_f)

    def backward() -> None:
        for t in range(T - 1, -1, -1):
            torch.mm(da[t], w_hh, out=out_b)

    qkv = torch.randn(B, L, 3 * nh * d)
    q, k, v = (qkv[..., i * nh * d:(i + 1) * nh * d].reshape(B, L, nh, d).transpose(1, 2) for i in range(3))
    p = torch.randn(B, nh, L, L)
    with torch.no_grad():
        return {
            "lstm forward": median_ms(forward, args.repeats),
            "lstm backward": median_ms(backward, args.repeats),
            "attention q @ k^T": median_ms(lambda: torch.matmul(q, k.transpose(-1, -2)), args.repeats),
            "attention p @ v": median_ms(lambda: torch.matmul(p, v), args.repeats),
        }


def run_torch(args: argparse.Namespace, threads: int, argv: list[str]) -> dict[str, float] | None:
    """PyTorch's figures from a fresh process at ``threads`` threads, or None without PyTorch."""
    import importlib.util

    if args.no_torch or importlib.util.find_spec("torch") is None:
        return None
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", "torch", "--worker-threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker == "torch":
        print(json.dumps(torch_worker(args)))
        return
    import tinygrad_lm as tl

    table = shapes(args)
    widths = [9, 24, 48, 10, 9, 7, 10, 7]
    print(fmt_row(["threads", "products", "shapes", "ours ms", "GFLOP/s", "%gemm", "torch ms", "ratio"], widths))
    for threads in thread_counts(args.threads):
        tl.set_num_threads(threads)
        limit = gemm_gflops(512)
        mine, gaps = ours(args)
        theirs = run_torch(args, threads, [a for a in argv if a != "--no-torch"])
        for name, (flops, what) in table.items():
            ms = mine[name]
            gflops = flops / ms / 1e6
            peer = None if theirs is None else theirs.get(name.split(",")[0])
            cells = [threads, name, what, f"{ms:.2f}", f"{gflops:.1f}", f"{100 * gflops / limit:.0f}%",
                     "-" if peer is None else f"{peer:.2f}", "-" if peer is None else f"{peer / ms:.2f}"]
            print(fmt_row(cells, widths))
        print(f"{'':9}GEMM limit at {threads} thread(s): {limit:.1f} GFLOP/s (512x512 float32); columns against "
              f"rows, largest relative difference: " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items()))
        worst = max(gaps.values())
        if not worst < 1e-4:
            raise SystemExit(f"the column layout's LSTM steps disagree with the row layout's ({worst:.1e})")
    print("ratio = torch ms / ours (> 1: tinygrad_lm is faster); PyTorch's LSTM rows are its products alone "
          "(its LSTM runs oneDNN's fused layer), ours include the step kernels")


if __name__ == "__main__":
    main()
