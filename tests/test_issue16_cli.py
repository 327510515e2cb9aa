"""Issue 16 on the command line: locked run directories, checked run files, bounded corpus reads, clear errors.

Every case runs ``python -m tinygrad_lm`` as a real process (Numba off, so that no compilation
slows the tests) on a tiny corpus, and checks the exit status and that the one line on stderr
names the culprit: the directory and the pid holding it, the file that changed, the field,
the flag, the limit or the environment variable.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.lm.trainer import run_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, flock and file modes")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--embed", "8", "--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--eval-interval", "5",
        "--no-progress", "--sample-tokens", "0", "--time-limit", "0"]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "TINYGRAD_LM_FAST": "off", **extra}


def cli(*args: str, cwd: Path | None = None, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinygrad_lm", *args], capture_output=True, text=True,
                          env=env(**extra), cwd=cwd, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinygrad-lm: error: "), proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and then it ran to the hat of its friend".split()
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(" ".join(rng.choice(words, 700)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    """A finished 10-step run, copied by each test that damages one."""
    out = tmp_path_factory.mktemp("trained") / "run"
    proc = cli("train", "--corpus", str(corpus), "--steps", "10", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


# Two trainings on one --out


def test_a_second_writer_is_refused_naming_the_directory_and_the_holder_pid(corpus, run):
    with run_lock(run):  # this test process holds the lock, through the same function the CLI uses
        for args in (["train", "--corpus", str(corpus), "--steps", "2", "--out", str(run), "--force", *TINY],
                     ["train", "--resume", "--out", str(run), "--no-progress"]):
            proc = cli(*args)
            assert_one_line_error(proc, str(run), f"pid {os.getpid()}", "in use by another process")
        assert tl.load(run / "checkpoint.safetensors")["step"] == 10  # nothing was touched
    proc = cli("train", "--resume", "--out", str(run), "--steps", "12", "--no-progress", "--sample-tokens", "0")
    assert proc.returncode == 0, proc.stderr  # released when the holder let go


def test_the_default_out_passes_over_a_directory_another_training_holds(corpus, tmp_path):
    with run_lock(tmp_path / "runs" / "tiny-char-lstm"):
        proc = cli("train", "--corpus", str(corpus), "--steps", "2", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "tiny-char-lstm-2" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "runs" / "tiny-char-lstm" / "config.json").exists()


def test_a_running_training_holds_its_directory_and_a_crash_releases_it(corpus, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "tinygrad_lm", "train", "--corpus", str(corpus), "--steps",
                              "100000", "--checkpoint-interval", "2", "--out", str(out), *TINY],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.safetensors").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        second = cli("train", "--corpus", str(corpus), "--steps", "3", "--out", str(out), "--force", *TINY)
        assert_one_line_error(second, str(out), f"pid {first.pid}")
        third = cli("train", "--resume", "--out", str(out), "--no-progress")
        assert_one_line_error(third, str(out), f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock with the process
        first.communicate(timeout=60)
    step = tl.load(out / "checkpoint.safetensors")["step"]
    proc = cli("train", "--resume", "--out", str(out), "--steps", str(step + 2), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"finished after {step + 2} steps" in proc.stdout


# Run files that disagree


def test_a_tokenizer_with_a_character_removed_is_refused_everywhere(run):
    edit_json(run / "tokenizer.json", lambda t: t["itos"].remove("h"))
    for args in (["sample", "--run", str(run), "--tokens", "5"], ["eval", "--run", str(run)],
                 ["train", "--resume", "--out", str(run), "--steps", "12", "--no-progress"]):
        assert_one_line_error(cli(*args), str(run / "tokenizer.json"), "changed after the checkpoint was written")


def test_a_tokenizer_kind_changed_from_char_to_word_is_refused(run):
    edit_json(run / "tokenizer.json", lambda t: t.update(kind="word"))
    assert_one_line_error(cli("eval", "--run", str(run)), str(run / "tokenizer.json"), "changed")


def test_an_edited_config_is_refused_naming_it(run):
    edit_json(run / "config.json", lambda c: c.update(tokenizer="word"))
    proc = cli("sample", "--run", str(run), "--tokens", "5")
    assert_one_line_error(proc, str(run / "config.json"), "changed after the checkpoint was written")


def test_without_recorded_digests_the_vocabulary_and_kind_are_still_checked(run):
    ckpt_path = run / "checkpoint.safetensors"
    assert tl.serialization.load_metadata(ckpt_path).keys() == {"tokenizer_sha256", "config_sha256"}
    tl.save(tl.load(ckpt_path), ckpt_path)  # no metadata: as checkpoints written before the digests
    assert tl.serialization.load_metadata(ckpt_path) == {}
    assert cli("sample", "--run", str(run), "--tokens", "3").returncode == 0
    edit_json(run / "tokenizer.json", lambda t: t["itos"].remove("h"))
    assert_one_line_error(cli("sample", "--run", str(run)), str(run / "tokenizer.json"), "has 15 tokens",
                          "vocab_size")
    edit_json(run / "tokenizer.json", lambda t: t["itos"].append("h"))
    edit_json(run / "tokenizer.json", lambda t: t.update(kind="word"))
    assert_one_line_error(cli("eval", "--run", str(run)), str(run / "tokenizer.json"), "'word' tokenizer",
                          "'tokenizer': 'char'")


@pytest.mark.parametrize("change, words", [
    (lambda c: c["model_config"].update(hidden_size="big"), ["model_config.hidden_size", "must be int", "'big'"]),
    (lambda c: c["train"].pop("batch_size"), ["train.batch_size", "is missing"]),
    (lambda c: c.update(model="lsmt"), ["'model'", "lsmt"]),
    (lambda c: c["model_config"].update(hiden_size=16), ["unknown field 'model_config.hiden_size'"]),
    (lambda c: c["train"].update(lr="fast"), ["train.lr", "must be float"]),
    (lambda c: c["model_config"].update(num_layers=0), ["num_layers", "positive"]),
    (lambda c: c.pop("corpus"), ["no corpus"]),
    (lambda c: c.update(split=[0.5, 0.25, 0.25]), ["'split'"]),
])
def test_hand_edited_config_fields_give_one_line_naming_the_field(run, change, words):
    edit_json(run / "config.json", change)
    for args in (["sample", "--run", str(run)], ["train", "--resume", "--out", str(run), "--no-progress"]):
        assert_one_line_error(cli(*args), str(run / "config.json"), *words)


def test_sample_of_a_file_names_it(corpus):
    assert_one_line_error(cli("sample", "--run", str(corpus)), str(corpus), "is a file, not a run directory")


# Sampling from a model whose logits are not finite


def test_overflowing_logits_stop_sampling_naming_the_step(run):
    ckpt_path = run / "checkpoint.safetensors"
    ckpt = tl.load(ckpt_path)
    weights = ckpt["model"]
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0"):
        weights[name] = np.zeros_like(weights[name])
    for name in ("rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        weights[name] = np.full_like(weights[name], 50.0)  # every gate open: h_t = tanh(C_t) > 0.76
    weights["head.weight"] = np.full_like(weights["head.weight"], 3e38)  # finite weights, logits overflow to +inf
    tl.save(ckpt, ckpt_path)
    proc = cli("sample", "--run", str(run), "--tokens", "5", "--prompt", "the")
    assert_one_line_error(proc, "cannot sample", "at step 1 of 5", "logits")
    assert "RuntimeWarning" not in proc.stderr


# Learning rates that blow up


@pytest.mark.parametrize("lr", ["1e30", "100"])
def test_a_diverging_learning_rate_stops_naming_lr_without_numpy_warnings(corpus, tmp_path, lr):
    proc = cli("train", "--corpus", str(corpus), "--steps", "20", "--lr", lr, "--out", str(tmp_path / "run"), *TINY)
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr
    assert f"--lr {float(lr):g} is probably too high" in proc.stderr
    assert not re.search(r"\d{20}", proc.stdout + proc.stderr)  # no 300-digit perplexity


def test_ngram_mle_prints_an_infinite_perplexity_as_inf(corpus):
    proc = cli("ngram", "--corpus", str(corpus), "--n", "5", "--smoothing", "mle", "--sample-tokens", "0")
    assert proc.returncode == 0, proc.stderr
    assert "perplexity inf," in proc.stdout and not re.search(r"\d{20}", proc.stdout)
    assert proc.stderr == ""  # no NumPy warning either


# Corpora: endless, huge, unreadable


def test_dev_zero_is_read_up_to_the_limit_only(tmp_path):
    proc = cli("train", "--corpus", "/dev/zero", "--out", str(tmp_path / "run"), *TINY,
               TINYGRAD_LM_MAX_CORPUS_BYTES="65536")
    assert_one_line_error(proc, "/dev/zero", "65,536 bytes", "TINYGRAD_LM_MAX_CORPUS_BYTES")
    assert not (tmp_path / "run").exists()


def test_a_corpus_over_the_limit_is_refused_before_it_is_read(corpus, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        shutil.copy(corpus, folder / name)
    size = corpus.stat().st_size
    for path in (corpus, folder):
        proc = cli("ngram", "--corpus", str(path), "--sample-tokens", "0", TINYGRAD_LM_MAX_CORPUS_BYTES=str(size - 1))
        assert_one_line_error(proc, f"larger than {size - 1:,} bytes", "TINYGRAD_LM_MAX_CORPUS_BYTES")
    proc = cli("ngram", "--corpus", str(folder), "--sample-tokens", "0", TINYGRAD_LM_MAX_CORPUS_BYTES=str(2 * size))
    assert proc.returncode == 0, proc.stderr
    assert_one_line_error(cli("ngram", "--corpus", str(corpus), TINYGRAD_LM_MAX_CORPUS_BYTES="lots"),
                          "TINYGRAD_LM_MAX_CORPUS_BYTES='lots'", "positive number of bytes")


def test_a_named_pipe_is_read_as_a_corpus(corpus, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{corpus}' > '{fifo}'"])
    try:
        proc = cli("ngram", "--corpus", str(fifo), "--n", "3", "--sample-tokens", "0")
    finally:
        writer.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "3-gram (kn)" in proc.stdout


def test_an_unreadable_corpus_folder_is_named_not_called_empty(corpus):
    """chmod 000 on a folder inside the corpus; root ignores modes, so as root the command runs as user nobody."""
    as_root = os.geteuid() == 0
    user = {"user": 65534, "group": 65534} if as_root else {}
    with tempfile.TemporaryDirectory(dir="/tmp") as base:  # /tmp: searchable by an unprivileged user
        if as_root:
            try:
                probe = subprocess.run([sys.executable, "-c", "import tinygrad_lm"], capture_output=True, env=env(),
                                       cwd=base, timeout=120, **user).returncode
            except PermissionError:
                probe = -1
            if probe != 0:
                pytest.skip("running as root, and user nobody cannot run this Python installation")
        folder = Path(base) / "texts"
        (folder / "inner").mkdir(parents=True)
        shutil.copy(corpus, folder / "inner" / "a.txt")
        for p in (Path(base), folder, folder / "inner" / "a.txt"):
            p.chmod(0o755)
        (folder / "inner").chmod(0o000)
        try:
            proc = subprocess.run([sys.executable, "-m", "tinygrad_lm", "ngram", "--corpus", str(folder)],
                                  capture_output=True, text=True, env=env(), cwd=base, timeout=120, **user)
        finally:
            (folder / "inner").chmod(0o755)
    assert_one_line_error(proc, "Permission denied", str(folder / "inner"))
    assert "holds no .txt files" not in proc.stderr


def test_a_folder_that_cannot_be_listed_is_named_in_process(corpus, tmp_path, monkeypatch, capsys):
    """The same case where permissions cannot be taken away (root): listing the folder fails as it would."""
    from tinygrad_lm.cli import main

    folder = tmp_path / "texts"
    (folder / "inner").mkdir(parents=True)
    shutil.copy(corpus, folder / "inner" / "a.txt")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == folder / "inner":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["ngram", "--corpus", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and str(folder / "inner") in err, err


def test_a_corpus_changed_under_a_run_is_refused_on_resume_and_eval(corpus, tmp_path):
    text = tmp_path / "text.txt"
    shutil.copy(corpus, text)
    out = tmp_path / "run"
    assert cli("train", "--corpus", str(text), "--steps", "2", "--out", str(out), *TINY).returncode == 0
    text.write_text(corpus.read_text().replace("cat", "dog"), encoding="utf-8")
    for args in (["train", "--resume", "--out", str(out), "--steps", "4", "--no-progress"],
                 ["eval", "--run", str(out)]):
        assert_one_line_error(cli(*args), str(text), "changed since this run was trained")


# --resume with other settings


def test_resume_refuses_flags_that_change_the_model_or_the_data(run, corpus, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() * 2)
    for flags, words in (
        (["--hidden", "32"], ["--hidden 32 conflicts with the run's 16"]),
        (["--model", "gru"], ["--model gru conflicts with the run's 'lstm'"]),
        (["--corpus", str(other)], ["--corpus", "conflicts"]),
        (["--batch-size", "8", "--seq-len", "8"], ["--batch-size 8", "--seq-len 8"]),
        (["--force"], ["--force starts a new run"]),
    ):
        proc = cli("train", "--resume", "--out", str(run), "--no-progress", *flags)
        assert_one_line_error(proc, "cannot resume", *words)
    assert tl.load(run / "checkpoint.safetensors")["step"] == 10
    same = cli("train", "--resume", "--out", str(run), "--hidden", "16", "--corpus", str(corpus), "--steps", "11",
               "--no-progress", "--sample-tokens", "0")
    assert same.returncode == 0, same.stderr  # the saved values themselves are no conflict


def test_resume_announces_the_new_lr_and_steps_and_trains_with_them(run):
    proc = cli("train", "--resume", "--out", str(run), "--steps", "14", "--lr", "0.01", "--no-progress",
               "--sample-tokens", "0", "--heads", "2")
    assert proc.returncode == 0, proc.stderr
    assert "--steps 14 replaces the run's 10" in proc.stdout and "--lr 0.01 replaces the run's 0.004" in proc.stdout
    assert "--heads does not apply to this lstm run; ignored" in proc.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["max_steps"] == 14 and config["train"]["lr"] == 0.01 and config["train"]["min_lr"] == 0.001
    ckpt = tl.load(run / "checkpoint.safetensors")
    assert ckpt["step"] == 14 and ckpt["scheduler"]["base_lrs"] == [0.01]
    assert 0.001 <= ckpt["optimizer"]["param_groups"][0]["lr"] <= 0.01
    assert cli("sample", "--run", str(run), "--tokens", "3").returncode == 0  # the rewritten config still matches


# Environment variables


@pytest.mark.parametrize("name, value, allowed", [
    ("TINYGRAD_LM_FAST", "yes", "on, off"),
    ("TINYGRAD_LM_MALLOC", "glibc", "auto, system"),
])
def test_unknown_settings_in_the_environment_are_errors(name, value, allowed):
    proc = cli("--help", **{name: value})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert name in last and repr(value) in last and allowed in last, proc.stderr
    assert cli("--help", **{name: f" {allowed.split(', ')[-1].upper()} "}).returncode == 0  # case and spaces


# sample / eval without --run (issue 15)


def test_sample_and_eval_use_the_newest_run_under_runs(trained, tmp_path):
    assert_one_line_error(cli("sample", cwd=tmp_path), "no --run given", str(tmp_path / "runs"))
    assert_one_line_error(cli("eval", cwd=tmp_path), "no --run given")
    older, newer = tmp_path / "runs" / "older", tmp_path / "runs" / "newer"
    shutil.copytree(trained, older)
    shutil.copytree(trained, newer)
    now = time.time()
    os.utime(newer / "checkpoint.safetensors", (now - 100, now - 100))
    os.utime(older / "checkpoint.safetensors", (now, now))  # by checkpoint time, not by name or creation
    proc = cli("sample", "--tokens", "5", "--seed", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "using the most recent run, runs/older" in proc.stderr
    proc = cli("eval", cwd=tmp_path)
    assert proc.returncode == 0 and "runs/older" in proc.stderr and proc.stdout.startswith("val: loss")
