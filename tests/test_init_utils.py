"""nn.init distributions (moments, bounds, dtype, seeding) and nn.utils (clipping, flattening)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import init
from tinygrad_lm.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters

N = 200_000  # samples per moment check: a sample mean's std is sigma / 447


def big(device, dtype=tl.float32, shape=(400, 500)):
    return tl.zeros(*shape, dtype=dtype, device=device)


def check_uniform(a, lo, hi):
    assert a.min() >= lo and a.max() < hi
    assert a.min() < lo + 0.01 * (hi - lo) and a.max() > hi - 0.01 * (hi - lo)
    assert a.mean() == pytest.approx((lo + hi) / 2, abs=0.01 * (hi - lo))
    assert a.var() == pytest.approx((hi - lo) ** 2 / 12, rel=0.02)


def check_normal(a, mean, std):
    assert a.mean() == pytest.approx(mean, abs=0.01 * std)
    assert a.std() == pytest.approx(std, rel=0.01)
    assert np.mean(np.abs(a - mean) < std) == pytest.approx(0.6827, abs=0.01)


@pytest.mark.parametrize("dtype", [tl.float32, tl.float64])
def test_uniform_and_normal(device, dtype):
    t = big(device, dtype)
    assert init.uniform_(t, -2.0, 3.0) is t
    assert t.dtype == dtype
    check_uniform(t.numpy(), -2.0, 3.0)
    check_uniform(init.uniform_(big(device, dtype)).numpy(), 0.0, 1.0)
    init.normal_(t, mean=1.5, std=0.5)
    assert t.dtype == dtype
    check_normal(t.numpy(), 1.5, 0.5)


def test_constant_zeros_ones(device):
    t = tl.randn(3, 4, device=device)
    assert np.all(init.zeros_(t).numpy() == 0)
    assert np.all(init.ones_(t).numpy() == 1)
    assert np.all(init.constant_(t, 0.25).numpy() == 0.25) and t.dtype == tl.float32


def test_init_works_in_place_on_parameters_without_recording_a_graph(device):
    p = nn.Parameter(tl.zeros(3, 4, device=device))
    data = p.array
    init.kaiming_uniform_(p)
    assert p.array is data and p.grad_fn is None and p.requires_grad and p.is_leaf
    assert np.any(p.detach().numpy() != 0)


def test_init_uses_the_seeded_device_generator(device):
    tl.manual_seed(5)
    a = init.normal_(tl.zeros(4, 4, device=device)).numpy().copy()
    tl.manual_seed(5)
    b = init.normal_(tl.zeros(4, 4, device=device)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, init.normal_(tl.zeros(4, 4, device=device)).numpy())


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity swish"):
        init.calculate_gain("swish")


def test_xavier(device):
    t = big(device)  # (fan_out, fan_in) = (400, 500)
    a = math.sqrt(6 / 900)
    check_uniform(init.xavier_uniform_(t).numpy(), -a, a)
    check_uniform(init.xavier_uniform_(t, gain=2.0).numpy(), -2 * a, 2 * a)
    check_normal(init.xavier_normal_(t, gain=0.5).numpy(), 0.0, 0.5 * math.sqrt(2 / 900))


def test_kaiming(device):
    t = big(device)
    bound = math.sqrt(2) * math.sqrt(3 / 500)  # a=0: the leaky_relu gain is sqrt(2 / (1 + 0^2))
    check_uniform(init.kaiming_uniform_(t).numpy(), -bound, bound)
    check_uniform(init.kaiming_uniform_(t, a=math.sqrt(5)).numpy(), -1 / math.sqrt(500), 1 / math.sqrt(500))
    check_normal(init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu").numpy(), 0.0, math.sqrt(2 / 400))
    conv_like = tl.zeros(8, 4, 3, 3, device=device)  # fan_in = 4 * 9
    bound = math.sqrt(3) * math.sqrt(2) / math.sqrt(36)
    vals = init.kaiming_uniform_(conv_like, nonlinearity="relu").numpy()
    assert np.abs(vals).max() <= bound


def test_init_errors(device):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tl.zeros(5, device=device))
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_normal_(tl.zeros(2, 2, device=device), mode="fan_avg")
    with pytest.raises(TypeError, match="floating point"):
        init.normal_(tl.zeros(2, 2, dtype=tl.int64, device=device))
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(tl.zeros(0, 3, device=device))


# ---------------------------------------------------------------------- utils
def params_with_grads(device, rng, scale=1.0):
    shapes = [(3, 4), (4,), (2, 2, 2)]
    params = []
    for s in shapes:
        p = nn.Parameter(tl.tensor(rng.standard_normal(s), dtype=tl.float32, device=device))
        p.grad = tl.tensor(rng.standard_normal(s) * scale, dtype=tl.float32, device=device)
        params.append(p)
    return params


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf, "inf"]),
       max_norm=st.floats(0.1, 20.0), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_clip_grad_norm_against_numpy(device, seed, norm_type, max_norm, scale):
    params = params_with_grads(device, np.random.default_rng(seed), scale)
    params.append(nn.Parameter(tl.ones(2, device=device)))  # no grad: skipped
    grads = [p.grad.numpy().astype(np.float64).ravel() for p in params[:3]]
    flat = np.concatenate(grads)
    p = float(norm_type)
    expected = np.abs(flat).max() if p == math.inf else (np.abs(flat) ** p).sum() ** (1 / p)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(total, tl.Tensor) and total.shape == () and total.dtype == tl.float32
    assert total.item() == pytest.approx(expected, rel=1e-5)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p_, g in zip(params[:3], grads):
        np.testing.assert_allclose(p_.grad.numpy().ravel(), g * coef, rtol=1e-5, atol=1e-7)
    assert params[3].grad is None


def test_clip_grad_norm_result_has_the_requested_norm(device):
    params = params_with_grads(device, np.random.default_rng(0), scale=10.0)
    clip_grad_norm_(params, 1.0)
    flat = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert np.linalg.norm(flat) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm_(params, 1.0).item() == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_single_tensor_no_grads_and_nonfinite(device):
    p = nn.Parameter(tl.ones(3, device=device))
    assert clip_grad_norm_(p, 1.0).item() == 0.0
    p.grad = tl.tensor([3.0, 4.0, 0.0], device=device)
    assert clip_grad_norm_(p, 100.0).item() == pytest.approx(5.0)
    p.grad = tl.tensor([float("inf"), 1.0, 0.0], device=device)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([p], 1.0, norm_type=-1)


def test_clip_grad_value(device):
    p = nn.Parameter(tl.zeros(4, device=device))
    p.grad = tl.tensor([-3.0, -0.5, 0.5, 3.0], device=device)
    clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, -0.5, 0.5, 1.0])
    assert p.grad.dtype == tl.float32


def test_parameters_to_vector_and_back(device):
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)).to(device)
    vec = parameters_to_vector(model.parameters())
    assert vec.shape == (3 * 2 + 2 + 2 + 1,)
    np.testing.assert_array_equal(vec.detach().numpy()[:6], model[0].weight.detach().numpy().ravel())
    vec.sum().backward()  # differentiable, like torch.cat
    assert np.all(model[0].weight.grad.numpy() == 1)
    new = tl.arange(11, dtype=tl.float32, device=device)
    vector_to_parameters(new, model.parameters())
    np.testing.assert_array_equal(model[0].bias.detach().numpy(), [6.0, 7.0])
    np.testing.assert_array_equal(model[1].weight.detach().numpy(), [[8.0, 9.0]])
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="10 elements .* 11"):
        vector_to_parameters(tl.zeros(10, device=device), model.parameters())
    with pytest.raises(TypeError, match="Tensor"):
        vector_to_parameters(np.zeros(11), model.parameters())
