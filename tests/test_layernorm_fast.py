"""LayerNorm's reference op (ops/norm.py), on every backend, against the textbook equations.

Every check is against the equations written out in NumPy (float64). tests/test_fast_layernorm.py
compares the compiled kernels (tinygrad_lm.fast.fused_nn) with this reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F

# These tests are about the reference op; tests/test_fast_layernorm.py compares the compiled kernels with it.
pytestmark = pytest.mark.usefixtures("reference_path")


def host(t):
    return t.detach().numpy()


def np_layer_norm(x, w, b, ndim, eps=1e-5):
    """y = (x - mean) / sqrt(var + eps) w + b over the last ``ndim`` axes (biased var)."""
    axes = tuple(range(x.ndim - ndim, x.ndim))
    x_hat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return x_hat * (1.0 if w is None else w) + (0.0 if b is None else b)


def np_layer_norm_grads(x, w, dy, ndim, eps=1e-5):
    """dx = (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) / sqrt(var + eps), g_hat = dy w; dw, db."""
    axes = tuple(range(x.ndim - ndim, x.ndim))
    lead = tuple(range(x.ndim - ndim))
    rstd = 1.0 / np.sqrt(x.var(axes, keepdims=True) + eps)
    x_hat = (x - x.mean(axes, keepdims=True)) * rstd
    g_hat = dy * (1.0 if w is None else w)
    dx = rstd * (g_hat - g_hat.mean(axes, keepdims=True) - x_hat * (g_hat * x_hat).mean(axes, keepdims=True))
    return dx, (dy * x_hat).sum(lead), dy.sum(lead)


def run_layer_norm(x, w, b, dy, ndim, device, dtype, grads=(True, True, True)):
    """Output and gradients of F.layer_norm (None for an input without one)."""
    ts = [None if a is None else tl.tensor(a.astype(dtype), device=device, requires_grad=r)
          for a, r in zip((x, w, b), grads)]
    out = F.layer_norm(ts[0], x.shape[x.ndim - ndim:], ts[1], ts[2])
    out.backward(tl.tensor(dy.astype(dtype), device=device))
    return host(out), [None if t is None or t.grad is None else host(t.grad) for t in ts]


def assert_close(actual, expected, tol):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("seed", [1, 100, 1 << 18])
@pytest.mark.parametrize("shape,ndim", [((7, 5, 6), 1), ((4, 3, 2, 5), 2)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_layer_norm_matches_the_equations(device, seed, shape, ndim, affine):
    """Values and all three gradients, in float64 and float32."""
    rng = np.random.default_rng(seed + len(shape))
    norm = shape[len(shape) - ndim:]
    x = rng.standard_normal(shape) * 3 + 2
    w = rng.standard_normal(norm) if affine[0] else None
    b = rng.standard_normal(norm) if affine[1] else None
    dy = rng.standard_normal(shape)
    y_ref = np_layer_norm(x, w, b, ndim)
    dx_ref, dw_ref, db_ref = np_layer_norm_grads(x, w, dy, ndim)
    for dtype, tol in (("float64", 1e-12), ("float32", 2e-5)):
        xs, ws, bs, dys = (None if a is None else a.astype(dtype) for a in (x, w, b, dy))
        y, (dx, dw, db) = run_layer_norm(xs, ws, bs, dys, ndim, device, dtype)
        assert y.dtype == dx.dtype == np.dtype(dtype)
        assert_close(y, y_ref, tol)
        assert_close(dx, dx_ref, tol)
        if w is not None:
            assert dw.dtype == np.dtype(dtype)
            assert_close(dw, dw_ref, tol)
        if b is not None:
            assert db.dtype == np.dtype(dtype)
            assert_close(db, db_ref, tol)


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-5), ("float64", 1e-12)])
def test_benchmark_shape_matches_the_equations(device, dtype, tol):
    """(32, 64, 128): the Transformer benchmark's shape."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 64, 128)) * 2 - 1
    w, b = 1 + 0.1 * rng.standard_normal(128), 0.1 * rng.standard_normal(128)
    dy = rng.standard_normal(x.shape)
    y, (dx, dw, db) = run_layer_norm(x, w, b, dy, 1, device, dtype)
    for got, ref in zip((y, dx, dw, db), (np_layer_norm(x, w, b, 1),) + np_layer_norm_grads(x, w, dy, 1)):
        assert_close(got, ref, tol)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(1,), (5,), (2, 3)]),
       norm=st.sampled_from([(1,), (4,), (2, 3)]),
       affine=st.tuples(st.booleans(), st.booleans()), grads=st.sampled_from(
           [(True, True, True), (True, False, False), (False, True, False), (False, False, True),
            (False, True, True)]))
def test_layer_norm_gradcheck(device, seed, lead, norm, affine, grads):
    """float64 finite differences through the reference backward, for any subset of inputs needing a gradient."""
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal(lead + norm) * 2 + 1, device=device, requires_grad=grads[0])
    w = tl.tensor(rng.standard_normal(norm), device=device, requires_grad=grads[1]) if affine[0] else None
    b = tl.tensor(rng.standard_normal(norm), device=device, requires_grad=grads[2]) if affine[1] else None
    if not any(t is not None and t.requires_grad for t in (x, w, b)):
        x.requires_grad_()
    assert tl.gradcheck(lambda x, w, b: F.layer_norm(x, norm, w, b), [x, w, b])


def test_only_the_requested_gradients_are_returned(device):
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((9, 4)), rng.standard_normal((9, 4))
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    dx_ref, dw_ref, db_ref = np_layer_norm_grads(x, w, dy, 1)
    _, (dx, dw, db) = run_layer_norm(x, w, b, dy, 1, device, "float64", grads=(False, True, False))
    assert dx is None and db is None
    assert_close(dw, dw_ref, 1e-12)
    _, (dx, dw, db) = run_layer_norm(x, w, b, dy, 1, device, "float64", grads=(False, False, True))
    assert dx is None and dw is None
    assert_close(db, db_ref, 1e-12)
    _, (dx, dw, db) = run_layer_norm(x, w, b, dy, 1, device, "float64", grads=(True, False, False))
    assert dw is None and db is None
    assert_close(dx, dx_ref, 1e-12)


def test_large_offset_keeps_float32_precision(device):
    """x = 1000 + N(0, 1): the variance is taken around the mean, so float32 keeps 1e-3 of the float64 result.

    (var = E[x^2] - mean^2 in float32 would lose the whole variance: 1e6 * 6e-8 is as large as var.)
    """
    rng = np.random.default_rng(11)
    x = (1000 + rng.standard_normal((10, 16))).astype(np.float32).astype(np.float64)  # exactly representable
    w, b, dy = rng.standard_normal(16), rng.standard_normal(16), rng.standard_normal((10, 16))
    y, (dx, dw, db) = run_layer_norm(x, w, b, dy, 1, device, "float32")
    for got, ref in zip((y, dx, dw, db), (np_layer_norm(x, w, b, 1),) + np_layer_norm_grads(x, w, dy, 1)):
        assert_close(got, ref, 1e-3)


def test_inputs_unchanged_and_second_backward_repeats(device):
    """backward leaves the saved x_hat as it was, so retain_graph gives the same gradient twice; nothing is mutated."""
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((3, 4, 5)), rng.standard_normal(5), rng.standard_normal(5)
    dy = rng.standard_normal((3, 4, 5))
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (x, w, b)]
    g = tl.tensor(dy, device=device)
    out = F.layer_norm(ts[0], (5,), ts[1], ts[2])
    out.backward(g, retain_graph=True)
    first = [host(t.grad).copy() for t in ts]
    out.backward(g)
    for t, f in zip(ts, first):
        np.testing.assert_allclose(host(t.grad), 2 * f, rtol=1e-12, atol=1e-12)
    for t, a in zip(ts + [g], (x, w, b, dy)):
        np.testing.assert_array_equal(host(t), a)


def test_broadcast_upstream_gradient(device):
    """sum() hands backward a gradient with zero strides; backward must take it."""
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((4, 5, 6)), rng.standard_normal(6), rng.standard_normal(6)
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (x, w, b)]
    (F.layer_norm(ts[0], (6,), ts[1], ts[2]) * 1.0).sum().backward()
    refs = np_layer_norm_grads(x, w, np.ones_like(x), 1)
    for t, ref in zip(ts, refs):
        assert_close(host(t.grad), ref, 1e-12)


def test_empty_leading_dims(device):
    x = tl.zeros(0, 4, device=device, requires_grad=True)
    w = tl.ones(4, device=device, requires_grad=True)
    b = tl.zeros(4, device=device, requires_grad=True)
    out = F.layer_norm(x, (4,), w, b)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert x.grad.shape == (0, 4)
    np.testing.assert_array_equal(host(w.grad), np.zeros(4, np.float32))
    np.testing.assert_array_equal(host(b.grad), np.zeros(4, np.float32))
