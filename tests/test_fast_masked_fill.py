"""The compiled masked_fill (tinygrad_lm.fast.fused_masked_fill) against the reference op."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.fast import compiler


def both_paths(x, mask, value):
    """Output, input gradient and whether the kernel ran, with the fast path on, then off."""
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast):
            t = tl.tensor(x, requires_grad=True)
            y = t.masked_fill(tl.tensor(mask), value)
            fused = getattr(y.grad_fn, "fused", False)  # (backward frees the node's attributes)
            weights = np.random.default_rng(3).standard_normal(x.shape).astype(x.dtype)
            (y.masked_fill(tl.tensor(np.isinf(y.detach().numpy())), 0.0) * tl.tensor(weights)).sum().backward()
            results.append((y.detach().numpy(), t.grad.numpy(), fused))
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(lead=st.lists(st.integers(1, 4), max_size=3), tail=st.lists(st.integers(1, 6), min_size=1, max_size=2),
       ones=st.integers(0, 2), seed=st.integers(0, 2**16), value=st.sampled_from([0.0, -np.inf, 2.5, -1e30]))
def test_fast_masked_fill_equals_the_reference(dtype, lead, tail, ones, seed, value):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + tail).astype(dtype)
    mask = rng.random((1,) * min(ones, len(lead)) + tuple(tail)) < 0.4  # a mask of at most x's ndim
    (y_fast, g_fast, fused), (y_ref, g_ref, _) = both_paths(x, mask, value)
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)
    assert fused == compiler.numba_available()


def test_the_causal_mask_of_hand_written_attention():
    t = 5
    x = np.random.default_rng(0).standard_normal((2, 3, t, t)).astype("float32")
    mask = np.tril(np.ones((t, t)))[None, None] == 0
    (y_fast, g_fast, fused), (y_ref, g_ref, _) = both_paths(x, mask, float("-inf"))
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)
    assert fused == compiler.numba_available()
    assert np.isneginf(y_fast[..., 0, 1:]).all()


@pytest.mark.parametrize("mask_shape", [(2, 1, 4), (3, 1), (2, 3, 1)])
def test_other_mask_layouts_run_the_reference(mask_shape):
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    mask = np.random.default_rng(2).random(mask_shape) < 0.5
    (y_fast, g_fast, fused), (y_ref, g_ref, _) = both_paths(x, mask, 7.0)
    assert not fused
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)


def test_gradcheck_through_the_fast_path():
    x = tl.tensor(np.random.default_rng(4).standard_normal((3, 4)), dtype=tl.float64, requires_grad=True)
    mask = tl.tensor(np.array([True, False, False, True]))
    assert tl.gradcheck(lambda a: a.masked_fill(mask, 1.5) * a, [x])
