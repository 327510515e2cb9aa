"""backend.matmul: the CPU matrix products that go to MKL when it is installed.

Every layout the MKL path accepts (row-major, column-major, row-strided slices, batch
axes with broadcasting, ``out=``) must give NumPy's ``matmul`` result, and every layout it
does not accept must fall back to NumPy instead of computing something else. The cases
run with the size threshold lowered to 0, so that small Hypothesis shapes take the MKL
path; they are skipped where MKL is not installed (the fallback is NumPy itself).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_lm import backend

HAS_MKL = backend.blas_name() == "mkl"
needs_mkl = pytest.mark.skipif(not HAS_MKL, reason="MKL is not installed (the 'mkl' extra)")


@pytest.fixture
def mkl_for_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_MKL_MIN_WORK", 0)


def _tol(dtype: np.dtype) -> float:
    return 1e-12 if dtype == np.float64 else 2e-5


def _check(got: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    assert got.dtype == a.dtype
    scale = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)) + 1e-30
    err = np.max(np.abs(got - want) / scale) if got.size else 0.0
    assert err <= _tol(a.dtype), f"relative error {err:.2e}"


def _as_layout(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, layout: str) -> np.ndarray:
    """An array of ``shape`` whose last two axes are C-ordered, F-ordered, a row-strided slice or a column slice."""
    *batch, r, c = shape
    if layout == "C":
        return rng.standard_normal(shape).astype(dtype)
    if layout == "F":
        return np.swapaxes(rng.standard_normal((*batch, c, r)).astype(dtype), -1, -2)
    if layout == "rows":  # every row a slice of a wider row: leading dimension > columns
        return rng.standard_normal((*batch, r, c + 3)).astype(dtype)[..., :, 1 : c + 1]
    # "every2": every other column, which no BLAS layout describes (must fall back to NumPy)
    return rng.standard_normal((*batch, r, 2 * c)).astype(dtype)[..., :, ::2]


layouts = st.sampled_from(["C", "F", "rows", "every2"])
dtypes = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
dims = st.integers(1, 9)


@needs_mkl
@settings(deadline=None)
@given(m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes, seed=st.integers(0, 2**31))
def test_2d_products_equal_numpy(mkl_for_every_size: None, m: int, k: int, n: int, la: str, lb: str,
                                 dtype: np.dtype, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _as_layout(rng, (m, k), dtype, la)
    b = _as_layout(rng, (k, n), dtype, lb)
    _check(backend.matmul(a, b), a, b)


@needs_mkl
@settings(deadline=None)
@given(m=dims, k=dims, n=dims, lo=st.sampled_from(["C", "rows", "F", "every2"]), dtype=dtypes,
       seed=st.integers(0, 2**31))
def test_2d_products_into_out(mkl_for_every_size: None, m: int, k: int, n: int, lo: str, dtype: np.dtype,
                              seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = _as_layout(rng, (m, n), dtype, lo)
    before = out.base.copy() if out.base is not None else None
    result = backend.matmul(a, b, out=out)
    assert result is out
    _check(out, a, b)
    if before is not None and lo == "rows":  # the padding columns around the slice are untouched
        assert np.array_equal(out.base[:, 0], before[:, 0])
        assert np.array_equal(out.base[:, -2:], before[:, -2:])


batch_shapes = st.sampled_from([(), (1,), (3,), (2, 3), (1, 3), (2, 1)])


@needs_mkl
@settings(deadline=None)
@given(ba=batch_shapes, bb=batch_shapes, m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes,
       seed=st.integers(0, 2**31), with_out=st.booleans())
def test_batched_products_equal_numpy(mkl_for_every_size: None, ba: tuple[int, ...], bb: tuple[int, ...], m: int,
                                      k: int, n: int, la: str, lb: str, dtype: np.dtype, seed: int,
                                      with_out: bool) -> None:
    rng = np.random.default_rng(seed)
    a = _as_layout(rng, (*ba, m, k), dtype, la)
    b = _as_layout(rng, (*bb, k, n), dtype, lb)
    try:
        batch = np.broadcast_shapes(ba, bb)
    except ValueError:
        with pytest.raises(ValueError):
            backend.matmul(a, b)
        return
    if with_out:
        out = np.full((*batch, m, n), np.nan, dtype=dtype)
        assert backend.matmul(a, b, out=out) is out
    else:
        out = backend.matmul(a, b)
    _check(out, a, b)


@needs_mkl
def test_batched_transposed_views_as_attention_makes_them(mkl_for_every_size: None) -> None:
    """q @ k^T with q, k the (B, heads, L, E) transposes of (B, L, heads, E) tensors: strided batch axes."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 5, 3, 4)).astype(np.float32).transpose(0, 2, 1, 3)  # (B, h, L, E)
    k = rng.standard_normal((2, 6, 3, 4)).astype(np.float32).transpose(0, 2, 1, 3)  # (B, h, S, E)
    _check(backend.matmul(q, k.swapaxes(-1, -2)), q, k.swapaxes(-1, -2))


@needs_mkl
def test_overlapping_out_falls_back_to_numpy(mkl_for_every_size: None) -> None:
    rng = np.random.default_rng(1)
    buf = rng.standard_normal((4, 4))
    a = buf.copy()
    want = np.matmul(a, buf)
    backend.matmul(a, buf, out=buf)  # NumPy buffers an out that overlaps an input; so must we
    np.testing.assert_allclose(buf, want, rtol=1e-12)


@needs_mkl
def test_the_recurrent_step_layout_goes_to_mkl(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-step product of the LSTM (rows of a (T, B, H) buffer into rows of (T, B, 4H)) takes the MKL path."""
    calls = []
    real = backend._gemm_2d
    monkeypatch.setattr(backend, "_gemm_2d", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(2)
    hs = rng.standard_normal((3, 32, 256)).astype(np.float32)
    w = rng.standard_normal((256, 1024)).astype(np.float32)
    gates = np.empty((3, 32, 1024), dtype=np.float32)
    backend.matmul(hs[1], w, out=gates[2])
    assert calls == [1]
    _check(gates[2], hs[1], w)


def test_other_dtypes_and_vectors_follow_numpy(mkl_for_every_size: None) -> None:
    ints = np.arange(6).reshape(2, 3)
    assert np.array_equal(backend.matmul(ints, ints.T), ints @ ints.T)
    assert backend.matmul(ints, ints.T).dtype == (ints @ ints.T).dtype
    v = np.arange(3.0)
    assert np.array_equal(backend.matmul(ints.astype(np.float64), v), ints @ v)
    mixed = backend.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64))
    assert mixed.dtype == np.float64
    with pytest.raises(ValueError):
        backend.matmul(np.ones((2, 3)), np.ones((4, 2)))


def test_set_blas_checks_its_argument() -> None:
    with pytest.raises(ValueError, match="set_blas"):
        backend.set_blas("openblas")


def test_set_blas_numpy_turns_mkl_off() -> None:
    before = backend.blas_name()
    try:
        backend.set_blas("numpy")
        assert backend.blas_name() == "numpy"
        a = np.ones((300, 300), np.float32)
        np.testing.assert_array_equal(backend.matmul(a, a), a @ a)
    finally:
        backend.set_blas("auto")
    assert backend.blas_name() == before


def _blas_in_subprocess(env_value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINYGRAD_LM_BLAS": env_value}
    code = "from tinygrad_lm import backend; print(backend.blas_name())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_environment_variable_numpy() -> None:
    result = _blas_in_subprocess("numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"


def test_environment_variable_mkl_is_an_error_without_mkl() -> None:
    result = _blas_in_subprocess("mkl")
    if HAS_MKL:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "mkl"
    else:
        assert result.returncode != 0
        assert "TINYGRAD_LM_BLAS=mkl" in result.stderr


@needs_mkl
@settings(deadline=None)
@given(m=dims, k=dims, n=dims, lb=st.sampled_from(["C", "F", "rows"]), la=layouts, dtype=dtypes,
       accumulate=st.booleans(), seed=st.integers(0, 2**31))
def test_right_factor_products_equal_numpy(mkl_for_every_size: None, m: int, k: int, n: int, lb: str, la: str,
                                          dtype: np.dtype, accumulate: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = _as_layout(rng, (k, n), dtype, lb)
    right = backend.RightFactor(b, m)
    assert right.packed is not None  # every BLAS layout of b is packed by MKL
    for _ in range(2):  # the packed copy serves several products
        a = _as_layout(rng, (m, k), dtype, la)
        out = rng.standard_normal((m, n)).astype(dtype)
        start = out.copy()
        assert backend.matmul_right(a, right, out, accumulate=accumulate) is out
        if accumulate:
            out -= start
        _check(out, a, b)


@settings(deadline=None, max_examples=40)
@given(T=st.integers(1, 4), m=dims, k=dims, n=dims, shared_out=st.booleans(), accumulate=st.booleans(),
       la=st.sampled_from(["C", "rows", "F"]), blas=st.sampled_from(["auto", "numpy"]), dtype=dtypes,
       seed=st.integers(0, 2**31))
def test_right_factor_steps_equal_one_product_per_step(mkl_for_every_size: None, T: int, m: int, k: int, n: int,
                                                      shared_out: bool, accumulate: bool, la: str, blas: str,
                                                      dtype: np.dtype, seed: int) -> None:
    """matmul_right_steps(a, right, out)(t) is matmul_right(a[t], right, out[t]) on both paths, steps in any
    order, into per-step outputs or one shared output (a strided a included), and refuses other steps."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((k, n)).astype(dtype)
    a = _as_layout(rng, (T, m, k), dtype, la)
    out = rng.standard_normal((m, n) if shared_out else (T, m, n)).astype(dtype)
    want = out.copy()
    try:
        backend.set_blas(blas)
        right = backend.RightFactor(b, m)
        step = backend.matmul_right_steps(a, right, out, accumulate=accumulate)
        for t in reversed(range(T)):
            step(t)
            w = want if shared_out else want[t]
            w[...] = (w if accumulate else 0) + a[t].astype(np.float64) @ b.astype(np.float64)
            np.testing.assert_allclose(out, want, rtol=_tol(dtype), atol=10 * _tol(dtype))
        for t in (-1, T):
            before = out.copy()
            with pytest.raises(IndexError, match="outside"):
                step(t)
            np.testing.assert_array_equal(out, before)  # checked before anything is written
    finally:
        backend.set_blas("auto")


def test_right_factor_steps_check_shapes() -> None:
    right = backend.RightFactor(np.ones((4, 6), np.float32), 3)
    with pytest.raises(ValueError, match="do not fit"):
        backend.matmul_right_steps(np.ones((2, 3, 5), np.float32), right, np.ones((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        backend.matmul_right_steps(np.ones((2, 3, 4), np.float32), right, np.ones((3, 3, 6), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        backend.matmul_right_steps(np.ones((2, 3, 4), np.float32), right, np.ones((3, 7), np.float32))


def test_right_factor_without_mkl_keeps_a_contiguous_copy() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4))
    try:
        backend.set_blas("numpy")
        right = backend.RightFactor(w.T, 5)
        assert right.packed is None and right.b.flags.c_contiguous
        a = rng.standard_normal((5, 4))
        out = np.ones((5, 6))
        backend.matmul_right(a, right, out, accumulate=True)
        np.testing.assert_allclose(out, 1 + a @ w.T, rtol=1e-12)
    finally:
        backend.set_blas("auto")


@needs_mkl
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_agree_with_and_without_mkl(mkl_for_every_size: None, monkeypatch: pytest.MonkeyPatch,
                                                     mode: str) -> None:
    """With the per-step products on MKL's packed path, outputs and gradients equal those of NumPy's BLAS."""
    packed = []
    real_init = backend.RightFactor.__init__

    def counting_init(self: backend.RightFactor, b: np.ndarray, m: int) -> None:
        real_init(self, b, m)
        packed.append(self.packed is not None)

    monkeypatch.setattr(backend.RightFactor, "__init__", counting_init)
    import tinygrad_lm as tl
    from tinygrad_lm import nn

    tl.manual_seed(0)
    layer = getattr(nn, mode)(5, 7).double()
    x = tl.randn(4, 3, 5, dtype=tl.float64)

    def run() -> list[np.ndarray]:
        layer.zero_grad()
        xx = x.detach().requires_grad_()
        out, _ = layer(xx)
        (out * out).sum().backward()
        return [out.detach().numpy(), xx.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()]

    with_mkl = run()
    assert packed == [True, True]  # forward and backward
    try:
        backend.set_blas("numpy")
        with_numpy = run()
    finally:
        backend.set_blas("auto")
    for got, want in zip(with_mkl, with_numpy):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("mkl_for_every_size")
@settings(max_examples=30)
@given(m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes, blas=st.sampled_from(["auto", "numpy"]),
       seed=st.integers(0, 2**31 - 1))
def test_addmm_is_matmul_plus_the_bias_row(m, k, n, la, lb, dtype, blas, seed):
    """backend.addmm (the bias written first, then a beta = 1 GEMM with MKL) against a @ b + bias."""
    rng = np.random.default_rng(seed)
    a, b = _as_layout(rng, (m, k), dtype, la), _as_layout(rng, (k, n), dtype, lb)
    bias = rng.standard_normal(n).astype(dtype)
    backend.set_blas(blas)
    try:
        got = backend.addmm(bias, a, b)
    finally:
        backend.set_blas("auto")
    assert got.shape == (m, n) and got.dtype == dtype and got.flags.c_contiguous
    want = np.matmul(a.astype(np.float64), b.astype(np.float64)) + bias
    scale = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)) + np.abs(bias)
    assert np.max(np.abs(got - want) / scale) <= _tol(dtype)
