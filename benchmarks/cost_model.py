"""Where a training step's time goes: time per token against batch, width, sequence length and threads.

For the ``lstm`` and ``gpt`` models of benchmarks/models.py, one training step (forward, backward,
SGD, as benchmarks/bench_train_step.py times it: both frameworks in one process, alternating step by
step, PyTorch's initial weights copied into tinygrad_lm's) is timed while one parameter at a time
moves around the configuration's value:

- batch: the batch size
- width: the hidden size (``lstm``: the LSTM's hidden size; ``gpt``: n_embd, with an MLP 4 x as wide)
- seq: the sequence length
- threads: 1, 2, 4, ... up to every core this process may use (both frameworks alike); with
  ``--isolated ROUNDS``, each framework alone in fresh processes (bench_train_step.py's worker),
  the median of ROUNDS rounds. Interleaved in one process, each framework's threads, left spinning
  after its step, take a core from the other's next step: PyTorch's 2-thread ``lstm`` step took
  130 ms interleaved against 68 ms alone on the project's 2-core machine.

The medians go to a JSON file and a 4-panel plot (``--out``, a PNG; the JSON is written next to it).
Then a linear cost model is fitted per framework, to the points at ``--base-threads`` threads::

    time/step = a + b * (GEMM FLOPs of the step) + c * (elementwise elements of the step)

by least squares on the relative error (``numpy.linalg.lstsq`` on rows divided by the measured
time). ``a`` is a per-step overhead (Python, dispatch, allocation), ``1/b`` the matrix-multiply
throughput and ``1/c`` the elementwise throughput. GEMM FLOPs are ``models.matmul_flops``; the
elementwise elements are a rough count (:func:`elementwise_elements`): the elements written by the
forward pass outside the matrix products, plus the parameters (the optimizer's update). The
residuals are printed too: where they are large, the three terms do not explain that framework's time
(for instance, an LSTM's per-time-step Python overhead grows with seq, a term this model does not have).

    python benchmarks/cost_model.py --out benchmarks/cost_model.png [--steps 7] [--warmup 2] [--isolated 3] [--no-torch]
    python benchmarks/cost_model.py --quick --out /tmp/cost_model.png    # a tiny smoke grid, seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_programs  # noqa: E402  (thread handling: set_threads, threads_in_effect)
import bench_train_step  # noqa: E402  (make_frameworks, run_interleaved: the same step and method)
import models  # noqa: E402

SWEEPS = ("batch", "width", "seq", "threads")
FULL_GRID = {"batch": [8, 16, 32, 64], "width": {"lstm": [64, 128, 256, 512], "gpt": [32, 64, 128, 256]},
             "seq": [16, 32, 64, 128]}
QUICK_GRID = {"batch": [2, 4], "width": {"lstm": [8, 16], "gpt": [8, 16]}, "seq": [4, 8]}
QUICK_BASE = {"lstm": dict(vocab=16, embed=8, hidden=16, batch=4, seq=8),
              "gpt": dict(vocab=16, embed=16, hidden=64, layers=2, batch=4, seq=8)}


def with_width(cfg: models.Config, width: int) -> models.Config:
    """``cfg`` at another hidden size: the LSTM's hidden size, or GPT's n_embd (MLP 4 x n_embd)."""
    if cfg.kind == "gpt":
        return models.get_config(cfg, embed=width, hidden=4 * width)
    return models.get_config(cfg, hidden=width)


def width_of(cfg: models.Config) -> int:
    return cfg.embed if cfg.kind == "gpt" else cfg.hidden


def elementwise_elements(cfg: models.Config) -> int:
    """Elements written outside the matrix products in one step: the forward pass's, plus the parameters.

    A rough, documented count (backward writes about as many again: a constant factor that the fit's
    coefficient absorbs). Per token, ``lstm``: the embedding row E; per layer the gate pre-activations'
    bias 4H, the gate nonlinearities 4H, the cell update (f*c, i*g, their sum) 3H, tanh(c) and
    o*tanh(c) 2H; the head's bias V and the softmax and loss 2V. ``gpt`` (C = n_embd, H = MLP width):
    the token and position embeddings 2C; per layer two LayerNorms (5C each: mean, centre, variance,
    normalise, affine), the qkv bias 3C, the attention scores' scale, mask, exp and normalisation
    4 * heads * T (all T columns: dense kernels compute the masked half too), the projection's bias
    and the residual 2C, the MLP's bias and GELU 2H, its projection's bias and the residual 2C; the
    final LayerNorm 5C, the head's bias V and the softmax and loss 2V. Plus every parameter once
    (SGD's update).
    """
    N, E, H, V, L, T = cfg.tokens, cfg.embed, cfg.hidden, cfg.vocab, cfg.layers, cfg.seq
    if cfg.kind in ("rnn", "lstm"):
        gates = 4 if cfg.kind == "lstm" else 1
        per_layer = 2 * gates * H + (5 * H if cfg.kind == "lstm" else 0)
        per_token = E + L * per_layer + 3 * V
        inputs = [E] + [H] * (L - 1)
        params = V * E + sum(gates * H * (i + H + 2) for i in inputs) + H * V + V
    elif cfg.kind == "gpt":
        C = E
        per_layer = 10 * C + 3 * C + 4 * cfg.heads * T + 2 * C + 2 * H + 2 * C
        per_token = 2 * C + L * per_layer + 5 * C + 3 * V
        params = V * C + T * C + L * (4 * C + 3 * C * C + 3 * C + C * C + C + C * H + H + H * C + C) + 2 * C + C * V + V
    else:
        raise ValueError(f"no elementwise count for model kind {cfg.kind!r}")
    return N * per_token + params


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... below ``cores``, and ``cores``."""
    out, n = [], 1
    while n < cores:
        out.append(n)
        n *= 2
    return out + [cores]


def grid(model: str, quick: bool, cores: int, base_threads: int) -> list[tuple[str, int, models.Config, int]]:
    """(sweep, value, config, threads) for every point of ``model``'s one-at-a-time sweeps."""
    base = models.get_config(model, **QUICK_BASE[model]) if quick else models.get_config(model)
    table = QUICK_GRID if quick else FULL_GRID
    points = [("batch", b, models.get_config(base, batch=b), base_threads) for b in table["batch"]]
    points += [("width", w, with_width(base, w), base_threads) for w in table["width"][model]]
    points += [("seq", s, models.get_config(base, seq=s), base_threads) for s in table["seq"]]
    threads = [1] if quick else thread_counts(cores)
    points += [("threads", n, base, n) for n in threads]
    return points


def warm_up(model_names: list[str], pt: Any, lr: float) -> None:
    """One step of every model on a 2 x 3 batch, untimed: what each library sets up on first use (tinygrad_lm's
    Numba kernels compile, PyTorch initialises its kernels) happens here, not in the first point's steps."""
    for model in model_names:
        cfg = models.get_config(model, batch=2, seq=3, **({"heads": 2, "embed": 8, "hidden": 16} if model == "gpt"
                                                          else {"embed": 8, "hidden": 16}))
        bench_train_step.run_interleaved(bench_train_step.make_frameworks(cfg, pt, lr), 1, 1)


def measure(args: argparse.Namespace, pt: Any) -> list[dict[str, Any]]:
    cores = bench_programs.cores()
    head = ["model", "sweep", "value", "batch", "seq", "width", "threads", "GFLOP/step", "Melem/step",
            "tl us/token"]
    widths = [7, 9, 7, 7, 6, 7, 9, 12, 12, 13]
    if pt is not None:
        head += ["torch us/token", "ratio"]
        widths += [16, 8]
    print(bench_train_step.fmt_row(head, widths), flush=True)
    results: list[dict[str, Any]] = []
    done: dict[tuple[models.Config, int], dict[str, float]] = {}  # the base point recurs in every sweep
    current_threads = None
    for model in args.models:
        for sweep, value, cfg, threads in grid(model, args.quick, cores, args.base_threads):
            isolated = sweep == "threads" and args.isolated > 0
            key = (cfg, threads, isolated)
            if key not in done and isolated:
                done[key] = isolated_seconds(model, threads, args, pt is not None)
            if key not in done:
                if threads != current_threads:
                    bench_programs.set_threads(threads, pt)
                    current_threads = threads
                fws = bench_train_step.make_frameworks(cfg, pt, args.lr)
                bench_train_step.run_interleaved(fws, args.steps, args.warmup)
                done[key] = {fw.name: statistics.median(fw.times) for fw in fws}
                if pt is not None and abs(fws[0].losses[0] - fws[1].losses[0]) > 1e-4 * max(1.0, fws[1].losses[0]):
                    raise SystemExit(f"{model} {sweep}={value}: first losses differ: {fws[0].losses[0]} (tinygrad_lm) "
                                     f"vs {fws[1].losses[0]} (torch)")
                del fws
            secs = done[key]
            flops, elems = models.matmul_flops(cfg), elementwise_elements(cfg)
            row: list[Any] = [model, sweep, value, cfg.batch, cfg.seq, width_of(cfg), threads, f"{flops / 1e9:.3f}",
                              f"{elems / 1e6:.2f}", f"{secs['tinygrad_lm'] / cfg.tokens * 1e6:.2f}"]
            if pt is not None:
                row += [f"{secs['torch'] / cfg.tokens * 1e6:.2f}", f"{secs['torch'] / secs['tinygrad_lm']:.2f}"]
            print(bench_train_step.fmt_row(row, widths), flush=True)
            for name, s in secs.items():
                results.append({"model": model, "sweep": sweep, "value": value, "framework": name,
                                "method": "isolated" if isolated else "interleaved",
                                "batch": cfg.batch, "seq": cfg.seq, "embed": cfg.embed, "hidden": cfg.hidden,
                                "width": width_of(cfg), "layers": cfg.layers, "threads": threads,
                                "tokens": cfg.tokens, "gemm_flops": flops, "elementwise": elems,
                                "s_per_step": s, "us_per_token": s / cfg.tokens * 1e6})
    return results


def isolated_seconds(model: str, threads: int, args: argparse.Namespace, with_torch: bool) -> dict[str, float]:
    """Seconds per step of ``model``'s configuration at ``threads`` threads, each framework alone in a fresh process
    (bench_train_step.py's worker), ``args.isolated`` rounds with the order swapped every round: the median."""
    frameworks = ["tinygrad_lm", "torch"] if with_torch else ["tinygrad_lm"]
    worker_args = argparse.Namespace(threads=threads, lr=args.lr, memory_warmup="full")
    ms = bench_train_step.isolated_ms(frameworks, args.isolated, lambda fw: bench_train_step.run_worker(
        fw, model, worker_args, args.warmup + args.steps)["ms_per_step"])
    return {fw: statistics.median(v) / 1e3 for fw, v in ms.items()}


def fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Least squares of t = a + b F + c E on the relative error; the coefficients and the residuals."""
    import numpy as np

    t = np.array([p["s_per_step"] for p in points])
    X = np.array([[1.0, p["gemm_flops"], p["elementwise"]] for p in points])
    scale = np.abs(X).max(axis=0)  # columns of comparable size for lstsq's conditioning
    A = X / scale / t[:, None]  # each row divided by its time: relative residuals
    coef, *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    coef = coef / scale
    rel = X @ coef / t - 1.0
    a, b, c = (float(v) for v in coef)
    return {"a_s": a, "b_s_per_flop": b, "c_s_per_element": c, "points": len(points),
            "gflops": 1e-9 / b if b > 0 else None, "melems_per_s": 1e-6 / c if c > 0 else None,
            "rms_rel_residual": float(np.sqrt(np.mean(rel**2))), "max_rel_residual": float(np.abs(rel).max()),
            "residuals": [{"model": p["model"], "sweep": p["sweep"], "value": p["value"], "rel": float(r)}
                          for p, r in zip(points, rel)]}


def fit_table(results: list[dict[str, Any]], base_threads: int, models_run: list[str]) -> list[dict[str, Any]]:
    print(f"\nlinear cost model, fitted to the points at {base_threads} thread(s) (threads sweep left out): "
          "time/step = a + b * GEMM FLOPs + c * elementwise elements, least squares on the relative error")
    head = ["framework", "points of", "n", "a (ms/step)", "1/b (GFLOP/s)", "1/c (Melem/s)", "rms resid", "max resid"]
    widths = [13, 11, 4, 13, 15, 15, 11, 11]
    print(bench_train_step.fmt_row(head, widths))
    fits = []
    for fw in sorted({r["framework"] for r in results}, key=lambda n: n != "tinygrad_lm"):
        for subset in [*models_run, "+".join(models_run)] if len(models_run) > 1 else models_run:
            pts = [r for r in results if r["framework"] == fw and r["threads"] == base_threads
                   and r["model"] in subset.split("+")]
            unique: dict[tuple[Any, ...], dict[str, Any]] = {}
            for p in pts:  # the base point recurs in every sweep: keep its first
                unique.setdefault((p["model"], p["batch"], p["seq"], p["width"]), p)
            pts = list(unique.values())
            if len(pts) < 3:
                continue
            f = fit(pts)
            f.update(framework=fw, models=subset, threads=base_threads)
            fits.append(f)

            def show(v: float | None, fmt: str) -> str:
                return "n/a (<= 0)" if v is None else format(v, fmt)

            print(bench_train_step.fmt_row([fw, subset, f["points"], f"{f['a_s'] * 1e3:.3f}",
                                            show(f["gflops"], ".3g"), show(f["melems_per_s"], ".3g"),
                                            f"{100 * f['rms_rel_residual']:.1f}%",
                                            f"{100 * f['max_rel_residual']:.1f}%"], widths))
    print("a: per-step overhead; 1/b: GEMM throughput; 1/c: elementwise throughput; resid: (model - measured) / "
          "measured over the fitted points. n/a: the fit made that coefficient <= 0, i.e. that term explains nothing "
          "the others do not (or the model does not fit; see the residuals).")
    worst = [(f, r) for f in fits for r in f["residuals"] if abs(r["rel"]) > 0.25]
    for f, r in sorted(worst, key=lambda fr: -abs(fr[1]["rel"]))[:8]:
        print(f"  poorly fitted: {f['framework']} ({f['models']} fit) {r['model']} {r['sweep']}={r['value']}: "
              f"{100 * r['rel']:+.0f}%")
    return fits


def plot(results: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    labels = {"batch": "batch size", "width": "width (lstm: hidden, gpt: n_embd)", "seq": "sequence length",
              "threads": "threads"}
    colors = {"lstm": "tab:blue", "gpt": "tab:orange"}
    for ax, sweep in zip(axes.flat, SWEEPS):
        for model in sorted({r["model"] for r in results}):
            for fw, style in (("tinygrad_lm", "o-"), ("torch", "s--")):
                pts = sorted((r["value"], r["us_per_token"]) for r in results
                             if r["sweep"] == sweep and r["model"] == model and r["framework"] == fw)
                if pts:
                    ax.plot(*zip(*pts), style, color=colors.get(model), label=f"{model} {fw}",
                            mfc="none" if fw == "torch" else None)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        values = sorted({r["value"] for r in results if r["sweep"] == sweep})
        ax.set_xticks(values, [str(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
        isolated = any(r.get("method") == "isolated" for r in results if r["sweep"] == sweep)
        ax.set_xlabel(labels[sweep] + (" (each framework alone in its process)" if isolated else ""))
        ax.set_ylabel("us per token (one training step)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "cost_model.png"),
                   help="the plot (PNG); the JSON goes beside it")
    p.add_argument("--json", default=None, help="the JSON file (default: --out with .json)")
    p.add_argument("--models", default="lstm,gpt", help="comma-separated: lstm, gpt")
    p.add_argument("--steps", type=int, default=7, help="timed steps per framework and point")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per framework and point first")
    p.add_argument("--base-threads", type=int, default=1, help="threads of the batch/width/seq sweeps and of the fit")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    p.add_argument("--quick", action="store_true", help="a tiny smoke grid at tiny sizes (seconds, not a measurement)")
    p.add_argument("--no-torch", action="store_true", help="tinygrad_lm alone even if PyTorch is installed")
    p.add_argument("--isolated", type=int, default=0, metavar="ROUNDS",
                   help="the threads sweep with each framework alone in fresh processes, ROUNDS rounds (the "
                        "interleaved steps share the cores with the other framework's spinning threads)")
    args = p.parse_args(argv)
    if args.isolated and args.quick:
        p.error("--isolated measures the configurations of models.py, not --quick's smoke grid")
    if args.quick:
        args.steps, args.warmup = min(args.steps, 1), 0
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in ("lstm", "gpt"):
            p.error(f"--models: unknown model {m!r} (lstm, gpt)")
    args.json = args.json or os.path.splitext(args.out)[0] + ".json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pt = None
    if not args.no_torch:
        try:
            import torch as pt
        except ImportError:
            pt = None
    how = bench_programs.set_threads(args.base_threads, pt)
    import numpy as np

    import tinygrad_lm as tl

    print(f"tinygrad_lm {tl.__version__}, NumPy {np.__version__}, "
          + (f"PyTorch {pt.__version__}" if pt is not None else "no PyTorch (not installed, or --no-torch)"))
    print(f"{bench_programs.cores()} cores; threads of the sweeps: {args.base_threads} ({how})")
    for line in bench_programs.threads_in_effect(pt):
        print("  " + line)
    print(f"one training step (forward, backward, SGD), median of {args.steps} timed steps after {args.warmup} "
          f"warm-up, frameworks interleaved"
          f"{f'; the threads sweep isolated, {args.isolated} rounds' if args.isolated else ''}"
          f"{'; --quick: a smoke grid, not a measurement' if args.quick else ''}\n")
    warm_up(args.models, pt, args.lr)
    results = measure(args, pt)
    fits = fit_table(results, args.base_threads, args.models)
    meta = {"tinygrad_lm": tl.__version__, "numpy": np.__version__, "torch": pt.__version__ if pt else None,
            "cores": bench_programs.cores(), "steps": args.steps, "warmup": args.warmup, "quick": args.quick,
            "base_threads": args.base_threads, "isolated_rounds": args.isolated,
            "configs": {m: dataclasses.asdict(models.get_config(m, **(QUICK_BASE[m] if args.quick else {})))
                        for m in args.models}}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "points": results, "fits": fits}, f, indent=1)
    plot(results, args.out, f"one training step, time per token: tinygrad_lm (filled, solid) vs PyTorch (open, dashed)"
                            f"; {bench_programs.cores()} cores{', --quick smoke grid' if args.quick else ''}")
    print(f"\nwrote {args.json} and {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
