"""fast.blas: the products the fast Matmul and Linear hand to BLAS, and those ops against the reference.

``matmul``, ``addmm``, ``RightFactor`` with ``matmul_right`` and ``matmul_right_steps`` must give
NumPy's ``matmul`` results for every layout (row-major, column-major, row-strided slices, batch
axes with broadcasting, ``out=``), and the fast ``Matmul`` and ``Linear`` the reference ops'
values and gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import ops
from tinygrad_lm.fast import blas


def _tol(dtype: np.dtype) -> float:
    return 1e-12 if dtype == np.float64 else 2e-5


def _check(got: np.ndarray, a: np.ndarray, b: np.ndarray, start: np.ndarray | None = None) -> None:
    """got = a @ b (or start + a @ b) within the dtype's rounding, relative to |a| |b| (+ |start|: the sum
    is rounded at its own magnitude, which may be far above the product's)."""
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    assert got.dtype == a.dtype
    scale = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)) + 1e-30
    if start is not None:
        want = want + start
        scale = scale + np.abs(start)
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
    # "every2": every other column, which no BLAS layout describes
    return rng.standard_normal((*batch, r, 2 * c)).astype(dtype)[..., :, ::2]


layouts = st.sampled_from(["C", "F", "rows", "every2"])
dtypes = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
dims = st.integers(1, 9)


@settings(deadline=None)
@given(m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes, seed=st.integers(0, 2**31))
def test_2d_products_equal_numpy(m: int, k: int, n: int, la: str, lb: str, dtype: np.dtype, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _as_layout(rng, (m, k), dtype, la)
    b = _as_layout(rng, (k, n), dtype, lb)
    _check(blas.matmul(a, b), a, b)


@settings(deadline=None)
@given(m=dims, k=dims, n=dims, lo=st.sampled_from(["C", "rows", "F", "every2"]), dtype=dtypes,
       seed=st.integers(0, 2**31))
def test_2d_products_into_out(m: int, k: int, n: int, lo: str, dtype: np.dtype, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = _as_layout(rng, (m, n), dtype, lo)
    before = out.base.copy() if out.base is not None else None
    result = blas.matmul(a, b, out=out)
    assert result is out
    _check(out, a, b)
    if before is not None and lo == "rows":  # the padding columns around the slice are untouched
        assert np.array_equal(out.base[:, 0], before[:, 0])
        assert np.array_equal(out.base[:, -2:], before[:, -2:])


batch_shapes = st.sampled_from([(), (1,), (3,), (2, 3), (1, 3), (2, 1)])


def _batched_operands(ba: tuple[int, ...], bb: tuple[int, ...], m: int, k: int, n: int, la: str, lb: str,
                      dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
    """a (*ba, m, k) and b (*bb, k, n) in the given layouts, and their broadcast batch shape; None for it where
    the batch shapes do not broadcast, after checking that blas.matmul then raises as NumPy does."""
    rng = np.random.default_rng(seed)
    a = _as_layout(rng, (*ba, m, k), dtype, la)
    b = _as_layout(rng, (*bb, k, n), dtype, lb)
    try:
        return a, b, np.broadcast_shapes(ba, bb)
    except ValueError:
        with pytest.raises(ValueError):
            blas.matmul(a, b)
        return a, b, None


@settings(deadline=None)
@given(ba=batch_shapes, bb=batch_shapes, m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes,
       seed=st.integers(0, 2**31), with_out=st.booleans())
def test_batched_products_equal_numpy(ba: tuple[int, ...], bb: tuple[int, ...], m: int, k: int, n: int, la: str,
                                      lb: str, dtype: np.dtype, seed: int, with_out: bool) -> None:
    a, b, batch = _batched_operands(ba, bb, m, k, n, la, lb, dtype, seed)
    if batch is None:
        return
    if with_out:
        out = np.full((*batch, m, n), np.nan, dtype=dtype)
        assert blas.matmul(a, b, out=out) is out
    else:
        out = blas.matmul(a, b)
    _check(out, a, b)


def test_batched_transposed_views_as_attention_makes_them() -> None:
    """q @ k^T with q, k the (B, heads, L, E) transposes of (B, L, heads, E) tensors: strided batch axes."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 5, 3, 4)).astype(np.float32).transpose(0, 2, 1, 3)  # (B, h, L, E)
    k = rng.standard_normal((2, 6, 3, 4)).astype(np.float32).transpose(0, 2, 1, 3)  # (B, h, S, E)
    _check(blas.matmul(q, k.swapaxes(-1, -2)), q, k.swapaxes(-1, -2))


def test_an_out_overlapping_an_input_gives_numpys_result() -> None:
    rng = np.random.default_rng(1)
    buf = rng.standard_normal((4, 4))
    a = buf.copy()
    want = np.matmul(a, buf)
    blas.matmul(a, buf, out=buf)  # NumPy buffers an out that overlaps an input
    np.testing.assert_allclose(buf, want, rtol=1e-12)


def test_other_dtypes_and_vectors_follow_numpy() -> None:
    ints = np.arange(6).reshape(2, 3)
    assert np.array_equal(blas.matmul(ints, ints.T), ints @ ints.T)
    assert blas.matmul(ints, ints.T).dtype == (ints @ ints.T).dtype
    v = np.arange(3.0)
    assert np.array_equal(blas.matmul(ints.astype(np.float64), v), ints @ v)
    mixed = blas.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64))
    assert mixed.dtype == np.float64
    with pytest.raises(ValueError):
        blas.matmul(np.ones((2, 3)), np.ones((4, 2)))


@settings(deadline=None)
@given(m=dims, k=dims, n=dims, lb=st.sampled_from(["C", "F", "rows"]), la=layouts, dtype=dtypes,
       accumulate=st.booleans(), seed=st.integers(0, 2**31))
# out = start + a @ b with |start| far above |a @ b|: the sum's rounding, not the product's, bounds the error
@example(m=1, k=1, n=2, lb="C", la="C", dtype=np.dtype("float32"), accumulate=True, seed=595009098)
def test_right_factor_products_equal_numpy(m: int, k: int, n: int, lb: str, la: str, dtype: np.dtype,
                                          accumulate: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = _as_layout(rng, (k, n), dtype, lb)
    right = blas.RightFactor(b)
    assert right.b.flags.c_contiguous
    for _ in range(2):  # the copy serves several products
        a = _as_layout(rng, (m, k), dtype, la)
        out = rng.standard_normal((m, n)).astype(dtype)
        start = out.copy()
        assert blas.matmul_right(a, right, out, accumulate=accumulate) is out
        _check(out, a, b, start if accumulate else None)


@settings(deadline=None, max_examples=40)
@given(T=st.integers(1, 4), m=dims, k=dims, n=dims, shared_out=st.booleans(), accumulate=st.booleans(),
       la=st.sampled_from(["C", "rows", "F"]), dtype=dtypes, seed=st.integers(0, 2**31))
def test_right_factor_steps_equal_one_product_per_step(T: int, m: int, k: int, n: int, shared_out: bool,
                                                      accumulate: bool, la: str, dtype: np.dtype, seed: int) -> None:
    """matmul_right_steps(a, right, out)(t) is matmul_right(a[t], right, out[t]), steps in any
    order, into per-step outputs or one shared output (a strided a included), and refuses other steps."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((k, n)).astype(dtype)
    a = _as_layout(rng, (T, m, k), dtype, la)
    out = rng.standard_normal((m, n) if shared_out else (T, m, n)).astype(dtype)
    want = out.copy()
    right = blas.RightFactor(b)
    step = blas.matmul_right_steps(a, right, out, accumulate=accumulate)
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


def test_right_factor_steps_check_shapes() -> None:
    right = blas.RightFactor(np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        blas.matmul_right_steps(np.ones((2, 3, 5), np.float32), right, np.ones((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        blas.matmul_right_steps(np.ones((2, 3, 4), np.float32), right, np.ones((3, 3, 6), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        blas.matmul_right_steps(np.ones((2, 3, 4), np.float32), right, np.ones((3, 7), np.float32))


def test_right_factor_keeps_a_contiguous_copy() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4))
    right = blas.RightFactor(w.T)
    assert right.b.flags.c_contiguous
    a = rng.standard_normal((5, 4))
    out = np.ones((5, 6))
    blas.matmul_right(a, right, out, accumulate=True)
    np.testing.assert_allclose(out, 1 + a @ w.T, rtol=1e-12)


@settings(max_examples=30)
@given(m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes, seed=st.integers(0, 2**31 - 1))
def test_addmm_is_matmul_plus_the_bias_row(m, k, n, la, lb, dtype, seed):
    """blas.addmm against a @ b + bias."""
    rng = np.random.default_rng(seed)
    a, b = _as_layout(rng, (m, k), dtype, la), _as_layout(rng, (k, n), dtype, lb)
    bias = rng.standard_normal(n).astype(dtype)
    got = blas.addmm(bias, a, b)
    assert got.shape == (m, n) and got.dtype == dtype and got.flags.c_contiguous
    want = np.matmul(a.astype(np.float64), b.astype(np.float64)) + bias
    scale = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)) + np.abs(bias)
    assert np.max(np.abs(got - want) / scale) <= _tol(dtype)
    # NumPy's OpenBLAS adds the product into the bias rows (beta = 1) wherever it reads both operands in place
    from tinygrad_lm.fast import workers

    assert m * n >= blas.ADDMM_MIN_OUTPUT or blas._numpy_gemm_into(bias, a, b) is None  # small: a @ b + bias
    threshold, blas.ADDMM_MIN_OUTPUT = blas.ADDMM_MIN_OUTPUT, 1
    try:
        direct = blas._numpy_gemm_into(bias, a, b)
    finally:
        blas.ADDMM_MIN_OUTPUT = threshold
    in_place = la != "every2" and lb != "every2" and min(m, k, n) >= 2
    assert (direct is not None) == (in_place and workers.numpy_blas() is not None)
    if direct is not None:
        assert np.max(np.abs(direct - want) / scale) <= _tol(dtype)


def _run_op(fast: bool, f, *arrays: np.ndarray) -> list[np.ndarray]:
    """f's output and the gradients of (output * a fixed weighting).sum() for its inputs, fast or reference."""
    with tl.fast.enabled(fast):
        xs = [tl.tensor(a, requires_grad=True) for a in arrays]
        y = f(*xs)
        weights = np.random.default_rng(7).standard_normal(y.shape).astype(arrays[0].dtype)
        (y * tl.tensor(weights)).sum().backward()
    return [y.detach().numpy()] + [x.grad.numpy() for x in xs]


@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shapes", [((5, 4), (4, 3)), ((2, 5, 4), (4, 3)), ((2, 1, 5, 4), (3, 4, 6)), ((4,), (4, 3)),
                                    ((5, 4), (4,))])
def test_fast_matmul_equals_the_reference(shapes, dtype, tol) -> None:
    assert tl.fast.registry()[ops.Matmul] is blas.Matmul
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    for got, want in zip(_run_op(True, tl.matmul, a, b), _run_op(False, tl.matmul, a, b)):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fast_linear_equals_the_reference(x_shape, with_bias, dtype, tol) -> None:
    """Values and the gradients of x, W and b (the fast backward's db is the product 1^T dy on the CPU)."""
    assert tl.fast.registry()[ops.Linear] is blas.Linear
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(x_shape).astype(dtype), rng.standard_normal((6, 4)).astype(dtype)]
    if with_bias:
        arrays.append(rng.standard_normal(6).astype(dtype))
    f = tl.nn.functional.linear
    for got, want in zip(_run_op(True, f, *arrays), _run_op(False, f, *arrays)):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_fast_linear_and_matmul_pass_gradcheck() -> None:
    rng = np.random.default_rng(2)
    x, w, b, m = (tl.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 4), (5, 4), (5,), (2, 4, 5)))
    assert tl.fast.is_enabled()
    assert tl.gradcheck(tl.nn.functional.linear, (x, w, b))
    assert tl.gradcheck(tl.matmul, (x, m))


# --- batches of products shared out between OpenBLAS's threads (blas.batched_on_blas_pool) ---


@pytest.fixture
def blas_pool(monkeypatch, blas_pool_threads):
    """Split every batch that can be split, on 2 threads, and record each run on OpenBLAS's pool (parts)."""
    from tinygrad_lm.fast import workers

    blas_pool_threads(2)
    monkeypatch.setattr(blas, "MIN_BATCHED_WORK", 1)
    monkeypatch.setattr(blas, "MIN_PRODUCT_WORK", 1)
    runs: list[int] = []
    real = workers.run_on_blas_pool

    def recording(kernel, tasks):
        runs.append(tasks.shape[0])
        real(kernel, tasks)

    monkeypatch.setattr(workers, "run_on_blas_pool", recording)
    yield runs


@settings(deadline=None, max_examples=60)
@given(ba=batch_shapes, bb=batch_shapes, m=dims, k=dims, n=dims, la=layouts, lb=layouts, dtype=dtypes,
       seed=st.integers(0, 2**31))
def test_batches_split_between_blas_threads_equal_numpy(blas_pool, ba, bb, m, k, n, la, lb, dtype, seed) -> None:
    a, b, batch = _batched_operands(ba, bb, m, k, n, la, lb, dtype, seed)
    if batch is None:
        return
    before = len(blas_pool)
    _check(blas.matmul(a, b), a, b)
    # split exactly when there are two products or more and BLAS reads both operands in place
    in_place = all(layout in ("C", "F", "rows") and min(shape) > 1 for layout, shape in ((la, (m, k)), (lb, (k, n))))
    assert blas_pool[before:] == ([2] if in_place and int(np.prod(batch)) >= 2 and batch else [])


def test_the_split_keeps_the_blas_thread_count(blas_pool) -> None:
    from tinygrad_lm.fast import workers

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 6, 5)), rng.standard_normal((4, 5, 7))
    _check(blas.matmul(a, b), a, b)
    assert blas_pool == [2]
    assert workers.numpy_blas().get_threads() == 2


def test_no_split_on_one_thread_or_below_the_work_threshold(blas_pool, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 6, 5)).astype(np.float32), rng.standard_normal((4, 5, 7)).astype(np.float32)
    monkeypatch.setattr(blas, "MIN_BATCHED_WORK", 4 * 6 * 5 * 7 + 1)
    assert blas.batched_on_blas_pool(a, b) is None
    monkeypatch.setattr(blas, "MIN_BATCHED_WORK", 4 * 6 * 5 * 7)
    assert blas.batched_on_blas_pool(a, b) is not None
    monkeypatch.setattr(blas, "MIN_PRODUCT_WORK", 6 * 5 * 7 + 1)  # enough work in all, too little per product
    assert blas.batched_on_blas_pool(a, b) is None
    monkeypatch.setattr(blas, "MIN_PRODUCT_WORK", 6 * 5 * 7)
    assert blas.batched_on_blas_pool(a, b) is not None
    tl.set_num_threads(1)
    assert blas.batched_on_blas_pool(a, b) is None
    tl.set_num_threads(2)
    assert blas.batched_on_blas_pool(a, b.astype(np.float64)) is None  # NumPy's type promotion decides
    assert blas.batched_on_blas_pool(a[None, None, None, None], b) is None  # more batch axes than a task holds
    assert blas.batched_on_blas_pool(a, b[0]) is not None  # a 2-D operand is broadcast


def test_the_part_kernel_runs_as_plain_python(blas_pool) -> None:
    """``_batched_part`` is ordinary Python too: its task words, read through ctypes, give the same products."""
    from tinygrad_lm.fast import workers

    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 4, 5))  # broadcast against b's batch (3,), b transposed
    b = rng.standard_normal((3, 6, 5)).swapaxes(-1, -2)
    captured = []
    monkeypatch_run = workers.run_on_blas_pool
    try:
        workers.run_on_blas_pool = lambda kernel, tasks: captured.append(tasks.copy())
        c = blas.batched_on_blas_pool(a, b)
    finally:
        workers.run_on_blas_pool = monkeypatch_run
    (tasks,) = captured
    for row in tasks:
        blas._batched_part(row.ctypes.data)
    _check(c, a, b)


def test_run_on_blas_pool_checks_its_tasks(blas_pool) -> None:
    from tinygrad_lm.fast import workers

    with pytest.raises(ValueError, match="int64"):
        workers.run_on_blas_pool(blas._batched_part, np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="parts for a pool"):
        workers.run_on_blas_pool(blas._batched_part, workers.new_tasks(workers.numpy_blas().pool_size.value + 1))


def test_attention_with_split_products_equals_the_reference(blas_pool) -> None:
    """Forward and gradients of attention (fused and written by hand) with every batched product split,
    against the reference ops, in float64."""
    import tinygrad_lm.nn.functional as F
    from tinygrad_lm import fast

    rng = np.random.default_rng(5)
    qkv = [rng.standard_normal((2, 3, 7, 4)) for _ in range(3)]
    g = rng.standard_normal((2, 3, 7, 4))

    def run(manual: bool) -> list[np.ndarray]:
        q, k, v = (tl.tensor(x, requires_grad=True) for x in qkv)
        if manual:
            s = (q @ k.transpose(-2, -1)) * 0.5
            s = s.masked_fill(tl.triu(tl.ones(7, 7, dtype=tl.bool), diagonal=1), float("-inf"))
            out = F.softmax(s, dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5)
        (out * tl.tensor(g)).sum().backward()
        return [out.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]

    for manual in (False, True):
        split = run(manual)
        assert blas_pool, "no product was split"
        with fast.enabled(False):
            reference = run(manual)
        for got, want in zip(split, reference):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        blas_pool.clear()


def test_split_batches_with_reversed_and_stepped_batch_axes(blas_pool) -> None:
    """Batch strides that are negative or skip matrices: each product's address is the base's plus its strides."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((4, 5, 6))[::-1]
    b = rng.standard_normal((8, 6, 3)).astype(np.float64)[::-2]
    _check(blas.matmul(a, b), a, b)
    c = rng.standard_normal((3, 2, 5, 6))[:, ::-1]
    _check(blas.matmul(c, b[:2]), c, b[:2])
    assert blas_pool == [2, 2]
    swapped = rng.standard_normal((4, 5, 6)).astype(">f8")  # not the machine's byte order: NumPy's product
    assert blas.batched_on_blas_pool(swapped, swapped.swapaxes(-1, -2)) is None
    np.testing.assert_allclose(blas.matmul(swapped, swapped.swapaxes(-1, -2)), swapped @ swapped.swapaxes(-1, -2))
