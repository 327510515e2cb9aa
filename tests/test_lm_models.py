"""Language models: shapes, the loss against NumPy, gradchecks, causality, cached steps = full recomputation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm.lm import (
    GRULM,
    LSTMLM,
    RNNLM,
    RecurrentLM,
    RNNLMConfig,
    TransformerConfig,
    TransformerLM,
    detach_state,
)

KINDS = ["rnn", "lstm", "gru", "transformer"]
V = 7


def make_model(kind: str, reduction: str = "mean", dtype: str = "float32", layers: int = 2, dropout: float = 0.0,
               block_size: int = 16) -> object:
    if kind == "transformer":
        model = TransformerLM(TransformerConfig(vocab_size=V, block_size=block_size, n_layer=layers, n_head=2,
                                                n_embd=8, mlp_hidden=16, dropout=dropout, loss_reduction=reduction))
    else:
        model = RecurrentLM(RNNLMConfig(vocab_size=V, embed_dim=5, hidden_size=6, num_layers=layers, cell=kind,
                                        dropout=dropout, loss_reduction=reduction))
    return model.double() if dtype == "float64" else model


def ids(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=shape)


def np_step_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ell_t = -log softmax(logits_t)[target_t] for every position, in float64 NumPy."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtypes(device, kind):
    model = make_model(kind).to(device)
    x, y = ids((3, 5)), ids((3, 5), seed=1)
    logits, loss = model(tl.tensor(x, device=device), tl.tensor(y, device=device))
    assert logits.shape == (3, 5, V) and logits.dtype == tl.float32
    assert logits.device == tl.backend.canonical_device(device)
    assert loss.shape == () and loss.dtype == tl.float32
    logits, loss = model(tl.tensor(x, device=device))
    assert loss is None and logits.shape == (3, 5, V)


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_ids_match_a_batch_of_one(kind):
    model = make_model(kind, dtype="float64")
    x, y = ids((6,)), ids((6,), seed=1)
    logits, loss = model(tl.tensor(x), tl.tensor(y))
    assert logits.shape == (6, V)
    batched, batched_loss = model(tl.tensor(x[None]), tl.tensor(y[None]))
    np.testing.assert_array_equal(logits.detach().numpy(), batched.detach().numpy()[0])
    assert loss.item() == batched_loss.item()
    with pytest.raises(ValueError, match="targets have shape"):
        model(tl.tensor(x), tl.tensor(y[None]))


@pytest.mark.parametrize("kind", KINDS)
def test_mean_loss_is_cross_entropy_of_flattened_logits(device, kind):
    model = make_model(kind).to(device)
    x, y = ids((2, 6)), ids((2, 6), seed=3)
    logits, loss = model(tl.tensor(x, device=device), tl.tensor(y, device=device))
    flat = F.cross_entropy(logits.reshape(-1, V), tl.tensor(y.reshape(-1), device=device))
    assert loss.item() == pytest.approx(flat.item(), rel=1e-6)
    ref = np_step_losses(logits.detach().numpy(), y).mean()
    assert loss.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_sum_loss_is_the_sum_of_per_step_losses(kind):
    """The lecture's ell = sum_t ell_t: the 'sum' loss adds the cross-entropy of every step."""
    model = make_model(kind, reduction="sum", dtype="float64")
    x, y = ids((2, 6)), ids((2, 6), seed=4)
    logits, loss = model(tl.tensor(x), tl.tensor(y))
    per_step = [F.cross_entropy(logits[:, t], tl.tensor(y[:, t]), reduction="sum").item() for t in range(6)]
    assert loss.item() == pytest.approx(sum(per_step), rel=1e-12)
    assert loss.item() == pytest.approx(np_step_losses(logits.detach().numpy(), y).sum(), rel=1e-12)
    mean_model = make_model(kind, reduction="mean", dtype="float64")
    mean_model.load_state_dict(model.state_dict())
    assert mean_model(tl.tensor(x), tl.tensor(y))[1].item() == pytest.approx(loss.item() / 12, rel=1e-12)


GRAD_PARAMS = {
    "rnn": ("rnn.weight_hh_l0", "embedding.weight"),
    "lstm": ("rnn.weight_ih_l0", "head.bias"),
    "gru": ("rnn.weight_hh_l0", "head.weight"),
    "transformer": ("blocks.0.attn.c_attn.weight", "wpe.weight"),
}


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=3)
@given(B=st.integers(1, 2), T=st.integers(1, 4), seed=st.integers(0, 2**16), reduction=st.sampled_from(["mean", "sum"]))
def test_gradcheck_loss_wrt_parameters(kind, B, T, seed, reduction):
    tl.manual_seed(seed)
    if kind == "transformer":
        model = TransformerLM(TransformerConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4,
                                                mlp_hidden=6, loss_reduction=reduction))
    else:
        model = RecurrentLM(RNNLMConfig(vocab_size=5, embed_dim=3, hidden_size=4, cell=kind,
                                        loss_reduction=reduction))
    model.double()
    params = dict(model.named_parameters())
    rng = np.random.default_rng(seed)
    x, y = tl.tensor(rng.integers(0, 5, (B, T))), tl.tensor(rng.integers(0, 5, (B, T)))
    if kind == "transformer":  # GPT-2 init is tiny: spread the weights so that the check sees real curvature
        with tl.no_grad():
            for p in model.parameters():
                p.array[...] = rng.normal(0.0, 0.5, p.shape)
    checked = [params[name] for name in GRAD_PARAMS[kind]]
    assert tl.gradcheck(lambda *_: model(x, y)[1], checked)


@pytest.mark.parametrize("kind", KINDS)
def test_earlier_logits_ignore_later_tokens(kind):
    """Causality: changing the tokens after position k changes no logit at positions <= k."""
    model = make_model(kind, dtype="float64")
    x = ids((2, 9))
    base = model(tl.tensor(x))[0].detach().numpy()
    for k in (0, 3, 7):
        changed = x.copy()
        changed[:, k + 1:] = (changed[:, k + 1:] + 1 + np.arange(8 - k)) % V
        out = model(tl.tensor(changed))[0].detach().numpy()
        np.testing.assert_allclose(out[:, :k + 1], base[:, :k + 1], rtol=0, atol=1e-12)
        assert np.abs(out[:, k + 1:] - base[:, k + 1:]).max() > 1e-6  # the later ones do change


@pytest.mark.parametrize("kind", KINDS)
def test_cached_steps_equal_full_recomputation(kind):
    """prefill + step (carried state / KV cache) give the logits of forward on the whole prefix."""
    model = make_model(kind, dtype="float64").eval()
    x = ids((3, 11), seed=5)
    full = model(tl.tensor(x))[0].detach().numpy()  # (B, T, V)
    with tl.no_grad():
        logits, state = model.prefill(tl.tensor(x[:, :4]))
        got = [logits.numpy()]
        for t in range(4, 11):
            logits, state = model.step(tl.tensor(x[:, t]), state)
            got.append(logits.numpy())
    np.testing.assert_allclose(np.stack(got, axis=1), full[:, 3:], rtol=0, atol=1e-12)


def test_transformer_cache_with_several_new_positions():
    """The masked branch: a chunk of new positions attends to the cache and causally to itself."""
    model = make_model("transformer", dtype="float64").eval()
    x = tl.tensor(ids((2, 9), seed=6))
    full = model(x)[0].detach().numpy()
    with tl.no_grad():
        first, caches = model._run(x[:, :4], None, 0)
        second, _ = model._run(x[:, 4:9], caches, 4)
    np.testing.assert_allclose(first.numpy(), full[:, :4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(second.numpy(), full[:, 4:], rtol=0, atol=1e-12)


def test_transformer_rejects_sequences_longer_than_block_size():
    model = make_model("transformer", block_size=4)
    with pytest.raises(ValueError, match="block_size 4"):
        model(tl.tensor(ids((1, 5))))
    _, state = model.prefill(tl.tensor(ids((1, 4))))
    with pytest.raises(ValueError, match="block_size 4"):
        model.step(tl.tensor([1]), state)


def test_dropout_acts_in_training_only():
    model = make_model("lstm", dropout=0.5, dtype="float64")
    x = tl.tensor(ids((2, 5)))
    a, b = model(x)[0].detach().numpy(), model(x)[0].detach().numpy()
    assert not np.array_equal(a, b)
    model.eval()
    np.testing.assert_array_equal(model(x)[0].detach().numpy(), model(x)[0].detach().numpy())


@pytest.mark.parametrize("cls, cell", [(RNNLM, "rnn"), (LSTMLM, "lstm"), (GRULM, "gru")])
def test_named_recurrent_models_set_their_cell(cls, cell):
    model = cls(RNNLMConfig(vocab_size=V, embed_dim=4, hidden_size=5, cell="gru" if cell != "gru" else "rnn"))
    assert model.config.cell == cell
    assert type(model.rnn).__name__ == {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]


def test_recurrent_state_shapes_and_detach():
    model = make_model("lstm")
    _, loss, (h, c) = model(tl.tensor(ids((3, 4))), tl.tensor(ids((3, 4), 1)), return_state=True)
    assert h.shape == c.shape == (2, 3, 6) and h.grad_fn is not None
    h2, c2 = detach_state((h, c))
    assert h2.grad_fn is None and not h2.requires_grad and c2.grad_fn is None
    np.testing.assert_array_equal(h2.numpy(), h.detach().numpy())
    assert detach_state(None) is None
    with pytest.raises(TypeError, match="recurrent state"):
        detach_state("state")


@pytest.mark.parametrize("make, match", [
    (lambda: RNNLMConfig(vocab_size=0), "vocab_size must be a positive integer"),
    (lambda: RNNLMConfig(vocab_size=5, hidden_size=-1), "hidden_size"),
    (lambda: RNNLMConfig(vocab_size=5, cell="transformer"), "cell must be"),
    (lambda: RNNLMConfig(vocab_size=5, nonlinearity="softplus"), "nonlinearity"),
    (lambda: RNNLMConfig(vocab_size=5, loss_reduction="avg"), "loss_reduction"),
    (lambda: RNNLMConfig(vocab_size=5, dropout=1.0), "dropout"),
    (lambda: TransformerConfig(vocab_size=5, n_embd=10, n_head=3), "divisible"),
    (lambda: TransformerConfig(vocab_size=5, block_size=0), "block_size"),
    (lambda: TransformerConfig(vocab_size=5, n_layer=2.5), "n_layer"),
    (lambda: TransformerConfig(vocab_size=5, loss_reduction="none"), "loss_reduction"),
])
def test_config_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_model_input_errors():
    model = make_model("gru")
    with pytest.raises(TypeError, match="integer token ids"):
        model(tl.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(tl.tensor(ids((1, 2, 3))))
    with pytest.raises(ValueError, match="T >= 1"):
        model(tl.tensor(np.zeros((2, 0), dtype=np.int64)))
    with pytest.raises(ValueError, match="targets have shape"):
        model(tl.tensor(ids((2, 3))), tl.tensor(ids((2, 4))))
    with pytest.raises(TypeError, match="targets must hold integer"):
        model(tl.tensor(ids((2, 3))), tl.tensor(np.zeros((2, 3))))
    with pytest.raises(IndexError, match="out of range"):
        model(tl.tensor([[0, V]]))
    with pytest.raises(TypeError, match="TransformerConfig"):
        TransformerLM(RNNLMConfig(vocab_size=5))
    with pytest.raises(TypeError, match="RNNLMConfig"):
        RecurrentLM(TransformerConfig(vocab_size=5))
