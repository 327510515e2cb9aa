"""The training loop: learning, truncated BPTT, evaluation, checkpoints, exact resume, stops and interrupts."""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.lm import RecurrentLM, RNNLMConfig, TrainConfig, Trainer, TransformerConfig, TransformerLM
from tinygrad_lm.lm.models import detach_state
from tinygrad_lm.lm.trainer import evaluate, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def corpus(n: int = 1200, seed: int = 0) -> np.ndarray:
    """A stream with structure: mostly 0 1 2 3 cycles with random insertions of 4 and 5."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        out.extend([0, 1, 2, 3])
        if rng.random() < 0.3:
            out.append(int(rng.integers(4, 6)))
    return np.array(out[:n])


def make_model(kind: str = "lstm", dropout: float = 0.0, reduction: str = "mean", seed: int = 0) -> object:
    tl.manual_seed(seed)
    if kind == "transformer":
        return TransformerLM(TransformerConfig(vocab_size=6, block_size=8, n_layer=1, n_head=2, n_embd=8,
                                               mlp_hidden=16, dropout=dropout, loss_reduction=reduction))
    return RecurrentLM(RNNLMConfig(vocab_size=6, embed_dim=4, hidden_size=8, cell=kind, dropout=dropout,
                                   loss_reduction=reduction))


def make_trainer(tmp_path, kind="lstm", name="run", dropout=0.0, reduction="mean", model_seed=0, **overrides):
    ids = corpus()
    settings = {"max_steps": 12, "batch_size": 4, "seq_len": 8, "lr": 1e-2, "min_lr": 1e-3, "eval_interval": 4,
                "eval_batches": 2, "log_interval": 2, "checkpoint_interval": 4, "progress": False,
                "out_dir": str(tmp_path / name), **overrides}
    model = make_model(kind, dropout, reduction, model_seed)
    return Trainer(model, ids[:1000], ids[1000:], TrainConfig(**settings))


def params(model) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_tiny_lstm_learns_a_repetitive_corpus(tmp_path):
    ids = np.array([0, 1, 2] * 400)
    tl.manual_seed(0)
    model = RecurrentLM(RNNLMConfig(vocab_size=3, embed_dim=8, hidden_size=16))
    config = TrainConfig(max_steps=60, batch_size=4, seq_len=8, lr=2e-2, eval_interval=20, log_interval=5,
                         progress=False, out_dir=str(tmp_path / "abc"))
    before = evaluate(model, ids[1000:], 4, 8)["loss"]
    result = Trainer(model, ids[:1000], ids[1000:], config).train()
    assert before > 0.9  # about ln 3 before training
    assert result.status == "finished" and result.steps == 60
    assert result.val_loss < 0.05
    train_losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    assert train_losses[-1] < 0.1 * train_losses[0]


def test_bptt_carries_the_state_detached(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, max_steps=3)
    seen = []
    forward = trainer.model.forward

    def spy(idx, targets=None, state=None, return_state=False):
        out = forward(idx, targets, state=state, return_state=return_state)
        if trainer.model.training:  # not the evaluation at the end
            seen.append((state, out[2]))
        return out

    monkeypatch.setattr(trainer.model, "forward", spy)
    trainer.train()
    assert len(seen) == 3 and seen[0][0] is None  # the first chunk starts from zeros
    for (_, produced), (received, _) in zip(seen, seen[1:]):
        for p, r in zip(produced, received):
            assert r.grad_fn is None and not r.requires_grad  # detached ...
            np.testing.assert_array_equal(r.numpy(), p.detach().numpy())  # ... but carried
    assert all(s.grad_fn is None for s in trainer.state)


def _graph_size(t) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.inputs is not None:  # (a node freed by an earlier backward counts, its inputs are gone)
            stack.extend(getattr(x, "grad_fn", None) for x in node.inputs)
    return len(seen)


def test_backward_stops_at_the_chunk_boundary():
    model = make_model("lstm")
    ids = corpus()
    state, sizes = None, []
    for k in range(6):
        x = tl.tensor(ids[None, 8 * k:8 * k + 8].repeat(2, 0))
        y = tl.tensor(ids[None, 8 * k + 1:8 * k + 9].repeat(2, 0))
        _, loss, state = model(x, y, state=detach_state(state), return_state=True)
        sizes.append(_graph_size(loss))
        loss.backward()  # would raise "backward through the graph a second time" if it reached the last chunk
    assert len(set(sizes)) == 1  # the graph does not grow with the number of chunks read
    _, loss, kept = model(x, y, state=state, return_state=True)  # state not detached: chained to the last graph
    assert _graph_size(loss) > sizes[0]
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_evaluate_recurrent_reads_streams_with_carried_state():
    """Chunked evaluation with the state carried equals one forward over each whole stream."""
    model = make_model("gru").double()
    ids = corpus(203, seed=3)
    result = evaluate(model, ids, batch_size=3, seq_len=10)
    rows = ids[: 3 * (len(ids) // 3)].reshape(3, -1)  # the three streams
    _, loss = model(tl.tensor(rows[:, :-1]), tl.tensor(rows[:, 1:]))
    assert result["tokens"] == rows[:, 1:].size
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-12)
    assert result["ppl"] == pytest.approx(math.exp(loss.item()))
    assert result["bpc"] == pytest.approx(loss.item() / math.log(2))
    limited = evaluate(model, ids, batch_size=3, seq_len=10, max_tokens=60)
    first = ids[:61][: 3 * (61 // 3)].reshape(3, -1)
    assert limited["loss"] == pytest.approx(model(tl.tensor(first[:, :-1]), tl.tensor(first[:, 1:]))[1].item(),
                                            rel=1e-12)


def test_evaluate_transformer_reads_consecutive_windows():
    model = make_model("transformer").double()
    ids = corpus(50, seed=4)
    result = evaluate(model, ids, batch_size=2, seq_len=8)
    windows = ids[:48].reshape(6, 8)
    targets = ids[1:49].reshape(6, 8)
    assert result["tokens"] == 48
    assert result["loss"] == pytest.approx(model(tl.tensor(windows), tl.tensor(targets))[1].item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_sum_reduction_reports_per_token_losses(tmp_path, kind):
    """Progress, metrics and evaluation are per token, so 'sum' and 'mean' models read the same."""
    runs = {}
    for reduction in ("mean", "sum"):
        trainer = make_trainer(tmp_path, kind, name=reduction, reduction=reduction, max_steps=1, log_interval=1,
                               grad_clip=0.0)
        before = trainer.evaluate()["loss"]
        runs[reduction] = (before, trainer.train().history[0]["train_loss"])
    assert runs["sum"][0] == pytest.approx(runs["mean"][0], rel=1e-6)
    assert runs["sum"][1] == pytest.approx(runs["mean"][1], rel=1e-6)
    assert 1.0 < runs["mean"][1] < 3.0  # about ln 6, a per-token loss, not a sum over 32 tokens


def test_checkpoint_contents(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=4, checkpoint_interval=4)
    trainer.train()
    ckpt = tl.load(trainer.checkpoint_path)
    assert ckpt["format"] == "tinygrad_lm.trainer/1" and ckpt["step"] == 4
    assert_same_params(ckpt["model"], params(trainer.model))
    assert ckpt["model_config"] == {"vocab_size": 6, "embed_dim": 4, "hidden_size": 8, "num_layers": 1,
                                    "cell": "lstm", "nonlinearity": "tanh", "dropout": 0.0, "loss_reduction": "mean"}
    assert ckpt["scheduler"]["last_epoch"] == 4
    assert all(s["step"] == 4 for s in ckpt["optimizer"]["state"].values())
    assert ckpt["data"] == {"position": 4, "epoch": 0}
    h, c = ckpt["carried"]  # the LSTM's (h, C), detached host arrays
    assert h.shape == c.shape == (1, 4, 8)
    np.testing.assert_array_equal(h, trainer.state[0].numpy())
    assert isinstance(ckpt["val_loss"], float) and json.loads(ckpt["rng"]["trainer"])["bit_generator"] == "PCG64"


@pytest.mark.parametrize("kind, dropout", [("lstm", 0.2), ("gru", 0.0), ("transformer", 0.2)])
def test_resume_reaches_the_same_parameters_bit_for_bit(tmp_path, kind, dropout):
    """12 steps in one go == 6 steps, a new process's worth of state from the checkpoint, 6 more."""
    whole = make_trainer(tmp_path, kind, name="whole", dropout=dropout, checkpoint_interval=3)
    assert whole.train().status == "finished"
    first = make_trainer(tmp_path, kind, name="split", dropout=dropout, checkpoint_interval=3)
    assert first.train(until=6).status == "stopped"
    second = make_trainer(tmp_path, kind, name="split", dropout=dropout, checkpoint_interval=3, model_seed=99)
    result = second.train(resume=True)
    assert result.status == "finished" and result.steps == 12
    assert_same_params(params(second.model), params(whole.model))
    steps = [r["step"] for r in read_metrics(second.metrics_path) if "train_loss" in r]
    assert steps == [2, 4, 6, 8, 10, 12]  # nothing logged twice


def test_resume_after_an_interrupt_inside_a_step_is_exact(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a forward pass: the batch read by that step is given back, nothing is lost."""
    whole = make_trainer(tmp_path, "lstm", name="whole", dropout=0.2)
    whole.train()
    first = make_trainer(tmp_path, "lstm", name="split", dropout=0.2)
    forward, calls = first.model.forward, []

    def interrupting(*args, **kwargs):
        calls.append(first.model.training)  # (evaluation runs in eval mode)
        out = forward(*args, **kwargs)  # dropout has drawn from the generator, the batch was read
        if sum(calls) == 7:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(first.model, "forward", interrupting)
    result = first.train()
    assert result.status == "interrupted" and result.steps == 6
    assert tl.load(first.checkpoint_path)["step"] == 6
    second = make_trainer(tmp_path, "lstm", name="split", dropout=0.2, model_seed=5)
    assert second.train(resume=True).steps == 12
    assert_same_params(params(second.model), params(whole.model))


def test_interrupt_during_an_update_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, checkpoint_interval=4)
    step = trainer.optimizer.step

    def half_update():
        if trainer.step == 5:
            raise KeyboardInterrupt
        step()

    monkeypatch.setattr(trainer.optimizer, "step", half_update)
    result = trainer.train()
    assert result.status == "interrupted"
    assert tl.load(trainer.checkpoint_path)["step"] == 4


def test_sigint_finishes_the_step_saves_and_restores_the_handler(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, checkpoint_interval=100)
    previous = signal.getsignal(signal.SIGINT)
    forward = trainer.model.forward

    def signalling(*args, **kwargs):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of step 4
        return forward(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", signalling)
    result = trainer.train()
    assert result.status == "interrupted" and result.steps == 4  # step 4 was finished, then it stopped
    assert tl.load(trainer.checkpoint_path)["step"] == 4
    assert signal.getsignal(signal.SIGINT) is previous


def test_time_limit_stops_evaluates_and_saves(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1000, time_limit=1e-9, eval_interval=500)
    result = trainer.train()
    assert result.status == "time_limit" and result.steps == 1
    assert result.val_loss is not None and tl.load(trainer.checkpoint_path)["step"] == 1


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, max_steps=20, checkpoint_interval=4)
    step, saved = trainer._train_step, {}

    def poisoning():
        if trainer.step == 6:
            saved["bytes"] = trainer.checkpoint_path.read_bytes()
            with tl.no_grad():
                trainer.model.head.weight.array[0, 0] = np.nan
        return step()

    monkeypatch.setattr(trainer, "_train_step", poisoning)
    result = trainer.train()
    assert result.status == "nonfinite" and result.steps == 6
    assert trainer.checkpoint_path.read_bytes() == saved["bytes"]
    ckpt = tl.load(trainer.checkpoint_path)
    assert ckpt["step"] == 4 and all(np.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_huge_learning_rate_stops_without_saving_nonfinite_parameters(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=50, optimizer="sgd", lr=1e38, min_lr=1e38, grad_clip=0.0,
                           checkpoint_interval=1)
    result = trainer.train()
    assert result.status == "nonfinite" and result.steps < 50
    if trainer.checkpoint_path.exists():
        ckpt = tl.load(trainer.checkpoint_path)
        assert all(np.isfinite(v).all() for v in ckpt["model"].values())


def test_skipping_nonfinite_batches_when_asked(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, stop_on_nonfinite=False)
    forward, calls = trainer.model.forward, []

    def one_bad_batch(*args, **kwargs):
        calls.append(1)
        logits, loss, state = forward(*args, **kwargs)
        return logits, (loss * float("nan") if len(calls) == 3 else loss), state

    monkeypatch.setattr(trainer.model, "forward", one_bad_batch)
    result = trainer.train()
    assert result.status == "finished" and result.steps == 12 and result.skipped == 1
    assert all(np.isfinite(v).all() for v in params(trainer.model).values())


def test_metrics_and_plot_are_written(tmp_path):
    trainer = make_trainer(tmp_path)
    result = trainer.train()
    records = read_metrics(trainer.metrics_path)
    assert records == result.history
    train = [r for r in records if "train_loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12] and [r["step"] for r in val] == [4, 8, 12]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 and "grad_norm" in r for r in train)
    assert all(r["val_ppl"] == pytest.approx(math.exp(r["val_loss"])) for r in val)
    assert result.plot == trainer.plot_path and trainer.plot_path.read_bytes()[:8] == PNG


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=8)
    trainer.train()
    with open(trainer.metrics_path, "a", encoding="utf-8") as f:  # a crash after step 8's checkpoint ...
        f.write(json.dumps({"step": 9, "train_loss": 1.0}) + "\n" + '{"step": 10, "train_lo')  # ... mid-line
    assert read_metrics(trainer.metrics_path)[-1]["step"] == 9
    resumed = make_trainer(tmp_path, max_steps=12)
    resumed.train(resume=True)
    steps = [r["step"] for r in read_metrics(resumed.metrics_path) if "train_loss" in r]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        make_trainer(tmp_path, name="none").train(resume=True)
    make_trainer(tmp_path, name="lstm", max_steps=2).train()
    other = make_trainer(tmp_path, "gru", name="lstm")
    with pytest.raises(ValueError, match="written by a model with config"):
        other.train(resume=True)
    tl.save({"model": {}}, tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match="not a tinygrad_lm training checkpoint"):
        other.load_checkpoint(tmp_path / "foreign.safetensors")


def test_resume_of_a_finished_run_only_evaluates(tmp_path):
    make_trainer(tmp_path, max_steps=4).train()
    again = make_trainer(tmp_path, max_steps=4, model_seed=3)
    result = again.train(resume=True)
    assert result.status == "finished" and result.steps == 4 and result.val_loss is not None


@pytest.mark.parametrize("field, value", [
    ("max_steps", 0), ("batch_size", -1), ("seq_len", 2.5), ("optimizer", "rmsprop"), ("schedule", "linear"),
    ("lr", -1.0), ("grad_clip", float("nan")), ("warmup_steps", -3), ("time_limit", 0.0), ("eval_interval", 0),
])
def test_train_config_validation(field, value):
    with pytest.raises(ValueError, match=field if field not in ("optimizer", "schedule") else field):
        TrainConfig(**{field: value})


def test_trainer_input_errors(tmp_path):
    ids = corpus()
    with pytest.raises(ValueError, match="exceeds the model's block_size"):
        Trainer(make_model("transformer"), ids, ids, TrainConfig(seq_len=16, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="at least 2"):
        Trainer(make_model("lstm"), ids, ids[:1], TrainConfig(seq_len=8, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="too few"):
        Trainer(make_model("lstm"), ids[:40], ids, TrainConfig(batch_size=32, seq_len=8, out_dir=str(tmp_path)))
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(make_model("lstm"), ids, ids, {"max_steps": 3})
