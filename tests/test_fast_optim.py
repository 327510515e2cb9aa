"""Adam's compiled update (tinygrad_lm.fast.fused_optim) against the reference update of tinygrad_lm.optim.Adam.

The same parameters, gradients and settings are stepped on the fast path and on the reference path
(``tl.fast.enabled(False)``); the kernel differs from the dozen NumPy passes by rounding only (it may
fuse a multiply and an add), so after several steps the parameters and both moments agree within a
few ulp of float32 or float64, relative to the size of the update.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import kernels_taken
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import optim
from tinygrad_lm.fast import compiler, fused_optim

TOL = {"float32": 2e-6, "float64": 1e-13}


def run(fast, cls, kwargs, shapes, dtype, steps, seed, transpose=False):
    """Parameters and optimizer state after ``steps`` steps with fixed random gradients, and the kernels taken."""
    rng = np.random.default_rng(seed)
    params = [tl.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]
    opt = cls(params, **kwargs)
    with tl.fast.enabled(fast), kernels_taken() as taken:
        for _ in range(steps):
            for p in params:
                g = rng.standard_normal(p.shape[::-1] if transpose else p.shape).astype(dtype)
                p.grad = tl.tensor(g).T if transpose else tl.tensor(g)  # (.T: a view, not contiguous)
            opt.step()
    state = [{k: np.array(v) for k, v in opt.state[p].items() if k != "step"} for p in params]
    return [p.detach().numpy() for p in params], state, taken


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from(["float32", "float64"]),
       cls=st.sampled_from([optim.Adam, optim.AdamW]), amsgrad=st.booleans(), maximize=st.booleans(),
       weight_decay=st.sampled_from([0.0, 0.1]), lr=st.sampled_from([1e-3, 0.1]), steps=st.integers(1, 5))
def test_the_compiled_update_equals_the_reference(seed, dtype, cls, amsgrad, maximize, weight_decay, lr, steps):
    kwargs = dict(lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    shapes = [(3, 4), (5,), (), (2, 3, 2)]
    p_fast, s_fast, taken = run(True, cls, kwargs, shapes, dtype, steps, seed)
    p_ref, s_ref, taken_ref = run(False, cls, kwargs, shapes, dtype, steps, seed)
    assert taken_ref == []
    if compiler.numba_available():
        assert taken == ["_adam_kernel"] * (len(shapes) * steps)
    for a, b in zip(p_fast, p_ref):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * lr * steps)
    for a, b in zip(s_fast, s_ref):
        assert a.keys() == b.keys()
        for k in a:
            # (beta m + (1 - beta) g rounds relative to its terms, |g| < 6 here, not to the sum, which may cancel)
            np.testing.assert_allclose(a[k], b[k], rtol=TOL[dtype], atol=8 * np.finfo(dtype).eps)


def test_a_gradient_that_is_not_contiguous_takes_the_reference_update():
    kwargs = dict(lr=0.01)
    p_fast, s_fast, taken = run(True, optim.Adam, kwargs, [(3, 4)], "float32", 2, 0, transpose=True)
    p_ref, _, _ = run(False, optim.Adam, kwargs, [(3, 4)], "float32", 2, 0, transpose=True)
    assert taken == []
    np.testing.assert_array_equal(p_fast[0], p_ref[0])


def test_adam_step_refuses_what_it_cannot_take():
    p, g = np.zeros(3, np.float32), np.ones(3, np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    args = (0.9, 0.999, 0.1, 1.0, 1e-8)
    assert not fused_optim.adam_step(p, g.astype(np.float64), m, v, None, *args)  # another dtype
    assert not fused_optim.adam_step(p, np.ones(4, np.float32), m, v, None, *args)  # another shape
    with tl.fast.enabled(False):
        assert not fused_optim.adam_step(p, g, m, v, None, *args)  # the fast path is off
    np.testing.assert_array_equal(p, 0)
    np.testing.assert_array_equal(m, 0)
    if compiler.numba_available():
        assert fused_optim.adam_step(p, g, m, v, None, *args)
        np.testing.assert_allclose(m, 0.1, rtol=1e-6)  # (1 - 0.9) g
        np.testing.assert_allclose(p, -0.1 * 0.1 / (np.sqrt(0.001) + 1e-8), rtol=1e-5)


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_adam_minimises_a_quadratic_on_both_paths(fast):
    target = np.array([1.0, -2.0, 3.0])
    x = tl.tensor(np.zeros(3), requires_grad=True)
    opt = optim.AdamW([x], lr=0.1, weight_decay=0.0)
    with tl.fast.enabled(fast):
        for _ in range(300):
            opt.zero_grad()
            ((x - tl.tensor(target)) ** 2).sum().backward()
            opt.step()
    np.testing.assert_allclose(x.detach().numpy(), target, atol=1e-3)
