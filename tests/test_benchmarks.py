"""Smoke tests of the training-step benchmark's model code (benchmarks/models.py) at tiny sizes.

Nothing here is timed: the tests check that every configuration builds on tinygrad_lm, runs
one training step that changes every parameter, and (where PyTorch is installed) computes the
same loss as PyTorch from the same weights.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim


def _load_benchmark_models() -> ModuleType:
    """benchmarks/models.py under a name of its own (benchmarks/ is not a package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "models.py")
    spec = importlib.util.spec_from_file_location("benchmark_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


models = _load_benchmark_models()

SMALL = dict(vocab=11, embed=8, hidden=12, batch=2, seq=5, heads=2)
NAMES = list(models.CONFIGS)


def small_config(name: str) -> models.Config:
    layers = models.CONFIGS[name].layers
    return models.get_config(name, layers=min(layers, 2), **SMALL)


def batch(cfg: models.Config, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, cfg.vocab, size=(cfg.batch, cfg.seq), dtype=np.int64)
    tgt = rng.integers(0, cfg.vocab, size=(cfg.batch, cfg.seq), dtype=np.int64)
    return idx, tgt


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_updates_every_parameter(device: str, name: str) -> None:
    tl.set_default_device(device)
    cfg = small_config(name)
    model = models.build(cfg, nn, F)
    assert isinstance(model, nn.Module)
    idx, tgt = batch(cfg)
    idx_t, tgt_t = tl.tensor(idx, device=device), tl.tensor(tgt, device=device)
    logits = model(idx_t)
    assert logits.shape == (cfg.batch, cfg.seq, cfg.vocab)
    assert logits.dtype == tl.float32
    params = dict(model.named_parameters())  # not buffers (gpt-manual's causal mask)
    before = {k: v.copy() for k, v in model.state_dict().items() if k in params}
    loss = models.train_step(model, optim.SGD(model.parameters(), lr=0.5), idx_t, tgt_t, F)
    # the loss is the mean cross-entropy of these logits (NumPy reference, float64)
    z = tl.backend.to_host(logits.array).astype(np.float64).reshape(-1, cfg.vocab)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    expected = -log_p[np.arange(z.shape[0]), tgt.reshape(-1)].mean()
    assert abs(loss.item() - expected) < 1e-5 * max(1.0, expected)
    # small random weights give near-uniform predictions: their mean entropy is near log(V) (the entropy,
    # unlike the loss of ten random targets, hardly depends on the draw)
    entropy = -(np.exp(log_p) * log_p).sum(axis=1).mean()
    assert abs(entropy - math.log(cfg.vocab)) < 0.5
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, pname
        assert np.isfinite(tl.backend.to_host(p.grad.array)).all(), pname
    after = model.state_dict()
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    unchanged = set(before) - set(changed)
    assert not unchanged, f"parameters not updated by the step: {sorted(unchanged)}"


def test_gpt_position_rows_get_gradients() -> None:
    cfg = small_config("gpt")
    model = models.build(cfg, nn, F)
    idx, tgt = batch(cfg)
    models.train_step(model, optim.SGD(model.parameters(), lr=0.1), tl.tensor(idx), tl.tensor(tgt), F)
    g = model.wpe.weight.grad.numpy()  # (seq, embed)
    assert (np.abs(g).sum(axis=1) > 0).all()


def test_loss_decreases_over_steps() -> None:
    cfg = small_config("lstm")
    model = models.build(cfg, nn, F)
    opt = optim.SGD(model.parameters(), lr=1.0)
    idx, tgt = batch(cfg)
    idx_t, tgt_t = tl.tensor(idx), tl.tensor(tgt)
    losses = [models.train_step(model, opt, idx_t, tgt_t, F).item() for _ in range(5)]
    assert losses[-1] < losses[0]


def test_matmul_flops_by_hand() -> None:
    tiny = models.get_config("tiny")  # N=64 tokens, E=16, H=32, V=16, 2 hidden layers
    assert models.matmul_flops(tiny) == 3 * 2 * 64 * (16 * 32 + 32 * 32 + 32 * 16)
    lstm = models.get_config("lstm")  # N=2048, E=128, H=256, V=96
    assert models.matmul_flops(lstm) == 3 * (2 * 2048 * 4 * 256 * (128 + 256) + 2 * 2048 * 256 * 96)
    gpt = models.get_config("gpt")  # N=2048, B=32, T=64, C=128, MLP 512, 4 layers, V=96
    per_layer = 2 * 2048 * 128 * 384 + 2 * 2 * 32 * 64 * 64 * 128 + 2 * 2048 * 128 * 128 + 2 * 2 * 2048 * 128 * 512
    assert models.matmul_flops(gpt) == 3 * (4 * per_layer + 2 * 2048 * 128 * 96)


def test_unknown_config_names_the_choices() -> None:
    with pytest.raises(KeyError, match="unknown benchmark configuration 'gru'.*lstm2"):
        models.get_config("gru")


@pytest.mark.parametrize("name", NAMES)
def test_same_loss_as_pytorch_from_the_same_weights(name: str) -> None:
    torch = pytest.importorskip("torch")
    cfg = small_config(name)
    torch.manual_seed(0)
    pt_model = models.build(cfg, torch.nn, torch.nn.functional)
    state = {k: v.detach().numpy().copy() for k, v in pt_model.state_dict().items()}
    model = models.build(cfg, nn, F)
    model.load_state_dict(state)
    idx, tgt = batch(cfg)
    pt_opt = torch.optim.SGD(pt_model.parameters(), lr=0.5)
    opt = optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        pt_loss = models.train_step(pt_model, pt_opt, torch.from_numpy(idx), torch.from_numpy(tgt),
                                    torch.nn.functional)
        loss = models.train_step(model, opt, tl.tensor(idx), tl.tensor(tgt), F)
        assert loss.item() == pytest.approx(pt_loss.item(), abs=1e-5)
    after = model.state_dict()
    for k, v in pt_model.state_dict().items():
        np.testing.assert_allclose(after[k], v.detach().numpy(), atol=1e-5, err_msg=k)


def test_lstm_layer_benchmark_runs_at_a_tiny_size() -> None:
    """bench_lstm_layer.py end to end (no timing checked): it runs, and with PyTorch installed the two
    layers agree on the output from the same weights."""
    import re
    import subprocess

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                          "bench_lstm_layer.py")
    result = subprocess.run([sys.executable, script, "--seq", "3", "--batch", "2", "--input", "4", "--hidden", "5",
                             "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"tinygrad_lm\s+forward\s+[\d.]+ ms\s+backward\s+[\d.]+ ms", result.stdout)
    diff = re.search(r"max \|output difference\| ([\d.e+-]+)", result.stdout)
    if importlib.util.find_spec("torch") is not None:
        assert diff is not None and float(diff.group(1)) < 1e-5


BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _run_benchmark(script: str, *args: str, timeout: int = 600) -> str:
    """``benchmarks/<script> args`` in a subprocess (PyTorch left out where it is not installed); its stdout."""
    import subprocess

    argv = [sys.executable, os.path.join(BENCHMARKS, script), *args] + ([] if HAS_TORCH else ["--no-torch"])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_programs_benchmark_runs_every_program_for_one_step() -> None:
    """bench_programs.py end to end at one step (no timing checked): a table row per program, and with
    PyTorch installed both frameworks' first losses agree (the script fails otherwise)."""
    import re

    out = _run_benchmark("bench_programs.py", "--steps", "1", "--warmup", "0", "--threads", "1")
    header = "program  params  tokens  tl ms/step" if not HAS_TORCH else "tl ms/step  torch ms/step   ratio"
    assert re.search(r"\s+".join(re.escape(h) for h in header.split()), out), out
    for program in ("bigram", "mlp", "rnn", "gru", "bow", "transformer", "nanogpt"):
        assert re.search(rf"^{program}\s+[\d,]+\s+\d+\s+[\d.]+", out, re.M), program
    assert "threads in effect after the runs" in out
    if HAS_TORCH:
        assert out.count(" ok;") == 7 and "MISMATCH" not in out
        assert "torch.get_num_threads() = 1" in out


def test_programs_benchmark_takes_threads_all_and_program_names() -> None:
    out = _run_benchmark("bench_programs.py", "--steps", "1", "--warmup", "0", "--threads", "all",
                         "--programs", "bigram")
    assert f"threads: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} " in out
    assert "\nbigram " in out and "\nnanogpt " not in out


def test_isolated_runs_give_a_row_per_program_and_config() -> None:
    """--isolated times each framework in fresh processes (no timing checked): a row per program or config,
    with a ratio per round where PyTorch is installed."""
    import re

    out = _run_benchmark("bench_programs.py", "--steps", "1", "--warmup", "0", "--programs", "bigram",
                         "--isolated", "2")
    rounds = r"\s+[\d.]+\s+[\d.]+\s+[\d.]+ [\d.]+" if HAS_TORCH else ""
    assert "isolated: each framework alone" in out and re.search(rf"^bigram\s+[\d.]+{rounds}\s*$", out, re.M), out
    out = _run_benchmark("bench_train_step.py", "--configs", "tiny", "--steps", "1", "--warmup", "0",
                         "--isolated", "1")
    rounds = r"\s+[\d.]+\s+[\d.]+\s+[\d.]+" if HAS_TORCH else ""
    assert "isolated: each framework alone" in out and re.search(rf"^tiny\s+[\d.]+{rounds}\s*$", out, re.M), out


def test_small_products_benchmark_checks_the_column_layout_against_the_rows() -> None:
    """bench_small_products.py at a tiny size (no timing checked): a row per product set and thread count, and
    the column layout's LSTM steps agree with the row layout's (the script fails otherwise)."""
    import re

    out = _run_benchmark("bench_small_products.py", "--threads", "1", "--batch", "3", "--hidden", "5", "--steps",
                         "4", "--heads", "2", "--seq", "6", "--head-size", "4", "--repeats", "1")
    for name in ("lstm forward, rows", "lstm forward, columns", "lstm backward, rows", "lstm backward, columns",
                 r"attention q @ k\^T", "attention p @ v"):
        assert re.search(rf"^1\s+{name}\s+.+\s+[\d.]+\s+[\d.]+\s+\d+%", out, re.M), (name, out)
    gaps = re.search(r"columns against rows, largest relative difference: h_T (\S+), C_T (\S+), dh_0 (\S+), "
                     r"dC_0 (\S+)$", out, re.M)
    assert gaps is not None and max(float(g) for g in gaps.groups()) < 1e-4, out


def test_programs_are_written_once_for_either_framework() -> None:
    """The programs' code takes the framework module as an argument: tinygrad_lm alone runs them, and the
    made-up data sets are deterministic with the sizes the programs promise."""
    saved = list(sys.path)
    try:
        path = os.path.join(BENCHMARKS, "bench_programs.py")
        spec = importlib.util.spec_from_file_location("benchmark_programs", path)
        bench_programs = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = bench_programs  # dataclasses look their module up
        spec.loader.exec_module(bench_programs)
    finally:
        sys.path[:] = saved  # the script puts benchmarks/ on the path for itself
    names = bench_programs.make_names()
    assert names == bench_programs.make_names() and len(names) == 2000 and max(map(len, names)) == 15
    model, step, tokens = bench_programs.makemore(tl, "gru", names, batch_size=4)
    assert tokens == 4 * 16
    losses = [step() for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    text = bench_programs.make_text(names, n_chars=2000)
    model, step, tokens = bench_programs.nanogpt(tl, text, n_layer=1, n_embd=16, batch_size=2, block_size=8)
    assert tokens == 16 and model.lm_head.weight is model.transformer.wte.weight  # weight tying
    assert math.isfinite(step())


def test_cost_model_quick_grid_writes_json_and_plot(tmp_path: Path) -> None:
    import json

    png = tmp_path / "cost_model.png"
    out = _run_benchmark("cost_model.py", "--quick", "--out", str(png))
    assert "model      sweep  value  batch   seq  width  threads" in out
    assert "a (ms/step)  1/b (GFLOP/s)  1/c (Melem/s)  rms resid" in out
    data = json.loads(png.with_suffix(".json").read_text())
    frameworks = {"tinygrad_lm", "torch"} if HAS_TORCH else {"tinygrad_lm"}
    assert {p["framework"] for p in data["points"]} == frameworks
    assert {p["sweep"] for p in data["points"]} == {"batch", "width", "seq", "threads"}
    assert {f["framework"] for f in data["fits"]} == frameworks
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pool_benchmark_times_every_op_both_ways() -> None:
    """bench_pool.py at one repeat (no timing checked): a row per op, with the pool's time, one piece's, a ratio."""
    import re
    import subprocess

    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "bench_pool.py"), "--threads", "2",
                             "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for name in (r"q @ k\^T", "p @ v", "GELU forward", r"LayerNorm forward \+ backward \(2048", "causal attention",
                 r"softmax forward \+ backward"):
        assert re.search(rf"^{name}.*\s[\d.]+\s+[\d.]+\s+[\d.]+$", result.stdout, re.M), (name, result.stdout)


@pytest.mark.skipif(not HAS_TORCH, reason="compares processes with and without PyTorch imported")
def test_torch_beside_benchmark_runs_every_kind() -> None:
    """bench_torch_beside.py at one step and round (no timing checked): a row with three times and two ratios."""
    import re
    import subprocess

    argv = [sys.executable, os.path.join(BENCHMARKS, "bench_torch_beside.py"), "--configs", "tiny", "--steps", "1",
            "--rounds", "1", "--threads", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^tiny(\s+[\d.]+){5}$", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("flag", [[], ["--layouts"], ["--in-place"]])
def test_attention_benchmark_runs_every_form(flag: list[str]) -> None:
    """bench_attention.py at one round (no timing checked): a row per way of writing attention, with a step time
    and a ratio (and quartiles); with --layouts or --in-place, the two step times and their ratio."""
    import re
    import subprocess

    argv = [sys.executable, os.path.join(BENCHMARKS, "bench_attention.py"), "--steps", "1", "--warmup", "0",
            "--threads", "1", *flag]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    times = r"(\s+[\d.]+){2}" if flag else r"\s+[\d.]+"
    for name in ("gpt", "gpt-manual", "gpt-mha", "gpt-mha-weights"):
        assert re.search(rf"^{name}{times}\s+[\d.]+ \([\d.]+-[\d.]+\)$", result.stdout, re.M), (name, result.stdout)


def test_step_products_benchmark_records_and_replays_the_products() -> None:
    """bench_step_products.py at two steps (no timing checked): for a configuration and a program, the step's split
    into products, pool kernels and the rest, the replay, and a row per product shape with its rate; a program
    without products says so; an unknown name is refused."""
    import re
    import subprocess

    script = os.path.join(BENCHMARKS, "bench_step_products.py")
    argv = [sys.executable, script, "--configs", "tiny,program:rnn,bigram", "--threads", "1", "--steps", "2",
            "--warmup", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("tiny", "program:rnn"):
        section = out.split(f"\n{name}, 1 thread(s)")[1].split("\n\n")[0]
        assert re.search(r"step [\d.]+ ms: products [\d.]+ ms \(\d+%\), pool kernels [\d.]+ ms", section), section
        assert re.search(r"replayed back to back: [\d.]+ ms \(in the step / replayed: [\d.]+;", section), section
        assert re.search(r"^  \(\d+, \d+\)T? @ \(\d+, \d+\)T?( \+ bias)?\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", section,
                         re.M), section
    assert "bigram, 1 thread(s)" in out and "no products recorded" in out.split("bigram, 1 thread(s)")[1]
    bad = subprocess.run([sys.executable, script, "--configs", "nope"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown name 'nope'" in bad.stderr


def test_cost_model_refuses_isolated_with_the_quick_grid() -> None:
    import subprocess

    argv = [sys.executable, os.path.join(BENCHMARKS, "cost_model.py"), "--quick", "--isolated", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "--isolated measures the configurations of models.py" in result.stderr
