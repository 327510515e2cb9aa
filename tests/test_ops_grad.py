"""Gradient checks of every differentiable Tensor op (API.md "Tensor"), by finite differences in float64.

Each property draws random (mutually broadcastable) shapes and values kept inside the
op's domain and away from its kinks; ``check_grad`` runs ``tl.gradcheck`` (which projects
the output on a random upstream gradient) and asserts the inputs were not modified.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    arrays,
    arrays_avoiding,
    broadcastable_shapes,
    check_grad,
    dims,
    distinct_arrays,
    interleaved_arrays,
    matmul_shapes,
    positive_arrays,
    reduced_size,
    shapes,
    to_tensors,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}


# ---------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data())
def test_binary_grad(device, op, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    check_grad(BINARY[op], a, b, device=device)


@given(data=st.data())
def test_div_grad(device, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays_avoiding(sb, [0.0], margin=0.5))
    check_grad(lambda x, y: x / y, a, b, device=device)


@pytest.mark.parametrize(
    "op",
    [
        lambda x, s: x + s,
        lambda x, s: s + x,
        lambda x, s: x - s,
        lambda x, s: s - x,
        lambda x, s: x * s,
        lambda x, s: s * x,
        lambda x, s: x / s,
        lambda x, s: s / x,
    ],
    ids=["add", "radd", "sub", "rsub", "mul", "rmul", "div", "rdiv"],
)
@given(data=st.data())
def test_binary_with_python_scalar_grad(device, op, data):
    x = data.draw(arrays_avoiding(shapes(), [0.0], margin=0.5))
    s = data.draw(st.sampled_from([-2.5, -1, 0.5, 3]))
    check_grad(lambda t: op(t, s), x, device=device)


@given(data=st.data())
def test_pow_tensor_scalar_grad(device, data):
    exponent = data.draw(st.sampled_from([2, 3, -1, 0.5, 1.5, -0.5, 0]))
    if isinstance(exponent, int):  # integer powers are defined for any sign of the base
        x = data.draw(arrays_avoiding(shapes(), [0.0], margin=0.3))
    else:
        x = data.draw(positive_arrays(shapes()))
    check_grad(lambda t: t**exponent, x, device=device)


@given(data=st.data())
def test_pow_scalar_tensor_grad(device, data):
    base = data.draw(st.sampled_from([0.5, 2.0, math.e, 3]))
    x = data.draw(arrays(shapes(), -2, 2))
    check_grad(lambda t: base**t, x, device=device)


@given(data=st.data())
def test_pow_tensor_tensor_grad(device, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(positive_arrays(sa, 0.3, 2.0)), data.draw(arrays(sb, -2, 2))
    check_grad(lambda x, y: x**y, a, b, device=device)


@given(data=st.data())
def test_matmul_grad(device, data):
    sa, sb = data.draw(matmul_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    check_grad(lambda x, y: x @ y, a, b, device=device)


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,))])
def test_matmul_1d_cases_grad(device, sa, sb):
    rng = np.random.default_rng(0)
    check_grad(lambda x, y: x @ y, rng.standard_normal(sa), rng.standard_normal(sb), device=device)


@pytest.mark.parametrize("sa, sb", [((2, 1, 2, 3), (3, 3, 2)), ((3, 2), (2, 2, 3)), ((3, 2, 3), (1, 3, 3, 2))])
def test_matmul_broadcast_batch_grad(device, sa, sb):
    rng = np.random.default_rng(1)
    check_grad(lambda x, y: x @ y, rng.standard_normal(sa), rng.standard_normal(sb), device=device)


@given(data=st.data())
def test_maximum_minimum_grad(device, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(interleaved_arrays(sa, sb))
    if data.draw(st.booleans()):
        a, b = b, a
    check_grad(lambda x, y: tl.maximum(x, y), a, b, device=device)
    check_grad(lambda x, y: tl.minimum(x, y), a, b, device=device)


@given(data=st.data())
def test_maximum_with_scalar_grad(device, data):
    x = data.draw(arrays_avoiding(shapes(), [0.0], margin=0.1))
    check_grad(lambda t: tl.maximum(t, 0.0) + tl.minimum(t, 0.0) * 2, x, device=device)


# ---------------------------------------------------------------------- elementwise
UNARY = {
    "neg": (lambda t: -t, arrays),
    "exp": (lambda t: t.exp(), lambda s: arrays(s, -2, 2)),
    "log": (lambda t: t.log(), positive_arrays),
    "sqrt": (lambda t: t.sqrt(), positive_arrays),
    "abs": (lambda t: t.abs(), lambda s: arrays_avoiding(s, [0.0])),
    "tanh": (lambda t: t.tanh(), arrays),
    "sigmoid": (lambda t: t.sigmoid(), lambda s: arrays(s, -6, 6)),
    "relu": (lambda t: t.relu(), lambda s: arrays_avoiding(s, [0.0])),
    "gelu": (lambda t: t.gelu(), arrays),
    "gelu_tanh": (lambda t: t.gelu(approximate="tanh"), arrays),
    "sin": (lambda t: t.sin(), arrays),
    "cos": (lambda t: t.cos(), arrays),
    "clamp": (lambda t: t.clamp(-0.5, 1.0), lambda s: arrays_avoiding(s, [-0.5, 1.0])),
    "clamp_min": (lambda t: t.clamp(min=-0.5), lambda s: arrays_avoiding(s, [-0.5])),
    "clamp_max": (lambda t: t.clamp(max=1.0), lambda s: arrays_avoiding(s, [1.0])),
    "clone": (lambda t: t.clone(), arrays),
    "contiguous": (lambda t: t.contiguous() * 1.5, arrays),
}


@pytest.mark.parametrize("op", sorted(UNARY))
@given(data=st.data())
def test_unary_grad(device, op, data):
    fn, values = UNARY[op]
    check_grad(fn, data.draw(values(shapes())), device=device)


@given(data=st.data())
def test_where_grad(device, data):
    sc, sa, sb = data.draw(broadcastable_shapes(3))
    cond = data.draw(arrays(sc)) > 0
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    check_grad(lambda c, x, y: tl.where(c, x, y), cond, a, b, device=device)


@given(data=st.data())
def test_where_with_scalar_grad(device, data):
    x = data.draw(arrays(shapes()))
    cond = x > 0.5
    check_grad(lambda c, t: tl.where(c, t, 0.0) + tl.where(c, 2.0, t), cond, x, device=device)


def test_cast_between_float_dtypes_grad(device):
    # eps is the finite-difference step: with a float32 round trip inside, 1e-6 would only measure rounding.
    x = np.random.default_rng(2).standard_normal((2, 3))
    check_grad(lambda t: (t.to(tl.float32) * 3).to(tl.float64).tanh(), x, device=device, eps=1e-3)
    check_grad(lambda t: t.float().double() + t, x, device=device, eps=1e-3)


# ---------------------------------------------------------------------- reductions
@pytest.mark.parametrize("op", ["sum", "mean", "logsumexp"])
@given(data=st.data(), keepdim=st.booleans())
def test_reduction_grad(device, op, data, keepdim):
    shape = data.draw(shapes())
    dim = data.draw(dims(len(shape), allow_none=op != "logsumexp"))
    x = data.draw(arrays(shape))
    check_grad(lambda t: getattr(t, op)(dim, keepdim=keepdim), x, device=device)


@given(data=st.data(), keepdim=st.booleans(), correction=st.sampled_from([0, 1]))
def test_var_grad(device, data, keepdim, correction):
    shape = data.draw(shapes())
    dim = data.draw(dims(len(shape)))
    assume(reduced_size(shape, dim) > correction)
    x = data.draw(arrays(shape))
    check_grad(lambda t: t.var(dim, keepdim=keepdim, correction=correction), x, device=device)


@pytest.mark.parametrize("op", ["amax", "amin"])  # over an int or a tuple of dims; ties share the gradient
@given(data=st.data(), keepdim=st.booleans())
def test_max_min_grad(device, op, data, keepdim):
    shape = data.draw(shapes())
    dim = data.draw(dims(len(shape)))
    x = data.draw(distinct_arrays(shape))
    check_grad(lambda t: getattr(t, op)(dim, keepdim=keepdim), x, device=device)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_grad(device, op, data):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_grad(lambda t: getattr(t, op)(dim), data.draw(arrays(shape)), device=device)


def test_max_ties_share_the_gradient(device):
    """amax and a full max() split the gradient evenly among ties (PyTorch's rule; max(dim) picks one index)."""
    x = tl.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], device=device, requires_grad=True)
    x.amax(dim=1).sum().backward()
    np.testing.assert_allclose(tl.backend.to_host(x.grad.array), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    y = tl.tensor([0.0, -1.0, 0.0, -1.0], device=device, requires_grad=True)
    y.min().backward()
    np.testing.assert_allclose(tl.backend.to_host(y.grad.array), [0, 0.5, 0, 0.5], rtol=1e-6)


# ---------------------------------------------------------------------- shape
@st.composite
def reshape_case(draw):
    shape = draw(shapes())
    n = int(np.prod(shape))
    target = draw(st.sampled_from([(n,), (1, n), (n, 1), tuple(reversed(shape)), shape + (1,), (-1,), (1, -1)]))
    return shape, target


@given(case=reshape_case(), data=st.data())
def test_reshape_view_grad(device, case, data):
    shape, target = case
    x = data.draw(arrays(shape))
    check_grad(lambda t: t.reshape(target) * 2, x, device=device)
    check_grad(lambda t: t.view(*target), x, device=device)


@given(data=st.data())
def test_transpose_permute_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    n = len(shape)
    d0, d1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    perm = data.draw(st.permutations(list(range(n))))
    x = data.draw(arrays(shape))
    check_grad(lambda t: t.transpose(d0, d1), x, device=device)
    check_grad(lambda t: t.permute(*perm), x, device=device)


@given(data=st.data())
def test_T_and_mT_grad(device, data):
    x2 = data.draw(arrays(shapes(min_dims=2, max_dims=2)))
    x3 = data.draw(arrays(shapes(min_dims=2, max_dims=3)))
    check_grad(lambda t: t.T, x2, device=device)
    check_grad(lambda t: t.mT, x3, device=device)


@given(data=st.data())
def test_unsqueeze_squeeze_flatten_grad(device, data):
    shape = data.draw(shapes(min_dims=1, min_side=1, max_side=3))
    n = len(shape)
    x = data.draw(arrays(shape))
    d = data.draw(st.integers(-n - 1, n))
    check_grad(lambda t: t.unsqueeze(d), x, device=device)
    sq = data.draw(st.one_of(st.none(), st.integers(-n, n - 1)))
    check_grad(lambda t: t.squeeze(sq), x, device=device)
    s = data.draw(st.integers(0, n - 1))
    e = data.draw(st.integers(s, n - 1))
    check_grad(lambda t: t.flatten(s, e), x, device=device)


@st.composite
def expand_case(draw):
    shape = draw(shapes(min_side=1, max_side=3))
    small = tuple(1 if draw(st.booleans()) else n for n in shape)
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    target = lead + tuple(
        draw(st.sampled_from([-1, n])) if m == n else n for m, n in zip(small, shape)
    )
    return small, target


@given(case=expand_case(), data=st.data())
def test_expand_grad(device, case, data):
    small, target = case
    check_grad(lambda t: t.expand(*target), data.draw(arrays(small)), device=device)


@given(data=st.data())
def test_split_chunk_grad(device, data):
    shape = data.draw(shapes(min_dims=1, max_side=5))
    d = data.draw(st.integers(0, len(shape) - 1))
    n = shape[d]
    size = data.draw(st.integers(1, n))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    chunks = data.draw(st.integers(1, n + 1))
    x = data.draw(arrays(shape))
    check_grad(lambda t: t.split(size, dim=d), x, device=device)
    check_grad(lambda t: t.split(sizes, dim=d), x, device=device)
    check_grad(lambda t: t.chunk(chunks, dim=d), x, device=device)


@st.composite
def index_case(draw):
    """A shape and an index mixing ints, slices, None, ... and integer arrays with repeats."""
    shape = draw(shapes(min_dims=1, max_side=3))
    items: list = []
    use_ellipsis = draw(st.booleans())
    covered = draw(st.integers(0, len(shape)))
    sides = shape[len(shape) - covered :] if use_ellipsis else shape[:covered]
    length = draw(st.integers(1, 4))
    for n in sides:
        kind = draw(st.sampled_from(["int", "slice", "array", "array"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n, n)))
            step = draw(st.sampled_from([None, 1, 2]))
            items.append(slice(start, stop, step))
        else:
            items.append(np.asarray(draw(st.lists(st.integers(-n, n - 1), min_size=length, max_size=length))))
        if draw(st.integers(0, 4)) == 0:
            items.append(None)
    if use_ellipsis:
        items.insert(0, Ellipsis)
    index = tuple(items)
    if len(index) == 1 and draw(st.booleans()):
        index = index[0]
    return shape, index


@given(case=index_case(), data=st.data())
def test_getitem_grad(device, case, data):
    shape, index = case
    x = data.draw(arrays(shape))
    assume(np.asarray(x[index]).size > 0)
    check_grad(lambda t: t[index], x, device=device)


@given(data=st.data())
def test_getitem_bool_mask_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    k = data.draw(st.integers(1, len(shape)))
    mask = data.draw(arrays(shape[:k])) > 0
    x = data.draw(arrays(shape))
    check_grad(lambda t: t[mask], x, device=device)
    check_grad(lambda t, m: t[m], x, mask, device=device)


def test_getitem_repeated_indices_accumulate(device):
    x = tl.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device=device, requires_grad=True)
    idx = tl.tensor([0, 2, 0, 0], device=device)
    (x[idx] * tl.tensor([[1.0], [10.0], [100.0], [1000.0]], device=device)).sum().backward()
    np.testing.assert_array_equal(tl.backend.to_host(x.grad.array), [[1101, 1101], [0, 0], [10, 10]])
    x.grad = None
    x[[1, 1], [0, 0]].sum().backward()
    np.testing.assert_array_equal(tl.backend.to_host(x.grad.array), [[0, 0], [2, 0], [0, 0]])


@pytest.mark.parametrize(
    "index",
    [
        lambda m: (m, slice(0, 2)),
        lambda m: (m, [1, 1]),
        lambda m: (slice(None), None, [2, 0, 2]),
        lambda m: (Ellipsis, [0, 0]),
        lambda m: ([0, 2], slice(None), [1, 1]),
    ],
    ids=["mask-slice", "mask-array", "slice-none-array", "ellipsis-array", "array-slice-array"],
)
def test_getitem_mixed_index_types_grad(device, index):
    x = np.random.default_rng(3).standard_normal((3, 3, 2))
    mask = np.array([True, False, True])
    check_grad(lambda t: t[index(mask)], x, device=device)


@given(data=st.data())
def test_masked_fill_grad(device, data):
    shape = data.draw(shapes())
    lead = data.draw(st.integers(0, len(shape)))
    mask_shape = tuple(1 if data.draw(st.booleans()) else n for n in shape[lead:])
    mask = data.draw(arrays(mask_shape)) > 0
    value = data.draw(st.sampled_from([0.0, -1e9, 2.5]))
    check_grad(lambda t, m: t.masked_fill(m, value), data.draw(arrays(shape)), mask, device=device)


@st.composite
def gather_case(draw):
    shape = draw(shapes(min_dims=1, max_side=3))
    d = draw(st.integers(-len(shape), len(shape) - 1))
    ad = d % len(shape)
    index_shape = tuple(
        draw(st.integers(1, 4)) if i == ad else draw(st.integers(1, n)) for i, n in enumerate(shape)
    )
    index = draw(st.lists(st.integers(0, shape[ad] - 1), min_size=int(np.prod(index_shape)),
                          max_size=int(np.prod(index_shape))))
    return shape, d, np.asarray(index, dtype=np.int64).reshape(index_shape)


@given(case=gather_case(), data=st.data())
def test_gather_grad(device, case, data):
    shape, d, index = case
    check_grad(lambda t, i: t.gather(d, i), data.draw(arrays(shape)), index, device=device)


@pytest.mark.parametrize("op", ["tril", "triu"])
@given(data=st.data(), k=st.integers(-2, 2))
def test_tril_triu_grad(device, op, data, k):
    x = data.draw(arrays(shapes(min_dims=2)))
    check_grad(lambda t: getattr(t, op)(k), x, device=device)


@given(data=st.data())
def test_cat_stack_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    n = len(shape)
    d = data.draw(st.integers(-n, n - 1))
    count = data.draw(st.integers(1, 3))
    parts = []
    for _ in range(count):
        s = list(shape)
        s[d] = data.draw(st.integers(1, 3))
        parts.append(data.draw(arrays(tuple(s))))
    check_grad(lambda *ts: tl.cat(ts, dim=d), *parts, device=device)
    same = [data.draw(arrays(shape)) for _ in range(count)]
    sd = data.draw(st.integers(-n - 1, n))
    check_grad(lambda *ts: tl.stack(ts, dim=sd), *same, device=device)


# ---------------------------------------------------------------------- compositions
@given(data=st.data())
def test_composite_graph_grad(device, data):
    """A diamond-shaped graph: x feeds several paths whose gradients must add up in the engine."""
    x = data.draw(arrays((2, 3)))
    w = data.draw(arrays((3, 2)))
    b = data.draw(arrays((2,)))

    def f(x, w, b):
        h = (x @ w + b).tanh()
        return (h * h + h.exp() - x.sum(1, keepdim=True) * h).log_softmax(-1)

    check_grad(f, x, w, b, device=device)


def test_input_used_twice_in_one_op(device):
    x = np.array([0.5, -1.5, 2.0])
    check_grad(lambda t: t * t + t / (t * t + 1), x, device=device)
    t = to_tensors([x], device)[0]
    (t * t).sum().backward()
    np.testing.assert_allclose(tl.backend.to_host(t.grad.array), 2 * x)


@settings(max_examples=10)
@given(data=st.data())
def test_gradient_wrt_some_inputs_only(device, data):
    a, b = data.draw(arrays((2, 3))), data.draw(arrays((3,)))
    ta = tl.tensor(a, device=device, requires_grad=True)
    tb = tl.tensor(b, device=device)
    assert tl.gradcheck(lambda x, y: (x * y).tanh(), [ta, tb])
    assert tb.grad is None
