"""The fast attention op (tinygrad_lm/fast/fused_attention.py) against the reference (tinygrad_lm/ops/attention.py).

Every case runs twice on the same inputs, with the fast path on and off, and compares the output
and the gradients of Q, K, V and a float mask: float64 to rounding, float32 to float32's rounding
of the same terms. The cases cover what the fast op takes (its kernels) and what it hands to the
reference: additive float masks, causal and boolean masks, fully masked rows, dropout keep-masks,
masks and keep-masks of every broadcast shape, batch and head dims that broadcast between Q, K
and V, and empty sizes. Float64 gradchecks run on both paths. tests/test_fast_attention_kernels.py
checks that the CPU kernels really run, and against the equations.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm.fast import compiler, fused_attention
from tinygrad_lm.ops import attention

REFERENCE = attention.ScaledDotProductAttention
FAST = fused_attention.ScaledDotProductAttention
TOL = {"float32": 2e-5, "float64": 1e-11}  # relative to the largest entry of each compared array


def host(t):
    return None if t is None else np.asarray(tl.backend.to_host(t.array))


def test_the_fast_op_is_registered_against_the_reference():
    assert tl.fast.registry()[REFERENCE] is FAST
    assert FAST.__name__ == REFERENCE.__name__ and issubclass(FAST, REFERENCE)


def run(fast, device, dtype, q, k, v, mask, keep, scale, g, mask_grad=True):
    """O, dQ, dK, dV and dM (None without a float mask that takes a gradient) on one path, and whether
    the fast op's kernels ran (None on the reference)."""
    with tl.fast.enabled(fast):
        ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (q, k, v)]
        tm = None if mask is None else tl.tensor(mask.astype(dtype), device=device, requires_grad=mask_grad)
        keep_data = None if keep is None else tl.tensor(keep.astype(dtype), device=device).array
        out = REFERENCE.apply(*ts, tm, keep=keep_data, scale=scale)
        assert type(out.grad_fn) is (FAST if fast else REFERENCE)
        kernels = out.grad_fn.back is not None if fast else None
        out.backward(tl.tensor(g.astype(dtype), device=device))
    grads = [host(t.grad) for t in ts] + [host(tm.grad) if tm is not None and mask_grad else None]
    return [host(out)] + grads, kernels


def assert_same(fast, ref, dtype):
    for a, b in zip(fast, ref):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype)
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * scale)


def both_paths(device, dtype, q, k, v, mask, keep, scale, g, mask_grad=True):
    """Runs the case on both paths, asserts they agree, and returns the reference's results and whether
    the fast op's kernels ran."""
    fast, kernels = run(True, device, dtype, q, k, v, mask, keep, scale, g, mask_grad)
    ref, _ = run(False, device, dtype, q, k, v, mask, keep, scale, g, mask_grad)
    assert_same(fast, ref, dtype)
    return ref, kernels


MASK_SHAPES = {"LS": lambda B, H, L, S: (L, S), "B1LS": lambda B, H, L, S: (B, 1, L, S),
               "1HLS": lambda B, H, L, S: (1, H, L, S), "BHLS": lambda B, H, L, S: (B, H, L, S),
               "B11S": lambda B, H, L, S: (B, 1, 1, S), "L1": lambda B, H, L, S: (L, 1),
               "S": lambda B, H, L, S: (S,), "2BHLS": lambda B, H, L, S: (2, B, H, L, S)}
MASK_VALUES = ["float", "causal", "bool", "fully_masked_row"]
KEEP_SHAPES = {"none": None, "BHLS": lambda B, H, L, S: (B, H, L, S), "1HLS": lambda B, H, L, S: (1, H, L, S),
               "2BHLS": lambda B, H, L, S: (2, B, H, L, S)}


def make_mask(rng, shape, values, L, S):
    """An additive mask of ``shape``: finite values, a causal pattern (0 / -inf), or random 0 / -inf
    (a boolean mask as F.scaled_dot_product_attention passes it) with one query that sees no key."""
    if values == "float":
        return rng.standard_normal(shape)
    if values == "causal":
        allowed = np.broadcast_to(np.tri(L, S, dtype=bool)[L - shape[-2]:, S - shape[-1]:], shape) \
            if len(shape) >= 2 else np.broadcast_to(np.tri(L, S, dtype=bool)[-1], shape)
    else:
        allowed = rng.random(shape) < 0.7
        if values == "fully_masked_row" and len(shape) >= 2:
            allowed[..., shape[-2] // 2, :] = False
    return np.where(allowed, 0.0, -np.inf)


@st.composite
def cases(draw, max_len=12):
    """q, k, v, mask, keep, scale, g with batch (B, H), (N,) or none, Q, K and V batch dims that broadcast
    against each other, every mask and keep-mask shape above, and L, S up to ``max_len``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    L, S = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    E, Ev = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    layout = draw(st.sampled_from(["BH", "N", "none", "k_shared", "v_adds_batch"]))
    batch = {"BH": (B, H), "N": (B * H,), "none": ()}.get(layout, (B, H))
    q, k = rng.standard_normal(batch + (L, E)), rng.standard_normal(batch + (S, E))
    v = rng.standard_normal(batch + (S, Ev))
    if layout == "k_shared":  # one K for every head and batch element
        k = rng.standard_normal((1, H, S, E)) if draw(st.booleans()) else rng.standard_normal((S, E))
    if layout == "v_adds_batch":  # V broadcasts P over one more batch dim
        v = rng.standard_normal((2,) + batch + (S, Ev))
    if len(batch) != 2:
        B = H = 1
    mask = keep = None
    if draw(st.booleans()):
        names = sorted(MASK_SHAPES) if len(batch) == 2 else ["LS", "L1", "S"]
        mask = make_mask(rng, MASK_SHAPES[draw(st.sampled_from(names))](B, H, L, S),
                         draw(st.sampled_from(MASK_VALUES)), L, S)
    keep_kind = draw(st.sampled_from(sorted(KEEP_SHAPES) if len(batch) == 2 else ["none"]))
    if keep_kind != "none":
        keep = (rng.random(KEEP_SHAPES[keep_kind](B, H, L, S)) < 0.75) / 0.75
    scale = draw(st.sampled_from([1.0, 0.5, 2.0]))
    out_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                                    () if mask is None else mask.shape[:-2],
                                    () if keep is None else keep.shape[:-2]) + (L, Ev)
    return q * 2, k, v, mask, keep, scale, rng.standard_normal(out_shape)


@settings(max_examples=60)
@given(case=cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_fast_matches_the_reference(device, case, dtype):
    """O, dQ, dK, dV and dM of the fast op == the reference's, whichever way the fast op runs the case."""
    q, k, v, mask, keep, scale, g = case
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    both_paths(device, dtype, q, k, v, mask, keep, scale, g, mask_grad=finite)


@settings(max_examples=15)
@given(case=cases(max_len=4), fast=st.booleans())
def test_gradcheck_float64(device, case, fast):
    """Finite differences against both paths' backward (a float mask with no -inf included)."""
    q, k, v, mask, keep, scale, _ = case
    tl.fast.set_enabled(fast)
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    tm = None if mask is None else tl.tensor(mask, device=device, requires_grad=finite)  # -inf: no difference
    keep_data = None if keep is None else tl.tensor(keep, device=device).array

    def fn(a, b, c, m=tm):
        return REFERENCE.apply(a, b, c, m, keep=keep_data, scale=scale)

    assert type(fn(*ts).grad_fn) is (FAST if fast else REFERENCE)
    assert tl.gradcheck(fn, ts + ([tm] if finite and tm is not None else []))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mask_shape", ["LS", "B1LS", "BHLS", "2BHLS"])
def test_fully_masked_rows_give_zero_output_and_gradients_on_both_paths(device, dtype, mask_shape):
    rng = np.random.default_rng(1)
    B, H, L, S = 2, 3, 35, 35
    q, k, v, g = (rng.standard_normal((B, H, L, 4)) for _ in range(4))
    shape = MASK_SHAPES[mask_shape](B, H, L, S)
    allowed = rng.random(shape) < 0.5
    allowed[..., [0, 17, 34], :] = False  # three queries see no key
    mask = np.where(allowed, 0.0, -np.inf)
    g = rng.standard_normal(shape[:-2] + (L, 4)) if mask_shape == "2BHLS" else g
    (out, dq, dk, dv, dm), _ = both_paths(device, dtype, q, k, v, mask, None, 0.5, g)
    assert np.all(out[..., [0, 17, 34], :] == 0) and np.all(dq[..., [0, 17, 34], :] == 0)
    assert np.all(dm[..., [0, 17, 34], :] == 0)
    assert all(np.all(np.isfinite(a)) for a in (out, dq, dk, dv, dm))


@pytest.mark.skipif(not compiler.numba_available(), reason="the CPU kernels need Numba")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["causal", "float_LS", "padding_B11S", "per_head_BHLS", "dropout", "no_mask"])
def test_cpu_kernels_take_the_usual_layouts(dtype, case):
    """A GPT's causal mask, a key padding mask, a float mask, a mask per head and dropout all run the kernels."""
    rng = np.random.default_rng(2)
    B, H, L, S = 2, 2, 9, 9
    q, k, v, g = (rng.standard_normal((B, H, L, 3)) for _ in range(4))
    mask = keep = None
    if case == "causal":
        mask = make_mask(rng, (L, S), "causal", L, S)
    elif case == "float_LS":
        mask = rng.standard_normal((L, S))
    elif case == "padding_B11S":
        mask = make_mask(rng, (B, 1, 1, S), "bool", L, S)
    elif case == "per_head_BHLS":
        mask = make_mask(rng, (B, H, L, S), "fully_masked_row", L, S)
    elif case == "dropout":
        keep = (rng.random((B, H, L, S)) < 0.8) / 0.8
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    _, kernels = both_paths("cpu", dtype, q, k, v, mask, keep, 0.6, g, mask_grad=finite)
    assert kernels


@pytest.mark.parametrize("shapes", [
    ((2, 3, 4), (2, 0, 4), (2, 0, 2)),  # no keys: O = 0
    ((2, 0, 4), (2, 3, 4), (2, 3, 2)),  # no queries
    ((0, 3, 4), (0, 3, 4), (0, 3, 2)),  # an empty batch
])
@pytest.mark.parametrize("causal", [False, True])
def test_empty_sizes(device, shapes, causal):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s) for s in shapes)
    L, S = q.shape[-2], k.shape[-2]
    mask = make_mask(rng, (L, S), "causal", L, S) if causal else None
    g = rng.standard_normal(q.shape[:-1] + v.shape[-1:])
    (out, *_), _ = both_paths(device, "float64", q, k, v, mask, None, 1.0, g, mask_grad=False)
    assert out.shape == g.shape and not out.any()


def functional_run(fast, device, dtype, q, k, v, g, **kwargs):
    with tl.fast.enabled(fast):
        tl.manual_seed(5)  # the same dropout keep-mask on both paths
        ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (q, k, v)]
        if "attn_mask" in kwargs and isinstance(kwargs["attn_mask"], np.ndarray):
            kwargs["attn_mask"] = tl.tensor(kwargs["attn_mask"], device=device)
        out = F.scaled_dot_product_attention(*ts, **kwargs)
        out.backward(tl.tensor(g.astype(dtype), device=device))
    return [host(out)] + [host(t.grad) for t in ts]


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(1, 12), S=st.integers(1, 12),
       mask_kind=st.sampled_from(["none", "causal", "bool_LS", "bool_padding", "bool_per_head"]),
       dropout_p=st.sampled_from([0.0, 0.3]), dtype=st.sampled_from(["float32", "float64"]))
def test_functional_sdpa_fast_matches_the_reference(device, seed, L, S, mask_kind, dropout_p, dtype):
    """F.scaled_dot_product_attention with is_causal, boolean masks (True: may attend) and dropout."""
    rng = np.random.default_rng(seed)
    B, H, E = 2, 2, 3
    q, k, v = rng.standard_normal((B, H, L, E)), rng.standard_normal((B, H, S, E)), rng.standard_normal((B, H, S, E))
    g = rng.standard_normal((B, H, L, E))
    kwargs: dict = {"dropout_p": dropout_p}
    if mask_kind == "causal":
        kwargs["is_causal"] = True
    elif mask_kind != "none":
        shape = {"bool_LS": (L, S), "bool_padding": (B, 1, 1, S), "bool_per_head": (B, H, L, S)}[mask_kind]
        kwargs["attn_mask"] = rng.random(shape) < 0.6  # some queries may see no key
    fast = functional_run(True, device, dtype, q, k, v, g, **kwargs)
    ref = functional_run(False, device, dtype, q, k, v, g, **kwargs)
    assert_same(fast + [None], ref + [None], dtype)


# ------------------------------------------------------------------------------- the op that returns the weights

REFERENCE_W = attention.ScaledDotProductAttentionWeights
FAST_W = fused_attention.ScaledDotProductAttentionWeights


def test_the_weights_op_is_registered_against_its_reference():
    assert tl.fast.registry()[REFERENCE_W] is FAST_W
    assert FAST_W.__name__ == REFERENCE_W.__name__ and issubclass(FAST_W, REFERENCE_W) and issubclass(FAST_W, FAST)


def run_weights(fast, device, dtype, q, k, v, mask, keep, scale, g, gw, mask_grad=True):
    """O, P', dQ, dK, dV and dM of the weights op on one path, the loss reaching it through O (``g``), through P'
    (``gw``) or both (either None: not that way)."""
    with tl.fast.enabled(fast):
        ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (q, k, v)]
        tm = None if mask is None else tl.tensor(mask.astype(dtype), device=device, requires_grad=mask_grad)
        keep_data = None if keep is None else tl.tensor(keep.astype(dtype), device=device).array
        out, w = REFERENCE_W.apply(*ts, tm, keep=keep_data, scale=scale)
        assert type(out.grad_fn) is (FAST_W if fast else REFERENCE_W) and w.grad_fn is out.grad_fn
        terms = [(t * tl.tensor(d.astype(dtype), device=device)).sum() for t, d in ((out, g), (w, gw)) if d is not None]
        (terms[0] + terms[1] if len(terms) == 2 else terms[0]).backward()
    grads = [host(t.grad) for t in ts] + [host(tm.grad) if tm is not None and mask_grad else None]
    return [host(out), host(w)] + grads


@settings(max_examples=60)
@given(case=cases(), dtype=st.sampled_from(["float32", "float64"]), through=st.sampled_from(["both", "out", "weights"]))
def test_weights_op_fast_matches_the_reference(device, case, dtype, through):
    """O, P' and every gradient of the weights op agree on both paths, with the loss through O, P' or both."""
    q, k, v, mask, keep, scale, g = case
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    rng = np.random.default_rng(7)
    w_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], () if mask is None else mask.shape[:-2],
                                  () if keep is None else keep.shape[:-2]) + (q.shape[-2], k.shape[-2])
    gw = None if through == "out" else rng.standard_normal(w_shape)
    g = None if through == "weights" else g
    fast = run_weights(True, device, dtype, q, k, v, mask, keep, scale, g, gw, finite)
    ref = run_weights(False, device, dtype, q, k, v, mask, keep, scale, g, gw, finite)
    if through == "weights":  # V does not reach P': no gradient on either path
        assert fast[4] is None and ref[4] is None
        fast, ref = fast[:4] + fast[5:], ref[:4] + ref[5:]
    assert_same(fast, ref, dtype)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "float"])
@pytest.mark.parametrize("dropout", [False, True])
def test_weights_op_equations(device, fast, mask_kind, dropout):
    """P' = softmax(s Q K^T + M) * D and O = P' V, against NumPy in float64."""
    rng = np.random.default_rng(11)
    B, H, L, S, E = 2, 3, 7, 7, 4
    q, k, v = rng.standard_normal((B, H, L, E)), rng.standard_normal((B, H, S, E)), rng.standard_normal((B, H, S, 2))
    masks = {"none": None, "causal": make_mask(rng, (L, S), "causal", L, S), "float": rng.standard_normal((L, S))}
    mask = masks[mask_kind]
    keep = (rng.random((B, H, L, S)) < 0.7) / 0.7 if dropout else None
    out, w = run_weights(fast, device, "float64", q, k, v, mask, keep, 0.5, rng.standard_normal((B, H, L, 2)),
                         None, mask_grad=False)[:2]
    s = q @ np.swapaxes(k, -1, -2) * 0.5 + (0 if mask is None else mask)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    want = p if keep is None else p * keep
    np.testing.assert_allclose(w, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out, want @ v, rtol=1e-12, atol=1e-14)


@settings(max_examples=15)
@given(case=cases(max_len=4), fast=st.booleans(), through=st.sampled_from(["both", "weights"]))
def test_weights_op_gradcheck_float64(device, case, fast, through):
    """Finite differences against both paths' backward, with the weights reaching the checked function."""
    q, k, v, mask, keep, scale, _ = case
    tl.fast.set_enabled(fast)
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v)]
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    tm = None if mask is None else tl.tensor(mask, device=device, requires_grad=finite)
    keep_data = None if keep is None else tl.tensor(keep, device=device).array

    # V does not reach P': it is checked only when the function returns O too
    checked = ts[:2] + ts[2:] * (through == "both") + ([tm] if finite and tm is not None else [])

    def fn(*xs):
        given = dict(zip(map(id, checked), xs))
        a, b, c = (given.get(id(t), t) for t in ts)
        out, w = REFERENCE_W.apply(a, b, c, given.get(id(tm), tm), keep=keep_data, scale=scale)
        return (out, w) if through == "both" else w

    assert type(fn(*checked)[-1].grad_fn if through == "both" else fn(*checked).grad_fn) is (FAST_W if fast else
                                                                                              REFERENCE_W)
    assert tl.gradcheck(fn, checked)


@pytest.mark.parametrize("fast", [True, False])
def test_changing_the_weights_in_place(device, fast):
    """P' is what the backward reads (no dropout). Changed in place while the graph is recorded, it takes a new
    value and node (the engine writes nothing into saved memory): the gradients are those of the out-of-place
    change. Changed in place under no_grad, its memory changes, and backward raises, as PyTorch does."""
    rng = np.random.default_rng(12)
    arrays = [rng.standard_normal((2, 5, 3)) for _ in range(3)]
    with tl.fast.enabled(fast):
        grads = []
        for change in ("in place", "out of place"):
            q, k, v = (tl.tensor(a, device=device, requires_grad=True) for a in arrays)
            out, w = REFERENCE_W.apply(q, k, v, None, keep=None, scale=1.0)
            if change == "in place":
                w.mul_(w)
            else:
                w = w * w
            (out.sum() + w.sum()).backward()
            grads.append([host(t.grad) for t in (q, k, v)])
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        q, k, v = (tl.tensor(a, device=device, requires_grad=True) for a in arrays)
        out, w = REFERENCE_W.apply(q, k, v, None, keep=None, scale=1.0)
        with tl.no_grad():
            w.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            (out.sum() + w.sum()).backward()
