"""The attention op's compiled softmax kernels (tinygrad_lm.fast.fused_attention, Numba) against the reference
op (tinygrad_lm.ops.attention) and the equations.

The kernels run only on NumPy arrays (the CPU), so these tests do not take the ``device`` fixture;
tests/test_attention.py and tests/test_attention_fast.py check both paths on every backend, and
tests/test_fast_attention.py the fast one against the reference. Every comparison also asserts that
the kernels really ran (``spy``), so that it cannot compare the reference with itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm.fast import compiler, fused_attention
from tinygrad_lm.ops.attention import ScaledDotProductAttention

pytest.importorskip("numba")

TOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the compiled forward and backward softmax: ``spy["forward"]``, ``spy["backward"]``."""
    calls = {"forward": 0, "backward": 0}
    for name, key in (("_fused_softmax", "forward"), ("_fused_softmax_back", "backward")):
        real = getattr(fused_attention, name)

        def counted(*args, _real=real, _key=key):
            calls[_key] += 1
            return _real(*args)

        monkeypatch.setattr(fused_attention, name, counted)
    return calls


def host(t):
    return None if t is None else t.detach().numpy()


def sum_to(a, shape):
    """``a`` summed over the axes along which an array of ``shape`` was broadcast into it."""
    lead = a.ndim - len(shape)
    a = a.sum(axis=tuple(range(lead))) if lead else a
    return a.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


def equations(q, k, v, mask, keep, scale, g):
    """float64 O, dQ, dK, dV, dM of the op's equations, and the size of the terms each one sums.

    A float evaluation of the same equations is off by a few rounding units times these sizes,
    times 1 + max |S| (a score's rounding error, relative to 1, becomes P's relative error).
    """
    s = q @ np.swapaxes(k, -1, -2) * scale  # (..., L, S)
    cond = 1.0 + float(np.max(np.abs(q) @ np.abs(np.swapaxes(k, -1, -2)) * scale, initial=0.0))
    if mask is not None:
        s = s + mask
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total > 0, total, 1.0)
    d = np.ones_like(p) if keep is None else keep
    out = (p * d) @ v
    dp = (g @ np.swapaxes(v, -1, -2)) * d
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    ds_size = p * (np.abs(dp) + (np.abs(dp) * p).sum(axis=-1, keepdims=True))
    refs = (out, sum_to(ds @ k * scale, q.shape), sum_to(np.swapaxes(ds, -1, -2) @ q * scale, k.shape),
            sum_to(np.swapaxes(p * d, -1, -2) @ g, v.shape), None if mask is None else sum_to(ds, mask.shape))
    sizes = ((p * d) @ np.abs(v), ds_size @ np.abs(k) * scale, np.swapaxes(ds_size, -1, -2) @ np.abs(q) * scale,
             np.swapaxes(p * d, -1, -2) @ np.abs(g), ds_size)
    return refs, [cond * (1.0 + float(np.max(size, initial=0.0))) for size in sizes]


def reference_softmax(s):
    """softmax over the last axis as the reference computes it: shifted by each row's max (0 where that is
    not finite), and 0 for a row that sees no key."""
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total == 0, 1, total)


def run_op(fast, dtype, q, k, v, mask, keep, scale, g, mask_grad=True):
    """O and the gradients of q, k, v and the mask (None where it has none) of the op, on the fast path or not."""
    tl.fast.set_enabled(fast)
    ts = [tl.tensor(a.astype(dtype), requires_grad=True) for a in (q, k, v)]
    tm = None if mask is None else tl.tensor(mask.astype(dtype), requires_grad=mask_grad)
    keep_data = None if keep is None else keep.astype(dtype)
    out = ScaledDotProductAttention.apply(*ts, tm, keep=keep_data, scale=scale)
    out.backward(tl.tensor(g.astype(dtype)))
    grads = [host(t.grad) for t in ts] + [None if tm is None or not mask_grad else host(tm.grad)]
    return [host(out)] + grads


def assert_matches(got, ref, sizes, tol):
    for a, b, size in zip(got, ref, sizes):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * size)


MASK_SHAPES = ["LS", "B1LS", "1HLS", "BHLS", "B11S", "L1"]
MASK_VALUES = ["float", "causal", "anticausal", "allowed", "fully_masked_row"]


def make_mask(rng, shape_kind, values, B, H, L, S):
    """An additive mask of one of MASK_SHAPES: finite values, a causal (or anti-causal: query i sees keys j >= i)
    pattern, or random 0 / -inf with some rows all -inf."""
    shape = {"LS": (L, S), "B1LS": (B, 1, L, S), "1HLS": (1, H, L, S), "BHLS": (B, H, L, S),
             "B11S": (B, 1, 1, S), "L1": (L, 1)}[shape_kind]
    if values == "float":
        return rng.standard_normal(shape)
    if values in ("causal", "anticausal"):
        tri = np.tri(L, S, dtype=bool) if values == "causal" else ~np.tri(L, S, -1, dtype=bool)
        allowed = np.broadcast_to(tri[: shape[-2], : shape[-1]], shape)
    else:
        allowed = rng.random(shape) < 0.7
        if values == "fully_masked_row":
            allowed[..., shape[-2] // 2, :] = False
    return np.where(allowed, 0.0, -np.inf)


@st.composite
def attention_cases(draw):
    """q, k, v, mask, keep, scale, g: batch (B, H), queries L and keys S up to 40 (past one 32-query chunk)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    L, S = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    E, Ev = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    batch = (B, H) if draw(st.booleans()) else ((B * H,) if draw(st.booleans()) else ())
    if not batch:
        B = H = 1
    q, k = rng.standard_normal(batch + (L, E)), rng.standard_normal(batch + (S, E))
    v = rng.standard_normal(batch + (S, Ev))
    mask = None
    if draw(st.booleans()):
        shape_kind = draw(st.sampled_from(MASK_SHAPES if len(batch) == 2 else ["LS", "L1"]))
        mask = make_mask(rng, shape_kind, draw(st.sampled_from(MASK_VALUES)), B, H, L, S)
    keep = (rng.random(batch + (L, S)) < 0.75) / 0.75 if draw(st.booleans()) else None
    scale = draw(st.sampled_from([1.0, 0.5, 3.0]))
    return q * 2, k, v, mask, keep, scale, rng.standard_normal(batch + (L, Ev))


@settings(max_examples=40)
@given(case=attention_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_kernels_match_the_reference(spy, case, dtype):
    """O and dQ, dK, dV, dM: compiled kernels == reference within rounding of the terms (``equations``)."""
    q, k, v, mask, keep, scale, g = case
    spy["forward"] = spy["backward"] = 0
    got = run_op(True, dtype, q, k, v, mask, keep, scale, g)
    assert spy == {"forward": 1, "backward": 1}
    ref = run_op(False, dtype, q, k, v, mask, keep, scale, g)
    assert spy == {"forward": 1, "backward": 1}
    _, sizes = equations(q, k, v, mask, keep, scale, g)
    for a in got[:4]:
        assert a.dtype == np.dtype(dtype)
    assert_matches(got, ref, sizes, TOL[dtype])


@settings(max_examples=25)
@given(case=attention_cases())
def test_float64_kernels_match_the_equations(spy, case):
    q, k, v, mask, keep, scale, g = case
    spy["forward"] = spy["backward"] = 0
    got = run_op(True, "float64", q, k, v, mask, keep, scale, g)
    assert spy == {"forward": 1, "backward": 1}
    refs, sizes = equations(q, k, v, mask, keep, scale, g)
    assert_matches(got, refs, sizes, 1e-12)


@settings(max_examples=15)
@given(case=attention_cases())
def test_gradcheck_with_kernels(spy, case):
    q, k, v, mask, keep, scale, _ = case
    spy["forward"] = spy["backward"] = 0
    q, k, v = q[..., :6, :], k[..., :6, :], v[..., :6, :]  # few elements: gradcheck perturbs each
    L, S = q.shape[-2], k.shape[-2]
    if mask is not None:
        mask = mask[..., : min(L, mask.shape[-2]), : min(S, mask.shape[-1])]
        mask = np.where(np.isfinite(mask), mask, -np.inf)
    keep = None if keep is None else keep[..., :L, :S]
    tl.fast.set_enabled(True)
    ts = [tl.tensor(a, requires_grad=True) for a in (q, k, v)]
    finite = mask is None or bool(np.all(np.isfinite(mask)))
    tm = None if mask is None else tl.tensor(mask, requires_grad=finite)  # -inf entries have no finite difference

    def fn(a, b, c, m=tm):
        return ScaledDotProductAttention.apply(a, b, c, m, keep=keep, scale=scale)

    assert tl.gradcheck(fn, ts + ([] if tm is None else [tm]))
    assert spy["forward"] > 0 and spy["backward"] > 0


@pytest.mark.parametrize("values", ["causal", "anticausal"])
def test_chunks_of_queries_a_key_cannot_see_are_skipped(spy, values):
    """L = S = 70, chunks of 32 queries: causal, keys 32.. see no query of the first chunk (its exp is skipped),
    keys 64.. none of the second; anti-causal, keys ..31 see none of the second chunk and ..63 none of the third."""
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((2, 70, 3)) for _ in range(4))
    mask = make_mask(rng, "LS", values, 1, 1, 70, 70)
    for dtype in ("float32", "float64"):
        got = run_op(True, dtype, q, k, v, mask, None, 0.7, g)
        ref = run_op(False, dtype, q, k, v, mask, None, 0.7, g)
        _, sizes = equations(q, k, v, mask, None, 0.7, g)
        assert_matches(got, ref, sizes, TOL[dtype])
    assert spy == {"forward": 2, "backward": 2}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fully_masked_queries_give_zero_output_and_gradients(spy, dtype):
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((2, 3, 35, 4)) for _ in range(4))
    allowed = rng.random((35, 35)) < 0.5
    allowed[[0, 17, 34]] = False  # three queries see no key
    mask = np.where(allowed, 0.0, -np.inf)
    out, dq, dk, dv, dm = run_op(True, dtype, q, k, v, mask, None, 0.5, g)
    assert spy == {"forward": 1, "backward": 1}
    assert np.all(out[..., [0, 17, 34], :] == 0) and np.all(dq[..., [0, 17, 34], :] == 0)
    assert np.all(dm[[0, 17, 34]] == 0)
    assert all(np.all(np.isfinite(a)) for a in (out, dq, dk, dv, dm))


@pytest.mark.parametrize("dtype,size", [("float32", 100.0), ("float64", 800.0)])
def test_large_logits_are_shifted(spy, dtype, size):
    """Scores far past exp's range (an unshifted exp gives inf or 0) still give the right softmax."""
    rng = np.random.default_rng(5)
    k = rng.standard_normal((6, 4))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    q = np.stack([k[0] * size, -k[0] * size, np.zeros(4)])  # (3, 4): huge, hugely negative and zero scores
    v, g = rng.standard_normal((6, 2)), rng.standard_normal((3, 2))
    got = run_op(True, dtype, q, k, v, None, None, 1.0, g)
    refs, sizes = equations(q, k, v, None, None, 1.0, g)
    assert spy == {"forward": 1, "backward": 1}
    assert all(np.all(np.isfinite(a)) for a in got[:4])
    # float32 rounds the scores (about +-100) to 1e-5 absolute: P's error is that, relative
    assert_matches(got, refs, [1.0] * 5, 1e-4 if dtype == "float32" else 1e-10)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the reference's NaN + -inf
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("where", ["query", "key"])
def test_nan_reaches_the_same_entries_as_on_the_reference(spy, dtype, where):
    """A NaN query spoils its own row; a NaN key every row (also those the causal mask hides it from, as NaN + -inf)."""
    rng = np.random.default_rng(6)
    q, k, v, g = (rng.standard_normal((2, 40, 3)) for _ in range(4))
    mask = make_mask(rng, "LS", "causal", 1, 1, 40, 40)
    if where == "query":
        q[1, 5, 0] = np.nan
    else:
        k[0, 36, 1] = np.nan
    got = run_op(True, dtype, q, k, v, mask, None, 1.0, g, mask_grad=False)
    ref = run_op(False, dtype, q, k, v, mask, None, 1.0, g, mask_grad=False)
    assert spy == {"forward": 1, "backward": 1}
    for a, b in zip(got[:4], ref[:4]):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.isnan(a).any()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # NaN where NaN, else close


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the reference's inf + -inf
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_bad_score_where_the_mask_hides_it_spoils_its_query_as_on_the_reference(dtype, bad):
    """K Q^T with NaN or inf at a key the mask hides in a skipped chunk: x = NaN there, kept (not read as masked)."""
    L = S = 70
    rng = np.random.default_rng(9)
    st0 = rng.standard_normal((2, S, L)).astype(dtype)  # K Q^T, (N, S, L)
    st0[1, 40, 3] = bad  # key 40 is hidden from query 3: in its first, skipped chunk of 32 queries
    mask = np.where(np.tri(L, S, dtype=bool), 0.0, -np.inf).astype(dtype)  # (L, S)
    kernel = compiler.compiled(fused_attention._softmax_kernel, st0)
    assert kernel is not None
    st = st0.copy()
    operands = fused_attention._kernel_operands(np, np.ndarray, st.shape, st.dtype, mask, None)
    pt, _ = fused_attention._fused_softmax(np, kernel, st, operands, 0.5)
    ref = np.swapaxes(reference_softmax(np.swapaxes(st0, -1, -2) * st0.dtype.type(0.5) + mask), -1, -2)
    np.testing.assert_array_equal(np.isnan(pt), np.isnan(ref))
    assert np.all(np.isnan(pt[1, :, 3])) and np.isnan(pt).sum() == S
    np.testing.assert_allclose(pt, ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("layout", ["mask_adds_batch_dims", "value_adds_batch_dims", "keep_adds_batch_dims"])
def test_layouts_the_kernels_do_not_take_use_the_reference(spy, layout):
    """Broadcasts that make P larger than K Q^T run the reference, with the same results."""
    rng = np.random.default_rng(7)
    q, k, v = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 2))
    mask, keep, g_shape = make_mask(rng, "LS", "causal", 1, 1, 5, 6), None, (2, 5, 2)
    if layout == "mask_adds_batch_dims":
        mask, g_shape = rng.standard_normal((3, 2, 5, 6)), (3, 2, 5, 2)
    elif layout == "value_adds_batch_dims":
        q, k, v, g_shape = q[0], k[0], rng.standard_normal((2, 6, 2)), (2, 5, 2)
    elif layout == "keep_adds_batch_dims":
        keep, g_shape = (rng.random((3, 2, 5, 6)) < 0.7) / 0.7, (3, 2, 5, 2)
    g = rng.standard_normal(g_shape)
    tl.fast.set_enabled(True)
    ts = [tl.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = ScaledDotProductAttention.apply(*ts, tl.tensor(mask), keep=keep, scale=0.8)
    out.backward(tl.tensor(g))
    got = [host(out)] + [host(t.grad) for t in ts]
    refs, sizes = equations(q, k, v, mask, keep, 0.8, g)
    assert_matches(got, refs[:4], sizes[:4], TOL["float64"])
    # only V's extra batch dims leave the forward kernel its layout (dP, not P, is then the larger one)
    assert spy == {"forward": int(layout == "value_adds_batch_dims"), "backward": 0}


def sdpa_run(fast, dtype, q, k, v, g, **kwargs):
    tl.fast.set_enabled(fast)
    tl.manual_seed(99)  # the same dropout keep-mask both ways
    ts = [tl.tensor(a.astype(dtype), requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, **kwargs)
    out.backward(tl.tensor(g.astype(dtype)))
    return [host(out)] + [host(t.grad) for t in ts]


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(1, 40), causal=st.booleans(), bool_mask=st.booleans(),
       dropout_p=st.sampled_from([0.0, 0.2]), dtype=st.sampled_from(["float32", "float64"]))
def test_functional_sdpa_matches_the_reference(spy, seed, L, causal, bool_mask, dropout_p, dtype):
    """F.scaled_dot_product_attention with is_causal, a boolean mask and dropout: kernels == reference."""
    rng = np.random.default_rng(seed)
    B, H, E = 2, 2, 4
    q, k, v, g = (rng.standard_normal((B, H, L, E)) for _ in range(4))
    kwargs: dict = {"dropout_p": dropout_p, "scale": 0.4}
    mask = None
    if causal:
        kwargs["is_causal"] = True
        mask = np.where(np.tri(L, L, dtype=bool), 0.0, -np.inf)
    elif bool_mask:
        allowed = rng.random((B, 1, 1, L)) < 0.6  # a key padding mask; some batches may see no key at all
        kwargs["attn_mask"] = tl.tensor(allowed)
        mask = np.where(allowed, 0.0, -np.inf)
    spy["forward"] = spy["backward"] = 0
    got = sdpa_run(True, dtype, q, k, v, g, **kwargs)
    assert spy == {"forward": 1, "backward": 1}
    ref = sdpa_run(False, dtype, q, k, v, g, **kwargs)
    # sizes of the terms without the keep-mask, times 1 / (1 - p) for the kept ones
    _, sizes = equations(q, k, v, mask, None, 0.4, g)
    assert_matches(got, ref, [s / (1.0 - dropout_p) for s in sizes], TOL[dtype])


def test_kernels_are_used_only_when_the_fast_path_is_on(spy):
    rng = np.random.default_rng(8)
    q, k, v, g = (rng.standard_normal((2, 4, 3)) for _ in range(4))
    run_op(False, "float32", q, k, v, None, None, 1.0, g)
    assert spy == {"forward": 0, "backward": 0}
    run_op(True, "float32", q, k, v, None, None, 1.0, g)
    assert spy == {"forward": 1, "backward": 1}

