"""Side-by-side training-step benchmark: tinygrad_lm against PyTorch on the CPU.

One training step is: embedding -> model -> logits -> mean cross-entropy -> zero_grad ->
backward -> SGD step, on the configurations of benchmarks/models.py (one model source for
both frameworks; PyTorch's initial weights are copied into tinygrad_lm's model, so both
train the same function and their first losses must agree).

The two frameworks alternate step by step in one process (their order swaps every step),
so machine noise hits both alike. Both get the same number of threads: ``torch.set_num_threads``
for PyTorch and, for NumPy's BLAS, ``threadpoolctl`` when it is installed, otherwise
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS set before NumPy is imported.

    python benchmarks/bench_train_step.py [--configs tiny,rnn,lstm,gpt,lstm2] [--steps N] [--warmup N]
                                          [--threads N] [--isolated ROUNDS] [--memory] [--long-seq] [--profile]

See benchmarks/README.md for what every column means.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import models  # noqa: E402  (imports neither NumPy nor PyTorch)

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny,rnn,lstm,gpt,gpt-manual,gpt-mha,gpt-mha-weights,lstm2",
                   help="comma-separated names from models.CONFIGS")
    p.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per framework first")
    p.add_argument("--threads", type=int, default=1, help="threads for PyTorch and for NumPy's BLAS")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    p.add_argument("--gemm-size", type=int, default=512, help="side of the square float32 GEMM that gauges the peak")
    p.add_argument("--memory", action="store_true", help="peak memory per step and memory flatness (subprocesses)")
    p.add_argument("--memory-steps", type=int, default=30, help="steps of the flatness check (RSS after 10 vs N)")
    p.add_argument("--memory-warmup", default="full", choices=["full", "small"],
                   help="the memory worker's warm-up step: on the configuration's own batch (full), or on a 2 x 3 "
                        "batch (small, the method before the seventh session)")
    p.add_argument("--long-seq", action="store_true", help="LSTM BPTT over seq 1000 and 10000: time/token, memory")
    p.add_argument("--profile", action="store_true", help="pyinstrument profile of tinygrad_lm's steps (own time)")
    p.add_argument("--isolated", type=int, default=0, metavar="ROUNDS",
                   help="also time each framework alone in fresh processes, ROUNDS rounds (no cross-framework "
                        "thread contention; see benchmarks/README.md)")
    p.add_argument("--no-torch", action="store_true", help="run tinygrad_lm alone even if PyTorch is installed")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: both frameworks on the GPU (tinygrad_lm through CuPy, PyTorch CUDA)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)  # "framework:config", memory subprocess
    return p.parse_args(argv)


def limit_threads(n: int) -> Callable[[], str]:
    """Limit BLAS threads to ``n``; returns a function (call it after importing NumPy) describing the method.

    With threadpoolctl the limit is applied to the BLAS NumPy actually loaded. Without it, the
    environment variables must be set before NumPy (and its BLAS) is first imported, so this
    function must run before ``import numpy`` anywhere in the process.
    """
    try:
        import threadpoolctl
    except ImportError:
        if "numpy" in sys.modules:
            return lambda: "NumPy was imported before the thread limit: BLAS threads NOT limited"
        for var in THREAD_ENV_VARS:
            os.environ[var] = str(n)
        return lambda: f"BLAS threads via {'/'.join(THREAD_ENV_VARS)}={n} (set before importing NumPy)"

    def apply() -> str:
        import numpy  # noqa: F401  (the BLAS must be loaded for threadpoolctl to see it)

        global _THREADPOOL_LIMIT
        _THREADPOOL_LIMIT = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
        libs = ", ".join(sorted({info["internal_api"] for info in threadpoolctl.threadpool_info()}))
        return f"BLAS threads via threadpoolctl.threadpool_limits({n}) on {libs}"

    return apply


_THREADPOOL_LIMIT: Any = None


class Framework:
    """One framework's model, optimizer, data and step function for one configuration."""

    def __init__(self, name: str, cfg: models.Config, nn: Any, F: Any, optim: Any, idx: Any, tgt: Any, lr: float,
                 state: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.name, self.cfg, self.F = name, cfg, F
        self.model = models.build(cfg, nn, F)
        if state is not None:
            self.model.load_state_dict(state)
        self.model.to(device)  # before the optimizer, so that it holds the device's parameters
        self.optimizer = optim.SGD(self.model.parameters(), lr=lr)
        self.idx, self.tgt = idx, tgt
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, record: bool) -> None:
        t0 = time.perf_counter()
        loss = models.train_step(self.model, self.optimizer, self.idx, self.tgt, self.F)
        loss_value = float(loss.item())  # on a GPU this waits for the step's kernels to finish
        elapsed = time.perf_counter() - t0
        self.losses.append(loss_value)
        if record:
            self.times.append(elapsed)


def load_torch(use_torch: bool, threads: int) -> Any:
    if not use_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def make_frameworks(cfg: models.Config, torch: Any, lr: float, seed: int = 0, device: str = "cpu") -> list[Framework]:
    """The tinygrad_lm side (and the PyTorch side, with the same initial weights and batch), on ``device``."""
    import numpy as np

    import tinygrad_lm as tl
    import tinygrad_lm.nn.functional as tlF
    from tinygrad_lm import nn as tlnn
    from tinygrad_lm import optim as tloptim

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab, size=(cfg.batch, cfg.seq), dtype=np.int64)
    tgt = rng.integers(0, cfg.vocab, size=(cfg.batch, cfg.seq), dtype=np.int64)
    out = []
    state = None
    if torch is not None:
        torch.manual_seed(seed)
        pt = Framework("torch", cfg, torch.nn, torch.nn.functional, torch.optim,
                       torch.from_numpy(idx).to(device), torch.from_numpy(tgt).to(device), lr, device=device)
        state = {k: v.detach().cpu().numpy().copy() for k, v in pt.model.state_dict().items()}
        out.append(pt)
    tl.manual_seed(seed)
    out.insert(0, Framework("tinygrad_lm", cfg, tlnn, tlF, tloptim, tl.tensor(idx, device=device),
                            tl.tensor(tgt, device=device), lr, state, device=device))
    return out


def run_interleaved(fws: list[Framework], steps: int, warmup: int) -> None:
    """``warmup`` untimed then ``steps`` timed steps of every framework, alternating, order swapped each step."""
    for i in range(warmup + steps):
        order = fws if i % 2 == 0 else fws[::-1]
        for fw in order:
            fw.step(record=i >= warmup)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_gflops(n: int, repeats: int = 9) -> float:
    """Median GFLOP/s of a float32 ``(n, n) @ (n, n)`` (2 n^3 FLOPs each) with NumPy's BLAS."""
    import numpy as np

    matmul = np.matmul
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def fmt_row(cells: list[Any], widths: list[int]) -> str:
    return "".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, widths)))


def gpu_gemm_gflops(n: int, repeats: int = 9) -> float:
    """Median GFLOP/s of a float32 ``(n, n) @ (n, n)`` through CuPy on the GPU (CUDA events around each)."""
    import cupy as cp

    rng = cp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=cp.float32)
    b = rng.standard_normal((n, n), dtype=cp.float32)
    out = cp.empty((n, n), dtype=cp.float32)
    cp.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        cp.matmul(a, b, out=out)
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return 2 * n**3 / statistics.median(times) / 1e9


def speed_table(args: argparse.Namespace, torch: Any) -> None:
    n = args.gemm_size
    if args.device == "cuda":
        import cupy as cp

        name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        n = max(n, 4096)  # a GPU needs a big product to reach its rate
        peak = gpu_gemm_gflops(n)
        print(f"GPU: {name}, CuPy {cp.__version__}; CuPy float32 GEMM {n}x{n}: {peak:.1f} GFLOP/s (median of 9)")
        if torch is not None:
            print(f"PyTorch CUDA {torch.version.cuda}, TF32 matmul "
                  f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}; step time includes the loss's "
                  "transfer to the host, which waits for the GPU")
    else:
        peak = gemm_gflops(n)
        print(f"NumPy float32 GEMM {n}x{n}: {peak:.1f} GFLOP/s (median of 9), the machine's matrix-multiply "
              "limit used for '%gemm'")
    print(f"median of {args.steps} timed steps after {args.warmup} warm-up steps, frameworks interleaved\n")
    has_torch = torch is not None
    head = ["config", "tokens", "GFLOP/step", "tl ms", "tl tok/s", "tl GFLOP/s", "tl %gemm"]
    if has_torch:
        head += ["torch ms", "torch tok/s", "torch GFLOP/s", "ratio"]
    widths = [8, 8, 12, 10, 12, 12, 10] + ([10, 13, 15, 8] if has_torch else [])
    print(fmt_row(head, widths), flush=True)
    checks = []
    for name in args.configs:
        cfg = models.get_config(name)
        fws = make_frameworks(cfg, torch, args.lr, device=args.device)
        run_interleaved(fws, args.steps, args.warmup)
        flops = models.matmul_flops(cfg)
        row: list[Any] = [name, cfg.tokens, f"{flops / 1e9:.3f}"]
        tok_s = {}
        for fw in fws:
            med = statistics.median(fw.times)
            tok_s[fw.name] = cfg.tokens / med
            cells = [f"{med * 1e3:.2f}", f"{tok_s[fw.name]:,.0f}", f"{flops / med / 1e9:.2f}"]
            if fw.name == "tinygrad_lm":
                cells.append(f"{100 * flops / med / 1e9 / peak:.1f}%")
            row += cells
        if has_torch:
            row.append(f"{tok_s['tinygrad_lm'] / tok_s['torch']:.2f}")
            tl_fw, pt_fw = fws
            d0 = abs(tl_fw.losses[0] - pt_fw.losses[0])
            dn = abs(tl_fw.losses[-1] - pt_fw.losses[-1])
            verdict = "ok" if d0 <= 1e-4 * max(1.0, abs(pt_fw.losses[0])) else "MISMATCH"
            checks.append(f"{name:<8} initial loss tinygrad_lm {tl_fw.losses[0]:.6f} torch {pt_fw.losses[0]:.6f} "
                          f"|diff| {d0:.1e} {verdict}; after {len(tl_fw.losses)} steps |diff| {dn:.1e}")
        print(fmt_row(row, widths), flush=True)
    if has_torch:
        print("\nratio = tinygrad_lm tokens/s / torch tokens/s (> 1: tinygrad_lm is faster)")
        print("\nsanity check (same initial weights, same batch):")
        for line in checks:
            print("  " + line)


# ---------------------------------------------------------------------------------------------- memory


def current_rss() -> int:
    """Resident set size of this process now, in bytes (psutil if installed, else /proc/self/statm)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settle() -> None:
    """Free garbage and hand free heap pages back to the OS (glibc ``malloc_trim``), so RSS shows live memory.

    Without the trim, RSS between steps swings by the size of freed-but-kept heap blocks (glibc raises
    its mmap threshold after a large free), which looks like drift but is the allocator, not a leak.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> str:
    """Restart the peak-RSS count from the current RSS; returns how peak RSS will be read.

    On Linux, writing "5" to /proc/self/clear_refs resets the high-water mark VmHWM. Elsewhere,
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` counts from process start (this is a fresh
    interpreter, but on Linux it may also include the parent's peak from before ``exec``).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def peak_rss(method: str) -> int:
    if method == "VmHWM":
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def memory_worker(args: argparse.Namespace) -> None:
    """In a fresh process: peak RSS of training steps over the RSS just before the first, and RSS drift."""
    fw_name, cfg_name = args._worker.split(":")
    torch = load_torch(fw_name == "torch", args.threads)
    cfg = models.get_config(cfg_name)
    # One step of another model of the same configuration first: it loads what each library initialises
    # lazily on first use (tinygrad_lm's Numba kernels compile then, some 140 MB of compiler, and the
    # thread pool's kernels load at the sizes that split; PyTorch sets up its oneDNN primitives for the
    # shapes it meets), so that the peak below is the training step's own memory. ``--memory-warmup small``
    # warms up on a 2 x 3 batch, as before: below every size that splits, so the pool's kernels then load
    # during step 1 and their code counts in its peak.
    warm_cfg = cfg if args.memory_warmup == "full" else dataclasses.replace(cfg, batch=2, seq=3)
    warm = next(f for f in make_frameworks(warm_cfg, torch, args.lr) if f.name == fw_name)
    warm.step(record=False)
    del warm
    fws = make_frameworks(cfg, torch, args.lr)
    fw = next(f for f in fws if f.name == fw_name)
    del fws
    settle()
    before = current_rss()
    method = reset_peak_rss()
    fw.step(record=True)
    peak_first = peak_rss(method)
    rss = {}
    for i in range(2, args.memory_steps + 1):
        fw.step(record=True)
        if i in (10, args.memory_steps):
            settle()
            rss[i] = current_rss()
    print(json.dumps({"before": before, "peak_first": peak_first, "peak_all": peak_rss(method), "method": method,
                      "rss": rss, "ms_per_step": 1e3 * statistics.median(fw.times)}))


def isolated_table(args: argparse.Namespace, frameworks: list[str]) -> None:
    """Speed with each framework alone in its process: no thread pool of the other framework spins beside it.

    In the interleaved table, both libraries share the process, and the threads each leaves spinning
    after its step (OpenBLAS's workers wait busily for new work for a while, as do PyTorch's OpenMP
    threads) take the second core from the other's step. Users run one framework, so here every
    (framework, config) runs in a fresh process (the memory worker: one warm-up step, then ``--warmup +
    --steps`` steps, their median time), ``ROUNDS`` times, the order of the
    frameworks swapped every round; the table gives the median over the rounds and each round's ratio.
    """
    steps = args.warmup + args.steps
    print(f"\nisolated: each framework alone in a fresh process, median of {steps} steps per process, "
          f"{args.isolated} rounds, order swapped every round")
    print_isolated_rows(frameworks, args.isolated, ("config", "tl ms", "torch ms"), (12, 10, 10), args.configs,
                        lambda fw, name: run_worker(fw, name, args, steps)["ms_per_step"])


def print_isolated_rows(frameworks: list[str], rounds: int, head: tuple[str, str, str], widths: tuple[int, int, int],
                        names: list[str], ms_per_step: Callable[[str, str], float]) -> None:
    """An isolated table's head and a row per name (here and in bench_programs.py): the head is the first
    column's title and the two ms columns' titles, with their widths; the row of each name is
    :func:`isolated_cells` of ``ms_per_step(framework, name)``."""
    has_torch = "torch" in frameworks
    cols = [head[0], head[1]] + ([head[2], "ratio", "ratio per round"] if has_torch else [])
    col_widths = [widths[0], widths[1]] + ([widths[2], 8, max(30, 5 * rounds + 4)] if has_torch else [])
    print(fmt_row(cols, col_widths), flush=True)
    for name in names:
        cells = isolated_cells(frameworks, rounds, lambda fw, name=name: ms_per_step(fw, name))
        print(fmt_row([name] + cells, col_widths), flush=True)


def isolated_cells(frameworks: list[str], rounds: int, ms_per_step: Callable[[str], float]) -> list[str]:
    """A row of an isolated table: ``ms_per_step(framework)`` (one fresh process) ``rounds`` times for each
    framework, their order swapped every round; the median ms of tinygrad_lm and, with PyTorch, PyTorch's,
    the ratio of the medians and each round's ratio."""
    ms = isolated_ms(frameworks, rounds, ms_per_step)
    ours = statistics.median(ms["tinygrad_lm"])
    cells = [f"{ours:.2f}"]
    if "torch" in ms:
        theirs = statistics.median(ms["torch"])
        cells += [f"{theirs:.2f}", f"{theirs / ours:.2f}",
                  " ".join(f"{t / m:.2f}" for t, m in zip(ms["torch"], ms["tinygrad_lm"]))]
    return cells


def isolated_ms(frameworks: list[str], rounds: int, ms_per_step: Callable[[str], float]) -> dict[str, list[float]]:
    """``ms_per_step(framework)`` (one fresh process) ``rounds`` times for each framework, their order swapped every
    round: each framework's list of ms per step, round by round."""
    ms: dict[str, list[float]] = {fw: [] for fw in frameworks}
    for r in range(rounds):
        for fw in frameworks if r % 2 == 0 else frameworks[::-1]:
            ms[fw].append(ms_per_step(fw))
    return ms


def run_worker(fw_name: str, cfg_name: str, args: argparse.Namespace, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", f"{fw_name}:{cfg_name}", "--threads",
           str(args.threads), "--memory-steps", str(steps), "--lr", str(args.lr), "--memory-warmup", args.memory_warmup]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"worker {fw_name}:{cfg_name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory_table(args: argparse.Namespace, frameworks: list[str]) -> None:
    steps = max(args.memory_steps, 11)
    warmup = "the same configuration" if args.memory_warmup == "full" else "a 2 x 3 batch"
    print(f"\nmemory: one fresh subprocess per framework and config, warmed up by one step of {warmup} "
          f"(see memory_worker); peak = peak RSS minus the RSS just before step 1, during step 1 and over all "
          f"{steps} steps; drift = RSS after step {steps} minus after step 10 "
          f"(RSS read after gc.collect() and malloc_trim(0))")
    head = ["config", "framework", "RSS before MB", "peak step 1 MB", f"peak {steps} steps MB", "RSS@10 MB",
            f"RSS@{steps} MB", "drift MB"]
    widths = [8, 13, 15, 16, 20, 11, 13, 10]
    widths = [max(w, len(h) + 2) for w, h in zip(widths, head)]
    print(fmt_row(head, widths))
    method = ""
    mb = 1 / 2**20
    for name in args.configs:
        for fw_name in frameworks:
            r = run_worker(fw_name, name, args, steps)
            method = r["method"]
            rss = {int(k): v for k, v in r["rss"].items()}
            print(fmt_row([name, fw_name, f"{r['before'] * mb:.1f}", f"{(r['peak_first'] - r['before']) * mb:.1f}",
                           f"{(r['peak_all'] - r['before']) * mb:.1f}", f"{rss[10] * mb:.1f}",
                           f"{rss[steps] * mb:.1f}", f"{(rss[steps] - rss[10]) * mb:+.1f}"], widths), flush=True)
    print(f"(peak RSS read from {method}; current RSS from "
          f"{'psutil' if _has_module('psutil') else '/proc/self/statm'})")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def long_seq_table(args: argparse.Namespace, torch: Any, frameworks: list[str]) -> None:
    print("\nlong sequences: LSTM BPTT, time per token should stay flat as seq grows; memory per framework in a "
          "fresh subprocess (step peak as above)")
    head = ["config", "batch", "seq", "framework", "ms/step", "us/token", "step peak MB", "MB/1k tokens"]
    widths = [15, 7, 7, 13, 11, 10, 14, 14]
    print(fmt_row(head, widths))
    steps = max(1, min(args.steps, 3))
    for name, cfg in models.LONG_SEQ_CONFIGS.items():
        fws = make_frameworks(cfg, torch, args.lr)
        run_interleaved(fws, steps, 1)
        times = {fw.name: statistics.median(fw.times) for fw in fws}
        del fws
        for fw_name in frameworks:
            mem = run_worker(fw_name, name, args, 1)
            peak_mb = (mem["peak_first"] - mem["before"]) / 2**20
            t = times[fw_name]
            print(fmt_row([name, cfg.batch, cfg.seq, fw_name, f"{t * 1e3:.1f}", f"{t / cfg.tokens * 1e6:.2f}",
                           f"{peak_mb:.1f}", f"{peak_mb / cfg.tokens * 1000:.2f}"], widths), flush=True)


# ---------------------------------------------------------------------------------------------- profile


def profile_tinygrad(args: argparse.Namespace, top: int = 10) -> None:
    """Own (self) time of the top functions in tinygrad_lm's training steps, sampled with pyinstrument."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\n--profile needs pyinstrument (pip install pyinstrument)")
        return
    for name in args.configs:
        cfg = models.get_config(name)
        (fw,) = make_frameworks(cfg, None, args.lr)
        for _ in range(args.warmup):
            fw.step(record=False)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(args.steps):
            fw.step(record=True)
        session = profiler.stop()
        own: dict[tuple[str, str, int], float] = {}
        stack = [session.root_frame()]
        while stack:
            frame = stack.pop()
            if frame is None or frame.is_synthetic:  # "[self]" leaves: already in their parent's self time
                continue
            key = (frame.function or "?", frame.file_path_short or "", frame.line_no or 0)
            own[key] = own.get(key, 0.0) + frame.total_self_time
            stack.extend(frame.children)
        total = sum(own.values())
        print(f"\nprofile of tinygrad_lm '{name}' ({args.steps} steps, {1e3 * statistics.median(fw.times):.1f} "
              f"ms/step median, {total:.2f} s sampled): top {top} functions by own time")
        for (func, path, line), t in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * t / total:5.1f}%  {t:7.3f} s  {func}  {path}:{line}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    describe_threads = limit_threads(args.threads)
    if args._worker:
        describe_threads()
        memory_worker(args)
        return
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for name in args.configs:
        models.get_config(name)  # unknown names fail before any work
    if args.device == "cuda" and (args.memory or args.long_seq or args.profile):
        sys.exit("--device cuda measures speed only: --memory, --long-seq and --profile are CPU measurements")
    thread_note = describe_threads()
    torch = load_torch(not args.no_torch, args.threads)
    import numpy as np

    import tinygrad_lm as tl

    print(f"tinygrad_lm {tl.__version__}, NumPy {np.__version__}, "
          + (f"PyTorch {torch.__version__}" if torch is not None else "PyTorch not installed: tinygrad_lm alone"))
    torch_note = f"torch.set_num_threads({args.threads}); " if torch is not None else ""
    print(f"threads: {args.threads} ({torch_note}{thread_note})")
    from tinygrad_lm.fast import compiler

    compiled = "Numba" if compiler.numba_available() else "Numba missing: NumPy where a kernel would run"
    kernels = "CUDA kernels" if args.device == "cuda" else compiled
    print(f"tinygrad_lm's fast path: {'on' if tl.fast.is_enabled() else 'off'} ({kernels}; "
          "TINYGRAD_LM_FAST=off selects the reference ops)")
    if args.device == "cuda" and not tl.cuda_is_available():
        sys.exit("--device cuda: CuPy or a CUDA GPU is missing (pip install -e '.[gpu]' on a GPU machine)")
    frameworks = ["tinygrad_lm"] + (["torch"] if torch is not None else [])
    speed_table(args, torch)
    if args.isolated:
        isolated_table(args, frameworks)
    if args.memory:
        memory_table(args, frameworks)
    if args.long_seq:
        long_seq_table(args, torch, frameworks)
    if args.profile:
        profile_tinygrad(args)


if __name__ == "__main__":
    main()
