"""Reductions with PyTorch's return types (issue 15) and empty dims (issue 16): gradchecks in float64
driven by Hypothesis, and values, indices and gradients against PyTorch where it is installed."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, arrays_avoiding, check_grad, distinct_arrays, host, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl


def _dim(data, ndim):
    return data.draw(st.integers(-ndim, ndim - 1)) if ndim else 0


# ---------------------------------------------------------------------- (values, indices)
def test_max_min_with_dim_are_named_tuples(device):
    x = tl.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], device=device)
    out = x.max(1)
    values, indices = out
    assert type(out).__name__ == "max" and out.values is values and out.indices is indices
    assert values.tolist() == [5.0, 6.0] and indices.tolist() == [1, 2] and indices.dtype == tl.int64
    assert tl.min(x, dim=0, keepdim=True).indices.tolist() == [[0, 1, 0]]
    assert x.max().item() == 6.0 and tl.min(x).item() == 1.0
    assert tl.max(x, tl.full((2, 3), 4.0, device=device)).tolist() == [[4.0, 5.0, 4.0], [4.0, 4.0, 6.0]]
    assert x.aminmax().min.item() == 1.0 and tl.aminmax(x, dim=1).max.tolist() == [5.0, 6.0]


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data())
def test_max_min_dim_grad(device, name, data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(distinct_arrays(shape))
    dim, keepdim = _dim(data, len(shape)), data.draw(st.booleans())
    check_grad(lambda t: getattr(t, name)(dim, keepdim).values, x, device=device)


@given(data=st.data())
def test_sort_topk_kthvalue_median_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(distinct_arrays(shape))
    dim = _dim(data, len(shape))
    n = shape[dim]
    k = data.draw(st.integers(1, n))
    descending = data.draw(st.booleans())
    check_grad(lambda t: t.sort(dim, descending=descending).values, x, device=device)
    check_grad(lambda t: t.topk(k, dim, largest=descending).values, x, device=device)
    check_grad(lambda t: t.kthvalue(k, dim).values, x, device=device)
    check_grad(lambda t: t.median(dim).values, x, device=device)
    check_grad(lambda t: t.median(), x, device=device)


SELECTIONS = {
    "max": (lambda t: t.max(1), lambda r: r.max(1)),
    "min_keepdim": (lambda t: t.min(0, keepdim=True), lambda r: r.min(0, keepdim=True)),
    "sort": (lambda t: t.sort(1), lambda r: r.sort(dim=1, stable=True)),
    "sort_desc": (lambda t: t.sort(0, descending=True), lambda r: r.sort(dim=0, descending=True, stable=True)),
    "topk": (lambda t: t.topk(2, 1), lambda r: r.topk(2, 1)),
    "topk_smallest": (lambda t: t.topk(3, 0, largest=False), lambda r: r.topk(3, 0, largest=False)),
    "kthvalue": (lambda t: t.kthvalue(2, 1), lambda r: r.kthvalue(2, 1)),
    "median": (lambda t: t.median(1), lambda r: r.median(1)),
    "mode": (lambda t: t.mode(1), lambda r: r.mode(1)),
}


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_selections_match_torch(name):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).permutation(20).reshape(4, 5).astype(np.float64)
    if name == "mode":
        x = np.array([[1.0, 2.0, 2.0, 3.0, 3.0], [5.0, 5.0, 5.0, 1.0, 1.0], [4.0, 3.0, 2.0, 1.0, 0.0],
                      [7.0, 7.0, 7.0, 7.0, 7.0]])
    ours_fn, theirs_fn = SELECTIONS[name]
    t, r = tl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = ours_fn(t), theirs_fn(r)
    np.testing.assert_array_equal(host(ours.values), theirs.values.detach().numpy())
    if name != "mode":  # which index of a repeated mode PyTorch returns is not documented
        np.testing.assert_array_equal(host(ours.indices), theirs.indices.numpy())
    g = np.random.default_rng(4).standard_normal(tuple(theirs.values.shape))
    ours.values.backward(tl.tensor(g))
    theirs.values.backward(torch.tensor(g))
    np.testing.assert_allclose(host(t.grad), r.grad.numpy())


def test_sort_is_stable_and_puts_nan_last_ascending(device):
    x = tl.tensor([3.0, float("nan"), 1.0, 3.0, 1.0], device=device)
    asc, desc = x.sort(), x.sort(descending=True)
    assert asc.indices.tolist() == [2, 4, 0, 3, 1] and desc.indices.tolist() == [1, 0, 3, 2, 4]
    assert x.argsort().tolist() == [2, 4, 0, 3, 1] and tl.argsort(x, descending=True).tolist() == [1, 0, 3, 2, 4]


# ---------------------------------------------------------------------- products, sums, norms
@given(data=st.data())
def test_prod_cumsum_cumprod_grad_including_zeros(device, data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, -2, 2))
    flat = x.reshape(-1)
    flat[data.draw(st.integers(0, flat.size - 1))] = 0.0  # one exact zero
    if flat.size > 1 and data.draw(st.booleans()):
        flat[data.draw(st.integers(0, flat.size - 1))] = 0.0  # maybe two
    dim = _dim(data, len(shape))
    check_grad(lambda t: t.prod(dim), x, device=device)
    check_grad(lambda t: t.prod(), x, device=device)
    check_grad(lambda t: t.cumsum(dim), x, device=device)
    check_grad(lambda t: t.cumprod(dim), x, device=device)


@given(data=st.data())
def test_norm_var_std_logcumsumexp_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays_avoiding(shape, [0.0], margin=0.2))
    dim = _dim(data, len(shape))
    p = data.draw(st.sampled_from([1, 2, 3, 1.5, float("inf")]))
    if p == float("inf"):
        x = data.draw(distinct_arrays(shape, gap=0.15, offset=0.2))  # |x| without ties
    check_grad(lambda t: t.norm(p, dim), x, device=device)
    check_grad(lambda t: tl.norm(t, p), x, device=device)
    check_grad(lambda t: t.logcumsumexp(dim), x, device=device)
    if shape[dim] > 1:
        spread = data.draw(distinct_arrays(shape, gap=0.2))  # a std of 0 has no derivative
        check_grad(lambda t: t.var(dim, unbiased=False), spread, device=device)
        check_grad(lambda t: t.std(dim, correction=1, keepdim=True), spread, device=device)


REDUCTIONS = {
    "prod": (lambda t: t.prod(1), lambda r: r.prod(1)),
    "prod_all": (lambda t: t.prod(), lambda r: r.prod()),
    "cumsum": (lambda t: t.cumsum(0), lambda r: r.cumsum(0)),
    "cumprod": (lambda t: t.cumprod(1), lambda r: r.cumprod(1)),
    "logcumsumexp": (lambda t: t.logcumsumexp(1), lambda r: r.logcumsumexp(1)),
    "norm": (lambda t: t.norm(), lambda r: r.norm()),
    "norm_p1": (lambda t: t.norm(1, 1), lambda r: r.norm(1, 1)),
    "norm_p3": (lambda t: t.norm(3, 0, keepdim=True), lambda r: r.norm(3, 0, keepdim=True)),
    "norm_inf": (lambda t: t.norm(float("inf"), 1), lambda r: r.norm(float("inf"), 1)),
    "var_unbiased_false": (lambda t: t.var(1, False), lambda r: r.var(1, False)),
    "var_correction": (lambda t: t.var(0, correction=0), lambda r: r.var(0, correction=0)),
    "std": (lambda t: t.std(), lambda r: r.std()),
    "var_mean": (lambda t: tl.var_mean(t, 1)[0] + tl.var_mean(t, 1)[1],
                 lambda r: __import__("torch").var_mean(r, 1)[0] + __import__("torch").var_mean(r, 1)[1]),
    "std_mean": (lambda t: tl.std_mean(t, 0)[0], lambda r: __import__("torch").std_mean(r, 0)[0]),
    "amax": (lambda t: t.amax((0, 1)), lambda r: r.amax((0, 1))),
    "amin": (lambda t: tl.amin(t, 1), lambda r: __import__("torch").amin(r, 1)),
    "logsumexp": (lambda t: t.logsumexp(1), lambda r: r.logsumexp(1)),
    "mean_dtype": (lambda t: t.mean(0, dtype=tl.float64), lambda r: r.mean(0, dtype=__import__("torch").float64)),
    "nansum": (lambda t: t.nansum(1), lambda r: r.nansum(1)),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions_match_torch(name):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).uniform(-2, 2, size=(3, 4))
    x[1, 2] = 0.0  # a zero for prod and cumprod
    if name.startswith("norm"):
        x[1, 2] = 0.3
    ours_fn, theirs_fn = REDUCTIONS[name]
    t, r = tl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = ours_fn(t), theirs_fn(r)
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(6).standard_normal(tuple(theirs.shape))
    ours.backward(tl.tensor(g))
    theirs.backward(torch.tensor(g))
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_boolean_and_counting_reductions(device):
    x = tl.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]], device=device)
    assert x.all().item() is False and x.any().item() is True
    assert tl.all(x, dim=0).tolist() == [False, False, True] and x.any(1, keepdim=True).tolist() == [[True], [True]]
    assert x.count_nonzero().item() == 3 and tl.count_nonzero(x, dim=1).tolist() == [2, 1]
    assert x.prod(1).tolist() == [0.0, 0.0] and tl.tensor([1, 2, 3], device=device).prod().dtype == tl.int64
    assert tl.tensor([True, True], device=device).cumsum(0).tolist() == [1, 2]


# ---------------------------------------------------------------------- empty dims (issue 16)
def test_softmax_and_logsumexp_over_an_empty_dim_are_pytorchs(device):
    x = tl.zeros(2, 0, device=device, requires_grad=True)
    assert x.softmax(1).shape == (2, 0) and x.log_softmax(-1).shape == (2, 0)
    assert tl.softmax(tl.zeros(0, 3, device=device), 1).shape == (0, 3)
    lse = x.logsumexp(1)
    assert host(lse).tolist() == [-np.inf, -np.inf]
    lse.sum().backward()
    assert x.grad.shape == (2, 0)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_over_an_empty_dim_names_the_dim(device, name):
    x = tl.zeros(2, 0, device=device)
    with pytest.raises(IndexError, match=f"{name}\\(\\): Expected reduction dim 1 to have non-zero size"):
        getattr(x, name)(1)
    with pytest.raises(RuntimeError, match=f"{name}\\(\\) of an empty tensor"):
        getattr(x, name)()
    assert getattr(x, name)(0).values.shape == (0,)  # reducing a non-empty dim of an empty tensor is fine


def test_errors_name_the_culprit(device):
    x = tl.ones(2, 3, device=device)
    with pytest.raises(TypeError, match="dim must be an int"):
        x.max((0, 1))
    with pytest.raises(RuntimeError, match="topk: k \\(4\\) is out of range for dim -1 of size 3"):
        x.topk(4)
    with pytest.raises(RuntimeError, match="kthvalue: k \\(0\\)"):
        x.kthvalue(0)
    with pytest.raises(ValueError, match="norm: p must be"):
        x.norm("nuc")
    with pytest.raises(TypeError, match="unbiased must be a bool"):
        x.var(1, 2)


QUANTILES = [((0.3,), {}), ((0.5, 1), {}), ((0.25, 0, True), {}), (([0.1, 0.9], 1), {}), (([0.2, 0.5], None, True), {}),
             (([0.1, 0.6], 0, True), {})]


@pytest.mark.parametrize("interpolation", ["linear", "lower", "higher", "midpoint", "nearest"])
@pytest.mark.parametrize("args,kwargs", QUANTILES)
def test_quantile_matches_torch(args, kwargs, interpolation):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(11).standard_normal((4, 5))
    t, r = tl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    q, rest = args[0], args[1:]
    ours = tl.quantile(t, q, *rest, interpolation=interpolation)
    theirs = torch.quantile(r, torch.tensor(q, dtype=torch.float64) if isinstance(q, list) else q, *rest,
                            interpolation=interpolation)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=1e-12)
    g = np.random.default_rng(12).standard_normal(tuple(theirs.shape))
    ours.backward(tl.tensor(g))
    theirs.backward(torch.tensor(g))
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-12)


@given(data=st.data())
def test_quantile_grad(device, data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(distinct_arrays(shape))
    dim = _dim(data, len(shape))
    q = data.draw(st.lists(st.floats(0, 1), min_size=1, max_size=3))
    check_grad(lambda t: t.quantile(tl.tensor(q, dtype=tl.float64, device=device), dim), x, device=device)


def test_quantile_errors():
    with pytest.raises(RuntimeError, match="q values must be in the range \\[0, 1\\]"):
        tl.ones(3).quantile(1.5)
    with pytest.raises(ValueError, match="interpolation must be"):
        tl.ones(3).quantile(0.5, interpolation="cubic")
