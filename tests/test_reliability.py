"""Faults lose nothing: a training process killed at random moments resumes to the very same parameters.

Real ``python -m tinygrad_lm train`` processes on a tiny corpus with a checkpoint every 2 steps are
SIGKILLed (no chance to clean up) or sent SIGINT; every checkpoint they leave must load and be one
consistent training state, and ``--resume`` must end bit for bit where an uninterrupted run ends.
"""
from __future__ import annotations

import gc
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.cli import prepare
from tinygrad_lm.data import BPTTBatcher
from tinygrad_lm.lm import RecurrentLM, RNNLMConfig, TrainConfig, Trainer
from tinygrad_lm.tensor import Tensor

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STEPS = 300
BATCH, SEQ, HIDDEN = 4, 16, 16
ROOT = Path(__file__).resolve().parents[1]


def train_args(corpus: Path, out: Path, checkpoint_interval: int = 2) -> list[str]:
    return ["train", "--corpus", str(corpus), "--embed", "8", "--hidden", str(HIDDEN), "--batch-size", str(BATCH),
            "--seq-len", str(SEQ), "--steps", str(STEPS), "--eval-interval", "50", "--checkpoint-interval",
            str(checkpoint_interval), "--dropout", "0.1", "--seed", "3", "--time-limit", "0", "--no-progress",
            "--sample-tokens", "0", "--out", str(out)]


def resume_args(out: Path) -> list[str]:
    return ["train", "--resume", "--out", str(out), "--time-limit", "0", "--no-progress", "--sample-tokens", "0"]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tinygrad_lm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is: every atomic save makes a new file (a new inode, a new mtime)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def wait_for_new_checkpoint(proc: subprocess.Popen, path: Path, before: tuple[int, int] | None) -> None:
    """Return once ``path`` exists and is another file than ``before``."""
    deadline = time.monotonic() + 60
    while identity(path) in (None, before):
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = "to be or not to be that is the question whether tis nobler in the mind".split()
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(" ".join(rng.choice(words, 900)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, np.ndarray]:
    """The parameters an uninterrupted run ends with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    code, stdout, err = finish(start(train_args(corpus, out, checkpoint_interval=1000)))
    assert code == 0, err
    ckpt = tl.load(out / "checkpoint.safetensors")
    assert ckpt["step"] == STEPS
    return ckpt["model"]


def chunks_per_pass(corpus: Path) -> int:
    _, (train_ids, _, _) = prepare(str(corpus), "char")
    return len(BPTTBatcher(train_ids, BATCH, SEQ))


def assert_consistent(path: Path, n_chunks: int) -> int:
    """The checkpoint loads and all its parts describe the same moment of training; returns its step."""
    ckpt = tl.load(path)
    step = ckpt["step"]
    assert 0 < step <= STEPS and (step % 2 == 0 or step == STEPS)
    assert ckpt["scheduler"]["last_epoch"] == step
    assert [s["step"] for s in ckpt["optimizer"]["state"].values()] == [step] * len(ckpt["model"])
    assert ckpt["data"]["epoch"] * n_chunks + ckpt["data"]["position"] == step
    assert all(np.isfinite(v).all() for v in ckpt["model"].values())
    h, c = ckpt["carried"]
    assert h.shape == c.shape == (1, BATCH, HIDDEN)
    return step


def assert_same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigkill_at_random_moments_then_resume_is_exact(corpus, reference, tmp_path):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    n_chunks = chunks_per_pass(corpus)
    rng = random.Random(20240601)
    steps_seen = []
    args = train_args(corpus, out)
    for _ in range(4):
        before = identity(ckpt)
        proc = start(args)
        wait_for_new_checkpoint(proc, ckpt, before)  # a checkpoint newer than the one this process started from
        time.sleep(rng.uniform(0.0, 0.05))  # then anywhere: mid-step, mid-evaluation, mid-save
        proc.send_signal(signal.SIGKILL)
        code, _, _ = finish(proc)
        assert code == -signal.SIGKILL, "the run finished before it could be killed"
        steps_seen.append(assert_consistent(ckpt, n_chunks))
        args = resume_args(out)
    code, stdout, err = finish(start(args))
    assert code == 0, err
    assert f"finished after {STEPS} steps" in stdout
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] < STEPS
    assert assert_consistent(ckpt, n_chunks) == STEPS
    assert not list(out.glob(".*.tmp*"))  # a resumed run clears what a kill mid-save left behind
    assert_same_params(tl.load(ckpt)["model"], reference)


def test_sigint_saves_and_exits_cleanly_then_resume_is_exact(corpus, reference, tmp_path):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    proc = start(train_args(corpus, out, checkpoint_interval=50))
    wait_for_new_checkpoint(proc, ckpt, None)
    time.sleep(0.03)
    proc.send_signal(signal.SIGINT)
    code, stdout, err = finish(proc)
    assert code in (0, 130), err
    assert "Traceback" not in err and "interrupted" in stdout and "--resume" in stdout
    step = tl.load(ckpt)["step"]
    assert 50 <= step < STEPS and f"received SIGINT: stopped after step {step}" in stdout  # saved on the way out
    assert_consistent_any_step(ckpt, chunks_per_pass(corpus), step)
    code, stdout, err = finish(start(resume_args(out)))
    assert code == 0, err
    assert_same_params(tl.load(ckpt)["model"], reference)


def assert_consistent_any_step(path: Path, n_chunks: int, step: int) -> None:
    ckpt = tl.load(path)
    assert ckpt["scheduler"]["last_epoch"] == step
    assert all(s["step"] == step for s in ckpt["optimizer"]["state"].values())
    assert ckpt["data"]["epoch"] * n_chunks + ckpt["data"]["position"] == step


def live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Tensor))


def test_memory_stays_flat_over_training(tmp_path, monkeypatch):
    """The live Tensor objects after step 50 are exactly those after step 10: no graph or state piles up."""
    ids = np.tile(np.arange(6), 300)
    tl.manual_seed(0)
    model = RecurrentLM(RNNLMConfig(vocab_size=6, embed_dim=4, hidden_size=8, dropout=0.1))
    trainer = Trainer(model, ids[:1500], ids[1500:], TrainConfig(
        max_steps=50, batch_size=4, seq_len=8, eval_interval=20, checkpoint_interval=20, log_interval=5,
        progress=False, out_dir=str(tmp_path / "run")))
    counts = {}
    step = trainer._train_step

    def counting():
        result = step()
        if trainer.step in (10, 50):
            counts[trainer.step] = live_tensors()
        return result

    monkeypatch.setattr(trainer, "_train_step", counting)
    assert trainer.train().status == "finished"
    assert counts[50] == counts[10]
