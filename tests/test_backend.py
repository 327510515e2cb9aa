"""Backend helpers whose result differs by path (fast float32 erf on the CPU)."""
from __future__ import annotations

import numpy as np
from scipy.special import erf as exact_erf

import tinygrad_lm as tl
from tinygrad_lm import backend


def test_erf_float32_is_within_a_few_ulps_of_the_exact_erf():
    x = np.linspace(-9, 9, 360_001, dtype=np.float32)
    approx = backend.erf_float32(x)
    assert approx.dtype == np.float32
    err = np.abs(approx.astype(np.float64) - exact_erf(x.astype(np.float64)))
    assert err.max() < 6e-7
    assert np.all(np.sign(approx) == np.sign(x)) and np.all(np.abs(approx) <= 1)
    assert approx[x == 0].item() == 0


def test_large_float32_gelu_uses_the_fast_erf_and_matches_float64():
    x64 = np.random.default_rng(0).standard_normal((64, 256)) * 3
    assert x64.size >= 4096  # large enough for the fast path
    y32 = tl.tensor(x64.astype(np.float32)).gelu().numpy()
    expected = x64 * 0.5 * (1 + exact_erf(x64 / np.sqrt(2)))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=0, atol=3e-6)


def test_float64_erf_is_exact():
    x = np.linspace(-5, 5, 10_001)
    np.testing.assert_array_equal(backend.erf(x), exact_erf(x))
