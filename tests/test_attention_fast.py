"""The fused attention op on both of its paths: the reference (tinygrad_lm/ops/attention.py) and the fast one
(tinygrad_lm/fast/fused_attention.py, which hands the reference what its kernels do not take).

Each test runs once on each path, on the same inputs, against a plain NumPy reference of the
equations and by float64 gradchecks, for causal, float, bool, fully masked and dropout cases,
and on inputs where an unshifted exp would overflow or underflow.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.nn.functional import scaled_dot_product_attention
from tinygrad_lm.ops.attention import ScaledDotProductAttention

MASK_KINDS = ["none", "causal", "float", "bool", "fully_masked_row"]


def host(t: tl.Tensor) -> np.ndarray:
    return np.asarray(tl.backend.to_host(t.array))


def np_sdpa(q, k, v, mask=None, keep=None, scale=1.0):
    """O = (softmax(Q K^T scale + M) * D) V with each row shifted by its max; fully masked rows give 0."""
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = s + mask
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total > 0, total, 1.0)
    if keep is not None:
        p = p * keep
    return p @ v


def make_mask(rng: np.random.Generator, kind: str, L: int, S: int, dtype: str = "float64") -> np.ndarray | None:
    """An additive (L, S) mask: 0 / -inf for causal and bool masks, finite values for a float mask."""
    if kind == "none":
        return None
    if kind == "float":
        return rng.standard_normal((L, S)).astype(dtype)
    if kind == "causal":
        allowed = np.tri(L, S, dtype=bool)
    else:
        allowed = rng.random((L, S)) < 0.6
        allowed[:, 0] = True
        if kind == "fully_masked_row":
            allowed[L // 2] = False
    return np.where(allowed, 0.0, -np.inf).astype(dtype)


@pytest.fixture(autouse=True, params=[False, True], ids=["reference", "fast"])
def fast_path(request) -> bool:
    """Runs every test once on the reference path and once on the fast one (conftest restores the switch)."""
    tl.fast.set_enabled(request.param)
    return request.param


@settings(max_examples=30)
@given(B=st.integers(1, 2), L=st.integers(1, 5), S=st.integers(1, 5), E=st.integers(1, 4), Ev=st.integers(1, 3),
       kind=st.sampled_from(MASK_KINDS), dropout=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_both_paths_match_numpy_and_gradcheck(device, B, L, S, E, Ev, kind, dropout, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, 2, L, E)), rng.standard_normal((B, 2, S, E)), rng.standard_normal((B, 2, S, Ev))
    mask = make_mask(rng, kind, L, S)
    keep = (rng.random((B, 2, L, S)) > 0.3) / 0.7 if dropout else None
    keep_data = None if keep is None else tl.tensor(keep, device=device).array
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    ts.append(None if mask is None else tl.tensor(mask, device=device, requires_grad=kind == "float"))
    before = [a.copy() for a in (q, k, v)]

    def fn(*xs):
        return ScaledDotProductAttention.apply(*xs, keep=keep_data, scale=0.6)

    out = fn(*ts)
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, mask, keep, 0.6), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(fn, ts)
    for a, b in zip((q, k, v), before):
        np.testing.assert_array_equal(a, b)


def test_fully_masked_row_gives_zero_output_and_gradients(device):
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    mask = make_mask(rng, "fully_masked_row", 4, 5)  # row 2 sees no key
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v, mask)]
    out = ScaledDotProductAttention.apply(*ts, scale=0.5)
    assert np.all(host(out)[:, 2] == 0.0)
    out.backward(tl.tensor(rng.standard_normal(out.shape), device=device))
    assert np.all(host(ts[0].grad)[:, 2] == 0.0) and np.all(host(ts[3].grad)[2] == 0.0)
    assert all(np.all(np.isfinite(host(t.grad))) for t in ts)


def test_float32_paths_agree_to_rounding(device):
    """At a GPT-like layout (heads split from one (B, T, 3C) array), float32 agrees with float64."""
    rng = np.random.default_rng(2)
    B, H, T, D = 2, 2, 16, 8
    qkv = rng.standard_normal((B, T, 3 * H * D))
    q, k, v = (qkv[..., i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3) for i in range(3))
    g = rng.standard_normal((B, H, T, D))
    grads = []
    for dtype in ("float64", "float32"):
        ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (q, k, v)]
        out = scaled_dot_product_attention(*ts, is_causal=True)
        out.backward(tl.tensor(g.astype(dtype), device=device))
        grads.append([host(out)] + [host(t.grad) for t in ts])
    for exact, single in zip(*grads):
        assert single.dtype == np.float32
        np.testing.assert_allclose(single, exact, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0][0], np_sdpa(q, k, v, make_mask(rng, "causal", T, T), scale=D ** -0.5),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mask_batch", [(3, 2), (1, 2)])
def test_mask_with_more_batch_dims(mask_batch):
    """A mask that enlarges the batch (the fast path hands it to the reference) or not (the kernels take it)."""
    device = "cpu"
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    mask = rng.standard_normal(mask_batch + (3, 5))
    mask[..., 1, :] = -np.inf  # one fully masked query in every batch
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    tm = tl.tensor(np.where(np.isfinite(mask), mask, 0.0), device=device, requires_grad=True)

    def fn(a, b, c, m):
        return ScaledDotProductAttention.apply(a, b, c, m + tl.tensor(np.where(np.isfinite(mask), 0.0, -np.inf),
                                                                      device=device), scale=0.8)

    out = fn(*ts, tm)
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, mask, scale=0.8), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(fn, ts + [tm])


def test_value_with_more_batch_dims_than_the_scores(device):
    """c = rowsum(dO O) per broadcast batch element, when V broadcasts P over a new batch axis."""
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((2, 5, 2))
    mask = make_mask(rng, "causal", 3, 5)
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    fn = lambda a, b, c: ScaledDotProductAttention.apply(a, b, c, tl.tensor(mask, device=device), scale=0.7)
    np.testing.assert_allclose(host(fn(*ts)), np_sdpa(q, k, v, mask, scale=0.7), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(fn, ts)


@pytest.mark.parametrize("dtype,size", [("float32", 100.0), ("float64", 800.0)])
def test_large_logits_take_the_shifted_path(device, dtype, size):
    """Scores far past exp's range: every query's softmax is still right (unshifted exp would give inf or 0)."""
    rng = np.random.default_rng(5)
    k = rng.standard_normal((6, 4))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    q = np.stack([k[0] * size, -k[0] * size, np.zeros(4)])  # (3, 4): huge, hugely negative and zero scores
    v = rng.standard_normal((6, 2))
    ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (q, k, v)]
    out = scaled_dot_product_attention(*ts, scale=1.0)
    expected = np_sdpa(q, k, v)
    assert np.all(np.isfinite(host(out)))
    np.testing.assert_allclose(host(out), expected, rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-5)
    out.sum().backward()
    assert all(np.all(np.isfinite(host(t.grad))) for t in ts)


def test_uniformly_negative_row_is_not_zeroed(device):
    """A float32 query whose every score is about -100 (and a mask row offset by -1000) keeps its softmax."""
    rng = np.random.default_rng(6)
    k = np.ones((4, 5)) + 0.01 * rng.standard_normal((4, 5))
    q = np.stack([-20.0 * np.ones(5), rng.standard_normal(5)])  # scores about -100 and about +-2
    v = rng.standard_normal((4, 3))
    mask = np.zeros((2, 4))
    mask[1] = -1000.0
    for m in (None, mask):
        ts = [tl.tensor(a.astype("float32"), device=device) for a in (q, k, v)]
        tm = None if m is None else tl.tensor(m.astype("float32"), device=device)
        out = host(scaled_dot_product_attention(*ts, attn_mask=tm, scale=1.0))
        np.testing.assert_allclose(out, np_sdpa(q, k, v, m), rtol=1e-4, atol=1e-5)
        assert np.abs(out).sum(axis=-1).min() > 0.01  # neither row came out as zeros
