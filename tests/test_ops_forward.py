"""Forward values of every Tensor op against a plain NumPy reference (float32 in, float32 out)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    arrays,
    arrays_avoiding,
    broadcastable_shapes,
    dims,
    host,
    matmul_shapes,
    positive_arrays,
    reduced_size,
    shapes,
)
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_lm as tl

_erf = np.vectorize(math.erf, otypes=[np.float64])


def t32(a, device):
    """A float32 tensor on ``device`` (the default dtype) from a float64 host array."""
    return tl.tensor(np.asarray(a, dtype=np.float32), device=device)


def ref32(a):
    """The float32 values fed to the op, in float64 for the reference computation."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def close(out, expected, rtol=2e-5, atol=2e-6, dtype=np.float32):
    assert out.dtype == dtype, f"expected {dtype}, got {out.dtype}"
    got = host(out)
    assert got.shape == np.shape(expected), f"shape {got.shape} != {np.shape(expected)}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------- arithmetic
BINARY = {
    "add": (lambda a, b: a + b, np.add, arrays),
    "sub": (lambda a, b: a - b, np.subtract, arrays),
    "mul": (lambda a, b: a * b, np.multiply, arrays),
    "div": (lambda a, b: a / b, np.divide, lambda s: arrays_avoiding(s, [0.0], 0.3)),
    "pow": (lambda a, b: a**b, np.power, positive_arrays),
    "maximum": (tl.maximum, np.maximum, arrays),
    "minimum": (tl.minimum, np.minimum, arrays),
}


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data())
def test_binary_forward(device, op, data):
    fn, ref, values = BINARY[op]
    sa, sb = data.draw(broadcastable_shapes())
    a = data.draw(positive_arrays(sa) if op == "pow" else arrays(sa))
    b = data.draw(values(sb) if op != "pow" else arrays(sb, -2, 2))
    close(fn(t32(a, device), t32(b, device)), ref(ref32(a), ref32(b)))


@pytest.mark.parametrize(
    "fn, ref",
    [
        (lambda t: t + 2, lambda a: a + 2),
        (lambda t: 2.5 - t, lambda a: 2.5 - a),
        (lambda t: t * -3.0, lambda a: a * -3.0),
        (lambda t: 1 / t, lambda a: 1 / a),
        (lambda t: t / 4, lambda a: a / 4),
        (lambda t: t**2, lambda a: a**2),
        (lambda t: t**0.5, np.sqrt),
        (lambda t: 2.0**t, lambda a: 2.0**a),
        (lambda t: -t, np.negative),
    ],
    ids=["add", "rsub", "mul", "rdiv", "div", "pow2", "pow_half", "rpow", "neg"],
)
@given(data=st.data())
def test_scalar_arithmetic_forward(device, fn, ref, data):
    x = data.draw(positive_arrays(shapes(), 0.5, 2.0))
    close(fn(t32(x, device)), ref(ref32(x)))


@given(data=st.data())
def test_matmul_forward(device, data):
    sa, sb = data.draw(matmul_shapes(max_dims=3))
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    close(t32(a, device) @ t32(b, device), ref32(a) @ ref32(b), atol=1e-5)


# ---------------------------------------------------------------------- elementwise
UNARY = {
    "exp": (lambda t: t.exp(), np.exp, arrays),
    "log": (lambda t: t.log(), np.log, positive_arrays),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, positive_arrays),
    "abs": (lambda t: t.abs(), np.abs, arrays),
    "tanh": (lambda t: t.tanh(), np.tanh, arrays),
    "sigmoid": (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), lambda s: arrays(s, -20, 20)),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0), arrays),
    "gelu": (lambda t: t.gelu(), lambda a: a * 0.5 * (1 + _erf(a / math.sqrt(2))), arrays),
    "gelu_tanh": (
        lambda t: t.gelu(approximate="tanh"),
        lambda a: 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3))),
        arrays,
    ),
    "sin": (lambda t: t.sin(), np.sin, arrays),
    "cos": (lambda t: t.cos(), np.cos, arrays),
    "clamp": (lambda t: t.clamp(-0.5, 1.0), lambda a: np.clip(a, -0.5, 1.0), arrays),
    "clamp_min": (lambda t: t.clamp(min=0.25), lambda a: np.maximum(a, 0.25), arrays),
    "clamp_max": (lambda t: t.clamp(max=0.25), lambda a: np.minimum(a, 0.25), arrays),
    "clone": (lambda t: t.clone(), lambda a: a, arrays),
}


@pytest.mark.parametrize("op", sorted(UNARY))
@given(data=st.data())
def test_unary_forward(device, op, data):
    fn, ref, values = UNARY[op]
    x = data.draw(values(shapes()))
    close(fn(t32(x, device)), ref(ref32(x)))


def test_clone_is_a_copy(device):
    x = tl.tensor([1.0, 2.0], device=device)
    y = x.clone()
    y[0] = 5.0
    assert x.tolist() == [1.0, 2.0]


def test_extreme_inputs_stay_finite(device):
    big = tl.tensor([-1e4, 0.0, 1e4], device=device)
    np.testing.assert_array_equal(host(big.sigmoid()), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(host(big.relu()), [0.0, 0.0, 1e4])
    np.testing.assert_array_equal(host(tl.tensor([-np.inf, 1.0], device=device).relu()), [0.0, 1.0])
    np.testing.assert_array_equal(host(big.tanh()), [-1.0, 0.0, 1.0])


@given(data=st.data())
def test_where_forward(device, data):
    sc, sa, sb = data.draw(broadcastable_shapes(3))
    cond = data.draw(arrays(sc)) > 0
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    out = tl.where(tl.tensor(cond, device=device), t32(a, device), t32(b, device))
    close(out, np.where(cond, ref32(a), ref32(b)))
    close(tl.where(tl.tensor(cond, device=device), t32(a, device), 0.5), np.where(cond, ref32(a), 0.5))


COMPARE = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal
}


@pytest.mark.parametrize("op", sorted(COMPARE))
@given(data=st.data())
def test_comparisons_forward(device, op, data):
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(arrays(sa)).round(), data.draw(arrays(sb)).round()  # rounded: ties happen
    ta = tl.tensor(a, device=device, requires_grad=True)
    compare = getattr(ta, f"__{op}__")
    out = compare(tl.tensor(b, device=device))
    assert out.dtype == np.bool_ and not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(host(out), COMPARE[op](a, b))
    np.testing.assert_array_equal(host(compare(1.0)), COMPARE[op](a, 1.0))


# ---------------------------------------------------------------------- reductions
REDUCE = {
    "sum": lambda a, d, k: a.sum(axis=d, keepdims=k),
    "mean": lambda a, d, k: a.mean(axis=d, keepdims=k),
    "amax": lambda a, d, k: a.max(axis=d, keepdims=k),  # max/min over several dims are PyTorch's amax/amin
    "amin": lambda a, d, k: a.min(axis=d, keepdims=k),
    "logsumexp": lambda a, d, k: np.log(np.exp(a).sum(axis=d, keepdims=k)),
}


@pytest.mark.parametrize("op", sorted(REDUCE))
@given(data=st.data(), keepdim=st.booleans())
def test_reduction_forward(device, op, data, keepdim):
    shape = data.draw(shapes())
    dim = data.draw(dims(len(shape), allow_none=op != "logsumexp"))
    x = data.draw(arrays(shape))
    out = getattr(t32(x, device), op)(dim, keepdim=keepdim)
    axis = None if len(shape) == 0 else dim
    close(out, np.asarray(REDUCE[op](ref32(x), axis, keepdim)))


@given(data=st.data(), keepdim=st.booleans(), correction=st.sampled_from([0, 1, 2]))
def test_var_forward(device, data, keepdim, correction):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(dims(len(shape)))
    assume(reduced_size(shape, dim) > correction)
    x = data.draw(arrays(shape))
    out = t32(x, device).var(dim, keepdim=keepdim, correction=correction)
    close(out, np.asarray(ref32(x).var(axis=dim, keepdims=keepdim, ddof=correction)), atol=1e-5)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_forward(device, op, data):
    shape = data.draw(shapes(min_dims=1))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(arrays(shape, -10, 10))
    ref = _softmax(ref32(x), dim)
    close(getattr(t32(x, device), op)(dim), ref if op == "softmax" else np.log(ref), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_family_finite_for_huge_logits(device, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    x = tl.tensor(logits, dtype=dtype, device=device)
    sm, lsm, lse = x.softmax(-1), x.log_softmax(-1), x.logsumexp(-1)
    for out in (sm, lsm, lse):
        assert out.dtype == dtype and np.isfinite(host(out)).all()
    np.testing.assert_allclose(host(sm), [[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]], atol=1e-7)
    log2, log3 = math.log(2), math.log(3)
    np.testing.assert_allclose(host(lsm), [[0, -2e4, -1e4], [-log3] * 3, [-log2, -log2, -2e4 - log2]], rtol=1e-6)
    np.testing.assert_allclose(host(lse), [1e4, -1e4 + log3, 1e4 + log2], rtol=1e-6)


def test_argmax_argmin_forward(device):
    x = np.array([[3.0, 1.0, 4.0], [1.0, 5.0, 9.0], [2.0, 6.0, 5.0]])
    t = tl.tensor(x, device=device)
    for d in (0, 1, -1):
        np.testing.assert_array_equal(host(t.argmax(d)), x.argmax(axis=d))
        np.testing.assert_array_equal(host(t.argmin(d)), x.argmin(axis=d))
    assert t.argmax().item() == 5 and t.argmin().item() == 1
    assert t.argmax(1, keepdim=True).shape == (3, 1)
    assert t.argmax(0).dtype == np.int64 and not t.argmax(0).requires_grad


# ---------------------------------------------------------------------- shape and indexing
@given(data=st.data())
def test_movement_forward(device, data):
    shape = data.draw(shapes(min_dims=2))
    n = len(shape)
    x = data.draw(arrays(shape))
    t, a = t32(x, device), ref32(x)
    close(t.reshape(-1), a.reshape(-1))
    close(t.view(shape[0], -1), a.reshape(shape[0], -1))
    d0, d1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    close(t.transpose(d0, d1), np.swapaxes(a, d0, d1))
    perm = data.draw(st.permutations(list(range(n))))
    close(t.permute(*perm), a.transpose(perm))
    close(t.permute(perm), a.transpose(perm))
    close(t.mT, np.swapaxes(a, -1, -2))
    d = data.draw(st.integers(-n - 1, n))
    close(t.unsqueeze(d), np.expand_dims(a, d))
    close(t.unsqueeze(0).squeeze(0), a)
    close(t.reshape(shape + (1,)).squeeze(), np.squeeze(a))
    close(t.flatten(), a.reshape(-1))
    close(t.flatten(1), a.reshape(shape[0], -1))
    close(t.flatten(0, -2), a.reshape(-1, shape[-1]))
    close(t.contiguous(), a)
    assert t.contiguous() is t


def test_T_forward(device):
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(host(tl.tensor(a, device=device).T), a.T)


def test_squeeze_leaves_other_dims(device):
    t = tl.zeros(1, 3, 1, 2, device=device)
    assert t.squeeze().shape == (3, 2)
    assert t.squeeze(0).shape == (3, 1, 2)
    assert t.squeeze(1).shape == (1, 3, 1, 2)
    assert t.squeeze((0, 2)).shape == (3, 2)
    assert t.squeeze(-2).shape == (1, 3, 2)


@given(data=st.data())
def test_expand_forward(device, data):
    shape = data.draw(shapes(max_side=3))
    small = tuple(1 if data.draw(st.booleans()) else n for n in shape)
    x = data.draw(arrays(small))
    out = t32(x, device).expand((2,) + shape)
    close(out, np.broadcast_to(ref32(x), (2,) + shape))
    close(t32(x, device).expand(*((-1,) * len(small))), ref32(x))


def test_split_chunk_forward(device):
    a = np.arange(14.0, dtype=np.float32).reshape(7, 2)
    t = tl.tensor(a, device=device)
    assert [p.shape for p in t.split(3)] == [(3, 2), (3, 2), (1, 2)]
    assert [p.shape for p in t.split([2, 5])] == [(2, 2), (5, 2)]
    assert [p.shape for p in t.chunk(3)] == [(3, 2), (3, 2), (1, 2)]  # ceil(7 / 3) rows each, as PyTorch
    assert [p.shape for p in t.chunk(2, dim=1)] == [(7, 1), (7, 1)]
    np.testing.assert_array_equal(np.concatenate([host(p) for p in t.split(3)]), a)
    with pytest.raises(ValueError, match="do not add up"):
        t.split([2, 2])


@given(data=st.data())
def test_cat_stack_forward(device, data):
    shape = data.draw(shapes(min_dims=1))
    n = len(shape)
    d = data.draw(st.integers(-n, n - 1))
    parts = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = list(shape)
        s[d] = data.draw(st.integers(0, 3))
        parts.append(data.draw(arrays(tuple(s))))
    close(tl.cat([t32(p, device) for p in parts], dim=d), np.concatenate([ref32(p) for p in parts], axis=d))
    same = [data.draw(arrays(shape)) for _ in range(2)]
    sd = data.draw(st.integers(-n - 1, n))
    close(tl.stack([t32(p, device) for p in same], dim=sd), np.stack([ref32(p) for p in same], axis=sd))


@pytest.mark.parametrize(
    "index",
    [
        1,
        -1,
        (slice(None), 2),
        (slice(1, None), slice(None, None, 2)),
        (None, Ellipsis, 0),
        (Ellipsis, None),
        [0, 0, 2],
        ([1, 0], [3, 3]),
        (slice(None), [0, 3, 3]),
        (1, [2, 0]),
        (np.array([True, False, True]),),
        (np.array([True, False, True]), 1),
        (np.array([True, False, True]), [1, 2]),
    ],
)
def test_getitem_forward(device, index):
    a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    close(tl.tensor(a, device=device)[index], a[index])


def test_getitem_with_tensor_indices(device):
    a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    t = tl.tensor(a, device=device)
    close(t[tl.tensor([2, 2, 0], device=device)], a[[2, 2, 0]])
    close(t[t > 5.0], a[a > 5.0])
    close(t[tl.tensor(1, device=device)], a[1])


@given(data=st.data())
def test_masked_fill_forward(device, data):
    shape = data.draw(shapes())
    mask_shape = tuple(1 if data.draw(st.booleans()) else n for n in shape)
    mask = data.draw(arrays(mask_shape)) > 0
    x = data.draw(arrays(shape))
    out = t32(x, device).masked_fill(tl.tensor(mask, device=device), -1e9)
    close(out, np.where(mask, -1e9, ref32(x)).astype(np.float32))


@given(data=st.data())
def test_gather_forward(device, data):
    shape = data.draw(shapes(min_dims=1))
    d = data.draw(st.integers(0, len(shape) - 1))
    index_shape = tuple(data.draw(st.integers(1, 4)) if i == d else n for i, n in enumerate(shape))
    index = np.asarray(data.draw(st.lists(st.integers(0, shape[d] - 1), min_size=int(np.prod(index_shape)),
                                          max_size=int(np.prod(index_shape)))), dtype=np.int64).reshape(index_shape)
    x = data.draw(arrays(shape))
    close(t32(x, device).gather(d, tl.tensor(index, device=device)), np.take_along_axis(ref32(x), index, axis=d))


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
def test_tril_triu_forward(device, k):
    a = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    close(tl.tensor(a, device=device).tril(k), np.tril(a, k))
    close(tl.tensor(a, device=device).triu(k), np.triu(a, k))
    close(tl.tensor(a, device=device).tril(diagonal=k), np.tril(a, k))
