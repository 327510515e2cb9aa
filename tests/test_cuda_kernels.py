"""The fused CUDA kernels (tinygrad_lm.fast.cuda_kernels) against the reference CuPy path, the CPU and the equations.

On a GPU, every op that has a CUDA twin is run twice on the same inputs, with the fast path on (the
default) and off (``tl.fast.set_enabled(False)``: the reference ops on CuPy), and both must agree in values
and gradients; a spy checks that the kernels really ran. The float64 cases also pass a gradcheck
with the kernels on. Without CuPy or a GPU those cases skip; the tests at the top, which keep the
twins in step with the Python kernels they copy, run everywhere.
"""
from __future__ import annotations

import inspect
import math
import sys

import numpy as np
import pytest

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn
from tinygrad_lm.fast import blas, compiler, cuda_kernels, fused_attention, fused_nn, fused_recurrent
from tinygrad_lm.ops import recurrent

KERNEL_MODULES = (fused_attention, fused_nn, fused_recurrent)  # where the Python kernels of the twins live


def cuda_only(test):
    """Marks a test as a CUDA case: selected by ``-m cuda``, skipped with a reason where there is no GPU."""
    test = pytest.mark.skipif(not tl.cuda_is_available(), reason="CUDA is not available (no CuPy or no GPU)")(test)
    return pytest.mark.cuda(test)


GPU = "cuda"  # the device of the CUDA cases
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


# ------------------------------------------------------------------ everywhere: the twins and their kernels


@pytest.mark.parametrize("name", sorted(cuda_kernels.TWINS))
def test_every_twin_copies_a_python_kernel_with_its_signature(name):
    kernel = next(getattr(m, name) for m in KERNEL_MODULES if hasattr(m, name))
    twin = cuda_kernels.TWINS[name]
    assert cuda_kernels.twin(kernel) is twin
    assert list(inspect.signature(twin).parameters) == list(inspect.signature(kernel).parameters)


def test_numpy_arrays_never_get_a_twin():
    assert cuda_kernels.twin(test_numpy_arrays_never_get_a_twin) is None
    x = np.zeros((2, 3), dtype=np.int64)
    assert compiler.compiled(fused_recurrent._lstm_step_back_kernel, x) is None  # not float: no kernel at all
    f = np.zeros((2, 3), dtype=np.float32)  # a float CPU array: Numba's kernel (None without it), never the twin
    got = compiler.compiled(fused_recurrent._lstm_step_back_kernel, f)
    assert got is not cuda_kernels.TWINS["_lstm_step_back_kernel"]
    assert got is None or got.py_func is fused_recurrent._lstm_step_back_kernel


@pytest.mark.parametrize("with_bias", [True, False])
def test_the_lstm_step_kernel_is_the_lecture_step(with_bias):
    """_lstm_step_kernel (what the GPU runs, in Python) against the LSTM equations with plain sigmoids."""
    rng = np.random.default_rng(0)
    B, H = 3, 4
    z = rng.standard_normal((B, 4 * H)) * 2  # unscaled pre-activations without bias
    bias = rng.standard_normal(4 * H) if with_bias else np.zeros(4 * H)
    c_prev = rng.standard_normal((B, H))
    scale = np.full(4 * H, 0.5)
    scale[2 * H : 3 * H] = 1
    a = z * scale
    c, tanh_c, h = np.empty((B, H)), np.empty((B, H)), np.empty((B, H))
    fused_recurrent._lstm_step_kernel(a, bias * scale if with_bias else None, c_prev, c, tanh_c, h)
    pre = z + bias
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(pre[:, :H]), sig(pre[:, H : 2 * H]), np.tanh(pre[:, 2 * H : 3 * H]), sig(pre[:, 3 * H :])
    np.testing.assert_allclose(a, np.concatenate([i, f, g, o], axis=1), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(c, f * c_prev + i * g, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(tanh_c, np.tanh(c), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, o * np.tanh(c), rtol=1e-13, atol=1e-15)


def test_the_softmax_column_kernels_are_the_softmax_and_its_derivative():
    """_softmax_columns_kernel and its backward (what the GPU runs, in Python) against NumPy on P = softmax(S)."""
    rng = np.random.default_rng(4)
    N, L, S, scale = 2, 3, 4, 0.7
    scores = rng.standard_normal((N, L, S))
    mask = np.where(np.tri(L, S, dtype=bool), 0.0, -np.inf)
    mask[1, :] = -np.inf  # query 1 sees no key: P = 0 there
    z = scores * scale + mask
    m = np.where(np.isfinite(z.max(-1, keepdims=True)), z.max(-1, keepdims=True), 0)
    e = np.exp(z - m)
    total = e.sum(-1, keepdims=True)
    p = e / np.where(total == 0, 1, total)
    st = np.ascontiguousarray(scores.swapaxes(-1, -2))  # (N, S, L)
    fused_attention._softmax_columns_kernel(st, np.ascontiguousarray(mask.T), scale)
    np.testing.assert_allclose(st.swapaxes(-1, -2), p, rtol=1e-13, atol=1e-15)
    assert not st[:, :, 1].any()
    dp = rng.standard_normal((N, L, S))
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dpt = np.ascontiguousarray(dp.swapaxes(-1, -2))
    fused_attention._softmax_columns_back_kernel(dpt, st)
    np.testing.assert_allclose(dpt.swapaxes(-1, -2), ds, rtol=1e-13, atol=1e-15)
    plain = np.ascontiguousarray(scores.swapaxes(-1, -2))
    fused_attention._softmax_columns_kernel(plain, None, 1.0)  # no mask
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-13)


@pytest.mark.parametrize("items, shape, bad", [
    ([np.array([0, 7])], (2, 3), 7),
    ([slice(None), np.array([3])], (2, 3), 3),
    ([Ellipsis, np.array([-4])], (2, 3), -4),
    ([None, np.array([1]), np.array([5])], (2, 3), 5),
    ([np.array([1]), Ellipsis, np.array([2])], (2, 4, 3), None),
    ([np.ones((2, 3), dtype=bool)], (2, 3), None),
    ([np.array([-2, 1])], (2, 3), None),
])
def test_index_bounds_are_checked_where_the_array_library_would_wrap(items, shape, bad):
    """CuPy wraps an out-of-range index array silently; the tensor checks it first (the check runs on any array)."""
    check = sys.modules["tinygrad_lm.tensor"]._check_array_index_bounds
    if bad is None:
        check(items, shape)
    else:
        with pytest.raises(IndexError, match=rf"index {bad} is out of bounds"):
            check(items, shape)


# ------------------------------------------------------------------ on a GPU: fused == unfused


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of every CUDA twin by the name of its Python kernel."""
    calls: dict[str, int] = {}

    def counting(fn, short):
        def counted(*args):
            calls[short] = calls.get(short, 0) + 1
            return fn(*args)
        return counted

    for name, fn in list(cuda_kernels.TWINS.items()):
        monkeypatch.setitem(cuda_kernels.TWINS, name, counting(fn, name.rpartition(".")[2]))
    return calls


def host(t):
    return tl.backend.to_host(t.array)


def both_paths(fn, arrays, dtype, params=()):
    """fn's outputs and the gradients of its inputs and of ``params``, on the GPU with the kernels on, then off.

    The outputs are weighted by fixed random numbers before the sum that is backpropagated, so that
    every output element gets its own gradient."""
    results = []
    for fast_on in (True, False):
        tl.fast.set_enabled(fast_on)
        ts = [tl.tensor(a, dtype=dtype, device=GPU, requires_grad=True) for a in arrays]
        out = fn(*ts)
        outs = out if isinstance(out, tuple) else (out,)
        weights = np.random.default_rng(99)
        total = sum((o * tl.tensor(weights.standard_normal(o.shape), dtype=dtype, device=GPU)).sum() for o in outs)
        total.backward()
        grads = [host(t.grad) for t in ts] + [host(p.grad) for p in params]
        for p in params:
            p.grad = None
        results.append(([host(o) for o in outs], grads))
    tl.fast.set_enabled(True)
    return results


def assert_same(results, dtype):
    (outs_on, grads_on), (outs_off, grads_off) = results
    assert len(outs_on + grads_on) == len(outs_off + grads_off)
    for a, b in zip(outs_on + grads_on, outs_off + grads_off):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, **TOL[dtype])


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H, bias, with_state", [(37, True, True), (64, False, False), (5, True, False)])
def test_lstm_fused_equals_unfused(spy, dtype, H, bias, with_state):
    rng = np.random.default_rng(H)
    T, B, n_in = 6, 3, 7
    tl.manual_seed(0)
    lstm = nn.LSTM(n_in, H, num_layers=2, bias=bias).to(GPU).to(getattr(tl, dtype))
    x = rng.standard_normal((T, B, n_in))
    h0, c0 = rng.standard_normal((2, B, H)), rng.standard_normal((2, B, H))

    def fn(x, *state):
        y, (h, c) = lstm(x, tuple(state)) if state else lstm(x)
        return y, h, c

    arrays = [x, h0, c0] if with_state else [x]
    assert_same(both_paths(fn, arrays, dtype, list(lstm.parameters())), dtype)
    assert spy == {"_lstm_step_kernel": 2 * T, "_lstm_step_back_kernel": 2 * T}  # 2 layers, the "auto" run only


@cuda_only
def test_lstm_fused_gradcheck():
    rng = np.random.default_rng(1)
    T, B, n_in, H = 4, 2, 3, 5
    weights = [rng.standard_normal(s) * 0.5 for s in ((4 * H, n_in), (4 * H, H), (4 * H,), (4 * H,))]
    ts = [tl.tensor(a, dtype=tl.float64, device=GPU, requires_grad=True)
          for a in [rng.standard_normal((T, B, n_in)), rng.standard_normal((B, H)), rng.standard_normal((B, H))]
          + weights]
    assert tl.gradcheck(lambda *a: recurrent.LSTMLayer.apply(*a), ts)


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("N, C", [(7, 5), (33, 130), (1, 1)])
@pytest.mark.parametrize("weighted, ignore, eps, reduction", [
    (False, False, 0.0, "mean"), (True, True, 0.0, "mean"), (False, True, 0.1, "sum"), (True, False, 0.2, "none"),
])
def test_cross_entropy_fused_equals_unfused(spy, dtype, N, C, weighted, ignore, eps, reduction):
    rng = np.random.default_rng(N * C)
    x = rng.standard_normal((N, C)) * 3
    target = rng.integers(0, C, size=N)
    if ignore:
        target[::3] = -100
    w = tl.tensor(rng.random(C) + 0.5, dtype=dtype, device=GPU) if weighted else None
    t = tl.tensor(target, device=GPU)
    fn = lambda x: F.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=eps)  # noqa: E731
    assert_same(both_paths(fn, [x], dtype), dtype)
    assert spy == {"_cross_entropy_forward_kernel": 1, "_cross_entropy_backward_kernel": 1}
    # and the CPU agrees
    cpu_t = tl.tensor(target)
    cpu_w = None if w is None else tl.tensor(host(w))
    cpu = F.cross_entropy(tl.tensor(x, dtype=dtype), cpu_t, weight=cpu_w, reduction=reduction, label_smoothing=eps)
    gpu = fn(tl.tensor(x, dtype=dtype, device=GPU))
    np.testing.assert_allclose(host(gpu), host(cpu), **TOL[dtype])


@cuda_only
def test_cross_entropy_fused_special_rows():
    """Rows of -inf with an ignored target count 0; a NaN logit makes its row's loss NaN, as on the CPU."""
    x = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf], [0.0, np.nan, 1.0], [1e30, -1e30, 0.0]])
    target = np.array([2, -100, 0, 0])
    for dtype in ("float32", "float64"):
        gpu = F.cross_entropy(tl.tensor(x, dtype=dtype, device=GPU), tl.tensor(target, device=GPU),
                              reduction="none")
        cpu = F.cross_entropy(tl.tensor(x, dtype=dtype), tl.tensor(target), reduction="none")
        np.testing.assert_allclose(host(gpu), host(cpu), **TOL[dtype])
        assert host(gpu)[1] == 0 and math.isnan(host(gpu)[2])


@cuda_only
@pytest.mark.parametrize("seed", range(3))
def test_cross_entropy_fused_gradcheck(seed):
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal((6, 40)), dtype=tl.float64, device=GPU, requires_grad=True)
    t = tl.tensor(rng.integers(0, 40, size=6), device=GPU)
    w = tl.tensor(rng.random(40) + 0.5, dtype=tl.float64, device=GPU)
    assert tl.gradcheck(lambda x: F.cross_entropy(x, t, weight=w, label_smoothing=0.1), [x])


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M, D, affine, bias", [(5, 3, True, True), (70, 200, True, False), (9, 32, False, False),
                                                 (100, 2, True, True)])
def test_layer_norm_fused_equals_unfused(spy, dtype, M, D, affine, bias):
    rng = np.random.default_rng(M + D)
    x = rng.standard_normal((M, D)) * 2 + 3
    ln = nn.LayerNorm(D, elementwise_affine=affine, bias=bias).to(GPU).to(getattr(tl, dtype))
    with tl.no_grad():
        for p in ln.parameters():
            p.array[...] = tl.tensor(rng.standard_normal(p.shape), dtype=dtype, device=GPU).array
    assert_same(both_paths(ln, [x.reshape(M // 5 or 1, -1, D) if M % 5 == 0 else x], dtype,
                           list(ln.parameters())), dtype)
    assert spy == {"_layer_norm_forward_kernel": 1, "_layer_norm_backward_kernel": 1}


@cuda_only
def test_layer_norm_fused_gradcheck():
    rng = np.random.default_rng(5)
    ts = [tl.tensor(a, dtype=tl.float64, device=GPU, requires_grad=True)
          for a in (rng.standard_normal((4, 3, 40)), rng.standard_normal(40), rng.standard_normal(40))]
    assert tl.gradcheck(lambda x, w, b: F.layer_norm(x, (40,), w, b), ts)


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1,), (3, 1000), (2, 3, 4)])
def test_gelu_fused_equals_unfused(spy, dtype, shape):
    x = np.random.default_rng(len(shape)).standard_normal(shape) * 3
    assert_same(both_paths(F.gelu, [x], dtype), dtype)
    assert spy == {f"_gelu_jit_{'float32' if dtype == 'float32' else 'exact'}": 1}


@cuda_only
def test_gelu_fused_special_values_and_gradcheck():
    x = np.array([0.0, -0.0, 1e-30, 8.0, -8.0, 40.0, -40.0, np.inf, -np.inf, np.nan])
    for dtype in ("float32", "float64"):
        gpu = host(F.gelu(tl.tensor(x, dtype=dtype, device=GPU)))
        cpu = host(F.gelu(tl.tensor(x, dtype=dtype)))
        np.testing.assert_allclose(gpu, cpu, **TOL[dtype])
    t = tl.tensor(np.random.default_rng(2).standard_normal(50) * 2, dtype=tl.float64, device=GPU,
                  requires_grad=True)
    assert tl.gradcheck(F.gelu, [t])


@cuda_only
def test_gemm_accumulates_in_place_on_the_gpu():
    """blas.matmul_right(accumulate=True) and blas.addmm take one cuBLAS GEMM with beta = 1 on CuPy."""
    cupy = tl.backend.cupy_module()
    rng = np.random.default_rng(3)
    a, b, c, bias = (rng.standard_normal(s) for s in ((5, 4), (4, 6), (5, 6), (6,)))
    for shape_a, shape_b in (((0, 4), (4, 6)), ((5, 0), (0, 6)), ((5, 4), (4, 0))):  # cuBLAS refuses empty sizes
        empty = blas.addmm(cupy.ones(shape_b[1]), cupy.ones(shape_a), cupy.ones(shape_b))
        assert empty.shape == (shape_a[0], shape_b[1]) and bool((empty == 1).all())
    out = cupy.asarray(c)
    blas.matmul_right(cupy.asarray(a), blas.RightFactor(cupy.asarray(b)), out=out, accumulate=True)
    np.testing.assert_allclose(cupy.asnumpy(out), c + a @ b, rtol=1e-12)
    got = blas.addmm(cupy.asarray(bias), cupy.asarray(a), cupy.asarray(b))
    np.testing.assert_allclose(cupy.asnumpy(got), a @ b + bias, rtol=1e-12)


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_matmul_through_cublas_equals_numpy(dtype):
    """blas.matmul's direct cuBLAS call (C-contiguous 2-D operands) and its fallbacks, against NumPy."""
    cupy = tl.backend.cupy_module()
    rng = np.random.default_rng(11)
    # float32 products of up to 130 terms of size ~1 carry absolute rounding errors near 1e-5
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else TOL[dtype]
    for m, k, n in ((5, 4, 6), (1, 7, 1), (33, 130, 17), (0, 3, 2), (3, 0, 2), (3, 2, 0)):
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        got = blas.matmul(cupy.asarray(a), cupy.asarray(b))
        assert got.shape == (m, n) and got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(cupy.asnumpy(got), a @ b, **tol)
        out = cupy.full((m, n), np.nan, dtype=dtype)  # every element must be written (0 where k = 0)
        blas.matmul(cupy.asarray(a), cupy.asarray(b), out=out)
        np.testing.assert_allclose(cupy.asnumpy(out), a @ b, **tol)
    a, b = rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((4, 6)).astype(dtype)
    for x, y in ((a.T, b.T), (a.T, b.T.copy()), (a.T.copy(), b.T)):  # transposed views take cuBLAS's op T
        got = blas.matmul(cupy.asarray(x) if x.flags.c_contiguous else cupy.asarray(x.T).T,
                                cupy.asarray(y) if y.flags.c_contiguous else cupy.asarray(y.T).T)
        np.testing.assert_allclose(cupy.asnumpy(got), x @ y, **tol)
    strided = cupy.asarray(rng.standard_normal((5, 8)).astype(dtype))[:, ::2]  # neither layout: CuPy's matmul
    np.testing.assert_allclose(cupy.asnumpy(blas.matmul(strided, cupy.asarray(b[:, :4].T.copy()))),
                               cupy.asnumpy(strided) @ b[:, :4].T, **tol)
    batched = rng.standard_normal((2, 3, 4)).astype(dtype)
    np.testing.assert_allclose(cupy.asnumpy(blas.matmul(cupy.asarray(batched), cupy.asarray(b[:4]))),
                               batched @ b[:4], **tol)


@cuda_only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mask_kind", ["causal", "float", "bool", "none"])
def test_attention_softmax_fused_equals_unfused(spy, dtype, mask_kind):
    rng = np.random.default_rng(7)
    B, heads, L, S, E = 2, 3, 5, 6, 4
    q, k, v = rng.standard_normal((B, heads, L, E)), rng.standard_normal((B, heads, S, E)), rng.standard_normal(
        (B, heads, S, E))
    mask = None
    if mask_kind == "float":
        mask = tl.tensor(rng.standard_normal((L, S)), dtype=dtype, device=GPU)
    elif mask_kind == "bool":
        keep = rng.random((L, S)) < 0.6
        keep[2] = False  # a query that sees no key: output and gradients 0
        mask = tl.tensor(keep, device=GPU)
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,  # noqa: E731
                                                        is_causal=mask_kind == "causal")
    assert_same(both_paths(fn, [q * 3, k, v], dtype), dtype)
    assert spy == {"_softmax_columns_kernel": 1, "_softmax_columns_back_kernel": 1}


@cuda_only
def test_attention_softmax_fused_falls_back_for_other_masks_and_dropout(spy):
    rng = np.random.default_rng(8)
    q, k, v = (tl.tensor(rng.standard_normal((2, 4, 3)), dtype=tl.float64, device=GPU) for _ in range(3))
    batch_mask = tl.tensor(rng.standard_normal((2, 4, 4)), dtype=tl.float64, device=GPU)  # a mask per batch
    F.scaled_dot_product_attention(q, k, v, attn_mask=batch_mask)
    F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert spy == {}


@cuda_only
@pytest.mark.parametrize("causal", [True, False])
def test_attention_softmax_fused_gradcheck(causal):
    rng = np.random.default_rng(9)
    ts = [tl.tensor(rng.standard_normal(s), dtype=tl.float64, device=GPU, requires_grad=True)
          for s in ((2, 5, 3), (2, 5, 3), (2, 5, 2))]
    assert tl.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), ts)
