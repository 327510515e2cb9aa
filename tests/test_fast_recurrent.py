"""The fast recurrent layer ops (tinygrad_lm.fast.fused_recurrent) against the reference (tinygrad_lm.ops.recurrent):
outputs and the gradients of every input, with and without biases, through any subset of the outputs, with and
without compiled kernels; and float64 gradchecks of both."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.fast import compiler, fused_recurrent
from tinygrad_lm.ops import recurrent

# (op, gates per row of W_ih, initial states, outputs, keyword arguments)
CASES = {
    "RNN-tanh": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "tanh"}),
    "RNN-relu": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "relu"}),
    "RNN-sigmoid": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "sigmoid"}),
    "LSTM": (recurrent.LSTMLayer, 4, 2, 3, {}),
    "GRU": (recurrent.GRULayer, 3, 1, 2, {}),
}


def _arrays(case: str, T: int, B: int, n_in: int, H: int, bias: bool, dtype: str, seed: int) -> list[Any]:
    """x, the initial states, W_ih, W_hh, b_ih, b_hh (None without bias); weights of PyTorch's init scale."""
    _, gates, n_states, _, _ = CASES[case]
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    arrays: list[Any] = [rng.standard_normal((T, B, n_in))]
    arrays += [rng.standard_normal((B, H)) for _ in range(n_states)]
    arrays += [rng.uniform(-k, k, (gates * H, n_in)), rng.uniform(-k, k, (gates * H, H))]
    arrays += [rng.uniform(-k, k, gates * H) if bias else None for _ in range(2)]
    return [None if a is None else a.astype(dtype) for a in arrays]


def _run(case: str, fast: bool, arrays: list[Any], used: tuple[int, ...], transpose_out: bool,
         device: str = "cpu") -> list[Any]:
    """The op's outputs and every input's gradient (None for an absent bias) from a loss over the ``used`` outputs.

    Each used output is weighted by a fixed random array; with ``transpose_out`` the first output reaches the
    loss through a (B, T, H) transpose, as in a batch_first layer, so its gradient arrives strided.
    """
    op, _, _, _, kwargs = CASES[case]
    tl.fast.set_enabled(fast)
    inputs = [None if a is None else tl.tensor(a, requires_grad=True, device=device) for a in arrays]
    outs = op.apply(*inputs, **kwargs)
    assert type(outs[0].grad_fn) is (tl.fast.registry()[op] if fast else op)
    rng = np.random.default_rng(7)
    loss = None
    for i in used:
        out = outs[i].transpose(0, 1) if i == 0 and transpose_out else outs[i]
        weight = tl.tensor(rng.standard_normal(out.shape), dtype=out.dtype, device=device)
        term = (out * weight).sum()
        loss = term if loss is None else loss + term
    assert loss is not None
    loss.backward()
    return [o.detach().numpy() for o in outs] + [None if t is None else t.grad.numpy() for t in inputs]


def _assert_close(got: list[Any], want: list[Any], dtype: str) -> None:
    """Equal within float32's or float64's rounding, relative to each array's largest value."""
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == np.dtype(dtype) and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max(initial=0))))


@settings(max_examples=40)
@given(case=st.sampled_from(list(CASES)), T=st.integers(1, 6), B=st.integers(1, 4), n_in=st.integers(1, 5),
       H=st.integers(1, 5), bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       used=st.sets(st.integers(0, 2), min_size=1), transpose_out=st.booleans(), kernels=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_fast_equals_reference(monkeypatch, device, case, T, B, n_in, H, bias, dtype, used, transpose_out, kernels,
                               seed):
    """Outputs and all gradients; unused outputs reach backward as None; kernels off is as without Numba."""
    used = tuple(sorted(i for i in used if i < CASES[case][3])) or (0,)
    arrays = _arrays(case, T, B, n_in, H, bias, dtype, seed)
    kept = [None if a is None else a.copy() for a in arrays]
    with monkeypatch.context() as m:
        if not kernels:
            m.setattr(compiler, "_numba", False)
        got = _run(case, True, arrays, used, transpose_out, device)
    want = _run(case, False, arrays, used, transpose_out, device)
    _assert_close(got, want, dtype)
    for a, k in zip(arrays, kept):  # neither path writes into its inputs
        if a is not None:
            np.testing.assert_array_equal(a, k)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_equals_reference_over_many_steps(device, case, dtype):
    """100 steps of a wider layer: the kernels, the blocked BPTT and the reference agree over a long recurrence."""
    arrays = _arrays(case, 100, 3, 7, 16, True, dtype, 5)
    used = tuple(range(CASES[case][3]))
    _assert_close(_run(case, True, arrays, used, False, device), _run(case, False, arrays, used, False, device), dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_ops_keep_the_reference_names(case):
    op = CASES[case][0]
    fast = tl.fast.registry()[op]
    assert issubclass(fast, op) and fast.__name__ == op.__name__ and fast is getattr(fused_recurrent, op.__name__)


@settings(max_examples=10)
@given(case=st.sampled_from(list(CASES)), T=st.integers(1, 4), B=st.integers(1, 3), H=st.integers(1, 3),
       bias=st.booleans(), fast=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_gradcheck(case, T, B, H, bias, fast, seed):
    """float64 central differences against the backward of the reference and of the fast op, every output."""
    op, _, _, n_outputs, kwargs = CASES[case]
    tl.fast.set_enabled(fast)
    arrays = _arrays(case, T, B, 2, H, bias, "float64", seed)
    inputs = [tl.tensor(a, requires_grad=True) for a in arrays if a is not None]

    def run(*ts: Any) -> Any:
        it = iter(ts)
        return op.apply(*[None if a is None else next(it) for a in arrays], **kwargs)

    for k in range(n_outputs):
        assert tl.gradcheck(lambda *ts, k=k: run(*ts)[k], inputs)


# --- the LSTM split by hidden units over threads (fused_recurrent._forward_parts, fast.workers) ---


@pytest.fixture
def lstm_parts(monkeypatch, blas_pool_threads):
    """Let the LSTM take its parts path at any size and thread count (``set_threads(n)``; the process's
    cores are taken as 8), and record each ``run_on_blas_pool`` call as (kernel name, parts)."""
    from tinygrad_lm import threads
    from tinygrad_lm.fast import workers

    monkeypatch.setattr(workers, "MIN_UNITS_PER_PART", 1)
    monkeypatch.setattr(workers, "MIN_WORK_PER_PART", 1)
    monkeypatch.setattr(threads, "_cores", lambda: 8)
    runs: list[tuple[str, int]] = []
    real = workers.run_on_blas_pool

    def recording(kernel: Any, tasks: Any) -> None:
        runs.append((kernel.__name__.rsplit("_", 2)[0], tasks.shape[0]))  # _lstm_forward_f32_i64: _lstm_forward
        real(kernel, tasks)

    monkeypatch.setattr(workers, "run_on_blas_pool", recording)
    yield runs, blas_pool_threads


@settings(max_examples=30)
@given(T=st.integers(1, 6), B=st.integers(1, 4), n_in=st.integers(1, 5), H=st.integers(2, 9), parts=st.integers(2, 3),
       bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]), used=st.sets(st.integers(0, 2), min_size=1),
       transpose_out=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_lstm_parts_equal_reference(lstm_parts, T, B, n_in, H, parts, bias, dtype, used, transpose_out, seed):
    """Split over 2 or 3 threads (uneven slices of units included): outputs and every gradient as the reference."""
    runs, set_threads = lstm_parts
    parts = min(parts, H)
    set_threads(parts)
    runs.clear()
    arrays = _arrays("LSTM", T, B, n_in, H, bias, dtype, seed)
    got = _run("LSTM", True, arrays, tuple(sorted(used)), transpose_out)
    assert runs == [("_lstm_forward", parts), ("_lstm_backward", parts)]
    _assert_close(got, _run("LSTM", False, arrays, tuple(sorted(used)), transpose_out), dtype)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_parts_over_many_steps_and_a_retained_graph(lstm_parts, parts, dtype):
    """100 steps, and two backward passes through one graph (the second cannot reuse the gates' memory)."""
    runs, set_threads = lstm_parts
    set_threads(parts)
    arrays = _arrays("LSTM", 100, 3, 7, 16, True, dtype, 5)
    want = _run("LSTM", False, arrays, (0, 1, 2), False)
    tl.fast.set_enabled(True)
    inputs = [tl.tensor(a, requires_grad=True) for a in arrays]
    outs = recurrent.LSTMLayer.apply(*inputs)
    rng = np.random.default_rng(7)  # the weights that _run draws, in its order
    weights = [tl.tensor(rng.standard_normal(o.shape), dtype=o.dtype) for o in outs]
    loss = sum(((o * w).sum() for o, w in zip(outs, weights)), tl.tensor(0.0, dtype=dtype))
    loss.backward(retain_graph=True)
    loss.backward()
    assert runs == [("_lstm_forward", parts)] + [("_lstm_backward", parts)] * 2
    _assert_close([o.detach().numpy() for o in outs], want[:3], dtype)
    _assert_close([t.grad.numpy() / 2 for t in inputs], want[3:], dtype)


@pytest.mark.parametrize("frozen", [(3,), (4,), (3, 4), (0, 5, 6), (1, 2)])
def test_lstm_parts_when_some_inputs_need_no_gradient(lstm_parts, frozen):
    """Split over 2 threads with some inputs frozen (W_ih, W_hh, both, x and the biases, the states): those get
    no gradient, and every other gradient is the reference's."""
    runs, set_threads = lstm_parts
    set_threads(2)
    arrays = _arrays("LSTM", 5, 3, 4, 6, True, "float64", 11)
    grads = []
    for fast in (True, False):
        tl.fast.set_enabled(fast)
        inputs = [tl.tensor(a, requires_grad=i not in frozen) for i, a in enumerate(arrays)]
        outs = recurrent.LSTMLayer.apply(*inputs)
        rng = np.random.default_rng(7)
        loss = sum(((o * tl.tensor(rng.standard_normal(o.shape))).sum() for o in outs), tl.tensor(0.0))
        loss.backward()
        grads.append([None if t.grad is None else t.grad.numpy() for t in inputs])
    assert ("_lstm_backward", 2) in runs
    assert all(grads[0][i] is None for i in frozen)
    _assert_close(grads[0], grads[1], "float64")


@settings(max_examples=8)
@given(T=st.integers(1, 4), B=st.integers(1, 3), H=st.integers(2, 4), bias=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_lstm_parts_gradcheck(lstm_parts, T, B, H, bias, seed):
    """float64 central differences against the backward of the split layer, every output."""
    runs, set_threads = lstm_parts
    set_threads(2)
    tl.fast.set_enabled(True)
    arrays = _arrays("LSTM", T, B, 2, H, bias, "float64", seed)
    inputs = [tl.tensor(a, requires_grad=True) for a in arrays if a is not None]

    def run(*ts: Any) -> Any:
        it = iter(ts)
        return recurrent.LSTMLayer.apply(*[None if a is None else next(it) for a in arrays])

    for k in range(3):
        assert tl.gradcheck(lambda *ts, k=k: run(*ts)[k], inputs)
    assert ("_lstm_backward", 2) in runs


@pytest.fixture
def four_threads(monkeypatch, threads_restored):
    """tl.set_num_threads(4) (OpenBLAS starts 4 threads) on a process whose cores are taken as 4; restored after."""
    from tinygrad_lm import threads

    monkeypatch.setattr(threads, "_cores", lambda: 4)
    threads_restored(4)


def test_lstm_parts_only_where_they_can_run(monkeypatch, four_threads):
    """parts_for: 1 for one thread, small layers, other dtypes or array types, and without Numba or OpenBLAS;
    never more than OpenBLAS's threads, whose workers run the parts."""
    from tinygrad_lm import threads
    from tinygrad_lm.fast import workers

    x32, x64 = np.zeros((2, 2, 2), np.float32), np.zeros((2, 2, 2))
    big = 64 * workers.MIN_WORK_PER_PART
    blas = workers.numpy_blas()
    if compiler.numba_available() and blas is not None:
        assert workers.parts_for(4 * workers.MIN_UNITS_PER_PART, big, x32, None) == 4
        assert workers.parts_for(2 * workers.MIN_UNITS_PER_PART, big, x64) == 2  # at least MIN_UNITS each
        assert workers.parts_for(4 * workers.MIN_UNITS_PER_PART, 3 * workers.MIN_WORK_PER_PART, x32) == 3
        blas.set_threads(2)  # OpenBLAS set apart from the library (through threadpoolctl, say)
        assert workers.parts_for(4 * workers.MIN_UNITS_PER_PART, big, x32) == 2
        blas.set_threads(4)
    units = 4 * workers.MIN_UNITS_PER_PART
    assert workers.parts_for(units, big, x32, x64) == 1  # mixed dtypes
    assert workers.parts_for(units, big, x32.astype(np.float16)) == 1
    assert workers.parts_for(units, big, x32.tolist()) == 1
    assert workers.parts_for(units, workers.MIN_WORK_PER_PART, x32) == 1
    monkeypatch.setattr(threads, "get_num_threads", lambda: 1)
    assert workers.parts_for(units, big, x32) == 1
    monkeypatch.setattr(threads, "get_num_threads", lambda: 4)
    monkeypatch.setattr(workers, "_blas", None)  # no OpenBLAS with its own pool
    assert workers.parts_for(units, big, x32) == 1
    monkeypatch.setattr(compiler, "_numba", False)
    assert workers.parts_for(units, big, x32) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_gemm_and_barrier(dtype):
    """compiler.gemm inside a compiled kernel: c = a @ b + beta c on views with strided rows, as NumPy's product;
    the Python stand-ins give the same."""
    from tinygrad_lm.fast import workers

    blas = workers.numpy_blas()
    if not compiler.numba_available() or blas is None:
        pytest.skip("needs Numba and NumPy's OpenBLAS")

    def kernel(address: int, int_like: Any, a: Any, b: Any, c: Any, beta: float, flags: Any) -> None:
        compiler.gemm(address, int_like, a, b, c, beta)
        workers.barrier(flags, 0, 1, 1, 0)  # one part: returns at once

    rng = np.random.default_rng(0)
    big_a, big_b, big_c = (rng.standard_normal(s).astype(dtype) for s in ((6, 9), (5, 11), (7, 8)))
    a, b = big_a[1:5, 2:7], big_b[:, 3:10]  # (4, 5) and (5, 7), rows 9 and 11 apart
    for beta in (0.0, 1.0, 0.5):
        want = big_c.copy()
        want[2:6, 1:8] = a @ b + beta * want[2:6, 1:8]
        for fn in (kernel, compiler.compiled(kernel, a)):
            c = big_c.copy()
            flags = workers.new_flags(1)
            fn(blas.gemm[dtype], blas.int_like(0), a, b, c[2:6, 1:8], beta, flags)
            np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
            assert flags[0] == 1


def _split_lstm_in_child(queue: Any) -> None:
    arrays = _arrays("LSTM", 5, 2, 3, 6, True, "float64", 3)
    got = _run("LSTM", True, arrays, (0, 1, 2), False)
    queue.put(float(np.abs(got[0]).sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_lstm_parts_in_a_forked_child(lstm_parts):
    """A child forked after the parent has split a layer starts worker threads of its own (no hang)."""
    import multiprocessing

    runs, set_threads = lstm_parts
    set_threads(2)
    arrays = _arrays("LSTM", 5, 2, 3, 6, True, "float64", 3)
    want = float(np.abs(_run("LSTM", True, arrays, (0, 1, 2), False)[0]).sum())
    assert runs  # the parent's workers exist
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_lstm_in_child, args=(queue,))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child did not finish its split layer within 120 s")
    assert child.exitcode == 0 and queue.get(timeout=10) == pytest.approx(want, rel=1e-12)
