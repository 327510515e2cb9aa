"""The work that tinygrad_lm shares out between OpenBLAS's threads, timed on the pool and in one piece.

``tinygrad_lm/fast/workers.py`` runs some of the library's own work on OpenBLAS's worker threads
(``gotoblas_pthread``): batches of small products (attention's ``q @ k^T`` and ``p @ v``, one
``cblas_?gemm`` per matrix) and the compiled GELU, LayerNorm, softmax, attention-softmax and
cross-entropy kernels, cut in pieces. This script times each such op at the sizes of the ``gpt`` configuration of
``bench_train_step.py`` twice, alternating: with the pool (the library's thresholds) and in one
piece (thresholds out of reach). Each call follows a (2048, 128) @ (128, 512) product, a Linear of
that model, so that OpenBLAS's workers are in the state a training step leaves them (still
spinning from the last product). Medians of ``--repeats`` and their ratio (one piece / pool:
above 1, the pool is faster).

    python benchmarks/bench_pool.py [--threads 2] [--repeats 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tinygrad_lm as tl  # noqa: E402
import tinygrad_lm.nn.functional as F  # noqa: E402
from tinygrad_lm.fast import blas, workers  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p.add_argument("--threads", type=int, default=cores, help="tl.set_num_threads (default: every core)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls of each op and setting")
    return p.parse_args(argv)


def pool(on: bool) -> None:
    """The library's thresholds (on), or thresholds no work reaches (off: every op in one piece)."""
    blas.MIN_BATCHED_WORK = DEFAULTS[0] if on else 1 << 62
    workers.MIN_ELEMENTS_PER_PART = DEFAULTS[1] if on else 1 << 62


DEFAULTS = (blas.MIN_BATCHED_WORK, workers.MIN_ELEMENTS_PER_PART)


def ops(rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """The ops, at gpt's sizes (batch 32, 64 tokens, 4 heads of 32, width 128, MLP 512), and LayerNorm at a batch
    four times larger too (at gpt's, it takes one piece: see LAYER_NORM_SPLIT_COST in fast/fused_nn.py)."""
    f32 = np.float32
    qkv = rng.standard_normal((32, 64, 3, 4, 32)).astype(f32)  # one projection, split as models split it
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, heads, T, 32) views
    p = rng.standard_normal((32, 4, 64, 64)).astype(f32)
    hidden = tl.tensor(rng.standard_normal((32, 64, 512)).astype(f32), requires_grad=True)
    dhidden = tl.tensor(rng.standard_normal((32, 64, 512)).astype(f32))
    w, b = (tl.tensor(rng.standard_normal(128).astype(f32), requires_grad=True) for _ in range(2))
    tq, tk, tv = (tl.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (q, k, v))
    tg = tl.tensor(rng.standard_normal((32, 4, 64, 32)).astype(f32))

    def layer_norm(rows: int) -> Callable[[], None]:
        x = tl.tensor(rng.standard_normal((rows, 128)).astype(f32), requires_grad=True)
        g = tl.tensor(rng.standard_normal((rows, 128)).astype(f32))
        return lambda: (F.layer_norm(x, (128,), w, b) * g).sum().backward()

    scores = tl.tensor(rng.standard_normal((32, 4, 64, 64)).astype(f32), requires_grad=True)
    dscores = tl.tensor(rng.standard_normal((32, 4, 64, 64)).astype(f32))

    def softmax() -> None:
        (F.softmax(scores, dim=-1) * dscores).sum().backward()

    def attention() -> None:
        (F.scaled_dot_product_attention(tq, tk, tv, is_causal=True) * tg).sum().backward()

    logits = tl.tensor(rng.standard_normal((2048, 96)).astype(f32), requires_grad=True)
    targets = tl.tensor(rng.integers(0, 96, 2048))

    def cross_entropy() -> None:
        F.cross_entropy(logits, targets).backward()

    return {
        "q @ k^T (32x4 of 64x32 @ 32x64)": lambda: blas.matmul(q, k.swapaxes(-1, -2)),
        "p @ v (32x4 of 64x64 @ 64x32)": lambda: blas.matmul(p, v),
        "GELU forward (2048 x 512)": lambda: F.gelu(hidden.detach()),
        "GELU forward + backward (2048 x 512)": lambda: (F.gelu(hidden) * dhidden).sum().backward(),
        "LayerNorm forward + backward (2048 x 128)": layer_norm(2048),
        "LayerNorm forward + backward (8192 x 128)": layer_norm(8192),
        "causal attention forward + backward": attention,
        "softmax forward + backward (32x4 of 64x64)": softmax,
        "cross-entropy forward + backward (2048 x 96)": cross_entropy,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    a, wt = rng.standard_normal((2048, 128)).astype(np.float32), rng.standard_normal((128, 512)).astype(np.float32)
    pool_size = workers.blas_pool_parts(1 << 30)
    print(f"tinygrad_lm {tl.__version__}, NumPy {np.__version__}, {args.threads} threads; "
          f"OpenBLAS's pool gives {pool_size} part(s) a split")
    print(f"each call after a (2048, 128) @ (128, 512) product; medians of {args.repeats}, settings alternating\n")
    print(f"{'op':44s} {'pool ms':>9s} {'one piece ms':>13s} {'ratio':>7s}")
    for name, op in ops(rng).items():
        times: dict[bool, list[float]] = {True: [], False: []}
        for on in (True, False):  # warm-up: compiles
            pool(on)
            op()
        for i in range(args.repeats):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                pool(on)
                a @ wt
                t0 = time.perf_counter()
                op()
                times[on].append(time.perf_counter() - t0)
        on_ms, off_ms = (statistics.median(times[s]) * 1e3 for s in (True, False))
        print(f"{name:44s} {on_ms:9.3f} {off_ms:13.3f} {off_ms / on_ms:7.2f}")
    pool(True)


if __name__ == "__main__":
    main()
