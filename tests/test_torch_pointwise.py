"""Pointwise math with PyTorch's names (issue 15): gradchecks in float64 driven by Hypothesis, and
values and gradients against PyTorch (float64) where it is installed, in both forms (``x.f()`` and ``tl.f(x)``)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, arrays_avoiding, broadcastable_shapes, check_grad, host, positive_arrays, shapes
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_lm as tl

# name -> strategy of values inside the op's domain, away from its kinks
_INTEGERS = [float(k) for k in range(-3, 4)]
UNARY = {
    "exp2": lambda s: arrays(s, -2, 2),
    "expm1": lambda s: arrays(s, -2, 2),
    "log2": lambda s: positive_arrays(s),
    "log10": lambda s: positive_arrays(s),
    "log1p": lambda s: arrays(s, -0.5, 3),
    "rsqrt": lambda s: positive_arrays(s),
    "reciprocal": lambda s: arrays_avoiding(s, [0.0], margin=0.3),
    "tan": lambda s: arrays(s, -1.2, 1.2),
    "asin": lambda s: arrays(s, -0.9, 0.9),
    "acos": lambda s: arrays(s, -0.9, 0.9),
    "atan": lambda s: arrays(s),
    "sinh": lambda s: arrays(s, -2, 2),
    "cosh": lambda s: arrays(s, -2, 2),
    "erf": lambda s: arrays(s, -2, 2),
    "tanh": lambda s: arrays(s),
    "sigmoid": lambda s: arrays(s),
    "square": lambda s: arrays(s),
    "neg": lambda s: arrays(s),
    "frac": lambda s: arrays_avoiding(s, _INTEGERS, margin=0.05, lo=-2.9, hi=2.9),
    "floor": lambda s: arrays_avoiding(s, _INTEGERS, margin=0.05, lo=-2.9, hi=2.9),
    "ceil": lambda s: arrays_avoiding(s, _INTEGERS, margin=0.05, lo=-2.9, hi=2.9),
    "trunc": lambda s: arrays_avoiding(s, _INTEGERS, margin=0.05, lo=-2.9, hi=2.9),
    "round": lambda s: arrays_avoiding(s, [k + 0.5 for k in range(-4, 4)], margin=0.05, lo=-2.9, hi=2.9),
    "sign": lambda s: arrays_avoiding(s, [0.0], margin=0.1),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_grad(device, name, data):
    x = data.draw(UNARY[name](data.draw(shapes())))
    check_grad(lambda t: getattr(t, name)(), x, device=device)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_torch(name):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(0.15, 0.85, size=(3, 4))  # inside every op's domain, off every kink
    x[0] *= -1
    if name in ("log2", "log10", "rsqrt"):
        x = np.abs(x)
    t = tl.tensor(x, requires_grad=True)
    r = torch.tensor(x, requires_grad=True)
    out, ref = getattr(t, name)(), getattr(torch, name)(r)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(getattr(tl, name)(t)), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(x.shape)
    out.backward(tl.tensor(g))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-12, atol=1e-12)


@given(data=st.data())
def test_atan2_grad(device, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(positive_arrays(sa)), data.draw(arrays(sb))
    check_grad(lambda y, x: y.atan2(x), a, b, device=device)


@pytest.mark.parametrize("name", ["fmod", "remainder"])
@given(data=st.data())
def test_fmod_remainder_grad(device, name, data):
    sa, sb = data.draw(broadcastable_shapes())
    a = data.draw(arrays(sa))
    b = data.draw(arrays_avoiding(sb, [0.0], margin=0.5))
    q = a / b
    assume(np.all(np.abs(q - np.round(q)) > 0.05))  # away from the jumps of trunc/floor(a / b)
    check_grad(lambda x, y: getattr(x, name)(y), a, b, device=device)


@given(data=st.data())
def test_lerp_addcmul_addcdiv_grad(device, data):
    s1, s2, s3 = data.draw(broadcastable_shapes(3))
    a, b = data.draw(arrays(s1)), data.draw(arrays(s2))
    c = data.draw(arrays_avoiding(s3, [0.0], margin=0.5))
    check_grad(lambda x, y, w: x.lerp(y, w), a, b, c, device=device)
    check_grad(lambda x, y, z: tl.addcmul(x, y, z, value=0.5), a, b, c, device=device)
    check_grad(lambda x, y, z: tl.addcdiv(x, y, z, value=-2.0), a, b, c, device=device)


BINARY_TORCH = ["atan2", "fmod", "remainder", "floor_divide", "maximum", "minimum", "pow"]


@pytest.mark.parametrize("name", BINARY_TORCH)
def test_binary_matches_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    a = rng.uniform(0.3, 4.0, size=(3, 4)) * rng.choice([-1, 1], size=(3, 4))
    b = rng.uniform(0.7, 2.0, size=(4,)) * np.array([1, -1, 1, -1])
    if name == "pow":
        a = np.abs(a)
    ta, tb = tl.tensor(a, requires_grad=True), tl.tensor(b, requires_grad=True)
    ra, rb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out, ref = getattr(tl, name)(ta, tb), getattr(torch, name)(ra, rb)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-12)
    if name != "floor_divide":  # PyTorch has no derivative for floor_divide; ours is 0
        out.sum().backward()
        ref.sum().backward()
        np.testing.assert_allclose(host(ta.grad), ra.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(host(tb.grad), rb.grad.numpy(), rtol=1e-12)


def test_operators_mod_floordiv_and_python_semantics(device):
    x = tl.tensor([-7.0, -1.5, 2.5, 7.0], device=device)
    assert (x % 3).tolist() == [2.0, 1.5, 2.5, 1.0]  # the sign of the divisor, as Python and PyTorch
    assert (x // 2).tolist() == [-4.0, -1.0, 1.0, 3.0]
    assert x.fmod(3).tolist() == [-1.0, -1.5, 2.5, 1.0]  # the sign of the dividend
    assert (7 % tl.tensor([3, 4], device=device)).tolist() == [1, 3]
    assert (tl.tensor([7, -7], device=device) // 2).dtype == tl.int64


def test_logical_and_bitwise(device):
    a = tl.tensor([True, True, False], device=device)
    b = tl.tensor([True, False, False], device=device)
    assert tl.logical_and(a, b).tolist() == [True, False, False]
    assert a.logical_or(b).tolist() == [True, True, False]
    assert a.logical_xor(b).tolist() == [False, True, False]
    assert tl.logical_not(a).tolist() == [False, False, True]
    assert tl.logical_and(tl.tensor([1.0, 0.0], device=device), tl.tensor([2.0, 3.0], device=device)).tolist() == [
        True, False]
    i = tl.tensor([12, 10], device=device)
    assert (i & 6).tolist() == [4, 2] and (i | 1).tolist() == [13, 11] and (i ^ 3).tolist() == [15, 9]
    assert (~i).tolist() == [-13, -11] and tl.bitwise_not(a).tolist() == [False, False, True]
    with pytest.raises(TypeError, match="bitwise_and is only defined for integer and bool"):
        tl.tensor([1.0], device=device) & 1


def test_comparisons_as_functions_and_methods(device):
    x = tl.tensor([1.0, 2.0, float("nan"), float("inf"), -float("inf")], device=device)
    y = tl.tensor([1.0, 3.0, float("nan"), float("inf"), 0.0], device=device)
    assert x.eq(y).tolist() == [True, False, False, True, False]
    assert tl.ne(x, y).tolist() == [False, True, True, False, True]
    assert tl.lt(x, 2).tolist() == [True, False, False, False, True]
    assert x.ge(y).tolist() == [True, False, False, True, False]
    assert tl.isnan(x).tolist() == [False, False, True, False, False]
    assert x.isinf().tolist() == [False, False, False, True, True]
    assert tl.isfinite(x).tolist() == [True, True, False, False, False]
    assert x.isposinf().tolist() == [False, False, False, True, False]
    assert tl.isneginf(x).tolist() == [False, False, False, False, True]
    assert tl.isclose(x, y, equal_nan=True).tolist() == [True, False, True, True, False]
    assert tl.equal(x[:2], x[:2].clone()) is True and x[:2].equal(y[:2]) is False
    assert tl.allclose(x[:2], x[:2] + 1e-9) and not tl.allclose(x[:2], y[:2])


def test_clamp_with_tensor_bounds_and_in_place_forms(device):
    torch = pytest.importorskip("torch")
    x = np.array([-2.0, -0.5, 0.3, 1.5, 3.0])
    lo, hi = np.array([-1.0, 0.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    t = tl.tensor(x, device=device, requires_grad=True)
    r = torch.tensor(x, requires_grad=True)
    out = t.clamp(tl.tensor(lo, device=device), tl.tensor(hi, device=device))
    ref = r.clamp(torch.tensor(lo), torch.tensor(hi))
    np.testing.assert_allclose(host(out), ref.detach().numpy())
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(host(t.grad), r.grad.numpy())


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "relu", "abs", "sqrt", "neg", "floor", "log1p"])
def test_unary_in_place_equals_out_of_place(device, name):
    x = tl.tensor([0.25, 1.5, 2.0], device=device)
    expected = host(getattr(x, name)())
    y = x.clone()
    assert getattr(y, name + "_")() is y
    np.testing.assert_allclose(host(y), expected)
    assert y._version == 1
