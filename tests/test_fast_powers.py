"""``x ** n`` of tinygrad_lm.fast.powers (products for whole n from 2 to 4) against the reference op's ``pow``.

The products and libm's ``pow`` differ by rounding only: float64 within 1e-15 relative, float32 within
a few float32 ulp; infinities, NaN and signed zeros as the reference gives them. Exponents the fast op
does not take (fractional, negative, a tensor, an integer array) give exactly the reference's result.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.fast import powers

TOL = {"float32": dict(rtol=5e-7, atol=0), "float64": dict(rtol=1e-15, atol=0)}


def both_paths(x, b, dy, device="cpu"):
    """(x ** b, d/dx) on the fast path, then on the reference path."""
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast), np.errstate(all="ignore"):
            t = tl.tensor(x, device=device, requires_grad=x.dtype.kind == "f")
            y = t**b
            if t.requires_grad:
                y.backward(tl.tensor(dy, device=device))
            results.append((tl.backend.to_host(y.detach().array),
                            None if t.grad is None else tl.backend.to_host(t.grad.array)))
    return results


@settings(max_examples=60)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(), (1,), (7,), (3, 5), (2, 3, 4), (0, 2)]),
       b=st.sampled_from([1, 2, 3, 4, 2.0, 3.0, 4.0]), scale=st.sampled_from([0.01, 1.0, 30.0]),
       dtype=st.sampled_from(["float32", "float64"]))
@example(seed=0, shape=(3, 5), b=3, scale=30.0, dtype="float32")
def test_whole_powers_equal_the_reference(device, seed, shape, b, scale, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    (y_fast, g_fast), (y_ref, g_ref) = both_paths(x, b, dy, device)
    assert y_fast.dtype == y_ref.dtype == np.dtype(dtype) and y_fast.shape == y_ref.shape == x.shape
    assert g_fast.dtype == g_ref.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y_fast, y_ref, **TOL[dtype])
    np.testing.assert_allclose(g_fast, g_ref, **TOL[dtype])
    if device == "cpu" and int(b) >= 2:  # the products ran: bit for bit what NumPy's multiplications give
        product = x.copy()
        for _ in range(int(b) - 1):
            product = product * x
        np.testing.assert_array_equal(y_fast, product)


@pytest.mark.parametrize("b", [2, 3, 4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values_give_what_the_reference_gives(b, dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-30, -1e-30, 1.0, -1.0], dtype=dtype)
    (y_fast, g_fast), (y_ref, g_ref) = both_paths(x, b, np.ones_like(x))
    for got, want in ((y_fast, y_ref), (g_fast, g_ref)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        number = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))
        np.testing.assert_allclose(got[number], want[number], rtol=TOL[dtype]["rtol"], atol=1e-300)


@pytest.mark.parametrize("b", [0, 0.5, 1.5, -1, -2, -3.0, 5, 7, float("inf"), float("-inf"), float("nan")])
def test_other_exponents_are_the_reference_exactly(b):
    x = np.random.default_rng(1).random((4, 3)) + 0.5
    (y_fast, g_fast), (y_ref, g_ref) = both_paths(x, b, np.ones_like(x))
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)
    assert powers._whole_power(x, b) is None or powers._whole_power(x, b) == 1


def test_integer_tensors_and_tensor_exponents_are_the_reference_exactly():
    ints = np.arange(-3, 4)
    (y_fast, _), (y_ref, _) = both_paths(ints, 3, None)
    np.testing.assert_array_equal(y_fast, y_ref)
    assert y_fast.dtype == y_ref.dtype and y_fast.dtype.kind == "i"
    base = tl.tensor([1.5, 2.0], requires_grad=True)
    exponent = tl.tensor([3.0, 3.0], requires_grad=True)
    (base**exponent).sum().backward()
    np.testing.assert_allclose(exponent.grad.numpy(), np.array([1.5, 2.0]) ** 3 * np.log([1.5, 2.0]), rtol=1e-6)
    assert powers._whole_power(np.ones(2), True) is None  # x ** True is the reference's


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_float64_gradcheck(fast):
    rng = np.random.default_rng(2)
    with tl.fast.enabled(fast):
        for b in (2, 3, 4, 3.0):
            assert tl.gradcheck(lambda t, b=b: t**b, [tl.tensor(rng.standard_normal((3, 4)), requires_grad=True)])
