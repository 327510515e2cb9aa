"""The compiled softmax and log-softmax (tinygrad_lm.fast.fused_softmax) against the reference ops."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import ops
from tinygrad_lm.fast import compiler, fused_softmax

TOL = {"float32": dict(rtol=2e-6, atol=2e-7), "float64": dict(rtol=1e-13, atol=1e-15)}
OPS = {"softmax": lambda x, dim: x.softmax(dim), "log_softmax": lambda x, dim: x.log_softmax(dim)}


def both_paths(name, x, dim=-1, g=None):
    """The op's output and input gradient with the fast path on, then off, and the node's class each time."""
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast):
            t = tl.tensor(x, requires_grad=True)
            y = OPS[name](t, dim)
            weights = g if g is not None else np.random.default_rng(5).standard_normal(x.shape).astype(x.dtype)
            (y * tl.tensor(weights)).sum().backward()
            results.append((y.detach().numpy(), t.grad.numpy(), type(y.grad_fn)))
    return results


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.1, 3.0, 40.0]))
def test_fast_softmax_equals_the_reference(name, dtype, shape, seed, scale):
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    (y_fast, g_fast, cls_fast), (y_ref, g_ref, cls_ref) = both_paths(name, x)
    if dtype == "float64":  # the rounding of x - m and of log s, absolute (log s of a sum near 1 is near 0)
        atol = 16 * np.finfo(np.float64).eps * (1 + float(np.abs(x).max()))
        np.testing.assert_allclose(y_fast, y_ref, rtol=1e-12, atol=atol)
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-12, atol=atol)
    else:  # both float32 results within float32's rounding of the exact (float64) values, for inputs this large
        (y_exact, g_exact, _), _ = both_paths(name, x.astype("float64"))
        atol = 16 * np.finfo(np.float32).eps * (1 + float(np.abs(x).max()))
        for y, g in ((y_fast, g_fast), (y_ref, g_ref)):
            np.testing.assert_allclose(y, y_exact, rtol=1e-5, atol=atol)
            np.testing.assert_allclose(g, g_exact, rtol=1e-5, atol=atol)
    if compiler.numba_available():
        assert cls_fast.__module__ == fused_softmax.__name__
    assert cls_ref.__module__ == ops.reduce.__name__


@pytest.mark.parametrize("name", sorted(OPS))
def test_rows_with_infinities_nan_and_huge_values_give_what_the_reference_gives(name):
    inf = np.inf
    x = np.array([[0.0, -inf, 1.0], [-inf, -inf, -inf], [inf, 0.0, 1.0], [np.nan, 0.0, 1.0], [-inf, 2.0, -inf],
                  [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])  # (log s must not be lost next to a large max)
    for dtype in ("float32", "float64"):
        (y_fast, g_fast, _), (y_ref, g_ref, _) = both_paths(name, x.astype(dtype), g=np.ones(x.shape, dtype))
        np.testing.assert_array_equal(np.isnan(y_fast), np.isnan(y_ref))
        np.testing.assert_allclose(y_fast, y_ref, **TOL[dtype])
        np.testing.assert_array_equal(np.isnan(g_fast), np.isnan(g_ref))
        np.testing.assert_allclose(g_fast, g_ref, **TOL[dtype])


@pytest.mark.parametrize("name", sorted(OPS))
def test_other_axes_run_the_reference(name):
    x = np.random.default_rng(0).standard_normal((4, 5, 6))
    for dim, arr in ((0, x), (1, x)):
        with tl.fast.enabled(True):
            t = tl.tensor(arr, requires_grad=True)
            y = OPS[name](t, dim)
        assert type(y.grad_fn).__module__ == fused_softmax.__name__  # the fast class, deferring to its parent
        assert not y.grad_fn.fused
        (y_fast, g_fast, _), (y_ref, g_ref, _) = both_paths(name, arr, dim)
        np.testing.assert_allclose(y_fast, y_ref, rtol=1e-13)
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-13)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_through_the_fast_path(name):
    x = tl.tensor(np.random.default_rng(1).standard_normal((3, 5)), dtype=tl.float64, requires_grad=True)
    assert tl.gradcheck(lambda t: OPS[name](t, -1), [x])


def test_empty_rows_run_the_reference():
    for name in OPS:
        (y_fast, g_fast, _), (y_ref, g_ref, _) = both_paths(name, np.zeros((3, 0)))
        assert y_fast.shape == y_ref.shape == (3, 0) and g_fast.shape == (3, 0)
