"""How much of a training step goes to matrix products, and whether they run slower inside the step than alone.

For configurations of models.py and the programs of bench_programs.py, every product that
tinygrad_lm's fast ops hand to BLAS during a training step is recorded with its operands and timed
where it runs: ``blas.matmul`` (the Matmul op, Linear's backward, the attention's and the recurrent
layers' products) and ``blas._numpy_gemm_into`` (Linear's forward into its bias rows). The
compiled kernels that run on
OpenBLAS's threads (``workers.run_on_blas_pool``: LayerNorm, GELU, softmax, the LSTM's time loop
with its per-step products) are timed too, outside any product. After each step the same products
are called again back to back on the same arrays (the replay). Where the products take as long in
the step as replayed, the work between them (the kernels, the Python) does not slow them down, and
the step's products run as fast as BLAS runs them alone.

    python benchmarks/bench_step_products.py [--configs gpt,lstm,nanogpt,program:rnn] [--threads 2] [--steps 5]
        [--warmup 3] [--top 8]

The per-shape table lists the products by their time in the step, ``a @ b`` shapes with ``T`` for
an operand stored by columns (a transposed view), and their rate in GFLOP/s replayed.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_programs  # noqa: E402  (the users' programs: build_sides)
import bench_train_step  # noqa: E402  (make_frameworks: the model, weights and batch of the other benchmarks)
import models  # noqa: E402

# The modules that call blas.matmul under a name of their own (``from .blas import matmul``).
_MATMUL_USERS = ("fused_attention", "fused_nn", "fused_recurrent")


class Recorder:
    """Wraps the product and pool entry points; records the outermost calls while ``on``."""

    def __init__(self) -> None:
        from tinygrad_lm.fast import blas, workers

        self.blas, self.workers = blas, workers
        self.matmul, self.gemm_into, self.pool = blas.matmul, blas._numpy_gemm_into, workers.run_on_blas_pool
        self.on, self.depth = False, 0
        self.products: list[tuple[Callable[[], Any], str, int, float]] = []  # (replay, shape, flops, seconds)
        self.pool_seconds = 0.0

    def _timed(self, call: Callable[[], Any], describe: Callable[[], tuple[str, int]] | None) -> Any:
        """``call()``, timed and recorded as a product (``describe``) or as pool work (None), unless it runs inside
        another recorded call or returns None (``_numpy_gemm_into`` declining: its caller then multiplies)."""
        if not self.on or self.depth:
            return call()
        self.depth += 1
        try:
            t0 = time.perf_counter()
            result = call()
            elapsed = time.perf_counter() - t0
        finally:
            self.depth -= 1
        if describe is None:
            self.pool_seconds += elapsed
        elif result is not None:
            self.products.append((call, *describe(), elapsed))
        return result

    def install(self) -> None:
        import importlib

        def matmul(a: Any, b: Any, out: Any = None) -> Any:
            return self._timed(lambda: self.matmul(a, b, out), lambda: describe(a, b))

        def gemm_into(bias: Any, a: Any, b: Any) -> Any:
            return self._timed(lambda: self.gemm_into(bias, a, b), lambda: describe(a, b, "+ bias"))

        def pool(kernel: Any, tasks: Any) -> None:
            return self._timed(lambda: self.pool(kernel, tasks), None)

        self.blas.matmul, self.blas._numpy_gemm_into, self.workers.run_on_blas_pool = matmul, gemm_into, pool
        for name in _MATMUL_USERS:
            module = importlib.import_module(f"tinygrad_lm.fast.{name}")
            if getattr(module, "matmul", None) is self.matmul:
                module.matmul = matmul


def _shape(x: Any) -> str:
    by_columns = x.ndim >= 2 and x.strides[-2] == x.itemsize and x.shape[-2] > 1 and x.shape[-1] > 1
    return f"({', '.join(map(str, x.shape))}){'T' if by_columns else ''}"


def describe(a: Any, b: Any, extra: str = "") -> tuple[str, int]:
    """The product's shapes, as text, and its floating-point operations (2 per multiply-add)."""
    m = a.shape[-2] if a.ndim >= 2 else 1
    n = b.shape[-1] if b.ndim >= 2 else 1
    batch = math.prod(a.shape[:-2]) if a.ndim > 2 else 1
    batch = max(batch, math.prod(b.shape[:-2]) if b.ndim > 2 else 1)
    text = f"{_shape(a)} @ {_shape(b)}" + (f" {extra}" if extra else "")
    return text, 2 * batch * m * a.shape[-1] * n


def tinygrad_side(name: str) -> Any:
    """tinygrad_lm's side of a configuration of models.py, or of a program of bench_programs.py (``program:rnn`` for
    the makemore RNN, whose name is also a configuration's): an object with ``step(record)`` and ``times``."""
    import tinygrad_lm as tl

    if name in models.CONFIGS:
        return bench_train_step.make_frameworks(models.get_config(name), None, lr=0.01)[0]
    name = name.removeprefix("program:")
    names = bench_programs.make_names()
    data = {"names": names, "text": bench_programs.make_text(names) if name == "nanogpt" else None}
    return bench_programs.build_sides(name, tl, None, data)[0]


def measure(name: str, threads: int, steps: int, warmup: int, top: int) -> None:
    import tinygrad_lm as tl

    tl.set_num_threads(threads)
    fw = tinygrad_side(name)
    recorder = Recorder()
    recorder.install()
    for _ in range(warmup):
        fw.step(record=False)
    rows = []
    per_shape: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # calls, s, replay, flops
    for _ in range(steps):
        recorder.products.clear()
        recorder.pool_seconds = 0.0
        recorder.on = True
        try:
            fw.step(record=True)
        finally:
            recorder.on = False
        in_step = sum(p[3] for p in recorder.products)
        replayed = 0.0
        for call, shape, flops, seconds in recorder.products:
            t0 = time.perf_counter()
            call()
            again = time.perf_counter() - t0
            replayed += again
            cell = per_shape[shape]
            cell[0] += 1
            cell[1] += seconds
            cell[2] += again
            cell[3] += flops
        rows.append((fw.times[-1], in_step, recorder.pool_seconds, replayed))
    step, in_step, pool, replayed = (statistics.median(r[i] for r in rows) for i in range(4))
    print(f"\n{name}, {threads} thread(s), median of {steps} steps after {warmup} warm-up:")
    print(f"  step {step * 1e3:.1f} ms: products {in_step * 1e3:.1f} ms ({in_step / step:.0%}), pool kernels "
          f"{pool * 1e3:.1f} ms ({pool / step:.0%}), the rest {(step - in_step - pool) * 1e3:.1f} ms")
    if not per_shape:
        print("  no products recorded")
        return
    print(f"  the same products replayed back to back: {replayed * 1e3:.1f} ms (in the step / replayed: "
          f"{in_step / replayed:.2f}; per step, each: {', '.join(f'{r[1] / r[3]:.2f}' for r in rows)})")
    print(f"  {'product':<44} {'calls':>5} {'ms in step':>10} {'ms replayed':>11} {'GFLOP/s':>8}")
    ordered = sorted(per_shape.items(), key=lambda kv: -kv[1][1])
    for shape, (calls, seconds, again, flops) in ordered[:top]:
        print(f"  {shape:<44} {calls / steps:>5.0f} {seconds / steps * 1e3:>10.2f} {again / steps * 1e3:>11.2f} "
              f"{flops / max(again, 1e-9) / 1e9:>8.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="gpt,lstm",
                   help="comma-separated names from models.CONFIGS or bench_programs.PROGRAMS (program:rnn for "
                        "makemore's RNN)")
    p.add_argument("--threads", type=int, default=2, help="tl.set_num_threads (and OpenBLAS's)")
    p.add_argument("--steps", type=int, default=5, help="recorded steps")
    p.add_argument("--warmup", type=int, default=3, help="steps before them")
    p.add_argument("--top", type=int, default=8, help="products listed per configuration")
    args = p.parse_args(argv)
    names = args.configs.split(",")
    for name in names:  # unknown names fail before any work
        if name not in models.CONFIGS and name.removeprefix("program:") not in bench_programs.PROGRAMS:
            known = ", ".join([*models.CONFIGS, *bench_programs.PROGRAMS])
            p.error(f"--configs: unknown name {name!r}; known: {known}")
    for name in names:
        measure(name, args.threads, args.steps, args.warmup, args.top)


if __name__ == "__main__":
    main()
