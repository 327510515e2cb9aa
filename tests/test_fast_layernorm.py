"""LayerNorm's compiled kernels (tinygrad_lm.fast.fused_nn, Numba) against its reference op and the equations.

The compiled kernels run on NumPy arrays (the CPU; their CUDA twins are tested in tests/test_cuda_kernels.py),
so these tests do not take the ``device`` fixture; tests/test_layernorm_fast.py checks the reference op
(ops/norm.py) on every backend.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm.fast import compiler

pytest.importorskip("numba")

TOL = {"float32": 1e-5, "float64": 1e-12}


def host(t):
    return t.detach().numpy()


def run(mode, x, w, b, dy, ndim, dtype, grads=(True, True, True)):
    """y and the gradients (x, weight, bias; None where not asked for) of F.layer_norm on the ``mode`` path."""
    tl.fast.set_enabled(mode == "fast")
    ts = [None if a is None else tl.tensor(np.asarray(a, dtype=dtype), requires_grad=r)
          for a, r in zip((x, w, b), grads)]
    out = F.layer_norm(ts[0], x.shape[x.ndim - ndim:], ts[1], ts[2])
    out.backward(tl.tensor(np.asarray(dy, dtype=dtype)))
    return host(out), [None if t is None or t.grad is None else host(t.grad) for t in ts]


def normal(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def equations(x, w, b, dy, ndim, eps=1e-5):
    """float64 y, dx, dw, db from the lecture's equations, and the size of the terms each one sums.

    The sizes bound the rounding error of any float evaluation of the same equations: the terms'
    magnitudes, times 1 + max |x| rstd, since x - mean and var lose about u |x| to rounding and
    rstd amplifies that into x_hat.
    """
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes, lead = tuple(range(x.ndim - ndim, x.ndim)), tuple(range(x.ndim - ndim))
    w = np.ones(x.shape[x.ndim - ndim:]) if w is None else w.astype(np.float64)
    b = np.zeros_like(w) if b is None else b.astype(np.float64)
    rstd = 1.0 / np.sqrt(x.var(axes, keepdims=True) + eps)
    x_hat = (x - x.mean(axes, keepdims=True)) * rstd
    g_hat = dy * w
    mean_g_hat, mean_g_hat_x_hat = g_hat.mean(axes, keepdims=True), (g_hat * x_hat).mean(axes, keepdims=True)
    refs = (x_hat * w + b, rstd * (g_hat - mean_g_hat - x_hat * mean_g_hat_x_hat), (dy * x_hat).sum(lead), dy.sum(lead))
    cond = 1.0 + float((np.abs(x).max(axes, keepdims=True) * rstd).max(initial=0.0))
    sizes = (np.abs(x_hat * w) + np.abs(w) + np.abs(b),
             rstd * (np.abs(g_hat) + np.abs(g_hat).mean(axes, keepdims=True)
                     + np.abs(x_hat) * np.abs(g_hat * x_hat).mean(axes, keepdims=True)),
             (np.abs(dy) * (1 + np.abs(x_hat))).sum(lead), np.abs(dy).sum(lead))
    return refs, [cond * float(s.max(initial=0.0)) for s in sizes]


def assert_close(actual, expected, size, tol):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * max(size, 1e-30))


values = st.floats(-4, 4, width=32)  # exactly representable in float32


@st.composite
def layer_norm_cases(draw):
    ndim = draw(st.sampled_from([1, 2]))
    norm = (draw(st.integers(1, 17)),) if ndim == 1 else (draw(st.integers(1, 4)), draw(st.integers(1, 5)))
    lead = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))  # () is a single row
    x = draw(hnp.arrays(np.float64, lead + norm, elements=values))
    dy = draw(hnp.arrays(np.float64, lead + norm, elements=values))
    w = draw(hnp.arrays(np.float64, norm, elements=values)) if draw(st.booleans()) else None
    b = draw(hnp.arrays(np.float64, norm, elements=values)) if draw(st.booleans()) else None
    return x, w, b, dy, ndim


@settings(max_examples=30)
@given(case=layer_norm_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_kernels_match_the_reference(case, dtype):
    """y, dx, dw, db: compiled kernels == reference, within rounding of the terms summed (``equations``)."""
    x, w, b, dy, ndim = case
    y_fast, grads_fast = run("fast", x, w, b, dy, ndim, dtype)
    y_ref, grads_ref = run("reference", x, w, b, dy, ndim, dtype)
    (_, sizes) = equations(x, w, b, dy, ndim)
    for got, ref, size in zip([y_fast] + grads_fast, [y_ref] + grads_ref, sizes):
        if ref is None:
            assert got is None
            continue
        assert got.dtype == ref.dtype == np.dtype(dtype) and got.shape == ref.shape
        assert_close(got, ref, size, TOL[dtype])


@settings(max_examples=20)
@given(case=layer_norm_cases())
def test_float64_kernels_match_the_equations(case):
    x, w, b, dy, ndim = case
    y, grads = run("fast", x, w, b, dy, ndim, "float64")
    refs, sizes = equations(x, w, b, dy, ndim)
    for got, ref, size in zip([y] + grads, refs, sizes):
        if got is not None:
            assert_close(got, ref, size, 1e-12)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(), (1,), (5,), (2, 3)]),
       norm=st.sampled_from([(1,), (4,), (2, 3)]), affine=st.tuples(st.booleans(), st.booleans()),
       grads=st.sampled_from([(True, True, True), (True, False, False), (False, True, False),
                              (False, False, True), (False, True, True)]))
def test_gradcheck_with_the_kernels(seed, lead, norm, affine, grads):
    """float64 finite differences through the compiled forward and backward."""
    tl.fast.set_enabled(True)
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal(lead + norm) * 2 + 1, requires_grad=grads[0])
    w = tl.tensor(rng.standard_normal(norm), requires_grad=grads[1]) if affine[0] else None
    b = tl.tensor(rng.standard_normal(norm), requires_grad=grads[2]) if affine[1] else None
    if not any(t is not None and t.requires_grad for t in (x, w, b)):
        x.requires_grad_()
    assert tl.gradcheck(lambda x, w, b: F.layer_norm(x, norm, w, b), [x, w, b])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_kernels_are_the_path_taken(monkeypatch, dtype):
    """With the fast path on, LayerNorm's forward and backward both run their compiled kernels."""
    taken = []

    def spy(kernel, *arrays):
        fn = compiled(kernel, *arrays)
        taken.append((kernel.__name__, fn is not None))
        return fn

    compiled = compiler.compiled
    monkeypatch.setattr(compiler, "compiled", spy)
    x, w, b, dy = normal(0, (3, 4), 4, 4, (3, 4))
    run("fast", x, w, b, dy, 1, dtype)
    assert taken == [("_layer_norm_forward_kernel", True), ("_layer_norm_backward_kernel", True)]


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-5), ("float64", 1e-12)])
def test_benchmark_shape_matches_the_equations(dtype, tol):
    """(32, 64, 128): dw and db accumulate 2048 rows in the kernel's dtype."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 64, 128)) * 2 - 1
    w, b = 1 + 0.1 * rng.standard_normal(128), 0.1 * rng.standard_normal(128)
    dy = rng.standard_normal(x.shape)
    y, grads = run("fast", x, w, b, dy, 1, dtype)
    refs, _ = equations(x, w, b, dy, 1)
    for got, ref in zip([y] + grads, refs):
        assert_close(got, ref, max(1.0, float(np.abs(ref).max())), tol)


def test_large_offset_keeps_float32_precision():
    """x = 1000 + N(0, 1): the kernel takes the variance around the mean (two passes over the row)."""
    rng = np.random.default_rng(11)
    x = (1000 + rng.standard_normal((10, 16))).astype(np.float32).astype(np.float64)
    w, b, dy = rng.standard_normal(16), rng.standard_normal(16), rng.standard_normal((10, 16))
    y, grads = run("fast", x, w, b, dy, 1, "float32")
    refs, _ = equations(x, w, b, dy, 1)
    for got, ref in zip([y] + grads, refs):
        assert_close(got, ref, max(1.0, float(np.abs(ref).max())), 1e-3)


def test_non_contiguous_input_and_broadcast_gradient():
    """A transposed x and the zero-stride gradient of sum() are copied to C order for the kernels."""
    x, w, b = normal(2, (6, 5, 4), 6, 6)
    results = []
    for mode in ("fast", "reference"):
        tl.fast.set_enabled(mode == "fast")
        xt = tl.tensor(x, requires_grad=True)
        ts = [tl.tensor(a, requires_grad=True) for a in (w, b)]
        y = F.layer_norm(xt.permute(2, 1, 0), (6,), *ts)  # (4, 5, 6), not contiguous
        (y * 1.0).sum().backward()
        results.append([host(y)] + [host(t.grad) for t in [xt] + ts])
    refs, _ = equations(x.transpose(2, 1, 0), w, b, np.ones((4, 5, 6)), 1)
    for got, ref in zip(results[0], results[1]):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(results[0][0], refs[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(results[0][1], refs[1].transpose(2, 1, 0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("forward,backward", [("fast", "reference"), ("reference", "fast")])
def test_backward_may_take_the_other_path(forward, backward):
    """The op's class is chosen when it is applied: switching the fast path between forward and backward is safe."""
    x, w, b, dy = normal(4, (3, 2, 5), (2, 5), (2, 5), (3, 2, 5))
    tl.fast.set_enabled(forward == "fast")
    ts = [tl.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = F.layer_norm(ts[0], (2, 5), ts[1], ts[2])
    tl.fast.set_enabled(backward == "fast")
    out.backward(tl.tensor(dy))
    refs, _ = equations(x, w, b, dy, 2)
    for t, ref in zip(ts, refs[1:]):
        np.testing.assert_allclose(host(t.grad), ref, rtol=0, atol=1e-12)


def test_only_the_requested_gradients_and_inputs_unchanged():
    """A retained graph gives the same gradients twice; x, w, b and dy are not written to."""
    tl.fast.set_enabled(True)
    x, w, b, dy = normal(5, (9, 4), 4, 4, (9, 4))
    refs, _ = equations(x, w, b, dy, 1)
    for grads in [(False, True, False), (False, False, True), (True, False, False)]:
        _, got = run("fast", x, w, b, dy, 1, "float64", grads=grads)
        for g, want, ref in zip(got, grads, refs[1:]):
            assert (g is not None) == want
            if want:
                np.testing.assert_allclose(g, ref, rtol=0, atol=1e-12)
    ts = [tl.tensor(a, requires_grad=True) for a in (x, w, b)]
    g = tl.tensor(dy)
    out = F.layer_norm(ts[0], (4,), ts[1], ts[2])
    out.backward(g, retain_graph=True)
    first = [host(t.grad).copy() for t in ts]
    out.backward(g)
    for t, f in zip(ts, first):
        np.testing.assert_allclose(host(t.grad), 2 * f, rtol=0, atol=1e-12)
    for t, a in zip(ts + [g], (x, w, b, dy)):
        np.testing.assert_array_equal(host(t), a)


@pytest.mark.parametrize("shape,norm", [((0, 4), (4,)), ((3, 0), (0,))])
def test_empty_rows_or_features(shape, norm):
    """No rows: empty output, zero dw and db. No features: empty output and dx, zero-size dw and db."""
    tl.fast.set_enabled(True)
    x = tl.zeros(*shape, dtype="float64", requires_grad=True)
    w = tl.ones(*norm, dtype="float64", requires_grad=True)
    b = tl.zeros(*norm, dtype="float64", requires_grad=True)
    out = F.layer_norm(x, norm, w, b)
    assert out.shape == shape
    out.sum().backward()
    assert x.grad.shape == shape and w.grad.shape == b.grad.shape == norm
    np.testing.assert_array_equal(host(w.grad), np.zeros(norm))
    np.testing.assert_array_equal(host(b.grad), np.zeros(norm))
