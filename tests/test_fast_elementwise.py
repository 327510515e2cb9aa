"""The memory-bound ops on their reference path: GELU, LayerNorm and the fused attention.

GELU computes its derivative in forward and saves it; its fast float32 kernel (Abramowitz &
Stegun's erf, tinygrad_lm.fast.fused_nn) is checked here against the exact erf too. LayerNorm is
checked against the composed graph. The attention op does its softmax and softmax gradient in
place on fresh arrays (a new array only where a mask, or a dropout multiplier, broadcasts the
scores to a larger shape).
Real checks: float64 references of the equations, float64 gradchecks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import functional as F
from tinygrad_lm.ops.attention import ScaledDotProductAttention

# These tests are about the reference ops; tests/test_fast_*.py compare the compiled kernels with them.
pytestmark = pytest.mark.usefixtures("reference_path")

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
LARGE = 1 << 16  # elements: a training step's activations, beyond the caches' sizes


def host(t: tl.Tensor) -> np.ndarray:
    return np.array(tl.backend.to_host(t.detach().array), copy=True)


def gelu_ref(x: np.ndarray, approximate: str) -> tuple[np.ndarray, np.ndarray]:
    """gelu(x) and gelu'(x) in float64, from the equations."""
    x = x.astype(np.float64)
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3))
        dt = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x**2)
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dt
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return x * ndtr(x), ndtr(x) + x * pdf


def gelu_with_grad(x: np.ndarray, g: np.ndarray, approximate: str, device: str) -> tuple[np.ndarray, np.ndarray]:
    t = tl.tensor(x, device=device, requires_grad=True)
    out = t.gelu(approximate=approximate)
    out.backward(tl.tensor(g, device=device))
    return host(out), host(t.grad)


# Sizes from 4096 elements to a few times LARGE.
large_sizes = st.one_of(
    st.integers(4096, 3 * LARGE + 7),
    st.sampled_from([4096, LARGE, LARGE + 1, 2 * LARGE]),
)


@settings(max_examples=10)
@given(n=large_sizes, cols=st.sampled_from([1, 4, 7]), scale=st.sampled_from([1.0, 3.0, 8.0]),
       approximate=st.sampled_from(["none", "tanh"]), seed=st.integers(0, 2**31 - 1))
def test_large_float32_gelu_and_gradient_match_float64_equations(device, n, cols, scale, approximate, seed):
    rng = np.random.default_rng(seed)
    rows = -(-n // cols)  # ceil: rows * cols >= n
    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    g = rng.uniform(-1, 1, x.shape).astype(np.float32)
    before = x.copy()
    out, grad = gelu_with_grad(x, g, approximate, device)
    ref_out, ref_d = gelu_ref(x, approximate)
    assert out.dtype == grad.dtype == np.float32
    # float32 rounding of values up to |x| ~ 40. The tanh derivative's h + x (1 - tanh^2) u' / 2
    # cancels for x near -3 (about 1e-6 in float32).
    np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-6)
    d_atol = 1e-6 if approximate == "none" else 3e-6
    np.testing.assert_allclose(grad, g.astype(np.float64) * ref_d, rtol=1e-6, atol=d_atol)
    np.testing.assert_array_equal(x, before)


@settings(max_examples=15)
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
       approximate=st.sampled_from(["none", "tanh"]), seed=st.integers(0, 2**31 - 1))
def test_gelu_gradcheck(device, shape, approximate, seed):
    """float64 gradcheck of both GELUs, and their values against the equations."""
    x = np.random.default_rng(seed).uniform(-3, 3, shape)
    t = tl.tensor(x, device=device, requires_grad=True)
    assert tl.gradcheck(lambda a: a.gelu(approximate=approximate), [t])
    np.testing.assert_allclose(host(t.gelu(approximate=approximate)), gelu_ref(x, approximate)[0], rtol=1e-12,
                               atol=1e-14)


@settings(max_examples=10)
@given(size=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_fast_erf_gelu_matches_the_exact_path(size, seed):
    """The fast float32 kernel (A&S erf, where Numba is installed) agrees with the reference's exact erf."""
    x = np.random.default_rng(seed).uniform(-6, 6, size).astype(np.float32)
    g = np.ones_like(x)
    exact = gelu_with_grad(x, g, "none", "cpu")
    with tl.fast.enabled(True):
        fast = gelu_with_grad(x, g, "none", "cpu")
    for a, b in zip(fast, exact):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_fast_gelu_special_values_as_the_exact_formula():
    """inf, nan, signed zeros, tiny and huge inputs: the fast path gives what x Phi(x) gives."""
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 40.0, -40.0], np.float32)
    x = np.resize(special, 4096)
    with np.errstate(invalid="ignore", over="ignore"), tl.fast.enabled(True):
        out, grad = gelu_with_grad(x, np.ones_like(x), "none", "cpu")
        ref_out, ref_d = gelu_ref(x, "none")
    np.testing.assert_allclose(out, ref_out.astype(np.float32), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, ref_d.astype(np.float32), rtol=1e-6, atol=1e-30)
    assert np.signbit(out[4]) and not np.signbit(out[3])  # gelu(-0) = -0, as x Phi(x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("size", [10, 2 * LARGE + 3])
def test_gelu_saved_derivative_survives_a_second_backward(device, approximate, size):
    x = np.random.default_rng(5).standard_normal(size).astype(np.float32)
    t = tl.tensor(x, device=device, requires_grad=True)
    out = t.gelu(approximate=approximate)
    out.sum().backward(retain_graph=True)
    first = host(t.grad)
    out.sum().backward()
    np.testing.assert_array_equal(host(t.grad), 2 * first)


def test_gelu_without_grad_matches_with_grad(device):
    x = np.random.default_rng(6).standard_normal(3 * LARGE).astype(np.float32)
    with tl.no_grad():
        a = host(tl.tensor(x, device=device).gelu())
    b = host(tl.tensor(x, device=device, requires_grad=True).gelu())
    np.testing.assert_array_equal(a, b)


def np_layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def composed_layer_norm(x, w, b, eps=1e-5):
    """The same equations from primitive ops, differentiated by the engine (the gradient reference)."""
    centered = x - x.mean(-1, keepdim=True)
    var = (centered * centered).mean(-1, keepdim=True)
    return centered / (var + eps).sqrt() * w + b


@pytest.mark.parametrize("shape", [(32, 64, 128), (7, 3)])
def test_layer_norm_values_and_gradients_match_the_equations(device, shape):
    """LayerNorm against NumPy (values) and the composed graph
    (gradients of x, w and b) in float64, and float32 against float64."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(shape[-1]).astype(np.float32), rng.standard_normal(shape[-1]).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    results = []
    for dtype, build in (("float32", None), ("float64", None), ("float64", composed_layer_norm)):
        ts = [tl.tensor(a.astype(dtype), device=device, requires_grad=True) for a in (x, w, b)]
        out = build(*ts) if build else F.layer_norm(ts[0], (shape[-1],), ts[1], ts[2])
        out.backward(tl.tensor(g.astype(dtype), device=device))
        results.append([host(out)] + [host(t.grad) for t in ts])
    f32, f64, composed = results
    np.testing.assert_allclose(f64[0], np_layer_norm(*(a.astype(np.float64) for a in (x, w, b))), rtol=1e-12,
                               atol=1e-12)
    for a64, ref in zip(f64, composed):
        np.testing.assert_allclose(a64, ref, rtol=1e-10, atol=1e-10)
    for a32, a64 in zip(f32, f64):
        assert a32.dtype == np.float32
        scale = max(1.0, float(np.abs(a64).max()))
        np.testing.assert_allclose(a32, a64, rtol=0, atol=2e-5 * scale)


def test_layer_norm_second_backward_gives_the_same_gradient(device):
    x = np.random.default_rng(8).standard_normal((6, 5))
    t = tl.tensor(x, device=device, requires_grad=True)
    ln = nn.LayerNorm(5).to(device=device, dtype=tl.float64)
    out = (ln(t) * tl.tensor(np.arange(30.0).reshape(6, 5), device=device)).sum()
    out.backward(retain_graph=True)
    first = host(t.grad)
    out.backward()
    np.testing.assert_allclose(host(t.grad), 2 * first, rtol=1e-12, atol=1e-12)


def np_sdpa(q, k, v, mask, keep, scale):
    s = q @ np.swapaxes(k, -1, -2) * scale + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    return (p * keep if keep is not None else p) @ v


SDPA_CASES = {
    # name: shapes of q, k, v, the additive mask and the dropout multiplier (None: no dropout)
    "in_place": ((2, 3, 4), (2, 5, 4), (2, 5, 3), (3, 5), (2, 3, 5)),
    "mask_adds_batch_dims": ((3, 4), (5, 4), (5, 2), (2, 3, 5), None),
    "keep_adds_batch_dims": ((3, 4), (5, 4), (5, 2), (3, 5), (2, 3, 5)),
    "value_adds_batch_dims": ((3, 4), (5, 4), (2, 5, 2), (3, 5), (3, 5)),
}


@pytest.mark.parametrize("case", sorted(SDPA_CASES))
def test_attention_in_place_and_fallback_paths(device, case):
    """Values against NumPy, float64 gradcheck (mask included) and untouched inputs, whether the
    softmax runs in place on S or (when the mask or keep enlarges the scores) on new arrays."""
    rng = np.random.default_rng(9)
    q, k, v, m = (rng.standard_normal(s) for s in SDPA_CASES[case][:4])
    keep_shape = SDPA_CASES[case][4]
    keep = None if keep_shape is None else (rng.random(keep_shape) > 0.3) / 0.7
    arrays = [q, k, v, m] + ([] if keep is None else [keep])
    before = [a.copy() for a in arrays]
    ts = [tl.tensor(a, device=device, requires_grad=True) for a in (q, k, v, m)]
    keep_data = None if keep is None else tl.tensor(keep, device=device).array

    def fn(a, b, c, d):
        return ScaledDotProductAttention.apply(a, b, c, d, keep=keep_data, scale=0.6)

    out = fn(*ts)
    np.testing.assert_allclose(host(out), np_sdpa(q, k, v, m, keep, 0.6), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(fn, ts)
    out.backward(tl.tensor(rng.standard_normal(out.shape), device=device))
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    for t, a in zip(ts, (q, k, v, m)):
        np.testing.assert_array_equal(host(t), a)


def test_attention_second_backward_gives_the_same_gradients(device):
    rng = np.random.default_rng(10)
    ts = [tl.tensor(rng.standard_normal(s), device=device, requires_grad=True) for s in ((2, 4, 3), (2, 4, 3),
                                                                                         (2, 4, 2))]
    out = F.scaled_dot_product_attention(*ts, is_causal=True)
    loss = (out * tl.tensor(rng.standard_normal(out.shape), device=device)).sum()
    loss.backward(retain_graph=True)
    first = [host(t.grad) for t in ts]
    loss.backward()
    for t, g in zip(ts, first):
        np.testing.assert_allclose(host(t.grad), 2 * g, rtol=1e-12, atol=1e-12)
