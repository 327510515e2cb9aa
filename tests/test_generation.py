"""Generation: seeds, greedy, top-k, temperature, cached steps against full recomputation, the sliding window."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.lm import RecurrentLM, RNNLMConfig, TransformerConfig, TransformerLM, generate, sample_from_logits

KINDS = ["rnn", "lstm", "gru", "transformer"]
V = 9


def make_model(kind: str, block_size: int = 16, dtype: str = "float32") -> object:
    tl.manual_seed(7)
    if kind == "transformer":
        model = TransformerLM(TransformerConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=8,
                                                mlp_hidden=16))
        with tl.no_grad():  # GPT-2's init gives almost uniform outputs; spread them so that sampling has structure
            for p in model.parameters():
                if p.ndim == 2:
                    p.array[...] = np.random.default_rng(0).normal(0.0, 0.6, p.shape).astype(p.dtype)
    else:
        model = RecurrentLM(RNNLMConfig(vocab_size=V, embed_dim=6, hidden_size=12, num_layers=2, cell=kind))
    return model.double() if dtype == "float64" else model


def reference_generate(model, prompt, n, seed, temperature=1.0, top_k=None, greedy=False):
    """Recompute forward on the whole (cropped) prefix for every new token: no cache, no carried state."""
    rng = np.random.default_rng(seed)
    block = getattr(model.config, "block_size", None)
    tokens = np.array(prompt, dtype=np.int64)
    model.eval()
    with tl.no_grad():
        for _ in range(n):
            window = tokens if block is None else tokens[:, -block:]
            logits = model(tl.tensor(window))[0].numpy()[:, -1]
            nxt = sample_from_logits(logits, rng, temperature, top_k, greedy)
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    model.train()
    return tokens


@pytest.mark.parametrize("kind", KINDS)
def test_cached_generation_equals_full_recomputation(kind):
    model = make_model(kind, dtype="float64")
    prompt = np.random.default_rng(1).integers(0, V, (3, 4))
    out = generate(model, prompt, 12, seed=11).numpy()
    assert out.shape == (3, 16)
    np.testing.assert_array_equal(out[:, :4], prompt)
    np.testing.assert_array_equal(out, reference_generate(model, prompt, 12, seed=11))


@pytest.mark.parametrize("prompt_len", [3, 8, 13])
def test_transformer_slides_its_window_past_block_size(prompt_len):
    model = make_model("transformer", block_size=8, dtype="float64")
    prompt = np.random.default_rng(2).integers(0, V, (2, prompt_len))
    out = generate(model, prompt, 20, seed=3).numpy()
    assert out.shape == (2, prompt_len + 20)
    np.testing.assert_array_equal(out, reference_generate(model, prompt, 20, seed=3))
    greedy = generate(model, prompt, 20, greedy=True).numpy()
    np.testing.assert_array_equal(greedy, reference_generate(model, prompt, 20, seed=0, greedy=True))


@pytest.mark.parametrize("kind", KINDS)
def test_seed_reproduces_and_distinguishes(device, kind):
    model = make_model(kind).to(device)
    prompt = [[1, 2, 3]]
    a = generate(model, prompt, 40, seed=5)
    assert a.device == tl.backend.canonical_device(device)
    np.testing.assert_array_equal(a.numpy(), generate(model, prompt, 40, seed=5).numpy())
    assert not np.array_equal(a.numpy(), generate(model, prompt, 40, seed=6).numpy())
    tl.manual_seed(3)
    b = generate(model, prompt, 40).numpy()
    tl.manual_seed(3)
    np.testing.assert_array_equal(b, generate(model, prompt, 40).numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_takes_the_argmax_and_temperature_zero_is_greedy(kind):
    model = make_model(kind, dtype="float64")
    prompt = np.array([[4, 0, 2], [1, 1, 8]])
    greedy = generate(model, prompt, 15, greedy=True).numpy()
    tokens = prompt.copy()
    with tl.no_grad():
        for _ in range(15):
            window = tokens[:, -16:]
            nxt = model.eval()(tl.tensor(window))[0].numpy()[:, -1].argmax(axis=-1)
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(greedy, tokens)
    np.testing.assert_array_equal(generate(model, prompt, 15, temperature=0.0, seed=1).numpy(), greedy)
    np.testing.assert_array_equal(generate(model, prompt, 15, temperature=1e-6, seed=1).numpy(), greedy)


def test_sampling_follows_softmax_with_temperature():
    logits = np.array([[2.0, 1.0, 0.0, -1.0, 0.5]])
    rng = np.random.default_rng(0)
    for temperature in (1.0, 0.5, 2.0):
        draws = sample_from_logits(np.repeat(logits, 40000, axis=0), rng, temperature)
        z = logits[0] / temperature
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        freq = np.bincount(draws, minlength=5) / len(draws)
        np.testing.assert_allclose(freq, p, atol=0.01)  # 4 standard errors at n = 40,000


def test_top_k_restricts_the_support_to_the_k_largest():
    logits = np.array([[0.3, 2.0, -1.0, 1.5, 1.9, 0.0]])
    draws = sample_from_logits(np.repeat(logits, 20000, axis=0), np.random.default_rng(1), top_k=3)
    assert set(np.unique(draws)) == {1, 3, 4}
    kept = np.exp(logits[0, [1, 3, 4]] - 2.0)
    freq = np.bincount(draws, minlength=6)[[1, 3, 4]] / len(draws)
    np.testing.assert_allclose(freq, kept / kept.sum(), atol=0.015)
    assert set(sample_from_logits(np.repeat(logits, 50, axis=0), np.random.default_rng(2), top_k=1)) == {1}
    assert len(set(sample_from_logits(np.repeat(logits, 5000, axis=0), np.random.default_rng(3), top_k=99))) == 6


def test_masked_logits_are_never_sampled():
    logits = np.array([[-np.inf, 0.0, -np.inf, 1.0]])
    draws = sample_from_logits(np.repeat(logits, 5000, axis=0), np.random.default_rng(4))
    assert set(np.unique(draws)) == {1, 3}


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_generate_restores_the_mode(kind):
    model = make_model(kind)
    model.train()
    generate(model, [[1]], 3, seed=0)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    generate(model, [[1]], 3, seed=0)
    assert not model.training and not any(m.training for m in model.modules())


def test_generate_accepts_unbatched_prompts_and_zero_new_tokens():
    model = make_model("gru")
    out = generate(model, np.array([3, 1, 4]), 5, seed=0)
    assert out.shape == (1, 8)
    np.testing.assert_array_equal(generate(model, tl.tensor([[3, 1]]), 0).numpy(), [[3, 1]])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"temperature": -0.5}, ValueError, "temperature"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"idx": [[0.5, 1.5]]}, TypeError, "integer token ids"),
    ({"idx": np.zeros((1, 0), dtype=np.int64)}, ValueError, "T >= 1"),
    ({"idx": [[1, V]]}, IndexError, "out of range"),
])
def test_generate_errors(kwargs, error, match):
    model = make_model("lstm")
    args = {"idx": [[1, 2]], "max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=match):
        generate(model, **args)
    assert model.training


def test_sample_from_logits_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"shape \(B, V\)"):
        sample_from_logits(np.zeros(3), rng)
    with pytest.raises(ValueError, match="temperature"):
        sample_from_logits(np.zeros((1, 3)), rng, temperature=float("nan"))
