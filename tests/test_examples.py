"""The examples run end to end in their ``--quick`` mode and show what their docstrings promise.

Each example runs as a subprocess, as a student would run it, with ``--quick --out <tmp>``.
The checks read the numbers it prints. Every example fixes its seeds, and the
thresholds leave a wide margin over what the quick runs reach.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, out: Path, *extra: str) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # One BLAS thread: these models multiply small matrices, for which extra threads on a
    # busy 2-core machine cost far more in synchronisation than they gain (10x slower seen).
    env.update({var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{name} failed with exit code {proc.returncode}:\n{tail}"
    return proc.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"pattern {pattern!r} not found in the output:\n{text[-3000:]}"
    return float(match.group(1))


FLOAT = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"


def test_summation_network_learns_unit_weights(tmp_path: Path) -> None:
    out = run_example("01_summation_network.py", tmp_path)
    w1 = number(rf"summation network: learned w_1 = {FLOAT}", out)
    w2 = number(rf"summation network: learned w_1 = \S+, w_2 = {FLOAT}", out)
    b = number(rf"summation network: learned w_1 = \S+, w_2 = \S+, b = {FLOAT}", out)
    assert abs(w1 - 1) < 0.01 and abs(w2 - 1) < 0.01 and abs(b) < 0.01
    ratio = number(rf"w_1 / w_2 = {FLOAT}", out)
    threshold = number(rf"-2b / \(w_1 \+ w_2\) = {FLOAT}", out)
    accuracy = number(rf"test accuracy {FLOAT}", out)
    assert abs(ratio - 1) < 0.1
    assert abs(threshold - 0.5) < 0.1
    assert accuracy > 0.95


def test_pos_tagger_beats_both_baselines(tmp_path: Path) -> None:
    out = run_example("02_pos_tagging.py", tmp_path)
    majority = number(rf"majority-tag baseline \(\w+\) accuracy: {FLOAT}", out)
    per_word = number(rf"per-word majority baseline accuracy: {FLOAT}", out)
    per_word_ambiguous = number(rf"per-word majority baseline accuracy: \S+ \(on ambiguous words {FLOAT}", out)
    tagger = number(rf"LSTM tagger accuracy: {FLOAT}", out)
    tagger_ambiguous = number(rf"LSTM tagger accuracy: \S+ \(on ambiguous words {FLOAT}", out)
    assert majority < 0.5
    assert tagger > per_word + 0.03 > majority
    assert tagger_ambiguous > per_word_ambiguous + 0.2


def test_bracket_classifier_beats_counting(tmp_path: Path) -> None:
    out = run_example("03_many_to_one_classifier.py", tmp_path)
    majority = number(rf"guessing the majority class: {FLOAT}", out)
    counting = number(rf"counting baseline .*: {FLOAT}", out)
    accuracy = number(rf"LSTM accuracy: {FLOAT}", out)
    hard = number(rf"on hard negatives \(equal counts\) {FLOAT}", out)
    unseen = number(rf"on unseen strings {FLOAT}", out)
    assert majority < 0.6 and counting < 0.75
    assert accuracy > 0.9 and hard > 0.8 and unseen > 0.8


def test_seq2seq_reverses_digit_strings(tmp_path: Path) -> None:
    out = run_example("04_seq2seq.py", tmp_path)
    token_accuracy = number(rf"token accuracy {FLOAT}", out)
    sequence_accuracy = number(rf"sequence accuracy {FLOAT}", out)
    assert token_accuracy > 0.8
    assert sequence_accuracy > 0.5
    assert "(truth" in out


def test_char_lms_train_and_plot(tmp_path: Path) -> None:
    out = run_example("05_char_lm_shakespeare.py", tmp_path)
    vocab = number(r"vocabulary of (\d+)", out)
    for name in ("RNN", "LSTM", "Transformer"):
        loss = number(rf"{name}\s+val loss {FLOAT} nats/char", out)
        bpc = number(rf"{name}\s+val loss \S+ nats/char, {FLOAT} bits/char", out)
        assert 0 < loss < math.log(vocab)  # better than uniform guessing after a few steps
        assert bpc == pytest.approx(loss / math.log(2), abs=2e-3)
        assert f"--- sample from the {name} ---\nROMEO:" in out
    assert (tmp_path / "char_lm_curves.png").stat().st_size > 0


def test_ngram_perplexities_and_samples(tmp_path: Path) -> None:
    out = run_example("06_ngram_vs_neural.py", tmp_path)
    char = [number(rf"{n}-gram, characters\s+{FLOAT}", out) for n in range(1, 6)]
    words = [number(rf"{n}-gram, words\s+{FLOAT}", out) for n in range(1, 6)]
    assert char[0] > char[1] > char[2] > char[3]  # more context, better predictions (up to sparsity)
    assert words[0] > words[1]
    lstm_ppl = number(rf"LSTM, characters \(\d+ steps\)\s+{FLOAT}", out)
    assert 1 < lstm_ppl < char[0] * 1.2
    assert "the die of the 3-gram character model after 'th'" in out
    assert re.search(r"roll: u = [0-9.]+ falls in the interval of", out)


def test_computation_graph_written(tmp_path: Path) -> None:
    out = run_example("07_computation_graph.py", tmp_path)
    dot = (tmp_path / "rnn_graph.dot").read_text()
    assert dot.startswith("digraph") and "cell.weight_hh" in dot and "x_3" in dot
    assert dot.count('label="Tanh') == 3  # one tanh per unrolled step
    assert f"wrote the DOT text to {tmp_path / 'rnn_graph.dot'}" in out
    if shutil.which("dot"):
        assert (tmp_path / "rnn_graph.svg").read_text().lstrip().startswith("<?xml")
        assert (tmp_path / "rnn_graph.png").stat().st_size > 0
    else:
        assert "not installed" in out
    assert "d loss / d cell.weight_hh" in out


def test_vanishing_gradients_ratios(tmp_path: Path) -> None:
    out = run_example("08_vanishing_gradients.py", tmp_path)
    ratio = {name: number(rf"{re.escape(name)}\s+\S+\s+\S+\s+{FLOAT}", out)
             for name in ("Elman RNN, tanh", "Elman RNN, sigmoid", "LSTM, b_f = 0 (default init)", "LSTM, b_f = 1",
                          "LSTM, b_f = 3")}
    assert ratio["Elman RNN, tanh"] > 1e6
    assert ratio["Elman RNN, sigmoid"] > 1e6 * ratio["Elman RNN, tanh"]
    assert ratio["LSTM, b_f = 0 (default init)"] > 1e5
    assert ratio["LSTM, b_f = 0 (default init)"] > 1e3 * ratio["LSTM, b_f = 1"] > 1e3 * ratio["LSTM, b_f = 3"]
    assert ratio["LSTM, b_f = 3"] < 10
    assert (tmp_path / "vanishing_gradients.png").stat().st_size > 0


def test_tutorial_code_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Every ```python block of docs/tutorial.md runs, in order, in one namespace, and prints what it claims."""
    text = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for block in blocks:
        exec(compile(block, "docs/tutorial.md", "exec"), namespace)  # noqa: S102 - our own documentation
    lines = capsys.readouterr().out.splitlines()
    assert lines[:6] == ["Tanh", "['Sum']", "True False", "tensor(7.)", "tensor([ 3., 12.])", "True"]
    assert lines[6] == ("one of the variables needed for gradient computation has been modified by an inplace "
                        "operation: [tensor of shape (3,)] is at version 1")
    assert lines[7] == "True"
    assert lines[8] == "chunk 0: backward ok"
    assert lines[9].startswith("chunk 1: Trying to backward through the graph a second time")
    assert lines[10:] == ["both chunks trained", "True True", "3.0"]
