"""The tinygrad-lm command line: train / sample / eval / ngram on a tiny corpus, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.cli import main

TINY = ["--embed", "8", "--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--eval-interval", "10",
        "--no-progress", "--sample-tokens", "40", "--prompt", "the "]


def write_corpus(path: Path, n_words: int = 700, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat and then it ran to the hat of its friend".split()
    path.write_text(" ".join(rng.choice(words, n_words)) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "tiny.txt")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert err.startswith("tinygrad-lm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_train_writes_a_run_and_reports(capsys, tmp_path, corpus, model):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--corpus", str(corpus), "--model", model, "--steps", "20",
                         "--out", str(out_dir), *TINY)
    assert code == 0, err
    assert "finished after 20 steps" in out and "validation loss" in out
    assert "--- sample" in out and "\nthe " in out
    assert f"checkpoint: {out_dir / 'checkpoint.safetensors'}" in out
    assert f"loss curve: {out_dir / 'loss.png'}" in out
    for name in ("config.json", "tokenizer.json", "checkpoint.safetensors", "metrics.jsonl", "loss.png"):
        assert (out_dir / name).is_file(), name
    config = json.loads((out_dir / "config.json").read_text())
    assert config["model"] == model and config["corpus"] == str(corpus.resolve())
    assert config["train"]["max_steps"] == 20 and len(config["corpus_sha256"]) == 64
    assert tl.load(out_dir / "checkpoint.safetensors")["step"] == 20


def test_sample_eval_and_resume_a_run(capsys, tmp_path, corpus):
    out_dir = str(tmp_path / "run")
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "10", "--out", out_dir, *TINY)[0] == 0
    code, out, _ = run(capsys, "sample", "--run", out_dir, "--tokens", "30", "--seed", "1", "--prompt", "the c")
    assert code == 0 and out.startswith("the c") and len(out.rstrip("\n").replace("<unk>", "?")) == 35
    assert run(capsys, "sample", "--run", out_dir, "--tokens", "30", "--seed", "1", "--prompt", "the c")[1] == out
    code, greedy, _ = run(capsys, "sample", "--run", out_dir, "--tokens", "20", "--greedy", "--top-k", "3")
    assert code == 0 and len(greedy.rstrip("\n").replace("<unk>", "?")) == 21  # the newline it starts from + 20 tokens
    code, out, _ = run(capsys, "eval", "--run", out_dir, "--split", "test")
    assert code == 0 and out.startswith("test: loss") and "bits/token" in out
    code, out, err = run(capsys, "train", "--resume", "--out", out_dir, "--steps", "20", "--no-progress",
                         "--sample-tokens", "0")
    assert code == 0, err
    assert "finished after 20 steps" in out and "--- sample" not in out
    assert tl.load(Path(out_dir) / "checkpoint.safetensors")["step"] == 20


def test_default_run_directories_are_numbered_not_overwritten(capsys, tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run(capsys, "train", "--corpus", str(corpus), "--steps", "2", *TINY)[0] == 0
    assert (tmp_path / "runs" / "tiny-char-lstm" / "checkpoint.safetensors").exists()
    assert (tmp_path / "runs" / "tiny-char-lstm-2" / "checkpoint.safetensors").exists()


def test_force_starts_over(capsys, tmp_path, corpus):
    out_dir = str(tmp_path / "run")
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "4", "--out", out_dir, *TINY)[0] == 0
    code, _, err = run(capsys, "train", "--corpus", str(corpus), "--steps", "4", "--out", out_dir, *TINY)
    assert_one_line_error(code, err, "already holds a run", "--resume", "--force")
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "2", "--out", out_dir, "--force", *TINY)[0] == 0
    assert tl.load(Path(out_dir) / "checkpoint.safetensors")["step"] == 2


def test_ngram_baseline(capsys, corpus):
    code, out, err = run(capsys, "ngram", "--corpus", str(corpus), "--n", "3", "--sample-tokens", "20")
    assert code == 0, err
    assert "3-gram (kn)" in out and "val loss" in out and "--- sample" in out
    code, out, _ = run(capsys, "ngram", "--corpus", str(corpus), "--tokenizer", "word", "--n", "2",
                       "--smoothing", "addk", "--k", "0.5", "--split", "test", "--sample-tokens", "0")
    assert code == 0 and "test loss" in out


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_nonfinite_training_exits_with_1(capsys, tmp_path, corpus):
    code, out, err = run(capsys, "train", "--corpus", str(corpus), "--steps", "30", "--optimizer", "sgd",
                         "--lr", "1e38", "--clip", "0", "--out", str(tmp_path / "run"), *TINY)
    assert code == 1 and "nonfinite" in out and "non-finite" in err


def test_bad_arguments_give_one_line_and_status_2(capsys, tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./runs here
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 ".encode("latin-1") * 400)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "2", "--out", str(run_dir), *TINY)[0] == 0
    cases = [
        (["train", "--model", "lstn"], ["invalid choice: 'lstn'"]),
        (["train", "--steps", "-5"], ["--steps must be positive"]),
        (["train", "--steps", "ten"], ["invalid int value"]),
        (["train", "--corpus", str(tmp_path / "missing.txt")], ["missing.txt", "neither"]),
        (["train", "--corpus", str(bad)], ["not UTF-8"]),
        (["train", "--resume"], ["--resume needs --out"]),
        (["train", "--resume", "--out", str(tmp_path / "nowhere")], ["nowhere", "does not exist"]),
        (["train", "--dropout", "1.5"], ["--dropout"]),
        (["train", "--model", "transformer", "--embed", "10", "--heads", "4"], ["divisible"]),
        (["train", "--device", "tpu"], ["unknown device"]),
        (["sample", "--run", str(tmp_path / "missing_run")], ["missing_run", "does not exist"]),
        (["sample", "--run", str(corpus)], [str(corpus), "is a file, not a run directory"]),
        (["sample", "--run", str(run_dir), "--temperature", "-1"], ["--temperature"]),
        (["sample"], ["no --run given", "no trained run under", str(tmp_path / "runs")]),
        (["eval"], ["no --run given"]),
        (["train", "--seed", "-1"], ["--seed", "-1"]),
        (["sample", "--run", str(run_dir), "--seed", "-3"], ["--seed"]),
        (["ngram", "--seed", "-1"], ["--seed"]),
        (["eval", "--run", str(tmp_path)], ["no config.json"]),
        (["ngram", "--n", "0"], ["--n must be >= 1"]),
        (["nonsense"], ["invalid choice"]),
    ]
    for argv, words in cases:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, *words)


def test_damaged_runs_give_one_line(capsys, tmp_path, corpus):
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "2", "--out", str(run_dir), *TINY)[0] == 0
    ckpt = run_dir / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    code, _, err = run(capsys, "sample", "--run", str(run_dir))
    assert_one_line_error(code, err, "checkpoint")
    code, _, err = run(capsys, "train", "--resume", "--out", str(run_dir), "--no-progress")
    assert_one_line_error(code, err, "checkpoint")
    ckpt.unlink()
    code, _, err = run(capsys, "eval", "--run", str(run_dir))
    assert_one_line_error(code, err, "no checkpoint")
    write_corpus(corpus, seed=1)  # the corpus changed under the run
    assert run(capsys, "train", "--corpus", str(corpus), "--steps", "2", "--out", str(run_dir), "--force",
               *TINY)[0] == 0
    write_corpus(corpus, seed=2)
    code, _, err = run(capsys, "train", "--resume", "--out", str(run_dir), "--no-progress")
    assert_one_line_error(code, err, "changed since this run was trained")


def test_the_module_entry_point_in_a_real_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "tinygrad_lm", "sample", "--run", str(tmp_path / "nope")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tinygrad_lm"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout and "sample" in proc.stdout


def test_threads_option_caps_the_blas_pool_and_rejects_negative_counts():
    import threadpoolctl

    from tinygrad_lm.cli import CLIError, limit_blas_threads

    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("NumPy reports no BLAS thread pool")
    limits = limit_blas_threads(1)
    try:
        assert all(i["num_threads"] == 1 for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
    finally:
        limits.restore_original_limits()
    assert limit_blas_threads(0) is None
    with pytest.raises(CLIError, match="--threads"):
        limit_blas_threads(-2)
