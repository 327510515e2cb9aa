"""tinygrad_lm.random: generators, reproducibility, distributions, shapes, errors, and PyTorch's behaviour.

Statistical checks are seeded (deterministic) and allow 5 standard errors of the estimate
(means, variances, per-category frequencies); frequency tables are also held to a chi-square
bound exceeded with probability 1e-7 by a correct sampler.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from helpers import host
from scipy.stats import chi2

import tinygrad_lm as tl
from tinygrad_lm import random as R

N = 200_000  # samples for the moment checks
SIGMAS = 5.0


def assert_mean(samples: np.ndarray, mean: float, sd: float) -> None:
    """The sample mean within 5 standard errors (sd / sqrt(n)) of ``mean``."""
    n = samples.size
    assert abs(samples.mean() - mean) <= SIGMAS * sd / np.sqrt(n), (samples.mean(), mean)


def assert_var(samples: np.ndarray, var: float, fourth_moment: float) -> None:
    """The sample variance within 5 standard errors, sqrt((mu_4 - sigma^4) / n), of ``var``."""
    n = samples.size
    se = np.sqrt((fourth_moment - var**2) / n)
    assert abs(samples.var(ddof=1) - var) <= SIGMAS * se, (samples.var(ddof=1), var)


def assert_frequencies(counts: np.ndarray, probs: np.ndarray) -> None:
    """Counts of n draws match n * probs: each within 5 binomial standard errors, and Pearson's chi-square
    below the level a correct sampler exceeds with probability 1e-7. Zero-probability cells must be empty."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    zero = probs == 0
    assert np.all(counts[zero] == 0), "a zero-probability category was drawn"
    expected = n * probs[~zero]
    got = counts[~zero]
    assert np.all(np.abs(got - expected) <= SIGMAS * np.sqrt(expected * (1 - probs[~zero]))), (got, expected)
    if expected.size > 1:
        stat = float(((got - expected) ** 2 / expected).sum())
        assert stat <= chi2.isf(1e-7, expected.size - 1), stat


# ----------------------------------------------------------------------------- generators and seeds
def test_manual_seed_reproduces_every_sampler(device):
    def draw():
        p = tl.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 3.0]], device=device)
        x = tl.zeros(4, device=device)
        return [host(R.rand(3, device=device)), host(R.randn(3, device=device)),
                host(R.randint(0, 10, (3,), device=device)), host(R.randperm(5, device=device)),
                host(R.multinomial(p, 4, True)), host(R.multinomial(p, 2)),
                host(R.bernoulli(tl.full((3,), 0.5, device=device))), host(R.poisson(tl.ones(3, device=device))),
                host(R.normal(0.0, 1.0, (3,), device=device)), host(R.normal_(x)), host(R.uniform_(x)),
                host(R.exponential_(x)), host(R.bernoulli_(x)), host(R.random_(x, 10))]

    R.manual_seed(7)
    first = draw()
    R.manual_seed(7)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    R.manual_seed(8)
    assert not np.array_equal(draw()[0], first[0])


def test_generator_reproduces_and_is_independent_of_the_default_stream(device):
    g = R.Generator(device).manual_seed(3)
    a = host(R.randn(5, generator=g, device=device))
    g.manual_seed(3)
    tl.manual_seed(0)
    R.randn(10, device=device)  # default-stream draws in between change nothing for g
    b = host(R.randn(5, generator=g, device=device))
    np.testing.assert_array_equal(a, b)
    # and drawing from g leaves the default stream where it was
    tl.manual_seed(0)
    expected = host(R.rand(4, device=device))
    tl.manual_seed(0)
    R.rand(100, generator=g, device=device)
    np.testing.assert_array_equal(host(R.rand(4, device=device)), expected)
    # two generators with one seed agree, with another seed they do not
    h = R.Generator(device).manual_seed(3)
    np.testing.assert_array_equal(host(R.randn(5, generator=h, device=device)), a)
    assert not np.array_equal(host(R.randn(5, generator=R.Generator(device).manual_seed(4), device=device)), a)


def test_new_generator_starts_from_pytorchs_default_seed(device):
    g = R.Generator(device)
    assert g.device == tl.backend.canonical_device(device)
    assert g.initial_seed() == 67280421310721
    a = host(R.rand(3, generator=g, device=device))
    np.testing.assert_array_equal(host(R.rand(3, generator=R.Generator(device), device=device)), a)


def test_generator_state_round_trip(device):
    g = R.Generator(device).manual_seed(11)
    R.rand(7, generator=g, device=device)
    state = g.get_state()
    assert state.dtype == "uint8" and state.device == "cpu" and state.ndim == 1
    a = host(R.randn(6, generator=g, device=device))
    R.randn(3, generator=g, device=device)
    assert g.set_state(state) is g
    np.testing.assert_array_equal(host(R.randn(6, generator=g, device=device)), a)
    assert g.initial_seed() == 11
    # a state moves to another generator, seed included
    other = R.Generator(device).set_state(state)
    assert other.initial_seed() == 11
    np.testing.assert_array_equal(host(R.randn(6, generator=other, device=device)), a)


def test_cpu_state_layout_survives_a_buffered_half_word():
    """PCG64 keeps half of a 64-bit word after a 32-bit draw; the state must carry it."""
    g = R.Generator().manual_seed(5)
    R.rand(1, generator=g, dtype=tl.float32)  # float32 draws use 32-bit halves
    state = g.get_state()
    assert state.shape == (48,)
    a = host(R.rand(5, generator=g, dtype=tl.float32))
    g.set_state(state)
    np.testing.assert_array_equal(host(R.rand(5, generator=g, dtype=tl.float32)), a)


def test_default_generator_follows_manual_seed_and_rng_state():
    assert R.manual_seed(21) is R.default_generator
    assert R.initial_seed() == 21 and R.default_generator.initial_seed() == 21
    state = R.get_rng_state()
    a = host(R.rand(5))
    R.set_rng_state(state)
    np.testing.assert_array_equal(host(R.rand(5)), a)
    R.default_generator.manual_seed(22)
    assert R.initial_seed() == 22
    b = host(R.rand(5))
    tl.manual_seed(22)
    np.testing.assert_array_equal(host(R.rand(5)), b)
    # passing the default generator explicitly is the same as passing none
    tl.manual_seed(23)
    c = host(R.randn(4, generator=R.default_generator))
    tl.manual_seed(23)
    np.testing.assert_array_equal(host(R.randn(4)), c)


def test_default_generator_of_one_device_reseeds_only_that_device(device):
    if device == "cpu":
        pytest.skip("needs a second device")
    tl.manual_seed(1)
    cpu = host(R.rand(3))
    tl.manual_seed(1)
    R.default_generator_for(device).manual_seed(99)
    np.testing.assert_array_equal(host(R.rand(3)), cpu)
    assert R.default_generator_for(device).initial_seed() == 99


def test_fork_rng_puts_the_default_streams_back(device):
    tl.manual_seed(4)
    expected = host(R.rand(3, device=device)), host(R.rand(3))
    tl.manual_seed(4)
    with R.fork_rng():
        R.rand(10, device=device)
        R.rand(10)
        R.manual_seed(99)
        R.randn(5, device=device)
    assert R.initial_seed() == 4
    got = host(R.rand(3, device=device)), host(R.rand(3))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    before = host(R.get_rng_state())
    with pytest.raises(KeyError):  # restored on an exception too
        with R.fork_rng():
            R.rand(10)
            raise KeyError("x")
    np.testing.assert_array_equal(host(R.get_rng_state()), before)


def test_fork_rng_disabled_and_device_lists():
    tl.manual_seed(6)
    with R.fork_rng(enabled=False):
        R.rand(5)
    moved = host(R.rand(3))
    tl.manual_seed(6)
    R.rand(5)
    np.testing.assert_array_equal(host(R.rand(3)), moved)
    tl.manual_seed(6)
    with R.fork_rng(devices=[]):  # the CPU is always forked
        R.rand(5)
    tl.manual_seed(6)
    np.testing.assert_array_equal(host(R.rand(3)), host(R.rand(3, generator=R.Generator().manual_seed(6))))


def test_seed_is_random_and_reported():
    g = R.Generator()
    s = g.seed()
    assert 0 <= s < 2**64 and g.initial_seed() == s
    a = host(R.rand(3, generator=g))
    np.testing.assert_array_equal(host(R.rand(3, generator=R.Generator().manual_seed(s))), a)
    t = R.seed()
    assert R.initial_seed() == t


def test_seed_range_and_negative_seeds():
    assert R.Generator().manual_seed(-1).initial_seed() == 2**64 - 1
    assert R.Generator().manual_seed(2**64 - 1).initial_seed() == 2**64 - 1
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match="seed .* out of range"):
            R.manual_seed(bad)
        with pytest.raises(ValueError, match="seed .* out of range"):
            R.Generator().manual_seed(bad)


def test_set_state_errors():
    g = R.Generator()
    with pytest.raises(TypeError, match="set_state: expected a uint8 tl.Tensor"):
        g.set_state([1, 2, 3])
    with pytest.raises(TypeError, match="RNG state must be a uint8 tensor"):
        g.set_state(tl.zeros(48, dtype=tl.int64))
    with pytest.raises(RuntimeError, match="at least 8 bytes"):
        g.set_state(tl.zeros(3, dtype="uint8"))
    with pytest.raises(RuntimeError, match="40 bytes"):
        g.set_state(tl.zeros(20, dtype="uint8"))
    before = host(R.rand(3, generator=R.Generator().set_state(g.get_state())))
    with pytest.raises(RuntimeError):  # a failed set_state leaves the default stream alone
        R.set_rng_state(tl.zeros(20, dtype="uint8"))
    np.testing.assert_array_equal(host(R.rand(3, generator=g)), before)


def test_generator_argument_errors(device):
    with pytest.raises(TypeError, match="generator must be a tinygrad_lm.Generator"):
        R.rand(3, generator=np.random.default_rng(0), device=device)
    if device != "cpu":
        with pytest.raises(RuntimeError, match="the generator is on cpu but the result is on cuda"):
            R.rand(3, generator=R.Generator("cpu"), device=device)


# ----------------------------------------------------------------------------- new tensors
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_rand_randn_shapes_dtypes_and_moments(device, dtype):
    u = R.rand(N, dtype=dtype, device=device)
    z = R.randn(2, N // 2, dtype=dtype, device=device)
    assert u.shape == (N,) and z.shape == (2, N // 2)
    assert u.dtype == dtype and z.dtype == dtype and u.device == z.device == tl.backend.canonical_device(device)
    hu, hz = host(u).astype(np.float64), host(z).astype(np.float64).ravel()
    assert hu.min() >= 0 and hu.max() < 1
    assert_mean(hu, 0.5, np.sqrt(1 / 12))
    assert_var(hu, 1 / 12, 1 / 80)
    assert_mean(hz, 0.0, 1.0)
    if dtype != "float16":  # float16 rounding moves the variance by more than the sampling error
        assert_var(hz, 1.0, 3.0)


def test_float16_rand_is_a_multiple_of_2_to_the_minus_11(device):
    u = host(R.rand(10_000, dtype="float16", device=device)).astype(np.float64)
    np.testing.assert_array_equal(u * 2048, np.round(u * 2048))
    assert u.max() < 1


def test_creation_size_forms_requires_grad_and_out(device):
    assert R.rand((2, 3), device=device).shape == (2, 3)
    assert R.randn([2, 3], device=device).shape == (2, 3)
    assert R.rand(device=device).shape == ()
    assert R.rand(0, 3, device=device).shape == (0, 3)
    assert R.rand(2, requires_grad=True, device=device).requires_grad
    tl.set_default_dtype("float64")
    assert R.rand(2, device=device).dtype == "float64"
    tl.set_default_dtype("float32")
    out = tl.zeros(4, device=device)
    assert R.randn(4, out=out) is out and np.all(host(out) != 0)
    resized = tl.zeros(1, dtype=tl.float64, device=device)
    assert R.rand(2, 2, out=resized) is resized and resized.shape == (2, 2) and resized.dtype == "float64"


def test_randint_forms_bounds_and_frequencies(device):
    assert R.randint(5, (2, 3), device=device).shape == (2, 3)
    assert R.randint(3, 10, size=(4,), device=device).dtype == "int64"
    assert R.randint(high=10, size=(4,), device=device).shape == (4,)
    assert R.randint(10, size=(4,), device=device).shape == (4,)
    f = R.randint(0, 4, (5,), dtype=tl.float32, device=device)
    assert f.dtype == "float32" and np.all(host(f) == np.round(host(f)))
    k = host(R.randint(-3, 4, (70_000,), device=device))
    assert k.min() >= -3 and k.max() <= 3
    assert_frequencies(np.bincount(k + 3, minlength=7), np.full(7, 1 / 7))
    big = host(R.randint(2**62, 2**63 - 1, (100,), device=device))
    assert big.min() >= 2**62


def test_randperm_is_a_uniform_permutation(device):
    p = host(R.randperm(1000, device=device))
    np.testing.assert_array_equal(np.sort(p), np.arange(1000))
    assert R.randperm(0, device=device).shape == (0,)
    assert R.randperm(5, dtype=tl.float32, device=device).dtype == "float32"
    first = np.array([int(host(R.randperm(5, device=device))[0]) for _ in range(5000)])
    assert_frequencies(np.bincount(first, minlength=5), np.full(5, 0.2))


def test_like_functions_keep_shape_dtype_device(device):
    x = tl.zeros(3, 2, dtype=tl.float64, device=device)
    for t in (R.rand_like(x), R.randn_like(x), R.randint_like(x, 5), R.randint_like(x, 2, 5)):
        assert t.shape == (3, 2) and t.dtype == "float64" and t.device == x.device
    assert R.rand_like(x, dtype=tl.float32).dtype == "float32"
    k = host(R.randint_like(tl.zeros(1000, dtype=tl.int64, device=device), 2, 5))
    assert k.min() >= 2 and k.max() <= 4
    g = R.Generator(device).manual_seed(1)
    a = host(R.randn_like(x, generator=g))
    np.testing.assert_array_equal(host(R.randn_like(x, generator=g.manual_seed(1))), a)


def test_creation_errors(device):
    with pytest.raises(RuntimeError, match="rand: draws floating point numbers, dtype int64"):
        R.rand(2, dtype=tl.int64, device=device)
    with pytest.raises(RuntimeError, match="randn: draws floating point numbers"):
        R.randn(2, dtype=tl.int32, device=device)
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        R.rand(-1, device=device)
    with pytest.raises(TypeError, match="size must be ints"):
        R.randn(2.5, device=device)
    with pytest.raises(RuntimeError, match="randint: expects 'low' to be less than 'high', but got low=5 >= high=5"):
        R.randint(5, 5, (2,), device=device)
    with pytest.raises(RuntimeError, match="randint: high - 1 = 299 is out of bounds for uint8"):
        R.randint(300, (2,), dtype="uint8", device=device)
    with pytest.raises(RuntimeError, match="randint: low = -1 is out of bounds for uint8"):
        R.randint(-1, 5, (2,), dtype="uint8", device=device)
    with pytest.raises(TypeError, match="missing the size"):
        R.randint(5, device=device)
    with pytest.raises(TypeError, match="argument 'high' must be int"):
        R.randint(0, 2.5, (2,), device=device)
    with pytest.raises(RuntimeError, match="only tensors of floating point dtype can require gradients"):
        R.randint(5, (2,), requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="randperm: n must be non-negative, got -1"):
        R.randperm(-1, device=device)
    with pytest.raises(RuntimeError, match="randperm: n - 1 = 2999 is out of bounds for float16"):
        R.randperm(3000, dtype=tl.float16, device=device)
    with pytest.raises(RuntimeError, match="randperm: not implemented for dtype bool"):
        R.randperm(3, dtype=tl.bool, device=device)
    with pytest.raises(TypeError, match="rand_like: input must be a tl.Tensor"):
        R.rand_like(np.zeros(3))


# ----------------------------------------------------------------------------- normal, bernoulli, poisson
def test_normal_forms_shapes_and_moments(device):
    z = host(R.normal(2.0, 3.0, (N,), device=device)).astype(np.float64)
    assert_mean(z, 2.0, 3.0)
    assert_var(z, 9.0, 3 * 81.0)
    mean = tl.tensor([[-5.0], [5.0]], device=device)  # (2, 1)
    std = tl.tensor([0.5, 2.0, 0.0], dtype=tl.float64, device=device)  # (3,)
    s = R.normal(mean, std)
    assert s.shape == (2, 3) and s.dtype == "float64"
    assert np.all(host(s)[:, 2] == [-5.0, 5.0])  # std 0 gives the mean
    draws = np.stack([host(R.normal(mean, std)) for _ in range(2000)])  # (2000, 2, 3)
    for i, m in enumerate((-5.0, 5.0)):
        for j, sd in enumerate((0.5, 2.0)):
            assert_mean(draws[:, i, j], m, sd)
    assert R.normal(tl.zeros(4, device=device)).shape == (4,)  # std defaults to 1
    assert R.normal(tl.zeros(4, dtype=tl.float16, device=device), 2.0).dtype == "float16"
    assert R.normal(1.0, tl.ones(2, 3, device=device)).shape == (2, 3)
    assert R.normal(0.0, 1.0, (2, 3), dtype=tl.float64, device=device).dtype == "float64"
    assert R.normal(0, 1, [5], device=device).shape == (5,)


def test_normal_errors(device):
    with pytest.raises(RuntimeError, match="normal expects std >= 0.0, but found std -1"):
        R.normal(0.0, -1.0, (2,), device=device)
    with pytest.raises(RuntimeError, match="normal expects std >= 0.0, but found std -1"):
        R.normal(tl.zeros(2, device=device), -1.0)
    with pytest.raises(RuntimeError, match="normal expects all elements of std >= 0.0"):
        R.normal(tl.zeros(2, device=device), -tl.ones(2, device=device))
    with pytest.raises(RuntimeError, match=r"mean of shape \(2,\) and std of shape \(3,\) do not broadcast"):
        R.normal(tl.zeros(2, device=device), tl.ones(3, device=device))
    with pytest.raises(TypeError, match="give the size"):
        R.normal(0.0, 1.0)
    with pytest.raises(TypeError, match="size is only taken with a number mean and std"):
        R.normal(tl.zeros(2, device=device), 1.0, (2,))
    with pytest.raises(RuntimeError, match="mean must be a floating point tensor, got int64"):
        R.normal(tl.zeros(2, dtype=tl.int64, device=device), 1.0)
    with pytest.raises(TypeError, match="normal: std must be a number"):
        R.normal(tl.zeros(2, device=device), "1")


def test_bernoulli_frequencies_dtype_and_errors(device):
    p = tl.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=tl.float64, device=device)
    draws = np.stack([host(R.bernoulli(p)) for _ in range(4000)])  # (4000, 5)
    assert draws.dtype == np.float64 and set(np.unique(draws)) <= {0.0, 1.0}
    for j, pj in enumerate(host(p)):
        if pj in (0.0, 1.0):
            assert np.all(draws[:, j] == pj)
        else:
            assert_mean(draws[:, j], pj, np.sqrt(pj * (1 - pj)))
    x = tl.zeros(N, dtype=tl.float16, device=device)
    b = R.bernoulli(x, 0.3)
    assert b.dtype == "float16" and b.shape == (N,)
    assert_mean(host(b).astype(np.float64), 0.3, np.sqrt(0.21))
    assert R.bernoulli(tl.zeros(3, dtype=tl.int64, device=device), 0.5).dtype == "int64"
    out = tl.zeros(5, dtype=tl.float64, device=device)
    assert R.bernoulli(p, out=out) is out
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(RuntimeError, match=r"probabilities must lie in \[0, 1\]"):
            R.bernoulli(tl.tensor([0.5, bad], device=device))
    with pytest.raises(RuntimeError, match=r"bernoulli_ expects p to be in \[0, 1\], but got p=1.3"):
        R.bernoulli(tl.zeros(2, device=device), 1.3)
    with pytest.raises(RuntimeError, match="input holds the probabilities and must be floating point"):
        R.bernoulli(tl.zeros(2, dtype=tl.int64, device=device))


def test_poisson_moments_and_errors(device):
    rate = tl.full((N,), 3.5, device=device)
    k = R.poisson(rate)
    assert k.dtype == "float32" and k.shape == (N,)
    hk = host(k).astype(np.float64)
    assert np.all(hk == np.round(hk)) and hk.min() >= 0
    assert_mean(hk, 3.5, np.sqrt(3.5))
    assert_var(hk, 3.5, 3.5 + 3 * 3.5**2)  # mu_4 of Poisson(l) = l + 3 l^2
    assert np.all(host(R.poisson(tl.zeros(3, device=device))) == 0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(RuntimeError, match="invalid Poisson rate, expected rate to be non-negative"):
            R.poisson(tl.tensor([1.0, bad], device=device))
    with pytest.raises(RuntimeError, match="rates must be a floating point tensor"):
        R.poisson(tl.tensor([1, 2], device=device))


def test_samples_have_zero_gradient_with_respect_to_their_parameters(device):
    p = tl.tensor([0.2, 0.7], dtype=tl.float64, device=device, requires_grad=True)
    b = R.bernoulli(p)
    assert b.requires_grad
    b.sum().backward()
    np.testing.assert_array_equal(host(p.grad), [0.0, 0.0])
    mean = tl.zeros(2, 1, device=device, requires_grad=True)
    std = tl.ones(3, device=device, requires_grad=True)
    (R.normal(mean, std) * 3).sum().backward()
    assert mean.grad.shape == (2, 1) and np.all(host(mean.grad) == 0)
    assert std.grad.shape == (3,) and np.all(host(std.grad) == 0)
    rate = tl.ones(2, device=device, requires_grad=True)
    R.poisson(rate).sum().backward()
    np.testing.assert_array_equal(host(rate.grad), [0.0, 0.0])
    with tl.no_grad():
        assert not R.bernoulli(p).requires_grad


# ----------------------------------------------------------------------------- multinomial
def test_multinomial_with_replacement_frequencies(device):
    probs = np.array([0.05, 0.0, 0.15, 0.3, 0.0, 0.5])
    weights = tl.tensor(probs * 7.0, dtype=tl.float32, device=device)  # unnormalised weights
    draws = R.multinomial(weights, 100_000, replacement=True)
    assert draws.shape == (100_000,) and draws.dtype == "int64" and draws.device == weights.device
    assert_frequencies(np.bincount(host(draws), minlength=6), probs)


def test_multinomial_batched_rows_are_sampled_from_their_own_row(device):
    rows = np.array([[1.0, 0.0, 0.0, 3.0], [0.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    draws = host(R.multinomial(tl.tensor(rows, device=device), 40_000, True))  # (3, 40000)
    assert draws.shape == (3, 40_000)
    for b in range(3):
        assert_frequencies(np.bincount(draws[b], minlength=4), rows[b] / rows[b].sum())


def test_multinomial_language_model_step(device):
    """One next token per row from softmax probabilities over a GPT-2 sized vocabulary."""
    B, V = 8, 50_257
    logits = tl.tensor(np.random.default_rng(0).standard_normal((B, V)) * 3, dtype=tl.float32, device=device)
    probs = logits.softmax(-1)
    token = R.multinomial(probs, 1)
    assert token.shape == (B, 1) and token.dtype == "int64"
    assert np.all((host(token) >= 0) & (host(token) < V))
    # a row with one certain token always gives it
    peaked = np.zeros((2, V), dtype=np.float32)
    peaked[0, 17] = peaked[1, V - 1] = 1.0
    np.testing.assert_array_equal(host(R.multinomial(tl.tensor(peaked, device=device), 3, True)),
                                  [[17] * 3, [V - 1] * 3])


def test_multinomial_rounding_never_picks_a_zero_weight(device):
    """u close to 1 can round past the last CDF value; the draw must still be a positive-weight category."""
    V = 2048
    w = np.zeros((4, V))
    w[:, :3] = [1e-300, 1.0, 1e-17]  # the CDF's last steps are far below float64's resolution
    draws = host(R.multinomial(tl.tensor(w, device=device), 5000, True))
    assert set(np.unique(draws)) <= {0, 1, 2}


class _LargestDraws:
    """A stand-in generator whose uniform draws are all the largest float64 below 1 (u = 1 - 2**-53)."""

    def random(self, shape):
        return np.full(shape, 1 - 2**-53)


@pytest.mark.parametrize("V", [8, 2048])  # rows merged into one search, and one search per row
def test_the_largest_uniform_draw_picks_the_last_positive_weight(V):
    """u sum(p) (or u + b, for merged rows) may round up to the row's end; the draw must be its last
    positive-weight category, never a trailing zero-weight one."""
    p = np.zeros((3, V))
    p[0, :2] = [1.0, 1.0]
    p[1, :3] = [0.5, 0.0, 2.0]
    p[2, 1] = 3.0
    cdf = np.cumsum(p, axis=-1)
    idx = R._with_replacement(np, _LargestDraws(), p, cdf, 2)
    np.testing.assert_array_equal(idx, [[1, 1], [2, 2], [1, 1]])


def test_multinomial_without_replacement_is_distinct_and_sequential(device):
    p = np.array([0.1, 0.2, 0.3, 0.4])
    n = 40_000
    draws = host(R.multinomial(tl.tensor(np.tile(p, (n, 1)), device=device), 3))  # (n, 3)
    assert draws.shape == (n, 3)
    assert np.all(np.sort(draws, axis=1)[:, 1:] != np.sort(draws, axis=1)[:, :-1])  # distinct in each row
    # the first draw is distributed as p; the second as sum_i p_i p_j / (1 - p_i) over i != j
    assert_frequencies(np.bincount(draws[:, 0], minlength=4), p)
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)])
    assert_frequencies(np.bincount(draws[:, 1], minlength=4), second)


def test_multinomial_without_replacement_takes_zero_weights_last(device):
    w = tl.tensor([[1.0, 0.0, 1.0, 0.0]] * 50, device=device)
    draws = host(R.multinomial(w, 4))
    for row in draws:
        assert set(row[:2]) == {0, 2} and set(row[2:]) == {1, 3}
    one = host(R.multinomial(tl.tensor([1.0, 0.0, 0.0, 0.0], device=device), 3))
    assert one[0] == 0 and len(set(one)) == 3 and set(one) <= {0, 1, 2, 3}
    full = host(R.multinomial(tl.tensor([0.5, 0.25, 0.25], device=device), 3))
    assert sorted(full) == [0, 1, 2]


def test_multinomial_shapes_out_and_empty_batch(device):
    assert R.multinomial(tl.ones(0, 5, device=device), 2).shape == (0, 2)
    out = tl.zeros(3, dtype=tl.int64, device=device)
    assert R.multinomial(tl.ones(4, device=device), 3, out=out) is out
    assert R.multinomial(tl.ones(4, dtype=tl.float16, device=device), 2).dtype == "int64"
    assert R.multinomial(tl.ones(3, device=device, requires_grad=True), 2).requires_grad is False
    g = R.Generator(device).manual_seed(2)
    a = host(R.multinomial(tl.ones(2, 10, device=device), 4, generator=g))
    np.testing.assert_array_equal(host(R.multinomial(tl.ones(2, 10, device=device), 4, generator=g.manual_seed(2))), a)


def test_multinomial_errors(device):
    def t(values, **kw):
        return tl.tensor(values, device=device, **kw)

    with pytest.raises(RuntimeError, match="prob_dist must be 1 or 2 dim"):
        R.multinomial(t(1.0), 1)
    with pytest.raises(RuntimeError, match="prob_dist must be 1 or 2 dim"):
        R.multinomial(tl.ones(2, 2, 2, device=device), 1)
    with pytest.raises(RuntimeError, match="only supports floating-point dtypes for input, got: int64"):
        R.multinomial(t([1, 2]), 1)
    with pytest.raises(RuntimeError, match="cannot sample n_sample <= 0 samples"):
        R.multinomial(t([1.0, 2.0]), 0)
    with pytest.raises(RuntimeError, match=r"cannot sample n_sample > prob_dist.size\(-1\) samples without "
                                           r"replacement \(3 > 2\)"):
        R.multinomial(t([1.0, 2.0]), 3)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match="probability tensor contains either `inf`, `nan` or element < 0"):
            R.multinomial(t([1.0, bad]), 1)
        with pytest.raises(RuntimeError, match="probability tensor contains either `inf`, `nan` or element < 0"):
            R.multinomial(t([[1.0, 1.0], [1.0, bad]]), 2)
    for replacement in (False, True):
        with pytest.raises(RuntimeError, match=r"invalid multinomial distribution \(sum of probabilities <= 0\)"):
            R.multinomial(t([[1.0, 1.0], [0.0, 0.0]]), 1, replacement)
    with pytest.raises(RuntimeError, match="sum of probabilities <= 0"):
        R.multinomial(tl.zeros(2, 0, device=device), 2, True)
    with pytest.raises(TypeError, match="argument 'num_samples' must be int, not float"):
        R.multinomial(t([1.0, 2.0]), 2.0)
    with pytest.raises(TypeError, match="argument 'num_samples' must be int, not bool"):
        R.multinomial(t([1.0, 2.0]), True)
    with pytest.raises(TypeError, match="multinomial: input must be a tl.Tensor"):
        R.multinomial([0.5, 0.5], 1)
    with pytest.raises(RuntimeError, match="out has dtype float32, the result is int64"):
        R.multinomial(t([1.0, 2.0]), 1, out=tl.zeros(1, device=device))


# ----------------------------------------------------------------------------- in-place fills
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_in_place_fills_keep_dtype_and_memory(device, dtype):
    x = tl.zeros(4, 5, dtype=dtype, device=device)
    array = x.array
    for fill in (R.normal_, R.uniform_, R.exponential_, R.bernoulli_, R.random_, R.log_normal_, R.cauchy_,
                 lambda t: R.geometric_(t, 0.5)):
        assert fill(x) is x
        assert x.array is array and x.dtype == dtype and x.shape == (4, 5)


def test_in_place_moments(device):
    x = tl.zeros(N, device=device)
    hx = host(R.normal_(x, 2.0, 3.0)).astype(np.float64)
    assert_mean(hx, 2.0, 3.0)
    assert_var(hx, 9.0, 3 * 81.0)
    hx = host(R.uniform_(x, -2.0, 5.0)).astype(np.float64)
    assert hx.min() >= -2.0 and hx.max() <= 5.0
    assert_mean(hx, 1.5, 7.0 / np.sqrt(12))
    assert_var(hx, 49.0 / 12, 7.0**4 / 80)
    hx = host(R.exponential_(x, 2.0)).astype(np.float64)
    assert hx.min() >= 0
    assert_mean(hx, 0.5, 0.5)
    assert_var(hx, 0.25, 9.0 / 16)  # mu_4 of Exp(l) = 9 / l^4
    hx = host(R.bernoulli_(x, 0.25)).astype(np.float64)
    assert set(np.unique(hx)) <= {0.0, 1.0}
    assert_mean(hx, 0.25, np.sqrt(0.25 * 0.75))
    p = tl.tensor([[0.1], [0.8]], device=device)  # broadcast over the columns
    y = host(R.bernoulli_(tl.zeros(2, N // 2, device=device), p)).astype(np.float64)
    assert_mean(y[0], 0.1, 0.3)
    assert_mean(y[1], 0.8, 0.4)


def test_log_normal_cauchy_geometric(device):
    x = tl.zeros(N, dtype=tl.float64, device=device)
    logs = np.log(host(R.log_normal_(x, 1.0, 0.5)))
    assert_mean(logs, 1.0, 0.5)
    assert_var(logs, 0.25, 3 * 0.5**4)
    c = host(R.cauchy_(x, 2.0, 3.0))
    # quartiles of Cauchy(median, sigma) are median -+ sigma: the fractions below are Bernoulli means
    for q, frac in ((-1.0, 0.25), (0.0, 0.5), (1.0, 0.75)):
        assert_mean((c < 2.0 + 3.0 * q).astype(np.float64), frac, np.sqrt(frac * (1 - frac)))
    k = host(R.geometric_(tl.zeros(N, dtype=tl.int64, device=device), 0.25))
    assert k.dtype == np.int64 and k.min() >= 1
    pmf = 0.25 * 0.75 ** np.arange(6)  # P(k = 1 .. 6)
    counts = np.bincount(np.minimum(k, 7) - 1, minlength=7)
    assert_frequencies(counts, np.append(pmf, 1 - pmf.sum()))
    assert R.geometric_(tl.zeros(3, device=device), 0.5).dtype == "float32"


def test_log_normal_cauchy_geometric_errors(device):
    x = tl.zeros(3, device=device)
    for std in (0, -1):
        with pytest.raises(RuntimeError, match=f"log_normal_ expects std > 0.0, but found std={std}"):
            R.log_normal_(x, 1, std)
        with pytest.raises(RuntimeError, match=f"cauchy_ expects sigma > 0.0, but found sigma={std}"):
            R.cauchy_(x, 0, std)
    for p in (0, 1, 1.5):
        with pytest.raises(RuntimeError, match=rf"geometric_ expects p to be in \(0, 1\), but got p={p}"):
            R.geometric_(x, p)
    for fill in (R.log_normal_, R.cauchy_):
        with pytest.raises(RuntimeError, match="expects a floating point tensor, got int64"):
            fill(tl.zeros(3, dtype=tl.int64, device=device))
    with pytest.raises(RuntimeError, match="geometric_: not implemented for dtype bool"):
        R.geometric_(tl.zeros(3, dtype=tl.bool, device=device), 0.5)


def test_generator_in_in_place_fills(device):
    g = R.Generator(device).manual_seed(5)
    x, y = tl.zeros(6, device=device), tl.zeros(6, device=device)
    R.normal_(x, generator=g)
    R.normal_(y, generator=g.manual_seed(5))
    np.testing.assert_array_equal(host(x), host(y))


def test_random_ranges(device):
    f = host(R.random_(tl.zeros(10_000, device=device)))
    assert f.min() >= 0 and f.max() <= 2**24 and np.all(f == np.round(f))
    assert f.max() > 2**23  # the range reaches up to 2**24
    k = host(R.random_(tl.zeros(30_000, dtype=tl.int64, device=device), 3))
    assert_frequencies(np.bincount(k, minlength=3), np.full(3, 1 / 3))
    k = host(R.random_(tl.zeros(30_000, device=device), -3, 3))
    assert_frequencies(np.bincount((k + 3).astype(np.int64), minlength=6), np.full(6, 1 / 6))
    u8 = host(R.random_(tl.zeros(10_000, dtype="uint8", device=device)))
    assert u8.dtype == np.uint8 and u8.max() > 200
    b = host(R.random_(tl.zeros(1000, dtype=tl.bool, device=device)))
    assert b.dtype == np.bool_ and b.any() and not b.all()
    i64 = host(R.random_(tl.zeros(1000, dtype=tl.int64, device=device)))
    assert i64.min() >= 0 and i64.max() > 2**62
    lo = host(R.random_(tl.zeros(1000, dtype=tl.int64, device=device), 2**62, None))
    assert lo.min() >= 2**62


def test_in_place_errors(device):
    x = tl.zeros(3, device=device)
    ints = tl.zeros(3, dtype=tl.int64, device=device)
    with pytest.raises(RuntimeError, match="normal_: normal expects std >= 0.0, but found std -1"):
        R.normal_(x, 0, -1)
    with pytest.raises(RuntimeError, match=r"uniform_ expects to return a \[from, to\) range, but found from=1 > to=0"):
        R.uniform_(x, 1, 0)
    for lam in (0, -1):
        with pytest.raises(RuntimeError, match=f"exponential_ expects lambda > 0.0, but found lambda={lam}"):
            R.exponential_(x, lam)
    with pytest.raises(RuntimeError, match=r"bernoulli_ expects p to be in \[0, 1\], but got p=1.5"):
        R.bernoulli_(x, 1.5)
    with pytest.raises(RuntimeError, match=r"probabilities must lie in \[0, 1\]"):
        R.bernoulli_(x, tl.tensor([1.5, 0.0, 0.0], device=device))
    with pytest.raises(RuntimeError, match=r"p of shape \(2,\) does not broadcast to the tensor's shape \(3,\)"):
        R.bernoulli_(x, tl.tensor([0.5, 0.1], device=device))
    for fill in (R.normal_, R.uniform_, R.exponential_):
        with pytest.raises(RuntimeError, match="expects a floating point tensor, got int64"):
            fill(ints)
    with pytest.raises(RuntimeError, match="random_: expects 'from' to be less than 'to', but got from=5 >= to=2"):
        R.random_(x, 5, 2)
    with pytest.raises(RuntimeError, match="random_: to - 1 = 299 is out of bounds for uint8"):
        R.random_(tl.zeros(3, dtype="uint8", device=device), 0, 300)
    with pytest.raises(TypeError, match="argument 'to' must be int"):
        R.random_(x, 0, 2.5)
    with pytest.raises(TypeError, match="normal_: self must be a tl.Tensor"):
        R.normal_(np.zeros(3))
    with pytest.raises(TypeError, match="uniform_: from must be a number"):
        R.uniform_(x, "0")


def test_in_place_fill_and_autograd(device):
    w = tl.zeros(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        R.normal_(w)
    with tl.no_grad():
        R.normal_(w)  # as nn.init fills parameters
    assert np.all(host(w) != 0) and w.requires_grad and w.grad_fn is None
    # a tensor in the graph becomes a sample: backward gives what it was made from zero gradient
    x = tl.ones(3, device=device, requires_grad=True)
    y = x * 2
    R.uniform_(y)
    (y * 5).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [0.0, 0.0, 0.0])
    # an op that saved the old values still differentiates with them
    x = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = x * 2
    z = y * y  # saves y = 2x: dz/dx = 8x
    R.normal_(y)
    (z.sum() + y.sum()).backward()
    np.testing.assert_array_equal(host(x.grad), [8.0, 16.0, 24.0])


def test_in_place_fill_of_an_expanded_tensor_is_refused(device):
    x = tl.zeros(1, device=device).expand(3)
    if getattr(x.array.flags, "writeable", True):
        pytest.skip("this backend's expand() gives a writable array")
    with pytest.raises(RuntimeError, match="normal_: the tensor is read-only"):
        R.normal_(x)


def test_in_place_fill_bumps_the_version_counter(device):
    x = tl.zeros(3, device=device)
    if not hasattr(x, "_version"):
        pytest.skip("Tensor has no version counter yet")
    before = x._version
    R.normal_(x)
    R.bernoulli_(x)
    assert x._version == before + 2


# ----------------------------------------------------------------------------- module hygiene
def test_random_module_does_not_import_an_array_library():
    """Array math goes through tensor.xp and backend.py, as everywhere in the engine."""
    path = Path(R.__file__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert imported and not [m for m in imported if m.split(".")[0] in ("numpy", "cupy", "cupyx")]
