"""The compiled kernels (tinygrad_lm.fast.compiler, Numba): their math functions, which arrays get them, the
fast path's switch, and the ops that use them (LSTM, GELU) against the reference ops and the equations.
LayerNorm and attention: test_jit_*.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

import tinygrad_lm as tl
from tinygrad_lm.fast import compiler, fused_recurrent
from tinygrad_lm.ops.recurrent import LSTMLayer

pytest.importorskip("numba")


@pytest.fixture
def fast_on():
    tl.fast.set_enabled(True)  # conftest restores the setting after the test


def _exp_kernel(a, out):
    for k in range(a.size):
        out[k] = compiler.exp(a[k])


def _tanh_kernel(a, out):
    for k in range(a.size):
        out[k] = compiler.tanh(a[k])


def _apply(kernel, x: np.ndarray) -> np.ndarray:
    """A compiled elementwise kernel (_exp_kernel, _tanh_kernel) applied to a flat array."""
    out = np.empty_like(x)
    compiler.compiled(kernel, x)(x, out)
    return out


def _exp(x: np.ndarray) -> np.ndarray:
    return _apply(_exp_kernel, x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return _apply(_tanh_kernel, x)


def _ulps(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|y - ref| in units of the spacing of y's dtype at ref (float64 reference, or exact for float64 y)."""
    spacing = np.spacing(np.abs(ref).astype(y.dtype)).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / spacing


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=20)
@given(scale=st.sampled_from([1e-6, 0.01, 0.3, 1.0, 10.0, 80.0]), seed=st.integers(0, 2**31 - 1))
def test_float32_exp_is_within_two_ulps(scale, seed):
    x = (np.random.default_rng(seed).standard_normal(4096) * scale).astype(np.float32)
    x = x[(x > -87.0) & (x < 88.0)]  # where float32 e^x is normal
    assert _ulps(_exp(x), np.exp(x.astype(np.float64))).max() <= 2


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=20)
@given(scale=st.sampled_from([1e-9, 0.01, 0.3, 1.0, 10.0, 300.0]), seed=st.integers(0, 2**31 - 1))
def test_float64_exp_is_within_two_ulps_of_libm(scale, seed):
    """Against libm's e^x (math.exp, correctly rounded or within 1 ulp), so 2 ulp here is at most 3 from e^x."""
    x = np.random.default_rng(seed).standard_normal(4096) * scale
    x = x[(x > -708.0) & (x < 709.0)]
    assert _ulps(_exp(x), np.array([math.exp(v) for v in x])).max() <= 2


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_special_values(dtype):
    big = 88.8 if dtype == "float32" else 709.8
    small = -87.4 if dtype == "float32" else -708.4
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, big, 1e30, small, -1e30], dtype=dtype)
    np.testing.assert_array_equal(_exp(x), [1, 1, np.inf, 0, np.nan, np.inf, np.inf, 0, 0])


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=20)
@given(scale=st.sampled_from([1e-7, 1e-3, 0.05, 0.3, 1.0, 3.0, 12.0]), seed=st.integers(0, 2**31 - 1))
def test_tanh_is_within_three_ulps(scale, seed):
    """float32 against tanh in float64; float64 against libm's (NumPy's) tanh. Small arguments included,
    where 1 - 2 / (e^{2x} + 1) would have lost all relative accuracy."""
    x = np.random.default_rng(seed).standard_normal(4096) * scale
    assert _ulps(_tanh(x.astype(np.float32)), np.tanh(x.astype(np.float32).astype(np.float64))).max() <= 3
    assert _ulps(_tanh(x), np.tanh(x)).max() <= 3


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_dense_grid_and_special_values(dtype):
    """Every 1e-5 from -12 to 12 (past where tanh rounds to +-1), and inf, nan, +-0 (sign kept), tiny values."""
    x = np.linspace(-12, 12, 2_400_001).astype(dtype)
    ref = np.tanh(x.astype(np.float64)) if dtype == "float32" else np.tanh(x)
    assert _ulps(_tanh(x), ref).max() <= 3
    tiny = np.finfo(dtype).smallest_subnormal
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, tiny, 1e4, -1e4], dtype=dtype)
    got = _tanh(special)
    np.testing.assert_array_equal(got, np.array([0, 0, 1, -1, np.nan, 1e-30, -1e-30, tiny, 1, -1], dtype=dtype))
    assert np.signbit(got[1]) and not np.signbit(got[0])


def test_the_fast_switch_checks_its_argument_and_selects_the_ops():
    """With the fast path off, LSTMLayer.apply runs the reference op; on, the registered one with the kernels."""
    with pytest.raises(TypeError, match="set_enabled"):
        tl.fast.set_enabled("off")
    assert tl.fast.registry()[LSTMLayer] is fused_recurrent.LSTMLayer
    rng = np.random.default_rng(0)
    shapes = [(2, 1, 3), (1, 2), (1, 2), (8, 3), (8, 2), (8,), (8,)]
    ts = [tl.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    tl.fast.set_enabled(False)
    assert not tl.fast.is_enabled()
    assert type(LSTMLayer.apply(*ts)[0].grad_fn) is LSTMLayer
    tl.fast.set_enabled(True)
    assert tl.fast.is_enabled()
    assert type(LSTMLayer.apply(*ts)[0].grad_fn) is fused_recurrent.LSTMLayer


def test_compiled_only_for_numpy_float_arrays():
    """The switch is the fast path's: compiled() answers for the arrays alone, on or off."""
    kernel = fused_recurrent._lstm_step_kernel
    for fast in (True, False):
        tl.fast.set_enabled(fast)
        assert compiler.numba_available()
        assert callable(compiler.compiled(kernel, np.zeros(3, np.float64)))
        assert callable(compiler.compiled(kernel, np.zeros(3, np.float32)))
        assert compiler.compiled(kernel, np.zeros(3, np.int64)) is None
        assert compiler.compiled(kernel, np.zeros(3, np.float16)) is None
        assert compiler.compiled(kernel, [0.0, 1.0]) is None
        assert compiler.compiled(kernel, np.zeros(3, np.float32), np.zeros(3, np.int32)) is None


def _lstm_step_reference(a, bias, c_prev):
    """The LSTM step's equations in NumPy, float64: gates from the scaled pre-activations, C_t, tanh C_t, h_t."""
    H = c_prev.shape[1]
    z = a + (0 if bias is None else bias)
    sig = lambda v: 1 / (1 + np.exp(-2 * v))  # noqa: E731  # the sigmoid rows were scaled by 1/2
    i, f, g, o = sig(z[:, :H]), sig(z[:, H : 2 * H]), np.tanh(z[:, 2 * H : 3 * H]), sig(z[:, 3 * H :])
    c = f * c_prev + i * g
    return np.concatenate([i, f, g, o], 1), c, np.tanh(c), o * np.tanh(c)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_lstm_step_kernel_runs_as_plain_python_and_compiled(dtype, with_bias):
    """The step kernel is Python: uncompiled and compiled, it computes the LSTM step's equations."""
    rng = np.random.default_rng(1)
    B, H = 3, 5
    a = (rng.standard_normal((B, 4 * H)) * 2).astype(dtype)
    bias = rng.standard_normal(4 * H).astype(dtype) if with_bias else None
    c_prev = rng.standard_normal((B, H)).astype(dtype)
    want = _lstm_step_reference(a.astype(np.float64), None if bias is None else bias.astype(np.float64),
                                c_prev.astype(np.float64))
    tol = 1e-6 if dtype == "float32" else 1e-14
    for fn in (fused_recurrent._lstm_step_kernel, compiler.compiled(fused_recurrent._lstm_step_kernel, a)):
        got = [a.copy(), np.empty_like(c_prev), np.empty_like(c_prev), np.empty_like(c_prev)]
        fn(got[0], bias, c_prev, got[1], got[2], got[3])
        for g, w in zip(got, want):
            assert g.dtype == np.dtype(dtype)
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _reverse_rows_kernel(a, out):
    row = compiler.scratch(a.shape[1], a)
    for b in range(a.shape[0]):
        for k in range(a.shape[1]):
            row[k] = a[b, k]
        for k in range(a.shape[1]):
            out[b, k] = row[a.shape[1] - 1 - k]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scratch_is_a_work_array_of_the_dtype_in_python_and_compiled(dtype):
    """compiler.scratch(n, like) is an n-element array of like's dtype, plain and compiled (no float64 detour)."""
    work = compiler.scratch(5, np.zeros(2, dtype))
    assert work.shape == (5,) and work.dtype == dtype
    a = (np.arange(12).reshape(3, 4) + 0.1).astype(dtype)
    for fn in (_reverse_rows_kernel, compiler.compiled(_reverse_rows_kernel, a)):
        out = np.empty_like(a)
        fn(a, out)
        np.testing.assert_array_equal(out, a[:, ::-1])


def _lstm_run(fast: bool, arrays: list[np.ndarray], grad_out: bool, grad_hn: bool) -> list[np.ndarray]:
    """LSTMLayer's outputs and the gradients of all seven inputs, on the fast path or the reference."""
    tl.fast.set_enabled(fast)
    ts = [tl.tensor(a, requires_grad=True) for a in arrays]
    out, h_n, c_n = LSTMLayer.apply(*ts)
    loss = c_n.sum() * 0.5
    if grad_out:
        loss = loss + (out * out).sum()
    if grad_hn:
        loss = loss + (h_n * h_n).sum() * 3.0
    loss.backward()
    return [out.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy()] + [t.grad.numpy() for t in ts]


@settings(max_examples=15)
@given(T=st.integers(1, 9), B=st.integers(1, 4), n_in=st.integers(1, 5), H=st.integers(1, 6),
       dtype=st.sampled_from(["float32", "float64"]), grad_out=st.booleans(), grad_hn=st.booleans(),
       block=st.sampled_from([1, 64, 1 << 18]), seed=st.integers(0, 2**31 - 1))
def test_lstm_kernels_equal_the_reference(monkeypatch, T, B, n_in, H, dtype, grad_out, grad_hn, block, seed):
    """Values and all seven gradients, with and without the output's gradient (the kernel's grad=None case),
    against the reference op; and so the fast path without kernels (as without Numba), with its backward
    blocks of one, a few and all steps."""
    rng = np.random.default_rng(seed)
    shapes = [(T, B, n_in), (B, H), (B, H), (4 * H, n_in), (4 * H, H), (4 * H,), (4 * H,)]
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    got = _lstm_run(True, arrays, grad_out, grad_hn)
    with monkeypatch.context() as m:
        m.setattr(compiler, "_numba", False)
        m.setattr(fused_recurrent, "BPTT_BLOCK_BYTES", block)
        blocked = _lstm_run(True, arrays, grad_out, grad_hn)
    want = _lstm_run(False, arrays, grad_out, grad_hn)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, b, w in zip(got, blocked, want):
        assert g.dtype == np.dtype(dtype) and b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        np.testing.assert_allclose(b, w, rtol=tol, atol=tol)


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_backward_twice_with_retain_graph(dtype):
    """The last backward may write dL/da over the saved gates; a retained graph's backward must not, so a
    second backward gives the same gradients again, and the forward's outputs are untouched."""
    rng = np.random.default_rng(4)
    T, B, n_in, H = 5, 3, 4, 6
    shapes = [(T, B, n_in), (B, H), (B, H), (4 * H, n_in), (4 * H, H), (4 * H,), (4 * H,)]
    ts = [tl.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]
    out, h_n, c_n = LSTMLayer.apply(*ts)
    loss = c_n.sum() * 0.5 + (out * out).sum()  # the loss of _lstm_run(..., grad_out=True, grad_hn=False)
    kept = out.detach().numpy().copy()
    loss.backward(retain_graph=True)
    first = [t.grad.numpy().copy() for t in ts]
    loss.backward()
    for t, f in zip(ts, first):
        np.testing.assert_allclose(t.grad.numpy(), 2 * f, rtol=1e-6 if dtype == "float32" else 1e-13, atol=1e-6)
    np.testing.assert_array_equal(out.detach().numpy(), kept)
    want = _lstm_run(False, [t.detach().numpy() for t in ts], True, False)[3:]  # the reference's gradients
    tol = 2e-5 if dtype == "float32" else 1e-12
    for f, w in zip(first, want):
        np.testing.assert_allclose(f, w, rtol=tol, atol=tol)


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=10)
@given(T=st.integers(1, 4), B=st.integers(1, 3), H=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_lstm_kernels_gradcheck(T, B, H, seed):
    rng = np.random.default_rng(seed)
    shapes = [(T, B, 2), (B, H), (B, H), (4 * H, 2), (4 * H, H), (4 * H,), (4 * H,)]
    ts = [tl.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    assert tl.gradcheck(lambda *a: LSTMLayer.apply(*a)[0], ts)
    assert tl.gradcheck(lambda *a: LSTMLayer.apply(*a)[2], ts)


def _gelu_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    return x * ndtr(x), ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=20)
@given(n=st.integers(1, 5000), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**31 - 1))
def test_gelu_kernel_matches_the_equations(n, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    t = tl.tensor(x, requires_grad=True)
    y = t.gelu()
    y.backward(tl.tensor(g))
    want_y, want_d = _gelu_ref(x)
    # float32: A&S 7.1.26 is within 1.5e-7 of erf, so Phi within 7.5e-8, plus float32 rounding
    atol, rtol = (4e-7, 4e-7) if dtype == "float32" else (1e-15, 1e-14)
    assert y.dtype == dtype and t.grad.dtype == dtype
    np.testing.assert_allclose(y.detach().numpy(), want_y, rtol=rtol, atol=atol * max(1.0, scale))
    np.testing.assert_allclose(t.grad.numpy(), want_d * g, rtol=rtol, atol=atol * max(1.0, scale))


@pytest.mark.usefixtures("fast_on")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_kernel_special_values_and_layout(dtype):
    x = np.array([[0.0, -0.0, np.inf, -np.inf], [np.nan, 40.0, -40.0, 1.0]], dtype=dtype).T  # not C-contiguous
    y = tl.tensor(x).gelu().numpy()
    np.testing.assert_array_equal(y[:, 0], [0, 0, np.inf, np.nan])
    assert np.isnan(y[0, 1]) and y[1, 1] == 40 and y[2, 1] == 0
    np.testing.assert_allclose(y[3, 1], _gelu_ref(np.array(1.0))[0], rtol=1e-6)


@pytest.mark.usefixtures("fast_on")
@settings(max_examples=10)
@given(shape=st.sampled_from([(3,), (2, 5), (4, 1, 3)]), seed=st.integers(0, 2**31 - 1))
def test_gelu_kernel_gradcheck(shape, seed):
    x = tl.tensor(np.random.default_rng(seed).standard_normal(shape) * 2, requires_grad=True)
    assert tl.gradcheck(lambda t: t.gelu(), [x])


def test_without_numba_the_fast_ops_take_the_reference_code(monkeypatch):
    monkeypatch.setattr(compiler, "_numba", False)  # as if Numba were not installed
    assert not compiler.numba_available()
    assert compiler.compiled(fused_recurrent._lstm_step_kernel, np.zeros(3, np.float32)) is None
    x = tl.tensor(np.linspace(-3, 3, 7))
    np.testing.assert_allclose(x.gelu().numpy(), _gelu_ref(x.numpy())[0], rtol=1e-12, atol=1e-15)
