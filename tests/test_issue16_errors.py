"""Issue 16 in the library: the language-model side names what is wrong, and nothing leaks NumPy warnings.

Recurrent layers fed token ids, gradcheck of a function that returns no Tensor, generation from an
empty batch or from logits that give no distribution, hand-edited tokenizer files, corpora larger
than the read limit, run-directory locks, a diverging Trainer, and a new peak learning rate on resume.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.data import CharTokenizer, WordTokenizer, load_text, load_tokenizer
from tinygrad_lm.lm import RecurrentLM, RNNLMConfig, TrainConfig, Trainer
from tinygrad_lm.lm.generation import generate, sample_from_logits
from tinygrad_lm.lm.trainer import RunLockedError, format_perplexity, perplexity, run_lock


@pytest.mark.parametrize("layer", [nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_recurrent_layers_fed_token_ids_say_to_embed_them(layer):
    tokens = tl.tensor([[1, 2, 3, 0]])  # int64, (1, 4)
    with pytest.raises(TypeError) as info:
        layer(4, 8)(tokens)
    msg = str(info.value)
    assert layer.__name__ in msg and "int64" in msg and "nn.Embedding" in msg
    assert "module.to(dtype" not in msg


def test_a_recurrent_state_of_integers_is_named():
    x = tl.randn(3, 1, 4)
    h0, c0 = tl.zeros(1, 1, 8, dtype=tl.int64), tl.zeros(1, 1, 8)
    with pytest.raises(TypeError, match=r"LSTM: h0 has dtype .*int64.*must be a float tensor"):
        nn.LSTM(4, 8)(x, (h0, c0))


@pytest.mark.parametrize("result", [3.0, np.float64(2.0), None, "loss"])
def test_gradcheck_of_a_function_that_returns_no_tensor(result):
    x = tl.randn(3, dtype=tl.float64, requires_grad=True)
    with pytest.raises(TypeError, match=f"gradcheck: fn must return a Tensor .*got {type(result).__name__}"):
        tl.gradcheck(lambda a: result, [x])


def tiny_model(vocab: int = 6) -> RecurrentLM:
    tl.manual_seed(0)
    return RecurrentLM(RNNLMConfig(vocab_size=vocab, embed_dim=4, hidden_size=8))


def test_generate_from_an_empty_batch_of_prompts():
    with pytest.raises(ValueError, match=r"the prompt batch is empty \(shape \(0, 3\)\)"):
        generate(tiny_model(), np.zeros((0, 3), dtype=np.int64), 4)


@pytest.mark.parametrize("value, what", [(np.nan, "NaN"), (-np.inf, "-inf everywhere"), (np.inf, r"\+inf")])
def test_generate_from_logits_that_give_no_distribution_names_the_step(value, what):
    model = tiny_model()
    with tl.no_grad():
        model.head.weight.array[:] = 0.0
        model.head.bias.array[:] = value
    for greedy in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and no NumPy warning on the way
            with pytest.raises(RuntimeError, match=f"generate: at step 1 of 5 .*batch row 0 are {what}"):
                generate(model, np.array([[1, 2]]), 5, greedy=greedy, seed=0)


def test_sample_from_logits_names_the_row_that_gives_no_distribution():
    rng = np.random.default_rng(0)
    logits = np.array([[0.0, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    with pytest.raises(RuntimeError, match="batch row 1 are -inf everywhere"):
        sample_from_logits(logits, rng)
    assert sample_from_logits(logits[:1], rng).tolist() in ([0], [1])  # masked entries stay allowed


def test_perplexity_is_inf_rather_than_a_capped_exponent():
    assert perplexity(2.0) == pytest.approx(math.exp(2.0))
    assert perplexity(800.0) == math.inf and math.isnan(perplexity(math.nan))
    assert format_perplexity(math.inf) == "inf" and format_perplexity(12.3456) == "12.35"
    assert format_perplexity(1.234e106) == "1.23e+106" and format_perplexity(999999.0) == "999999.00"


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(itos=["<unk>", "a", "a"]), ["hold each token once"]),
    (lambda s: s.update(itos=["a", "<unk>"]), ["start with the unknown token"]),
    (lambda s: s.update(itos="abc"), ["'itos' must be a list of strings"]),
    (lambda s: s.update(itos=["<unk>", "b", "a"]), ["not sorted single characters"]),
    (lambda s: s.update(kind="bpe"), ["unknown tokenizer kind 'bpe'"]),
])
def test_hand_edited_tokenizer_files_name_the_file(tmp_path, change, words):
    path = tmp_path / "tokenizer.json"
    CharTokenizer("abc").save(path)
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError) as info:
        load_tokenizer(path)
    for w in [str(path), *words]:
        assert w in str(info.value)


def test_tokenizer_digests_follow_the_vocabulary_not_the_file_layout(tmp_path):
    tok = CharTokenizer("hello world")
    tok.save(tmp_path / "a.json")
    state = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps(state, indent=4))
    assert load_tokenizer(tmp_path / "b.json").digest() == tok.digest()
    assert CharTokenizer("hello").digest() != tok.digest()
    assert WordTokenizer("h e l o w r d").digest() != tok.digest()


def test_load_text_reads_at_most_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("x" * 100)
    assert load_text(path, max_bytes=100) == "x" * 100
    with pytest.raises(ValueError, match="larger than 99 bytes.*TINYGRAD_LM_MAX_CORPUS_BYTES"):
        load_text(path, max_bytes=99)
    monkeypatch.setenv("TINYGRAD_LM_MAX_CORPUS_BYTES", "50")
    with pytest.raises(ValueError, match="larger than 50 bytes"):
        load_text(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="'/dev/zero' makes the corpus larger than 50 bytes"):
            load_text("/dev/zero")


def test_load_text_reads_a_named_pipe(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as f:
            f.write("to be or not to be\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert load_text(fifo) == "to be or not to be\n"
    finally:
        writer.join(timeout=30)


def make_trainer(tmp_path: Path, **overrides) -> Trainer:
    ids = np.tile(np.arange(6), 200)
    config = dict(max_steps=6, batch_size=4, seq_len=8, eval_interval=3, checkpoint_interval=3, log_interval=3,
                  progress=False, out_dir=str(tmp_path / "run"))
    config.update(overrides)
    return Trainer(tiny_model(), ids[:1000], ids[1000:], TrainConfig(**config))


HOLD = """import sys
from tinygrad_lm.lm.trainer import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_trainer_refuses_a_run_directory_another_process_holds(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TINYGRAD_LM_FAST": "off"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunLockedError, match=f"'{run}' is in use by another process \\(pid {holder.pid}"):
            make_trainer(tmp_path).train()
    finally:
        holder.communicate(input="", timeout=60)  # end of its stdin: it lets go and exits
    assert make_trainer(tmp_path).train().status == "finished"


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with run_lock(tmp_path / "run"), run_lock(tmp_path / "run"):
        assert make_trainer(tmp_path).train().status == "finished"
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


def test_a_diverging_trainer_stops_before_the_update_without_warnings(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=30, lr=100.0, min_lr=100.0, grad_clip=0.0, checkpoint_interval=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = trainer.train()
    assert result.status == "nonfinite" and result.steps < 30
    assert trainer.diverged_loss == pytest.approx(math.log(6) + 10)
    if trainer.checkpoint_path.exists():
        assert all(np.isfinite(v).all() for v in tl.load(trainer.checkpoint_path)["model"].values())


def test_a_new_peak_learning_rate_on_resume_rules_from_there(tmp_path):
    first = make_trainer(tmp_path, max_steps=6)
    first.train(until=3)
    resumed = make_trainer(tmp_path, max_steps=6, lr=0.01, min_lr=0.001)
    resumed.load_checkpoint()
    assert resumed.scheduler.base_lrs == [0.01]
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(resumed.scheduler.get_lr()[0])
    assert 0.001 < resumed.optimizer.param_groups[0]["lr"] < 0.01
    same = make_trainer(tmp_path, max_steps=6)
    same.load_checkpoint()
    assert same.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]  # unchanged: exact
