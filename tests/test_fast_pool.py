"""Kernels split between OpenBLAS's threads (fast.workers.run_pieces): GELU, LayerNorm, attention's softmax,
the softmaxes over rows and cross-entropy.

A kernel run in pieces must give what the same kernel gives in one piece: elementwise and row-wise
results bit for bit, LayerNorm's weight and bias gradients (summed per piece, then added) within
rounding. Gradients through the split path pass float64 finite differences, and each piece kernel
also runs as plain Python (its task words read through ctypes).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm.fast import fused_nn, workers


@pytest.fixture
def pieces(monkeypatch, blas_pool_threads):
    """Split every kernel that can be split, on 2 threads; record each run_pieces call (kernel name, parts)."""
    blas_pool_threads(2)
    monkeypatch.setattr(workers, "MIN_ELEMENTS_PER_PART", 1)
    monkeypatch.setattr(fused_nn, "LAYER_NORM_SPLIT_COST", 1)
    runs: list[tuple[str, int]] = []
    real = workers.run_pieces

    def recording(kernel, parts, count, *words):
        runs.append((kernel.__name__.removesuffix("_f32").removesuffix("_f64"), parts))
        real(kernel, parts, count, *words)

    monkeypatch.setattr(workers, "run_pieces", recording)
    tl.fast.set_enabled(True)
    yield runs


def _gelu(x: np.ndarray, approximate: str, hooked: bool) -> tuple[np.ndarray, np.ndarray]:
    t = tl.tensor(x, requires_grad=True)
    y = F.gelu(t, approximate=approximate)
    if hooked:  # a hook sees dy: the backward writes a new array (else it multiplies dy in place, in one piece)
        y.register_hook(lambda g: None)
    (y * tl.tensor(np.cos(x))).sum().backward()
    return y.detach().numpy(), t.grad.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("hooked", [False, True])
def test_gelu_in_pieces_equals_one_piece(pieces, monkeypatch, dtype, approximate, hooked):
    x = np.random.default_rng(0).standard_normal((37, 11)).astype(dtype) * 3
    split = _gelu(x, approximate, hooked)
    # the forward, then (into a new array) the backward's dy * GELU'(x)
    expected = [("_gelu_part", 2), ("_multiply_part", 2)] if hooked else [("_gelu_part", 2)]
    assert pieces == expected
    tl.set_num_threads(1)
    whole = _gelu(x, approximate, hooked)
    assert pieces == expected
    for got, want in zip(split, whole):
        np.testing.assert_array_equal(got, want)


def _layer_norm(x, w, b, g):
    x, w, b = (tl.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.layer_norm(x, x.shape[-1:], w, b)
    (y * tl.tensor(g)).sum().backward()
    return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [2, 3, 41])
def test_layer_norm_in_pieces_equals_one_piece(pieces, dtype, rows):
    rng = np.random.default_rng(rows)
    x, g = (rng.standard_normal((rows, 13)).astype(dtype) for _ in range(2))
    w, b = (rng.standard_normal(13).astype(dtype) for _ in range(2))
    split = _layer_norm(x, w, b, g)
    assert pieces == [("_layer_norm_forward_part", 2), ("_layer_norm_backward_part", 2)]
    tl.set_num_threads(1)
    whole = _layer_norm(x, w, b, g)
    np.testing.assert_array_equal(split[0], whole[0])  # y and dx: row by row, the same arithmetic
    np.testing.assert_array_equal(split[1], whole[1])
    scale = np.abs(g).sum(axis=0) * (np.abs(x).max() + 1)  # dw, db: sums over the rows in another order
    tol = 1e-6 if dtype == "float32" else 1e-14
    for got, want in zip(split[2:], whole[2:]):
        assert np.all(np.abs(got - want) <= tol * scale)


def test_layer_norm_without_weight_or_bias_takes_one_piece(pieces):
    """The forward splits with both weight and bias, the backward with a weight (the kernels' None cases
    run in one piece)."""
    x = tl.tensor(np.random.default_rng(1).standard_normal((9, 5)), requires_grad=True)
    F.layer_norm(x, (5,)).sum().backward()
    assert pieces == []
    w = tl.tensor(np.random.default_rng(2).standard_normal(5), requires_grad=True)
    want = tl.gradcheck(lambda x, w: F.layer_norm(x, (5,), w), [x, w])
    assert want and {name for name, _ in pieces} == {"_layer_norm_backward_part"}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(2, 6), cols=st.integers(1, 5))
def test_gradcheck_through_the_pieces(pieces, seed, rows, cols):
    """float64 finite differences through the split GELU and LayerNorm, forward and backward."""
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal((rows, cols)) * 2, requires_grad=True)
    w = tl.tensor(rng.standard_normal(cols), requires_grad=True)
    b = tl.tensor(rng.standard_normal(cols), requires_grad=True)
    assert tl.gradcheck(lambda x, w, b: F.gelu(F.layer_norm(x, (cols,), w, b)), [x, w, b])
    assert tl.gradcheck(lambda x: F.gelu(x, approximate="tanh"), [x])
    assert {name for name, _ in pieces} == {"_gelu_part", "_multiply_part", "_layer_norm_forward_part",
                                            "_layer_norm_backward_part"}


def test_piece_kernels_run_as_plain_python(pieces, monkeypatch):
    """The piece kernels are ordinary Python too: run each captured task row in Python, compare."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 7))
    wants = {approximate: _gelu(x, approximate, False)[0] for approximate in ("none", "tanh")}
    captured: list[tuple] = []
    monkeypatch.setattr(workers, "run_pieces", lambda kernel, parts, count, *words: captured.append(
        (kernel, parts, count, words)))
    for approximate in ("none", "tanh"):
        fn = fused_nn.Gelu()
        fn.xp, fn.device = np, "cpu"
        out = fn.forward(x, approximate)
        (kernel, parts, count, words), = captured
        tasks = workers.new_tasks(parts)
        tasks[:, 4:4 + len(words)] = words
        bounds = [count * p // parts for p in range(parts + 1)]
        tasks[:, 0], tasks[:, 1], tasks[:, 2], tasks[:, 3] = range(parts), bounds[:-1], bounds[1:], parts
        for row in tasks:
            kernel(row.ctypes.data)
        np.testing.assert_allclose(out, wants[approximate], rtol=1e-14, atol=1e-15)
        captured.clear()


def _attention(q, k, v, g, **kwargs):
    q, k, v = (tl.tensor(a, requires_grad=True) for a in (q, k, v))
    tl.manual_seed(7)  # the same dropout mask every run
    out = F.scaled_dot_product_attention(q, k, v, **kwargs)
    (out * tl.tensor(g)).sum().backward()
    return [out.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["plain", "causal", "bool mask per head", "float mask per batch", "causal dropout"])
def test_attention_softmax_in_pieces_equals_one_piece(pieces, dtype, case):
    rng = np.random.default_rng(3)
    q, k, v, g = (rng.standard_normal((3, 2, 5, 4)).astype(dtype) for _ in range(4))
    kwargs = {"plain": {}, "causal": {"is_causal": True}, "causal dropout": {"is_causal": True, "dropout_p": 0.3},
              "bool mask per head": {"attn_mask": tl.tensor(rng.random((2, 5, 5)) > 0.3)},
              "float mask per batch": {"attn_mask": tl.tensor(rng.standard_normal((3, 1, 5, 5)).astype(dtype))}}[case]
    split = _attention(q, k, v, g, **kwargs)
    assert pieces == [("_softmax_pieces", 2), ("_softmax_back_pieces", 2)]
    tl.set_num_threads(1)
    whole = _attention(q, k, v, g, **kwargs)
    for got, want in zip(split, whole):  # block by block, the same arithmetic
        np.testing.assert_array_equal(got, want)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), heads=st.integers(1, 3), L=st.integers(1, 6), S=st.integers(1, 6),
       causal=st.booleans())
def test_gradcheck_through_the_attention_pieces(pieces, seed, heads, L, S, causal):
    rng = np.random.default_rng(seed)
    q = tl.tensor(rng.standard_normal((2, heads, L, 3)), requires_grad=True)
    k, v = (tl.tensor(rng.standard_normal((2, heads, S, 3)), requires_grad=True) for _ in range(2))
    mask = None if causal else tl.tensor(rng.standard_normal((heads, L, S)))
    assert tl.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal),
                        [q, k, v])
    assert ("_softmax_pieces", 2) in pieces and ("_softmax_back_pieces", 2) in pieces


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_rows_in_pieces_equal_one_piece(pieces, dtype, log):
    rng = np.random.default_rng(4)
    x0, g = rng.standard_normal((3, 7, 6)).astype(dtype) * 4, rng.standard_normal((3, 7, 6)).astype(dtype)
    x0[0, 0] = -np.inf  # a fully masked row, as hand-written causal attention can make

    def run():
        x = tl.tensor(x0, requires_grad=True)
        y = (F.log_softmax if log else F.softmax)(x, dim=-1)
        (y * tl.tensor(g)).sum().backward()
        return [y.detach().numpy(), x.grad.numpy()]

    split = run()
    assert pieces == [("_softmax_rows_task", 2)] * 2
    tl.set_num_threads(1)
    for got, want in zip(split, run()):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(2, 6), cols=st.integers(1, 5), log=st.booleans())
def test_gradcheck_through_the_softmax_pieces(pieces, seed, rows, cols, log):
    x = tl.tensor(np.random.default_rng(seed).standard_normal((rows, cols)) * 3, requires_grad=True)
    assert tl.gradcheck(lambda x: (F.log_softmax if log else F.softmax)(x, dim=-1), [x])
    assert pieces and {name for name, _ in pieces} == {"_softmax_rows_task"}


def _cross_entropy(x, t, g, **kwargs):
    xt = tl.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, tl.tensor(t), **kwargs)
    (loss * tl.tensor(g if loss.ndim else g.sum())).sum().backward()
    return [loss.detach().numpy(), xt.grad.numpy()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["plain", "ignore_index", "weight", "label_smoothing", "weight and smoothing",
                                  "sum", "none", "int32 targets", "every target ignored"])
def test_cross_entropy_in_pieces_equals_one_piece(pieces, dtype, case):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((13, 7)) * 4).astype(dtype)
    x[2, 3] = -np.inf  # a masked logit
    t, g = rng.integers(0, 7, 13), rng.standard_normal(13).astype(dtype)
    t[[1, 6]] = 4
    weight = tl.tensor(rng.random(7).astype(dtype) + 0.5)
    kwargs = {"plain": {}, "ignore_index": {"ignore_index": 4}, "weight": {"weight": weight},
              "label_smoothing": {"label_smoothing": 0.2}, "weight and smoothing": {"weight": weight,
              "label_smoothing": 0.1}, "sum": {"reduction": "sum"}, "none": {"reduction": "none"},
              "int32 targets": {}, "every target ignored": {"ignore_index": 4, "reduction": "sum"}}[case]
    if case == "int32 targets":
        t = t.astype(np.int32)
    if case == "every target ignored":
        t[:] = 4
    split = _cross_entropy(x, t, g, **kwargs)
    assert pieces == [("_cross_entropy_part", 2)] * 2
    tl.set_num_threads(1)
    whole = _cross_entropy(x, t, g, **kwargs)
    assert pieces == [("_cross_entropy_part", 2)] * 2
    for got, want in zip(split, whole):  # row by row, the same arithmetic
        np.testing.assert_array_equal(got, want)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(2, 6), cols=st.integers(1, 5),
       smoothing=st.sampled_from([0.0, 0.3]), weighted=st.booleans())
def test_gradcheck_through_the_cross_entropy_pieces(pieces, seed, rows, cols, smoothing, weighted):
    rng = np.random.default_rng(seed)
    x = tl.tensor(rng.standard_normal((rows, cols)) * 3, requires_grad=True)
    t = tl.tensor(rng.integers(0, cols, rows))
    weight = tl.tensor(rng.random(cols) + 0.5) if weighted else None
    assert tl.gradcheck(lambda x: F.cross_entropy(x, t, weight=weight, label_smoothing=smoothing), [x])
    assert pieces and {name for name, _ in pieces} == {"_cross_entropy_part"}


def test_cross_entropy_piece_kernel_runs_as_plain_python(pieces, monkeypatch):
    """The cross-entropy piece kernel run as plain Python on each captured task row gives the compiled result."""
    rng = np.random.default_rng(6)
    x, t, g = rng.standard_normal((5, 4)) * 2, rng.integers(0, 4, 5), rng.standard_normal(5)
    t[3] = -100  # ignored
    want = _cross_entropy(x, t, g, reduction="none")
    real = workers.run_pieces

    def in_python(kernel, parts, count, *words):
        assert kernel is fused_nn._cross_entropy_part
        tasks = workers.new_tasks(parts)
        tasks[:, 4:4 + len(words)] = words
        bounds = [count * p // parts for p in range(parts + 1)]
        tasks[:, 0], tasks[:, 1], tasks[:, 2], tasks[:, 3] = range(parts), bounds[:-1], bounds[1:], parts
        for row in tasks:
            kernel(row.ctypes.data)  # the Python function: its words read through ctypes

    monkeypatch.setattr(workers, "run_pieces", in_python)
    got = _cross_entropy(x, t, g, reduction="none")
    monkeypatch.setattr(workers, "run_pieces", real)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def _run(code: str, **env: str) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root), **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


_SPLIT_GELU = """
import numpy as np, tinygrad_lm as tl, tinygrad_lm.nn.functional as F
from tinygrad_lm.fast import workers
tl.set_num_threads(2)
workers.MIN_ELEMENTS_PER_PART = 1
runs = []
real = workers.run_pieces
workers.run_pieces = lambda kernel, parts, *rest: (runs.append(parts), real(kernel, parts, *rest))
x = np.linspace(-3, 3, 1000)
y = F.gelu(tl.tensor(x)).numpy()
"""


def test_the_pool_after_openblas_started_on_one_thread(blas_pool_threads):
    """OPENBLAS_NUM_THREADS=1 at start: OpenBLAS has no workers until tl.set_num_threads(2) starts one, and the
    pieces then run on it (they must not wait for a worker that does not exist)."""
    code = _SPLIT_GELU + "tl.set_num_threads(1)\nprint(runs, np.array_equal(y, F.gelu(tl.tensor(x)).numpy()))"
    assert _run(code, OPENBLAS_NUM_THREADS="1") == "[2] True"


def test_the_pool_in_a_forked_child(blas_pool_threads):
    """A forked process (a DataLoader worker, say) gets OpenBLAS's pool anew and splits as its parent does."""
    code = _SPLIT_GELU + (
        "import multiprocessing as mp\n"
        "def child(q):\n"
        "    q.put((F.gelu(tl.tensor(x)).numpy(), runs))\n"
        "q = mp.get_context('fork').Queue()\n"
        "p = mp.get_context('fork').Process(target=child, args=(q,))\n"
        "p.start(); got, child_runs = q.get(timeout=120); p.join(timeout=120)\n"
        "print(p.exitcode, child_runs, np.array_equal(got, y))")
    assert _run(code) == "0 [2, 2] True"


def test_pieces_from_two_python_threads_beside_numpy_products(pieces):
    """Two Python threads running split ops (forward and backward: grad mode is per thread) while a third runs
    NumPy's own (multithreaded) products: every result right, nobody waits for ever (the pool's users take
    turns; a product finds OpenBLAS's workers busy, or OpenBLAS at one thread, at worst)."""
    import threading

    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((64, 50)) for _ in range(2)]
    wants = [_gelu(x, "none", True) for x in xs]  # (hooked: the backward on the pool too)
    big = rng.standard_normal((300, 300))
    big_want = big @ big
    errors: list[BaseException] = []

    def split(i: int) -> None:
        try:
            for _ in range(20):
                for got, want in zip(_gelu(xs[i], "none", True), wants[i]):
                    np.testing.assert_array_equal(got, want)
        except BaseException as e:  # noqa: BLE001 - reported below, from the main thread
            errors.append(e)

    def products() -> None:
        try:
            for _ in range(20):
                np.testing.assert_allclose(big @ big, big_want)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads_ = [threading.Thread(target=split, args=(i,)) for i in range(2)] + [threading.Thread(target=products)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads_), "a thread is still waiting"
    assert not errors, errors
    # 4 splits made `wants`; while one thread's pieces run, OpenBLAS is held at one thread, and the other
    # thread's ops see that and run in one piece: some of the 80 ops split, not all
    assert len(pieces) > 4


def test_set_num_threads_waits_for_the_pool(pieces):
    """tl.set_num_threads from another thread waits while work holds OpenBLAS at one thread (its lock), so that no
    piece gets a multithreaded product in the middle."""
    import threading

    blas = workers.numpy_blas()
    done = threading.Event()
    with blas.lock:  # as run_on_blas_pool holds it
        t = threading.Thread(target=lambda: (tl.set_num_threads(2), done.set()))
        t.start()
        assert not done.wait(0.3)
    assert done.wait(30)
    t.join()
