"""tanh and the sigmoid of tinygrad_lm.fast.fused_activations against the reference ops, values and gradients.

Each case runs twice on the same input, on the fast path and on the reference path
(``tl.fast.enabled(False)``). The compiled tanh and exp are within a few ulp of libm's, so float64
agrees to 1e-13 and float32 to a few float32 ulp; NaN, infinities and signed zeros come out as the
reference's. A float64 gradcheck runs through both paths. Without Numba the fast ops hand their
arrays to the reference, and the comparisons hold trivially.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import kernels_taken
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, ops
from tinygrad_lm.fast import compiler, fused_activations

OPS = {"tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid()}
TOL = {"float32": dict(rtol=4e-7, atol=1e-37), "float64": dict(rtol=1e-13, atol=1e-300)}
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 9.0, 10.5, 20.0, -20.0, 88.0, -88.0, -100.0, -750.0,
           750.0]


def both_paths(name, x, dy, device="cpu"):
    """(output, input gradient, class of the node) on the fast path, then on the reference path."""
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast), np.errstate(all="ignore"):
            t = tl.tensor(x, device=device, requires_grad=True)
            y = OPS[name](t)
            y.backward(tl.tensor(dy, device=device))
            results.append((tl.backend.to_host(y.detach().array), tl.backend.to_host(t.grad.array), type(y.grad_fn)))
    return results


def assert_same(got, want, dtype):
    assert got.dtype == want.dtype == np.dtype(dtype) and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(), (1,), (17,), (3, 5), (2, 3, 4), (0, 3), (4096,)]),
       scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]), dtype=st.sampled_from(["float32", "float64"]),
       layout=st.sampled_from(["contiguous", "transposed", "strided"]))
@example(seed=0, shape=(3, 5), scale=30.0, dtype="float32", layout="strided")
def test_fast_equals_reference(device, name, seed, shape, scale, dtype, layout):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if layout == "transposed":
        x, dy = np.ascontiguousarray(x.T).T, np.ascontiguousarray(dy.T).T
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]  # every other element of a wider array
    (y_fast, g_fast, cls_fast), (y_ref, g_ref, cls_ref) = both_paths(name, x, dy, device)
    assert_same(y_fast, y_ref, dtype)
    # dy (1 - y^2) and dy y (1 - y) near |y| = 1 carry y's rounding as an absolute error of a few eps |dy|.
    # float64: the two paths within that; float32: both within it of the float64 result.
    atol = 4 * np.finfo(dtype).eps * float(np.abs(dy).max(initial=0))
    if dtype == "float64":
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-13, atol=atol)
    else:
        (_, g_exact, _), _ = both_paths(name, x.astype("float64"), dy.astype("float64"), device)
        for g in (g_fast, g_ref):
            np.testing.assert_allclose(g, g_exact, rtol=1e-6, atol=atol)
    assert g_fast.dtype == g_ref.dtype == np.dtype(dtype) and g_fast.shape == g_ref.shape == x.shape
    assert cls_ref is getattr(ops, name.capitalize())
    if device == "cpu" and compiler.numba_available():
        assert cls_fast is getattr(fused_activations, name.capitalize())


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values_give_what_the_reference_gives(name, dtype):
    x = np.array(SPECIAL, dtype=dtype)
    dy = np.ones_like(x)
    with kernels_taken() as taken:
        (y_fast, g_fast, _), (y_ref, g_ref, _) = both_paths(name, x, dy)
    assert_same(y_fast, y_ref, dtype)
    np.testing.assert_array_equal(np.isnan(g_fast), np.isnan(g_ref))
    np.testing.assert_allclose(g_fast, g_ref, rtol=TOL[dtype]["rtol"], atol=4 * np.finfo(dtype).eps)  # (see above)
    number = ~np.isnan(y_ref)  # (a NaN's sign bit means nothing)
    np.testing.assert_array_equal(np.signbit(y_fast[number]), np.signbit(y_ref[number]))  # tanh(-0) is -0
    if compiler.numba_available():
        assert taken == [f"_{name}_kernel", f"_{name}_back_kernel"]


def test_sigmoid_keeps_its_relative_accuracy_far_below_zero():
    """sigma(x) ~ e^x for x << 0: the e^-|x| / (1 + e^-|x|) branch, not 1 - something near 1."""
    x = np.array([-20.0, -50.0, -87.0], dtype=np.float32)
    y = tl.tensor(x).sigmoid().numpy()
    np.testing.assert_allclose(y, np.exp(x.astype(np.float64)) / (1 + np.exp(x.astype(np.float64))), rtol=1e-6)


def test_a_gradient_of_another_dtype_or_shape_goes_to_the_reference():
    """The backward kernels take a gradient of the output's own shape and dtype; anything else is the reference's."""
    op = fused_activations.Tanh.__new__(fused_activations.Tanh)
    op.xp = np
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    y = op.forward(x)
    g64 = np.ones((2, 3), dtype=np.float64)
    np.testing.assert_allclose(op.backward(g64), 1 - y.astype(np.float64) ** 2, rtol=1e-6)
    assert op.backward(g64).dtype == np.float64  # NumPy's promotion, as in the reference
    g_row = np.ones(3, dtype=np.float32)  # broadcast along the rows
    np.testing.assert_allclose(op.backward(g_row), 1 - y * y, rtol=1e-6)


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_float64_gradcheck(fast):
    rng = np.random.default_rng(3)
    with tl.fast.enabled(fast):
        for fn in OPS.values():
            assert tl.gradcheck(fn, [tl.tensor(rng.standard_normal((3, 4)) * 2, requires_grad=True)])
        assert tl.gradcheck(lambda x: F.gelu(x, approximate="tanh"), [tl.tensor(rng.standard_normal(9) * 2,
                                                                                 requires_grad=True)])


def test_the_modules_and_the_rnn_layer_run_the_kernels():
    """nn.Tanh, nn.Sigmoid, F.gelu(approximate='tanh') and nn.RNN's tanh steps reach the compiled kernels."""
    x = tl.randn(4, 6, requires_grad=True)
    rnn = nn.RNN(6, 5, batch_first=True)
    with kernels_taken() as taken:
        (nn.Tanh()(x).sum() + nn.Sigmoid()(x).sum() + F.gelu(x, approximate="tanh").sum()).backward()
        rnn(x.reshape(2, 2, 6))[0].sum().backward()
    if compiler.numba_available():
        for kernel in ("_tanh_kernel", "_tanh_back_kernel", "_sigmoid_kernel", "_sigmoid_back_kernel",
                       "_gelu_tanh_kernel"):
            assert kernel in taken
        assert taken.count("_tanh_kernel") == 1 + 2  # nn.Tanh, then the RNN's two time steps


def test_tanh_in_place_refuses_what_it_cannot_take():
    a = np.linspace(-3, 3, 12).reshape(3, 4)
    assert not fused_activations.tanh_in_place(a.T)  # not C-contiguous: untouched
    np.testing.assert_array_equal(a, np.linspace(-3, 3, 12).reshape(3, 4))
    ints = np.arange(4)
    assert not fused_activations.tanh_in_place(ints)
    if compiler.numba_available():
        assert fused_activations.tanh_in_place(a)
        np.testing.assert_allclose(a, np.tanh(np.linspace(-3, 3, 12).reshape(3, 4)), rtol=1e-14)
