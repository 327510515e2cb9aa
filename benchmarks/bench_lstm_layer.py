"""One LSTM layer, forward and backward, against PyTorch's ``nn.LSTM`` on the CPU.

The training-step benchmark times whole models; this script isolates the recurrent
layer, where PyTorch runs oneDNN's fused RNN primitive. Both layers get the same
weights and input (``(T, B, I)``, one layer, with biases), and the gradient of every
output is the same random array. Forward and backward are timed separately, the two
frameworks interleaved, one thread each (BLAS threads limited after MKL is loaded, as in
``bench_train_step.py``); the script prints medians and the ratio torch / tinygrad_lm
(above 1: tinygrad_lm is faster).

    python benchmarks/bench_lstm_layer.py [--seq 64] [--batch 32] [--input 128] [--hidden 256]
                                          [--repeats 21] [--threads 1]

``--seq 128 --batch 64 --input 256 --hidden 512`` is the first layer of the ``lstm2``
configuration.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_step import limit_threads  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=21, help="timed forward+backward runs per framework")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    method = limit_threads(args.threads)

    import numpy as np

    import tinygrad_lm as tl
    from tinygrad_lm import nn
    from tinygrad_lm.fast import compiler

    print(method())
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    shape = (args.seq, args.batch, args.input)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal((args.seq, args.batch, args.hidden)).astype(np.float32)
    tl.manual_seed(0)
    layer = nn.LSTM(args.input, args.hidden)
    runs: dict[str, Any] = {}

    def timed_run(lstm: Any, make_input: Any, grad: Any) -> Any:
        """A function that runs ``lstm`` forward on a fresh input and backward from ``grad``, timing each."""
        def run() -> tuple[float, float]:
            xt = make_input()
            t0 = time.perf_counter()
            y, _ = lstm(xt)
            t1 = time.perf_counter()
            y.backward(grad)
            return t1 - t0, time.perf_counter() - t1

        return run

    runs["tinygrad_lm"] = timed_run(layer, lambda: tl.tensor(x, requires_grad=True), tl.tensor(g))
    if torch is not None:
        torch.set_num_threads(args.threads)
        ref = torch.nn.LSTM(args.input, args.hidden)
        layer.load_state_dict({k: v.detach().numpy().copy() for k, v in ref.state_dict().items()})
        y_ref, _ = ref(torch.from_numpy(x))
        y_tl, _ = layer(tl.tensor(x))
        err = float(np.abs(y_tl.detach().numpy() - y_ref.detach().numpy()).max())
        print(f"same weights, same input: max |output difference| {err:.1e}")
        runs["torch"] = timed_run(ref, lambda: torch.from_numpy(x).requires_grad_(True), torch.from_numpy(g))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    warmup = 3
    for i in range(warmup + args.repeats):
        order = list(runs) if i % 2 else list(runs)[::-1]
        for name in order:
            result = runs[name]()
            if i >= warmup:
                times[name].append(result)
    print(f"LSTM layer T={args.seq} B={args.batch} I={args.input} H={args.hidden}, float32, "
          f"fast path: {'on' if tl.fast.is_enabled() else 'off'}, Numba: "
          f"{'yes' if compiler.numba_available() else 'no'}; median of {args.repeats} interleaved runs after {warmup}")
    med = {name: [1e3 * statistics.median(r[k] for r in ts) for k in (0, 1)] for name, ts in times.items()}
    for name, (fwd, bwd) in med.items():
        print(f"  {name:12s} forward {fwd:8.2f} ms   backward {bwd:8.2f} ms")
    if "torch" in med:
        (f_tl, b_tl), (f_pt, b_pt) = med["tinygrad_lm"], med["torch"]
        print(f"  ratio torch / tinygrad_lm: forward {f_pt / f_tl:.2f}, backward {b_pt / b_tl:.2f}, "
              f"both {(f_pt + b_pt) / (f_tl + b_tl):.2f}")


if __name__ == "__main__":
    main()
