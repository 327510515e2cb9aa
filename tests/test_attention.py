"""scaled_dot_product_attention, the fused attention op and nn.MultiheadAttention.

Real checks: NumPy references of the attention equations and float64 gradchecks.
PyTorch comparisons (skipped where torch is absent) pin down PyTorch's exact conventions.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import MultiheadAttention
from tinygrad_lm.nn.functional import scaled_dot_product_attention
from tinygrad_lm.ops.attention import ScaledDotProductAttention

MASK_KINDS = ["none", "bool", "float", "causal"]


def np_softmax_rows(s: np.ndarray, safe: bool) -> np.ndarray:
    """softmax over the last axis; rows that are all -inf give 0 when ``safe``, NaN otherwise."""
    m = s.max(axis=-1, keepdims=True)
    if safe:
        m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    if safe:
        return np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
    return e / total


def np_sdpa(q, k, v, add_mask=None, scale=None, keep=None):
    """O = softmax(Q K^T scale + M) V, fully masked rows giving 0 (PyTorch's SDPA on the CPU)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if add_mask is not None:
        s = s + add_mask
    p = np_softmax_rows(s, safe=True)
    if keep is not None:
        p = p * keep
    return p @ v


def np_mha(sd, query, key, value, add_mask, num_heads):
    """The MHA equations on (B, L, E) inputs with one additive mask broadcasting to (B, H, L, S)."""
    B, L, E = query.shape
    S = key.shape[1]
    D = E // num_heads
    w = sd["in_proj_weight"]
    b = sd.get("in_proj_bias", np.zeros(3 * E))
    q = query @ w[:E].T + b[:E]
    k = key @ w[E : 2 * E].T + b[E : 2 * E]
    v = value @ w[2 * E :].T + b[2 * E :]
    q = q.reshape(B, L, num_heads, D).transpose(0, 2, 1, 3)
    k = k.reshape(B, S, num_heads, D).transpose(0, 2, 1, 3)
    v = v.reshape(B, S, num_heads, D).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)
    if add_mask is not None:
        s = s + add_mask
    p = np_softmax_rows(s, safe=False)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(B, L, E)
    o = o @ sd["out_proj.weight"].T + sd.get("out_proj.bias", np.zeros(E))
    return o, p


def random_bool_mask(rng, shape, every_row_open=True):
    """A random boolean mask where True is 'may attend'; optionally at least one True per row."""
    m = rng.random(shape) < 0.6
    if every_row_open:
        rows = m.reshape(-1, shape[-1])
        rows[np.arange(rows.shape[0]), rng.integers(0, shape[-1], rows.shape[0])] = True
        m = rows.reshape(shape)
    return m


def sdpa_case(rng, B, H, L, S, E, Ev, kind):
    q = rng.standard_normal((B, H, L, E))
    k = rng.standard_normal((B, H, S, E))
    v = rng.standard_normal((B, H, S, Ev))
    add = None
    mask = None
    if kind == "bool":
        mask = random_bool_mask(rng, (L, S), every_row_open=False)
        add = np.where(mask, 0.0, -np.inf)
    elif kind == "float":
        mask = rng.uniform(-2, 2, (B, 1, L, S))
        add = mask
    elif kind == "causal":
        add = np.where(np.tri(L, S, dtype=bool), 0.0, -np.inf)
    return q, k, v, mask, add


def host(t: tl.Tensor) -> np.ndarray:
    return t.detach().numpy()


dims = st.integers(1, 4)


@settings(max_examples=25)
@given(B=st.integers(1, 2), H=st.integers(1, 2), L=dims, S=dims, E=dims, Ev=dims,
       kind=st.sampled_from(MASK_KINDS), seed=st.integers(0, 2**31 - 1))
def test_sdpa_matches_numpy_reference(device, B, H, L, S, E, Ev, kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v, mask, add = sdpa_case(rng, B, H, L, S, E, Ev, kind)
    kwargs = {"is_causal": True} if kind == "causal" else {}
    if mask is not None:
        kwargs["attn_mask"] = tl.tensor(mask, device=device)
    out = scaled_dot_product_attention(
        tl.tensor(q, device=device), tl.tensor(k, device=device), tl.tensor(v, device=device), **kwargs
    )
    assert out.shape == (B, H, L, Ev)
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, add), rtol=1e-10, atol=1e-12)


def test_sdpa_keeps_float32_and_custom_scale(device):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3))
    tq, tk, tv = (tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v))
    out = scaled_dot_product_attention(tq, tk, tv, scale=0.3)
    assert out.dtype == tl.float32
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, scale=0.3), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert tq.grad.dtype == tk.grad.dtype == tv.grad.dtype == tl.float32
    default = scaled_dot_product_attention(tq, tk, tv)
    np.testing.assert_allclose(host(default), np_sdpa(q, k, v, scale=0.5), rtol=1e-5, atol=1e-6)


def test_sdpa_broadcasts_batch_dims_and_mask(device):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 3, 3, 4))
    k = rng.standard_normal((5, 4))
    v = rng.standard_normal((1, 1, 5, 2))
    mask = random_bool_mask(rng, (3, 1, 5))  # (H, 1, S): broadcast over B and over the queries
    out = scaled_dot_product_attention(
        tl.tensor(q, device=device), tl.tensor(k, device=device), tl.tensor(v, device=device),
        attn_mask=tl.tensor(mask, device=device),
    )
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, np.where(mask, 0.0, -np.inf)), rtol=1e-10)


@settings(max_examples=15)
@given(B=st.integers(1, 2), L=dims, S=dims, E=dims, Ev=dims,
       kind=st.sampled_from(MASK_KINDS), seed=st.integers(0, 2**31 - 1))
def test_sdpa_gradcheck(device, B, L, S, E, Ev, kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v, mask, _ = sdpa_case(rng, B, 2, L, S, E, Ev, kind)
    tq, tk, tv = (tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v))
    inputs = [tq, tk, tv]
    kwargs = {"is_causal": True} if kind == "causal" else {}
    if kind == "bool":
        kwargs["attn_mask"] = tl.tensor(mask, device=device)
    if kind == "float":  # a float mask is differentiated too
        inputs.append(tl.tensor(mask, device=device, requires_grad=True))

    def fn(q, k, v, *m):
        return scaled_dot_product_attention(q, k, v, attn_mask=m[0] if m else kwargs.get("attn_mask"),
                                            is_causal=kwargs.get("is_causal", False))

    before = [a.copy() for a in (q, k, v)]
    assert tl.gradcheck(fn, inputs)
    for a, b in zip((q, k, v), before):
        np.testing.assert_array_equal(a, b)


def composed_attention(q, k, v, mask, scale):
    """The same equations from primitive ops (six graph nodes)."""
    scores = (q @ k.mT) * scale  # (..., L, S)
    if mask is not None:
        scores = scores + mask
    return scores.softmax(-1) @ v  # (..., L, Ev)


@settings(max_examples=20)
@given(L=dims, S=dims, E=dims, Ev=dims, seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from(["float32", "float64"]))
def test_fused_op_equals_composed_in_values_and_gradients(device, L, S, E, Ev, seed, dtype):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in ((2, L, E), (2, S, E), (2, S, Ev), (1, L, S))]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    g = rng.standard_normal((2, L, Ev)).astype(dtype)
    results = []
    fused = lambda *xs: ScaledDotProductAttention.apply(*xs, scale=0.7)
    for build in (fused, lambda *xs: composed_attention(*xs, 0.7)):
        xs = [tl.tensor(a, device=device, requires_grad=True) for a in arrays]
        out = build(*xs)
        out.backward(tl.tensor(g, device=device))
        results.append([host(out)] + [host(x.grad) for x in xs])
    for fused, composed in zip(*results):
        assert fused.dtype == np.dtype(dtype)
        np.testing.assert_allclose(fused, composed, **tol)


def test_fully_masked_rows_give_zero_output_and_gradient(device):
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    mask = random_bool_mask(rng, (3, 5))
    mask[1] = False
    tq, tk, tv = (tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v))
    out = scaled_dot_product_attention(tq, tk, tv, attn_mask=tl.tensor(mask, device=device))
    o = host(out)
    assert np.all(o[1] == 0.0) and np.all(np.isfinite(o))
    np.testing.assert_allclose(o[[0, 2]], np_sdpa(q, k, v, np.where(mask, 0.0, -np.inf))[[0, 2]], rtol=1e-10)
    out.sum().backward()
    assert np.all(host(tq.grad)[1] == 0.0)
    assert all(np.all(np.isfinite(host(t.grad))) for t in (tq, tk, tv))
    assert tl.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, attn_mask=tl.tensor(mask, device=device)),
                        [tq, tk, tv])


@pytest.mark.parametrize("L,S", [(3, 3), (2, 5), (5, 2)])
def test_causal_mask_is_lower_triangular_aligned_top_left(device, L, S):
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((L, 4)), rng.standard_normal((S, 4))
    eye = np.eye(S)  # value = identity makes the output the attention weights P
    p = host(scaled_dot_product_attention(tl.tensor(q, device=device), tl.tensor(k, device=device),
                                          tl.tensor(eye, device=device), is_causal=True))
    for i in range(L):
        for j in range(S):
            assert (p[i, j] > 0) == (j <= i), (i, j, p)


@settings(max_examples=20)
@given(T=st.integers(2, 5), t=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_causal_sdpa_blocks_information_from_the_future(device, T, t, seed):
    t = min(t, T - 2)
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, T, 3)) for _ in range(3))
    base = host(scaled_dot_product_attention(*(tl.tensor(a, device=device) for a in (q, k, v)), is_causal=True))
    changed = [a.copy() for a in (q, k, v)]
    for a in changed:
        a[:, t + 1 :] = rng.standard_normal(a[:, t + 1 :].shape) * 10
    new = host(scaled_dot_product_attention(*(tl.tensor(a, device=device) for a in changed), is_causal=True))
    np.testing.assert_array_equal(new[:, : t + 1], base[:, : t + 1])
    assert not np.allclose(new[:, t + 1 :], base[:, t + 1 :])
    xs = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    scaled_dot_product_attention(*xs, is_causal=True)[:, t].sum().backward()
    for x in xs:
        assert np.all(host(x.grad)[:, t + 1 :] == 0.0)


def test_sdpa_dropout_drops_attention_weights(device):
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    p = 0.4
    tl.manual_seed(7)
    out = host(scaled_dot_product_attention(*(tl.tensor(a, device=device) for a in (q, k, v)), dropout_p=p))
    tl.manual_seed(7)
    keep = (host(tl.rand(2, 3, 5, dtype="float64", device=device)) >= p) / (1 - p)
    assert 0 < (keep == 0).sum() < keep.size
    np.testing.assert_allclose(out, np_sdpa(q, k, v, keep=keep), rtol=1e-10)
    zero = scaled_dot_product_attention(*(tl.tensor(a, device=device) for a in (q, k, v)), dropout_p=1.0)
    assert np.all(host(zero) == 0.0)

    xs = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]

    def fn(a, b, c):
        tl.manual_seed(7)  # the same dropout mask in every evaluation
        return scaled_dot_product_attention(a, b, c, dropout_p=p)

    assert tl.gradcheck(fn, xs)


def test_sdpa_errors(device):
    def t(*shape, dtype="float32"):
        return tl.zeros(*shape, dtype=dtype, device=device)

    with pytest.raises(RuntimeError, match=r"is_causal"):
        scaled_dot_product_attention(t(2, 3), t(2, 3), t(2, 3), attn_mask=t(2, 2), is_causal=True)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(4, 5\)"):
        scaled_dot_product_attention(t(2, 3), t(4, 5), t(4, 5))
    with pytest.raises(RuntimeError, match=r"\(4, 3\).*\(5, 2\)"):
        scaled_dot_product_attention(t(2, 3), t(4, 3), t(5, 2))
    with pytest.raises(RuntimeError, match=r"float32.*float64"):
        scaled_dot_product_attention(t(2, 3), t(2, 3, dtype="float64"), t(2, 3))
    with pytest.raises(RuntimeError, match=r"at least 2-D"):
        scaled_dot_product_attention(t(3), t(3), t(3))
    with pytest.raises(RuntimeError, match=r"\(2, 2\).*\(2, 3\)"):
        scaled_dot_product_attention(t(2, 3), t(3, 3), t(3, 3), attn_mask=t(2, 2))
    with pytest.raises(RuntimeError, match=r"int64"):
        scaled_dot_product_attention(t(2, 3), t(2, 3), t(2, 3), attn_mask=tl.zeros(2, 2, dtype="int64", device=device))
    with pytest.raises(RuntimeError, match=r"batch dimensions"):
        scaled_dot_product_attention(t(2, 2, 3), t(3, 2, 3), t(3, 2, 3))
    with pytest.raises(ValueError, match=r"dropout"):
        scaled_dot_product_attention(t(2, 3), t(2, 3), t(2, 3), dropout_p=1.5)


def test_the_two_boolean_mask_conventions_are_opposite(device):
    """The same boolean tensor: SDPA attends where it is True, MHA attends where it is False."""
    rng = np.random.default_rng(5)
    L, S, E = 3, 4, 4
    m = np.array([[True, False, True, False], [False, True, True, True], [True, False, False, False]])
    mask = tl.tensor(m, device=device)
    q, k = tl.tensor(rng.standard_normal((L, E)), device=device), tl.tensor(rng.standard_normal((S, E)), device=device)
    eye = tl.eye(S, dtype="float64", device=device)
    p_sdpa = host(scaled_dot_product_attention(q, k, eye, attn_mask=mask))  # value = I: the output is P
    assert np.all(p_sdpa[~m] == 0.0) and np.all(p_sdpa[m] > 0.0)
    additive_sdpa = tl.tensor(np.where(m, 0.0, -np.inf), device=device)
    np.testing.assert_array_equal(p_sdpa, host(scaled_dot_product_attention(q, k, eye, attn_mask=additive_sdpa)))

    mha = MultiheadAttention(E, 2).to(dtype="float64", device=device)
    x = tl.tensor(rng.standard_normal((L, E)), device=device)
    y = tl.tensor(rng.standard_normal((S, E)), device=device)
    out_mha, w_mha = mha(x, y, y, attn_mask=mask)
    w_mha = host(w_mha)
    assert np.all(w_mha[m] == 0.0) and np.all(w_mha[~m] > 0.0)
    additive_mha = tl.tensor(np.where(m, -np.inf, 0.0), device=device)
    out_add, w_add = mha(x, y, y, attn_mask=additive_mha)
    np.testing.assert_allclose(host(out_mha), host(out_add), rtol=1e-12)
    np.testing.assert_allclose(w_mha, host(w_add), rtol=1e-12)
    inverted, _ = mha(x, y, y, attn_mask=~mask)
    assert not np.allclose(host(inverted), host(out_mha))
    with_sdpa_additive, _ = mha(x, y, y, attn_mask=additive_sdpa)  # SDPA's reading of m, given as floats
    np.testing.assert_allclose(host(inverted), host(with_sdpa_additive), rtol=1e-12)


def mha_case(rng, B, L, S, E, batched, batch_first):
    x = rng.standard_normal((B, L, E))
    y = rng.standard_normal((B, S, E))
    z = rng.standard_normal((B, S, E))

    def layout(a):
        if not batched:
            return a[0]
        return a if batch_first else a.transpose(1, 0, 2)

    return (x, y, z), tuple(layout(a) for a in (x, y, z))


@settings(max_examples=25)
@given(B=st.integers(1, 2), L=dims, S=dims, D=st.integers(1, 4), batched=st.booleans(), batch_first=st.booleans(),
       mask_kind=st.sampled_from(["none", "bool2d", "float3d", "padding", "both"]),
       need_weights=st.booleans(), average=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_mha_matches_numpy_reference(device, B, L, S, D, batched, batch_first, mask_kind, need_weights, average,
                                     bias, seed):
    rng = np.random.default_rng(seed)
    H, E = 2, 2 * D
    B = B if batched else 1
    mha = MultiheadAttention(E, H, bias=bias, batch_first=batch_first).to(dtype="float64", device=device)
    sd = {k: rng.standard_normal(v.shape) * 0.5 for k, v in mha.state_dict().items()}
    mha.load_state_dict(sd)
    (x, y, z), inputs = mha_case(rng, B, L, S, E, batched, batch_first)
    kwargs = {"need_weights": need_weights, "average_attn_weights": average}
    add = np.zeros((B, H, L, S))
    open_rows = ~random_bool_mask(rng, (B, H, L, S))  # MHA: True = masked out; every row keeps one key
    if mask_kind in ("bool2d", "both"):
        am = open_rows[0, 0]
        am[:, 0] = am[:, 0] & (mask_kind == "bool2d")  # with padding too, key 0 stays visible to every query
        kwargs["attn_mask"] = tl.tensor(am, device=device)
        add = add + np.where(am, -np.inf, 0.0)
    if mask_kind == "float3d":
        am = rng.uniform(-3, 3, (B * H, L, S))
        kwargs["attn_mask"] = tl.tensor(am, device=device)
        add = add + am.reshape(B, H, L, S)
    if mask_kind in ("padding", "both"):
        kpm = rng.random((B, S)) < 0.3
        kpm[:, 0] = False  # never hide every key
        kwargs["key_padding_mask"] = tl.tensor(kpm if batched else kpm[0], device=device)
        add = add + np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    out, w = mha(*(tl.tensor(a, device=device) for a in inputs), **kwargs)
    ref_out, ref_p = np_mha(sd, x, y, z, add, H)
    if batched and not batch_first:
        ref_out = ref_out.transpose(1, 0, 2)
    if not batched:
        ref_out, ref_p = ref_out[0], ref_p[0]
    np.testing.assert_allclose(host(out), ref_out, rtol=1e-9, atol=1e-12)
    if not need_weights:
        assert w is None
    else:
        ref_w = ref_p.mean(axis=-3) if average else ref_p
        assert w.shape == ref_w.shape
        np.testing.assert_allclose(host(w), ref_w, rtol=1e-9, atol=1e-12)


@settings(max_examples=8)
@given(B=st.integers(1, 2), L=dims, S=dims, D=st.integers(1, 4), batch_first=st.booleans(),
       need_weights=st.booleans(), self_attention=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_mha_gradcheck_inputs_and_parameters(device, B, L, S, D, batch_first, need_weights, self_attention, seed):
    rng = np.random.default_rng(seed)
    E = 2 * D
    mha = MultiheadAttention(E, 2, batch_first=batch_first).to(dtype="float64", device=device)
    mha.load_state_dict({k: rng.standard_normal(v.shape) * 0.5 for k, v in mha.state_dict().items()})
    if self_attention:
        S = L
    _, (x, y, z) = mha_case(rng, B, L, S, E, True, batch_first)
    kpm = rng.random((B, S)) < 0.3
    kpm[:, 0] = False
    am = rng.uniform(-1, 1, (L, S))
    masks = {"key_padding_mask": tl.tensor(kpm, device=device), "attn_mask": tl.tensor(am, device=device)}
    xs = [tl.tensor(a, device=device, requires_grad=True) for a in (x, y, z)]
    params = list(mha.parameters())
    assert len(params) == 4

    def fn(query, key, value, *_params):
        if self_attention:  # one tensor for all three: the fused in-projection path
            key = value = query
        return mha(query, key, value, need_weights=need_weights, **masks)

    assert tl.gradcheck(fn, [*xs, *params])


def test_mha_parameters_and_default_init():
    E = 64
    mha = MultiheadAttention(E, 4)
    shapes = {name: p.shape for name, p in mha.named_parameters()}
    assert shapes == {"in_proj_weight": (3 * E, E), "in_proj_bias": (3 * E,), "out_proj.weight": (E, E),
                      "out_proj.bias": (E,)}
    assert isinstance(mha.out_proj, nn.Linear)
    assert all(p.dtype == tl.float32 for p in mha.parameters())
    w = host(mha.in_proj_weight)
    bound = math.sqrt(6.0 / (E + 3 * E))  # xavier_uniform_ with fan_in = E, fan_out = 3E
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.var() - bound**2 / 3) < 0.05 * bound**2 / 3
    assert np.all(host(mha.in_proj_bias) == 0) and np.all(host(mha.out_proj.bias) == 0)
    wo = host(mha.out_proj.weight)
    assert np.abs(wo).max() <= 1 / math.sqrt(E) and np.abs(wo).max() > 0.95 / math.sqrt(E)
    no_bias = MultiheadAttention(8, 2, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["in_proj_weight", "out_proj.weight"]
    assert no_bias.in_proj_bias is None and no_bias.out_proj.bias is None
    assert "embed_dim=8, num_heads=2" in repr(no_bias)


def test_mha_errors(device):
    with pytest.raises(ValueError, match=r"embed_dim \(6\).*num_heads \(4\)"):
        MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match=r"dropout"):
        MultiheadAttention(4, 2, dropout=-0.1)
    mha = MultiheadAttention(4, 2, batch_first=True).to(device=device)

    def t(*shape, dtype="float32"):
        return tl.zeros(*shape, dtype=dtype, device=device)

    x = t(2, 3, 4)
    with pytest.raises(ValueError, match=r"embedding dimension 4.*\(2, 3, 5\)"):
        mha(t(2, 3, 5), x, x)
    with pytest.raises(ValueError, match=r"key shape \(2, 2, 4\).*value shape \(2, 3, 4\)"):
        mha(x, t(2, 2, 4), x)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 4\).*\(3, 4\)"):
        mha(x, t(3, 4), t(3, 4))
    with pytest.raises(ValueError, match=r"batch sizes"):
        mha(x, t(1, 3, 4), t(1, 3, 4))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\).*\(2, 2\)"):
        mha(x, x, x, key_padding_mask=t(2, 2, dtype="bool"))
    with pytest.raises(RuntimeError, match=r"2D attn_mask is \(2, 3\).*\(3, 3\)"):
        mha(x, x, x, attn_mask=t(2, 3, dtype="bool"))
    with pytest.raises(RuntimeError, match=r"3D attn_mask is \(2, 3, 3\).*\(4, 3, 3\)"):
        mha(x, x, x, attn_mask=t(2, 3, 3))
    with pytest.raises(RuntimeError, match=r"dimension 4"):
        mha(x, x, x, attn_mask=t(1, 4, 3, 3))
    with pytest.raises(TypeError, match=r"int64"):
        mha(x, x, x, attn_mask=t(3, 3, dtype="int64"))
    with pytest.raises(RuntimeError, match=r"needs attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match=r"2-D \(L, E\) or 3-D"):
        mha(t(4), t(4), t(4))


def test_mha_is_causal_is_only_a_hint(device):
    """As PyTorch: is_causal needs attn_mask; it replaces attn_mask only when need_weights=False and no padding."""
    rng = np.random.default_rng(6)
    T, E = 4, 4
    mha = MultiheadAttention(E, 2, batch_first=True).to(dtype="float64", device=device)
    x = tl.tensor(rng.standard_normal((2, T, E)), device=device)
    nothing = tl.zeros(T, T, dtype="bool", device=device)
    causal = tl.tensor(np.triu(np.ones((T, T), dtype=bool), 1), device=device)
    with_causal_mask = host(mha(x, x, x, attn_mask=causal)[0])
    without_mask = host(mha(x, x, x)[0])
    assert not np.allclose(with_causal_mask, without_mask)
    hinted = host(mha(x, x, x, attn_mask=nothing, is_causal=True, need_weights=False)[0])
    np.testing.assert_allclose(hinted, with_causal_mask, rtol=1e-12)
    ignored = host(mha(x, x, x, attn_mask=nothing, is_causal=True, need_weights=True)[0])
    np.testing.assert_allclose(ignored, without_mask, rtol=1e-12)
    kpm = tl.zeros(2, T, dtype="bool", device=device)
    ignored = host(mha(x, x, x, attn_mask=nothing, key_padding_mask=kpm, is_causal=True, need_weights=False)[0])
    np.testing.assert_allclose(ignored, without_mask, rtol=1e-12)


@settings(max_examples=15)
@given(T=st.integers(2, 5), t=st.integers(0, 3), mode=st.sampled_from(["weights", "fused", "hint"]),
       seed=st.integers(0, 2**31 - 1))
def test_causal_mha_blocks_information_from_the_future(device, T, t, mode, seed):
    t = min(t, T - 2)
    rng = np.random.default_rng(seed)
    E = 4
    mha = MultiheadAttention(E, 2, batch_first=True).to(dtype="float64", device=device)
    causal = tl.tensor(np.triu(np.ones((T, T), dtype=bool), 1), device=device)  # True = masked out (the future)
    kwargs = {"attn_mask": causal, "need_weights": mode == "weights", "is_causal": mode == "hint"}
    x = rng.standard_normal((2, T, E))
    changed = x.copy()
    changed[:, t + 1 :] = rng.standard_normal(changed[:, t + 1 :].shape) * 10
    outs = []
    for a in (x, changed):
        xt = tl.tensor(a, device=device)
        outs.append(host(mha(xt, xt, xt, **kwargs)[0]))
    np.testing.assert_allclose(outs[1][:, : t + 1], outs[0][:, : t + 1], rtol=1e-13, atol=1e-15)
    assert not np.allclose(outs[1][:, t + 1 :], outs[0][:, t + 1 :])
    xt = tl.tensor(x, device=device, requires_grad=True)
    mha(xt, xt, xt, **kwargs)[0][:, t].sum().backward()
    assert np.all(host(xt.grad)[:, t + 1 :] == 0.0)
    assert np.any(host(xt.grad)[:, : t + 1] != 0.0)


def test_mha_dropout_only_in_training(device):
    rng = np.random.default_rng(8)
    B, L, S, E, H, p = 2, 3, 4, 4, 2, 0.5
    mha = MultiheadAttention(E, H, dropout=p, batch_first=True).to(dtype="float64", device=device)
    x = tl.tensor(rng.standard_normal((B, L, E)), device=device)
    y = tl.tensor(rng.standard_normal((B, S, E)), device=device)
    mha.eval()
    out_eval, w_eval = mha(x, y, y, average_attn_weights=False)
    np.testing.assert_array_equal(host(mha(x, y, y)[0]), host(out_eval))
    mha.train()
    for need_weights in (True, False):
        tl.manual_seed(11)
        out_train, w_train = mha(x, y, y, average_attn_weights=False, need_weights=need_weights)
        tl.manual_seed(11)
        keep = (host(tl.rand(B, H, L, S, dtype="float64", device=device)) >= p) / (1 - p)
        assert 0 < (keep == 0).sum() < keep.size
        sd = mha.state_dict()
        ref_out, ref_p = np_mha(sd, host(x), host(y), host(y), None, H)
        v = host(y) @ sd["in_proj_weight"][2 * E :].T + sd["in_proj_bias"][2 * E :]
        v = v.reshape(B, S, H, E // H).transpose(0, 2, 1, 3)
        ref_out = ((ref_p * keep) @ v).transpose(0, 2, 1, 3).reshape(B, L, E)
        ref_out = ref_out @ sd["out_proj.weight"].T + sd["out_proj.bias"]
        np.testing.assert_allclose(host(out_train), ref_out, rtol=1e-10, atol=1e-12)
        if need_weights:
            np.testing.assert_allclose(host(w_train), host(w_eval) * keep, rtol=1e-12)
        else:
            assert w_train is None


def to_torch_mask(torch, m):
    return None if m is None else torch.tensor(m)


@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal"])
@pytest.mark.parametrize("L,S", [(3, 3), (2, 5), (5, 2)])
def test_sdpa_against_pytorch(device, kind, L, S):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    q, k, v, mask, _ = sdpa_case(rng, 2, 2, L, S, 4, 3, kind)
    if kind == "bool":
        mask[0] = False  # include a fully masked row
    ours = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    kw = {"is_causal": kind == "causal"}
    out = scaled_dot_product_attention(*ours, attn_mask=None if mask is None else tl.tensor(mask, device=device), **kw)
    ref = F.scaled_dot_product_attention(*theirs, attn_mask=to_torch_mask(torch, mask), **kw)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(tl.tensor(g, device=device))
    ref.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(host(a.grad), b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_sdpa_float_mask_gradient_against_pytorch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    q, k, v, mask, _ = sdpa_case(rng, 2, 2, 3, 4, 4, 3, "float")
    m = tl.tensor(mask, device=device, requires_grad=True)
    tm = torch.tensor(mask, requires_grad=True)
    scaled_dot_product_attention(*(tl.tensor(a, device=device) for a in (q, k, v)), attn_mask=m).sum().backward()
    ref = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)), attn_mask=tm)
    ref.sum().backward()
    np.testing.assert_allclose(host(m.grad), tm.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "bool3d"])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_against_pytorch(device, batch_first, masks, need_weights, average):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    B, L, S, E, H = 2, 3, 4, 8, 2
    torch.manual_seed(0)
    ref_mha = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    with torch.no_grad():
        for p in ref_mha.parameters():  # biases are zero by default: make every parameter matter
            p.copy_(torch.tensor(rng.standard_normal(p.shape) * 0.5))
    mha = MultiheadAttention(E, H, batch_first=batch_first).to(dtype="float64", device=device)
    mha.load_state_dict({k: v.detach().numpy() for k, v in ref_mha.state_dict().items()})
    _, inputs = mha_case(rng, B, L, S, E, True, batch_first)
    kw_ours: dict = {"need_weights": need_weights, "average_attn_weights": average}
    kw_ref = dict(kw_ours)
    if masks != "none":
        kpm = np.zeros((B, S), dtype=bool)
        kpm[0, 1] = kpm[1, 3] = True
        if masks == "bool":
            am = np.zeros((L, S), dtype=bool)
            am[0, 2] = am[2, 0] = True
        elif masks == "bool3d":
            am = ~random_bool_mask(rng, (B * H, L, S))
            am[..., 0] = False
        else:
            am = rng.uniform(-2, 2, (L, S))
            kpm = np.where(kpm, -np.inf, 0.0)  # a float padding mask too
        kw_ours.update(key_padding_mask=tl.tensor(kpm, device=device), attn_mask=tl.tensor(am, device=device))
        kw_ref.update(key_padding_mask=torch.tensor(kpm), attn_mask=torch.tensor(am))
    ours = [tl.tensor(a, device=device, requires_grad=True) for a in inputs]
    theirs = [torch.tensor(a, requires_grad=True) for a in inputs]
    out, w = mha(*ours, **kw_ours)
    ref_out, ref_w = ref_mha(*theirs, **kw_ref)
    np.testing.assert_allclose(host(out), ref_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    g = rng.standard_normal(ref_out.shape)
    loss = (out * tl.tensor(g, device=device)).sum()
    ref_loss = (ref_out * torch.tensor(g)).sum()
    if need_weights:
        assert w.shape == tuple(ref_w.shape)
        np.testing.assert_allclose(host(w), ref_w.detach().numpy(), rtol=1e-9, atol=1e-12)
        gw = rng.standard_normal(ref_w.shape)
        loss = loss + (w * tl.tensor(gw, device=device)).sum()
        ref_loss = ref_loss + (ref_w * torch.tensor(gw)).sum()
    else:
        assert w is None and ref_w is None
    loss.backward()
    ref_loss.backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(host(a.grad), b.grad.numpy(), rtol=1e-8, atol=1e-11)
    ref_params = dict(ref_mha.named_parameters())
    for name, p in mha.named_parameters():
        np.testing.assert_allclose(host(p.grad), ref_params[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


def test_mha_self_attention_and_unbatched_against_pytorch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    L, E, H = 4, 6, 2
    ref_mha = torch.nn.MultiheadAttention(E, H).double()
    mha = MultiheadAttention(E, H).to(dtype="float64", device=device)
    mha.load_state_dict({k: v.detach().numpy() for k, v in ref_mha.state_dict().items()})
    x = rng.standard_normal((L, E))
    kpm = np.array([0.0, -np.inf, 0.0, 0.0])
    am = rng.uniform(-1, 1, (H, L, L))
    xt = tl.tensor(x, device=device, requires_grad=True)
    rt = torch.tensor(x, requires_grad=True)
    out, w = mha(xt, xt, xt, key_padding_mask=tl.tensor(kpm, device=device), attn_mask=tl.tensor(am, device=device),
                 average_attn_weights=False)
    ref_out, ref_w = ref_mha(rt, rt, rt, key_padding_mask=torch.tensor(kpm), attn_mask=torch.tensor(am),
                             average_attn_weights=False)
    assert out.shape == (L, E) and w.shape == (H, L, L)
    np.testing.assert_allclose(host(out), ref_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(host(w), ref_w.detach().numpy(), rtol=1e-9, atol=1e-12)
    out.sum().backward()
    ref_out.sum().backward()
    np.testing.assert_allclose(host(xt.grad), rt.grad.numpy(), rtol=1e-8, atol=1e-11)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_mha_fully_masked_rows_as_pytorch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    ref_mha = torch.nn.MultiheadAttention(4, 2, batch_first=True).double()
    mha = MultiheadAttention(4, 2, batch_first=True).to(dtype="float64", device=device)
    mha.load_state_dict({k: v.detach().numpy() for k, v in ref_mha.state_dict().items()})
    x = rng.standard_normal((2, 3, 4))
    am = np.zeros((3, 3), dtype=bool)
    am[1] = True  # query 1 may see nothing
    for need_weights in (True, False):
        out, _ = mha(tl.tensor(x, device=device), tl.tensor(x, device=device), tl.tensor(x, device=device),
                     attn_mask=tl.tensor(am, device=device), need_weights=need_weights)
        ref, _ = ref_mha(torch.tensor(x), torch.tensor(x), torch.tensor(x), attn_mask=torch.tensor(am),
                         need_weights=need_weights)
        np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-10, atol=1e-12)  # NaN == NaN here
        assert np.isnan(host(out)[:, 1]).all() == need_weights
