"""The compiled kernels (tinygrad_lm.fast.fused_nn, Numba) of cross_entropy and of the embedding's backward.

Each comparison runs F.cross_entropy / F.embedding twice, on the fast path and on the reference
(``tl.fast.set_enabled``), and checks that the kernels did run (:func:`kernels_taken`) and that both
paths agree, NaN and inf included. The reference ops are checked on every backend (and against
PyTorch's formula) in tests/test_functional.py and tests/test_nn_layers.py; the compiled kernels run
only on NumPy arrays here (their CUDA twins are tested in tests/test_cuda_kernels.py), so these tests
take no ``device``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import kernels_taken
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn
from tinygrad_lm.fast import compiler, fused_nn

pytest.importorskip("numba")

TOL = {"float32": 1e-5, "float64": 1e-12}
REDUCTIONS = ["none", "sum", "mean"]
CE_KERNELS = ["_cross_entropy_forward_kernel", "_cross_entropy_backward_kernel"]


def host(t):
    return t.detach().numpy()


def ce_run(mode, x, t, dy, dtype, weight=None, expect=None, **kw):
    """Loss and dx of F.cross_entropy on the ``mode`` path; ``expect``: the kernels that must run."""
    tl.fast.set_enabled(mode == "fast")
    xt = tl.tensor(np.asarray(x, dtype=dtype), requires_grad=True)
    w = None if weight is None else tl.tensor(np.asarray(weight, dtype=dtype))
    with kernels_taken() as taken, np.errstate(all="ignore"):  # the reference warns on log(0), inf - inf
        out = F.cross_entropy(xt, tl.tensor(t), weight=w, **kw)
        out.backward(tl.tensor(np.asarray(dy, dtype=dtype).reshape(out.shape)))
    assert taken == (CE_KERNELS if expect is None else expect) if mode == "fast" else taken == []
    return host(out), host(xt.grad)


def assert_same(got, ref, size, tol):
    """Equal NaN and inf positions; elsewhere within ``tol`` times the size of the terms summed."""
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    np.testing.assert_allclose(got[finite], ref[finite], rtol=0, atol=tol * max(size, 1e-30))


logit = st.one_of(st.floats(-4, 4, width=32), st.sampled_from([1e4, -1e4, -np.inf, np.inf]))


@st.composite
def ce_cases(draw):
    """Logits (N, C) or (C,) with extreme values, targets with ignored entries, weights, options."""
    c = draw(st.integers(1, 7))
    unbatched = draw(st.booleans()) and draw(st.booleans())
    n = 1 if unbatched else draw(st.integers(1, 6))
    finite_only = draw(st.booleans())
    elements = st.floats(-4, 4, width=32) if finite_only else logit
    x = np.array(draw(st.lists(elements, min_size=n * c, max_size=n * c)), dtype=np.float64).reshape(n, c)
    x += draw(st.sampled_from([0.0, 0.0, 1e4, -3e4, 1e30]))  # large logits: log_s must not drown in m
    if not finite_only and draw(st.booleans()):
        x[draw(st.integers(0, n - 1))] = -np.inf  # a row of only -inf
    ignore_index = draw(st.sampled_from([-100, 0, c - 1]))
    t = np.array(draw(st.lists(st.integers(0, c - 1) | st.just(ignore_index), min_size=n, max_size=n)))
    weight = np.array(draw(st.lists(st.floats(0.25, 2.0), min_size=c, max_size=c))) if draw(st.booleans()) else None
    kw = dict(ignore_index=ignore_index, reduction=draw(st.sampled_from(REDUCTIONS)),
              label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])))
    if unbatched:
        x, t = x[0], t[0]
    dy = draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n))
    dy = np.array(dy) if kw["reduction"] == "none" else np.array(dy[0])
    return x, t, dy, weight, kw


def scales(x, weight, dy, t, kw, dtype):
    """The size of the terms summed in the loss and in dx (the rounding of either path is relative to them).

    Both paths subtract the row's maximum m first (exactly, where it matters), so the size is that of x - m.
    """
    x2 = np.atleast_2d(x).astype(dtype).astype(np.float64)
    c = x2.shape[1]
    with np.errstate(invalid="ignore"):
        m = np.where(np.isfinite(x2), x2, -np.inf).max(axis=1, keepdims=True)
        shifted = np.where(np.isfinite(x2) & np.isfinite(m), np.abs(x2 - m), 0.0)
    w_max = 1.0 if weight is None else float(weight.max())
    per_row = w_max * (1 + math.log(c) + 2 * shifted.max(axis=1) * c)
    rows = np.atleast_1d(t) != kw["ignore_index"]
    denom = 1.0
    if kw["reduction"] == "mean":
        w = np.ones(c) if weight is None else weight
        denom = max(float(w[np.atleast_1d(t)[rows]].sum()), 1e-30) if rows.any() else 1.0
    loss_size = float(per_row.max()) if kw["reduction"] == "none" else float(per_row.sum()) / denom
    grad_size = 2 * w_max * float(np.abs(dy).max(initial=0.0)) / denom
    return loss_size, grad_size


@settings(max_examples=60)
@given(case=ce_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_cross_entropy_kernels_match_the_reference(case, dtype):
    """Loss and dx, kernels vs reference: reductions, ignore_index, smoothing, weights, +-1e4, -inf, N = 1, C = 1."""
    x, t, dy, weight, kw = case
    loss_fast, dx_fast = ce_run("fast", x, t, dy, dtype, weight, **kw)
    loss_ref, dx_ref = ce_run("reference", x, t, dy, dtype, weight, **kw)
    loss_size, grad_size = scales(x, weight, dy, t, kw, dtype)
    assert_same(loss_fast, loss_ref, loss_size, TOL[dtype])
    assert_same(dx_fast, dx_ref, grad_size, TOL[dtype])


def equations(x, t, weight, ignore_index, eps):
    """float64 loss_n and d loss_n / d x_n (rows: no upstream factor) from PyTorch's formula for finite x."""
    n, c = x.shape
    w = np.ones(c) if weight is None else weight
    logp = x - x.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    q = (1 - eps) * np.eye(c)[ts] + eps / c
    loss = np.where(valid, -(w * q * logp).sum(1), 0.0)
    dx = np.where(valid[:, None], (w * q).sum(1, keepdims=True) * np.exp(logp) - w * q, 0.0)
    return loss, dx, np.where(valid, w[ts], 0.0)


@pytest.mark.parametrize("n", [31, 32, 33, 100])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_match_the_equations_across_row_blocks(n, dtype):
    """More rows than the forward kernel's block (CROSS_ENTROPY_BLOCK_ROWS = 32), some ignored, smoothed."""
    assert fused_nn.CROSS_ENTROPY_BLOCK_ROWS == 32
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 11)) * 3
    t = rng.integers(0, 11, n)
    t[rng.random(n) < 0.2] = -100
    weight = rng.random(11) + 0.5
    for w in (None, weight):
        loss, dx_rows, w_t = equations(x, t, w, -100, 0.2)
        got_loss, got_dx = ce_run("fast", x, t, np.ones(n), dtype, w, reduction="none", label_smoothing=0.2)
        np.testing.assert_allclose(got_loss, loss, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_allclose(got_dx, dx_rows, rtol=0, atol=TOL[dtype])
        got_mean, got_dx = ce_run("fast", x, t, 1.0, dtype, w, label_smoothing=0.2)
        np.testing.assert_allclose(got_mean, loss.sum() / w_t.sum(), rtol=TOL[dtype])
        np.testing.assert_allclose(got_dx, dx_rows / w_t.sum(), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("mode", ["fast", "reference"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_ignored_rows_count_zero_even_with_inf_logits(mode, eps):
    """An ignored row adds 0 to the loss (as in PyTorch), though its logits are -inf where 0 replaced its target."""
    x = np.array([[-np.inf, 1.0, 2.0], [0.5, 1.0, -1.0], [-np.inf, -np.inf, -np.inf]])
    t = np.array([-100, 1, -100])
    loss, dx = ce_run(mode, x, t, np.ones(3), "float64", reduction="none", label_smoothing=eps)
    ref, dx_ref, _ = equations(x[1:2], t[1:2], None, -100, eps)
    np.testing.assert_array_equal(loss[[0, 2]], [0.0, 0.0])
    np.testing.assert_allclose(loss[1], ref[0], rtol=1e-12)
    np.testing.assert_array_equal(dx[0], np.zeros(3))
    np.testing.assert_allclose(dx[1], dx_ref[0], rtol=0, atol=1e-12)
    assert np.isnan(dx[2]).all()  # softmax of a row of only -inf is NaN; 0 times NaN stays NaN, as in PyTorch
    mean, _ = ce_run(mode, x, t, 1.0, "float64", label_smoothing=eps)
    np.testing.assert_allclose(mean, ref[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_targets_ignored(dtype):
    """'mean' over only ignored targets is NaN (0 / 0) and no gradient reaches x; 'sum' is 0."""
    x = np.random.default_rng(0).standard_normal((4, 5))
    t = np.full(4, -100)
    for mode in ("fast", "reference"):
        loss, dx = ce_run(mode, x, t, 1.0, dtype)
        assert np.isnan(loss)
        np.testing.assert_array_equal(dx, np.zeros((4, 5)))
        loss, dx = ce_run(mode, x, t, 1.0, dtype, reduction="sum", label_smoothing=0.5)
        assert loss == 0
        np.testing.assert_array_equal(dx, np.zeros((4, 5)))


def test_non_finite_rows():
    """As in PyTorch: a row of only -inf has a NaN loss and dx; beside a +inf logit, log p is -inf
    for a finite logit (loss +inf) and inf - inf = NaN for the +inf one."""
    x = np.array([[-np.inf, -np.inf], [0.0, np.inf], [0.0, np.inf], [1.0, 2.0]])
    t = np.array([0, 1, 0, 1])
    for mode in ("fast", "reference"):
        loss, dx = ce_run(mode, x, t, np.ones(4), "float64", reduction="none")
        assert np.isnan(loss[:2]).all() and loss[2] == np.inf and np.isfinite(loss[3])
        assert np.isnan(dx[0]).all() and np.isnan(dx[1, 1]) and np.isfinite(dx[3]).all()


def test_other_layouts_and_dtypes_take_the_reference():
    """(N, C, d1) logits, float16 logits and no classes never call the kernels."""
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4))
    got = ce_run("fast", x, t, 1.0, "float64", expect=[])
    ref = ce_run("reference", x, t, 1.0, "float64")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    ce_run("fast", x[:, :, 0], t[:, 0], 1.0, "float16", expect=[])
    tl.fast.set_enabled(True)
    with kernels_taken() as taken:
        out = F.cross_entropy(tl.zeros(0, 3, requires_grad=True), tl.tensor(np.zeros(0, dtype=np.int64)),
                              reduction="sum")
    assert taken == ["_cross_entropy_forward_kernel"] and float(host(out)) == 0.0


@pytest.mark.parametrize("tdtype", ["int32", "uint8", "int64"])
def test_target_dtypes_and_non_contiguous_logits(tdtype):
    """Targets of any integer dtype; transposed logits and a reduction 'none' gradient with stride 0."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 9))
    t = rng.integers(0, 6, 9).astype(tdtype)
    results = []
    for mode in ("fast", "reference"):
        tl.fast.set_enabled(mode == "fast")
        xt = tl.tensor(x, requires_grad=True)
        with kernels_taken() as taken:
            loss = F.cross_entropy(xt.T, tl.tensor(t), reduction="none", label_smoothing=0.1)  # (9, 6) not contiguous
            loss.sum().backward()
        assert taken == (CE_KERNELS if mode == "fast" else [])
        results.append((host(loss), host(xt.grad)))
    ref, dx, _ = equations(x.T, t.astype(np.int64), None, -100, 0.1)
    for (a, b), c in zip(zip(*results), (ref, dx.T)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("forward,backward", [("fast", "reference"), ("reference", "fast")])
@pytest.mark.parametrize("weighted", [False, True])
def test_backward_may_take_the_other_path(forward, backward, weighted):
    """The op's class is chosen when it is applied: switching the fast path between forward and backward is safe."""
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((5, 4)) * 2, np.array([0, 3, -100, 1, 2])
    w = rng.random(4) + 0.5 if weighted else None
    tl.fast.set_enabled(forward == "fast")
    xt = tl.tensor(x, requires_grad=True)
    out = F.cross_entropy(xt, tl.tensor(t), weight=None if w is None else tl.tensor(w), label_smoothing=0.25)
    tl.fast.set_enabled(backward == "fast")
    out.backward()
    loss, dx, w_t = equations(x, t, w, -100, 0.25)
    np.testing.assert_allclose(host(out), loss.sum() / w_t.sum(), rtol=1e-12)
    np.testing.assert_allclose(host(xt.grad), dx / w_t.sum(), rtol=0, atol=1e-12)


def test_inputs_unchanged_and_retained_graph():
    """The kernels write neither x nor the target; a retained graph gives the same gradient twice."""
    tl.fast.set_enabled(True)
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((5, 6)), rng.integers(0, 6, 5)
    xt, tt = tl.tensor(x, requires_grad=True), tl.tensor(t)
    out = F.cross_entropy(xt, tt, label_smoothing=0.1)
    out.backward(retain_graph=True)
    first = host(xt.grad).copy()
    out.backward()
    np.testing.assert_allclose(host(xt.grad), 2 * first, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(host(xt), x)
    np.testing.assert_array_equal(tt.numpy(), t)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 5), c=st.integers(1, 5), unbatched=st.booleans(),
       weighted=st.booleans(), reduction=st.sampled_from(REDUCTIONS), eps=st.sampled_from([0.0, 0.3, 1.0]))
def test_cross_entropy_gradcheck_with_the_kernels(seed, n, c, unbatched, weighted, reduction, eps):
    """float64 finite differences through the compiled forward and backward."""
    tl.fast.set_enabled(True)
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal((c,) if unbatched else (n, c)) * 2, requires_grad=True)
    t = rng.integers(0, c, () if unbatched else n)
    if not unbatched and n > 1:
        t[0] = -100
    target = tl.tensor(t)
    w = tl.tensor(rng.random(c) + 0.5) if weighted else None
    with kernels_taken() as taken:
        assert tl.gradcheck(lambda x: F.cross_entropy(x, target, weight=w, reduction=reduction,
                                                      label_smoothing=eps), [x])
    assert set(taken) == set(CE_KERNELS)


def test_cross_entropy_matches_torch():
    """Extreme logits, ignored rows with -inf logits, weights and smoothing: PyTorch's values and gradients."""
    torch = pytest.importorskip("torch")
    x = np.array([[1e4, -1e4, 0.0], [-np.inf, 1.0, 2.0], [3.0, -np.inf, 1.0], [0.1, 0.2, 0.3]])
    t = np.array([1, -100, 0, 2])
    w = np.array([0.5, 1.0, 2.0])
    for reduction in REDUCTIONS:
        loss, dx = ce_run("fast", x, t, np.ones(4) if reduction == "none" else 1.0, "float64", w,
                          reduction=reduction, label_smoothing=0.0)
        xt = torch.tensor(x, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(xt, torch.tensor(t), weight=torch.tensor(w), reduction=reduction)
        ref.sum().backward()
        np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def emb_run(mode, weight, ids, dy, dtype, padding_idx=None):
    """y and dW of F.embedding on the ``mode`` path (and a check that the kernel ran when on)."""
    tl.fast.set_enabled(mode == "fast")
    w = tl.tensor(np.asarray(weight, dtype=dtype), requires_grad=True)
    with kernels_taken() as taken:
        out = F.embedding(tl.tensor(ids), w, padding_idx=padding_idx)
        out.backward(tl.tensor(np.asarray(dy, dtype=dtype)))
    assert taken == (["_embedding_backward_kernel"] if mode == "fast" else [])
    return host(out), host(w.grad)


def np_embedding_grad(num, ids, dy, padding_idx):
    """dW[i] = sum of dy over the positions where ids == i, in float64; the padding row 0."""
    gw = np.zeros((num, dy.shape[-1]))
    np.add.at(gw, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
    if padding_idx is not None:
        gw[padding_idx] = 0
    return gw


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), num=st.sampled_from([1, 2, 7, fused_nn.ONE_HOT_MAX_ROWS + 50]),
       dim=st.integers(1, 6), ids_shape=st.sampled_from([(), (1,), (9,), (3, 4), (2, 1, 5)]),
       ids_dtype=st.sampled_from(["int64", "int32", "uint8"]), pad=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]))
def test_embedding_kernel_matches_the_reference(seed, num, dim, ids_shape, ids_dtype, pad, dtype):
    """dW, kernel vs the reference scatter-add and a float64 reference: repeated ids, padding_idx."""
    rng = np.random.default_rng(seed)
    high = min(num, 4) if rng.random() < 0.5 else num  # few distinct ids: many repeats
    ids = rng.integers(0, high, ids_shape).astype(ids_dtype)
    weight = rng.standard_normal((num, dim))
    dy = rng.standard_normal(ids_shape + (dim,))
    padding_idx = int(rng.integers(-num, num)) if pad else None
    y_fast, gw_fast = emb_run("fast", weight, ids, dy, dtype, padding_idx)
    y_ref, gw_ref = emb_run("reference", weight, ids, dy, dtype, padding_idx)
    ref = np_embedding_grad(num, ids.astype(np.int64), dy.astype(dtype).astype(np.float64), padding_idx)
    size = float(np.abs(dy).sum(axis=tuple(range(len(ids_shape)))).max(initial=1.0))
    np.testing.assert_array_equal(y_fast, y_ref)
    assert gw_fast.dtype == gw_ref.dtype == np.dtype(dtype)
    np.testing.assert_allclose(gw_fast, gw_ref, rtol=0, atol=TOL[dtype] * size)
    np.testing.assert_allclose(gw_fast, ref, rtol=0, atol=TOL[dtype] * size)
    if padding_idx is not None:
        np.testing.assert_array_equal(gw_fast[padding_idx], np.zeros(dim))


def test_embedding_kernel_with_a_broadcast_gradient_and_many_repeats():
    """The zero-stride gradient of sum() reaches the kernel as a copy; 2048 positions of 96 ids in float32."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 96, (16, 128))
    weight = rng.standard_normal((96, 8))
    tl.fast.set_enabled(True)
    w = tl.tensor(weight.astype(np.float32), requires_grad=True)
    with kernels_taken() as taken:
        F.embedding(tl.tensor(ids), w).sum().backward()
    assert taken == ["_embedding_backward_kernel"]
    counts = np.bincount(ids.reshape(-1), minlength=96).astype(np.float32)
    np.testing.assert_array_equal(host(w.grad), np.repeat(counts[:, None], 8, axis=1))  # small integers: exact
    dy = rng.standard_normal((16, 128, 8)).astype(np.float32)
    _, gw = emb_run("fast", weight, ids, dy, "float32")
    ref = np_embedding_grad(96, ids, dy.astype(np.float64), None)
    np.testing.assert_allclose(gw, ref, rtol=0, atol=1e-5 * float(np.abs(dy).reshape(-1, 8).sum(0).max()))


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), num=st.sampled_from([6, fused_nn.ONE_HOT_MAX_ROWS + 1]),
       pad=st.sampled_from([None, 0, -1]), functional=st.booleans())
def test_embedding_gradcheck_with_the_kernel(seed, num, pad, functional):
    """float64 finite differences through the compiled backward, for nn.Embedding and F.embedding.

    The ids avoid the padding rows 0 and num - 1 (those rows get no gradient, by definition, though used).
    """
    tl.fast.set_enabled(True)
    rng = np.random.default_rng(seed)
    ids = tl.tensor(rng.integers(1, 5, (3, 4)))
    if functional:
        weight = tl.tensor(rng.standard_normal((num, 3)), requires_grad=True)
        fn = lambda w: F.embedding(ids, w, padding_idx=pad)  # noqa: E731
    else:
        layer = nn.Embedding(num, 3, padding_idx=pad, dtype="float64")
        weight = layer.weight
        fn = lambda w: layer(ids)  # noqa: E731, ARG005  (the layer reads its own weight: w is that tensor)
    with kernels_taken() as taken:
        assert tl.gradcheck(fn, [weight])
    assert "_embedding_backward_kernel" in taken


def test_kernels_run_as_plain_python_too():
    """Uncompiled, the three kernels are ordinary Python loops and give the compiled results."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 4))
    t, valid, w = np.array([0, 3, -100, 1, 2]), np.array([True, True, False, True, True]), rng.random(4) + 0.5
    row = np.where(valid, rng.standard_normal(5), 0.0)
    results = []
    for forward, backward in [(fused_nn._cross_entropy_forward_kernel, fused_nn._cross_entropy_backward_kernel),
                              (compiler.compiled(fused_nn._cross_entropy_forward_kernel, x),
                               compiler.compiled(fused_nn._cross_entropy_backward_kernel, x))]:
        loss, m, log_s, w_t, dx = np.empty(5), np.empty(5), np.empty(5), np.empty(5), np.empty((5, 4))
        forward(x, t, valid, w, 0.2, float(w.sum()), loss, m, log_s, w_t)
        backward(x, t, valid, w, 0.2, float(w.sum()), m, log_s, w_t, row, dx)
        results.append((loss, m, log_s, w_t, dx))
    for plain, compiled in zip(*results):
        np.testing.assert_allclose(plain, compiled, rtol=1e-14, atol=1e-14)
    ids, g = np.array([1, 0, 1]), rng.standard_normal((3, 2))
    gws = [np.zeros((2, 2)), np.zeros((2, 2))]
    fused_nn._embedding_backward_kernel(ids, g, gws[0])
    compiler.compiled(fused_nn._embedding_backward_kernel, g)(ids, g, gws[1])
    np.testing.assert_allclose(gws[0], [g[1], g[0] + g[2]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(gws[1], gws[0], rtol=0, atol=1e-15)
