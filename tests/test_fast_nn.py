"""Each op of tinygrad_lm.fast.fused_nn against its reference op in tinygrad_lm.ops, in values and gradients.

LayerNorm, CrossEntropy, Embedding and Gelu run twice on the same inputs, once on the fast path
(the compiled kernels: Numba on the CPU, the CUDA twins on a GPU) and once on the reference
(``tl.fast.enabled(False)``): float64 must agree to rounding, float32 within a tolerance relative to
the size of the terms summed. Without Numba the fast ops hand CPU arrays to their reference, and the
comparisons hold trivially. A float64 gradcheck runs through both paths.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import kernels_taken
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import ops
from tinygrad_lm.fast import compiler, fused_nn

TOL = {"float32": 2e-5, "float64": 1e-12}
REDUCTIONS = ["none", "mean", "sum"]


def host(t):
    return np.array(tl.backend.to_host(t.detach().array), copy=True)


def run(fast, fn, arrays, dy, dtype, device, grads=None):
    """fn's output and the gradients of its float inputs (None where not asked for), on the fast path or not.

    ``arrays``: NumPy arrays (floats become ``dtype`` tensors; integers stay integer tensors) or None.
    """
    grads = grads or [True] * len(arrays)
    ts = []
    for a, g in zip(arrays, grads):
        if a is None:
            ts.append(None)
        elif a.dtype.kind == "f":
            ts.append(tl.tensor(a.astype(dtype), device=device, requires_grad=g))
        else:
            ts.append(tl.tensor(a, device=device))
    with tl.fast.enabled(fast), np.errstate(all="ignore"):
        out = fn(*ts)
        out.backward(tl.tensor(np.asarray(dy, dtype=dtype).reshape(out.shape), device=device))
    return host(out), [None if t is None or t.grad is None else host(t.grad) for t in ts]


def assert_fast_equals_reference(fn, arrays, dy, dtype, device, scale=1.0, grads=None):
    """Fast and reference agree: same dtypes and shapes, NaN where the other has NaN, else within TOL * scale."""
    fast = run(True, fn, arrays, dy, dtype, device, grads)
    ref = run(False, fn, arrays, dy, dtype, device, grads)
    for got, want in zip([fast[0]] + fast[1], [ref[0]] + ref[1]):
        assert (got is None) == (want is None)
        if want is None:
            continue
        assert got.dtype == want.dtype == np.dtype(dtype) and got.shape == want.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)
    return fast, ref


def test_the_fast_ops_are_registered_against_their_references():
    registry = tl.fast.registry()
    for name in ("LayerNorm", "CrossEntropy", "Embedding", "Gelu", "GetItem"):
        impl = registry[getattr(ops, name)]
        assert impl is getattr(fused_nn, name) and impl.__name__ == name
    x = tl.randn(3, 4, requires_grad=True)
    assert type(F.layer_norm(x, (4,)).grad_fn) is fused_nn.LayerNorm
    with tl.fast.enabled(False):
        assert type(F.layer_norm(x, (4,)).grad_fn) is ops.LayerNorm


# ---------------------------------------------------------------------------------------------- LayerNorm


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(), (1,), (5,), (2, 3), (0,)]),
       norm=st.sampled_from([(1,), (7,), (2, 3), (64,)]), affine=st.tuples(st.booleans(), st.booleans()),
       grads=st.sampled_from([(True, True, True), (True, False, False), (False, True, True)]),
       dtype=st.sampled_from(["float32", "float64"]), layout=st.sampled_from(["contiguous", "transposed"]))
def test_layer_norm_fast_equals_reference(device, seed, lead, norm, affine, grads, dtype, layout):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + norm) * 2 + 1
    w = rng.standard_normal(norm) if affine[0] else None
    b = rng.standard_normal(norm) if affine[1] else None
    dy = rng.standard_normal(x.shape)
    if not affine[0] and not affine[1]:
        grads = (True, False, False)  # x is the only input: it must take a gradient
    if layout == "transposed":  # a non-contiguous x: the kernels take a copy
        x = np.ascontiguousarray(x.T).T
    scale = float(np.abs(x).max(initial=1.0)) * (1 + float(np.abs(dy).sum(axis=tuple(range(len(lead)))).max(initial=0)))
    assert_fast_equals_reference(lambda x, w, b: F.layer_norm(x, norm, w, b), [x, w, b], dy, dtype, device,
                                 scale, grads)


def test_layer_norm_fast_takes_the_kernels_on_the_cpu():
    x = tl.randn(4, 5, requires_grad=True)
    with kernels_taken() as taken:
        F.layer_norm(x, (5,)).sum().backward()
    expected = ["_layer_norm_forward_kernel", "_layer_norm_backward_kernel"] if compiler.numba_available() else []
    assert taken == expected


# -------------------------------------------------------------------------------------------- CrossEntropy


@st.composite
def cross_entropy_cases(draw):
    """Logits (N, C), (C,) or (N, C, d), targets with ignored entries, weights, reduction, smoothing."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    layout = draw(st.sampled_from(["batched", "unbatched", "spatial"]))
    c = draw(st.integers(1, 9))
    n = draw(st.integers(1, 40))
    shape = {"batched": (n, c), "unbatched": (c,), "spatial": (n, c, 3)}[layout]
    x = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 5.0]))
    t_shape = {"batched": (n,), "unbatched": (), "spatial": (n, 3)}[layout]
    ignore_index = draw(st.sampled_from([-100, 0]))
    t = rng.integers(0, c, t_shape)
    if layout != "unbatched":
        t[rng.random(t_shape) < 0.2] = ignore_index
    weight = rng.random(c) + 0.5 if draw(st.booleans()) else None
    kw = dict(ignore_index=ignore_index, reduction=draw(st.sampled_from(REDUCTIONS)),
              label_smoothing=draw(st.sampled_from([0.0, 0.1, 1.0])))
    dy = rng.standard_normal(t_shape) if kw["reduction"] == "none" else np.array(rng.standard_normal())
    return x, t, weight, dy, kw


@settings(max_examples=40)
@given(case=cross_entropy_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_cross_entropy_fast_equals_reference(device, case, dtype):
    x, t, weight, dy, kw = case
    scale = 1 + float(np.abs(x).max()) * x.shape[x.ndim > 1] * (1 + float(np.abs(dy).max(initial=0)))

    def fn(x, t, w):
        return F.cross_entropy(x, t, weight=w, **kw)

    assert_fast_equals_reference(fn, [x, t, weight], dy, dtype, device, scale, [True, False, False])


@pytest.mark.parametrize("shape,kernels", [((6, 4), True), ((4,), True), ((2, 4, 3), False)])
def test_cross_entropy_kernels_take_only_n_by_c_logits(shape, kernels):
    """(N, C) and (C,) logits run the kernels (with Numba); (N, C, d) the reference."""
    x = tl.randn(*shape, requires_grad=True)
    t = tl.zeros(*((shape[0], shape[2]) if len(shape) == 3 else shape[:-1]), dtype="int64")
    with kernels_taken() as taken:
        F.cross_entropy(x, t).backward()
    with_kernels = ["_cross_entropy_forward_kernel", "_cross_entropy_backward_kernel"]
    assert taken == (with_kernels if kernels and compiler.numba_available() else [])


# ------------------------------------------------------------------------------------------------ Embedding


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), num=st.sampled_from([1, 5, 40, fused_nn.ONE_HOT_MAX_ROWS + 9]),
       dim=st.integers(1, 6), ids_shape=st.sampled_from([(), (7,), (3, 4)]), pad=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]))
def test_embedding_fast_equals_reference(device, seed, num, dim, ids_shape, pad, dtype):
    """Repeated ids accumulate and the padding row gets no gradient, on both paths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, min(num, 3) if rng.random() < 0.5 else num, ids_shape)  # often few ids: many repeats
    padding_idx = int(rng.integers(-num, num)) if pad else None
    weight = rng.standard_normal((num, dim))
    dy = rng.standard_normal(ids_shape + (dim,))
    scale = float(np.abs(dy).reshape(-1, dim).sum(axis=0).max(initial=1.0))
    fast, _ = assert_fast_equals_reference(lambda w, i: F.embedding(i, w, padding_idx=padding_idx),
                                           [weight, ids], dy, dtype, device, scale)
    if padding_idx is not None:
        np.testing.assert_array_equal(fast[1][0][padding_idx], np.zeros(dim))


@pytest.mark.parametrize("num", [7, fused_nn.ONE_HOT_MAX_ROWS + 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_without_a_kernel_equals_reference(monkeypatch, num, dtype):
    """Where no kernel applies: the one-hot product (a small vocabulary) or the reference's scatter-add."""
    monkeypatch.setattr(compiler, "compiled", lambda kernel, *arrays: None)
    rng = np.random.default_rng(num)
    ids = rng.integers(0, num, (5, 9))
    ids[0, :4] = 3
    assert_fast_equals_reference(lambda w, i: F.embedding(i, w, padding_idx=1), [rng.standard_normal((num, 4)), ids],
                                 rng.standard_normal((5, 9, 4)), dtype, "cpu", scale=10.0)


# ---------------------------------------------------------------------------------------- GetItem by ids

# Indexes of a (5, 3, 2) tensor: those that pick whole rows by one integer array take the embedding's
# kernel; the others (two arrays, a boolean mask, a slice on a later axis, plain slices) the reference.
ROW_LOOKUPS = [lambda i: i, lambda i: (i,), lambda i: (i, slice(None)), lambda i: (i, slice(None), slice(None))]
OTHER_INDEXES = [lambda i: (i, i % 3), lambda i: (i, slice(1, 3)), lambda i: (slice(None), i % 3),
                 lambda i: i % 2 == 0, lambda i: (slice(1, 4),)]


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), ids_shape=st.sampled_from([(0,), (1,), (7,), (3, 4)]),
       ids_dtype=st.sampled_from(["int64", "int32", "uint8"]), lookup=st.sampled_from(range(len(ROW_LOOKUPS))),
       dtype=st.sampled_from(["float32", "float64"]))
def test_row_lookup_fast_equals_reference(device, seed, ids_shape, ids_dtype, lookup, dtype):
    """x[ids] (as a bigram model's table lookup): repeated and negative ids accumulate alike on both paths."""
    rng = np.random.default_rng(seed)
    low = 0 if ids_dtype == "uint8" else -5
    ids = rng.integers(low, 5 if rng.random() < 0.5 else low + 2, ids_shape).astype(ids_dtype)  # often repeats
    x = rng.standard_normal((5, 3, 2))
    dy = rng.standard_normal(ids_shape + (3, 2))
    index = ROW_LOOKUPS[lookup]
    with kernels_taken() as taken:
        assert_fast_equals_reference(lambda x, i: x[index(i)], [x, ids], dy, dtype, device,
                                     scale=float(np.abs(dy).sum(axis=tuple(range(len(ids_shape)))).max(initial=1.0)))
    if device == "cpu" and compiler.numba_available():
        assert taken == ["_embedding_backward_kernel"]


@pytest.mark.parametrize("which", range(len(OTHER_INDEXES)))
def test_other_indexes_take_the_reference(which):
    rng = np.random.default_rng(which)
    ids = np.array([4, 0, 4, 2, 1])
    x = rng.standard_normal((5, 3, 2))
    out_shape = x[OTHER_INDEXES[which](ids)].shape
    with kernels_taken() as taken:
        assert_fast_equals_reference(lambda x, i: x[OTHER_INDEXES[which](i)], [x, ids],
                                     rng.standard_normal(out_shape), "float64", "cpu")
    assert taken == []


# ----------------------------------------------------------------------------------------------------- Gelu


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(), (1,), (17,), (3, 5), (4096,)]),
       scale=st.sampled_from([0.5, 3.0, 12.0]), approximate=st.sampled_from(["none", "tanh"]),
       dtype=st.sampled_from(["float32", "float64"]), transposed=st.booleans())
def test_gelu_fast_equals_reference(device, seed, shape, scale, approximate, dtype, transposed):
    """float32: the fast kernel's A&S erf is within 1.5e-7 of erf, so gelu within 1.5e-7 |x| of the reference's."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    if transposed:
        x = np.ascontiguousarray(x.T).T
    dy = rng.standard_normal(shape)
    assert_fast_equals_reference(lambda x: F.gelu(x, approximate=approximate), [x], dy, dtype, device, 1 + scale)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fast_special_values(approximate):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 40.0, -40.0, 1e-30, -6.0, 1e13], dtype=np.float32)
    for dtype in ("float32", "float64"):
        with kernels_taken() as taken:
            assert_fast_equals_reference(lambda x: F.gelu(x, approximate=approximate), [x], np.ones_like(x), dtype,
                                         "cpu")
        if compiler.numba_available():
            assert taken[0] == {"none": "_gelu_jit_float32" if dtype == "float32" else "_gelu_jit_exact",
                                "tanh": "_gelu_tanh_kernel"}[approximate]


# -------------------------------------------------------------------------------------- float64 gradchecks


def gradcheck_cases(rng):
    """(function, inputs) for each op, in float64, with the targets and ids fixed."""
    x = tl.tensor(rng.standard_normal((4, 5)) * 2 + 1, requires_grad=True)
    w = tl.tensor(rng.standard_normal(5), requires_grad=True)
    b = tl.tensor(rng.standard_normal(5), requires_grad=True)
    yield (lambda x, w, b: F.layer_norm(x, (5,), w, b)), [x, w, b]
    logits = tl.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    target = tl.tensor(np.array([0, 3, -100, 1, 2, 2]))
    cw = tl.tensor(rng.random(4) + 0.5)
    yield (lambda x: F.cross_entropy(x, target, weight=cw, label_smoothing=0.2)), [logits]
    spatial = tl.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    spatial_t = tl.tensor(rng.integers(0, 4, (2, 3)))
    yield (lambda x: F.cross_entropy(x, spatial_t, reduction="sum")), [spatial]
    table = tl.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    ids = tl.tensor(np.array([[1, 2, 2], [0, 1, 1]]))  # not the padding row 5: it gets 0, by definition
    yield (lambda w: F.embedding(ids, w, padding_idx=5)), [table]
    yield (lambda w: w[ids]), [table]
    for approximate in ("none", "tanh"):
        yield (lambda x, a=approximate: F.gelu(x, approximate=a)), [tl.tensor(rng.standard_normal(7) * 2,
                                                                              requires_grad=True)]


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_float64_gradcheck(fast):
    rng = np.random.default_rng(0)
    with tl.fast.enabled(fast):
        for fn, inputs in gradcheck_cases(rng):
            assert tl.gradcheck(fn, inputs)
