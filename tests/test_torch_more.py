"""More of PyTorch's tensor API (issue 15): einsum, the inverse hyperbolics, log-space sums, BLAS-style
products, splitting, running maxima, index writes; gradchecks in float64 driven by Hypothesis, and values
and gradients against PyTorch (float64) where it is installed."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, arrays_avoiding, broadcastable_shapes, check_grad, distinct_arrays, host, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl


@given(data=st.data())
def test_inverse_hyperbolic_and_log_space_grad(device, data):
    shape = data.draw(shapes())
    check_grad(lambda t: t.asinh(), data.draw(arrays(shape)), device=device)
    check_grad(lambda t: t.acosh(), data.draw(arrays(shape, 1.2, 3)), device=device)
    check_grad(lambda t: t.atanh(), data.draw(arrays(shape, -0.8, 0.8)), device=device)
    check_grad(lambda t: t.logit(), data.draw(arrays(shape, 0.1, 0.9)), device=device)
    check_grad(lambda t: t.sinc(), data.draw(arrays_avoiding(shape, [0.0], margin=0.2)), device=device)
    check_grad(lambda t: t.erfc(), data.draw(arrays(shape, -2, 2)), device=device)
    sa, sb = data.draw(broadcastable_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb, 0.3, 3))
    check_grad(lambda x, y: x.logaddexp(y), a, b, device=device)
    check_grad(lambda x, y: tl.logaddexp2(x, y), a, b, device=device)
    check_grad(lambda x, y: x.hypot(y), a, b, device=device)
    a_off_zero = data.draw(arrays_avoiding(sa, [0.0], margin=0.1))  # d/dx at x = 0 is 0 by PyTorch's convention
    check_grad(lambda x, y: tl.xlogy(x, y), a_off_zero, b, device=device)


EINSUM = [("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]), ("...ij,...jk", [(2, 3, 4), (4, 2)]), ("ij->", [(3, 4)]),
          ("i,j->ij", [(3,), (4,)]), ("bhqd,bhkd->bhqk", [(1, 2, 3, 2), (1, 2, 4, 2)]), ("ij,j", [(3, 4), (4,)]),
          ("bi,bi->b", [(1, 4), (3, 4)]), ("ijk->kj", [(2, 3, 4)]), ("ab,bc,cd->ad", [(2, 3), (3, 2), (2, 2)])]


@pytest.mark.parametrize("equation,operand_shapes", EINSUM)
def test_einsum_grad_and_torch(device, equation, operand_shapes):
    rng = np.random.default_rng(len(equation))
    xs = [rng.standard_normal(s) for s in operand_shapes]
    check_grad(lambda *ts: tl.einsum(equation, *ts), *xs, device=device)
    torch = pytest.importorskip("torch")
    ours = tl.einsum(equation, *[tl.tensor(x, device=device) for x in xs])
    theirs = torch.einsum(equation, *[torch.tensor(x) for x in xs])
    np.testing.assert_allclose(host(ours), theirs.numpy(), rtol=1e-12, atol=1e-12)


def test_einsum_errors_name_the_problem():
    with pytest.raises(NotImplementedError, match="repeated within one operand"):
        tl.einsum("ii->i", tl.ones(2, 2))
    with pytest.raises(ValueError, match="names 2 operands, got 1"):
        tl.einsum("ij,jk->ik", tl.ones(2, 2))
    with pytest.raises(ValueError, match="do not match an operand of shape"):
        tl.einsum("ijk->i", tl.ones(2, 2))


@given(data=st.data())
def test_products_splits_and_running_grad(device, data):
    m, k, n = (data.draw(st.integers(1, 3)) for _ in range(3))
    c, a, b = data.draw(arrays((m, n))), data.draw(arrays((m, k))), data.draw(arrays((k, n)))
    check_grad(lambda x, y, z: x.addmm(y, z, beta=0.5, alpha=2.0), c, a, b, device=device)
    check_grad(lambda x, y, z: tl.baddbmm(x, y[None], z[None], alpha=-1.0), c, a, b, device=device)
    check_grad(lambda y, v: y.mv(v), a, data.draw(arrays((k,))), device=device)
    check_grad(lambda y, z: tl.cdist(y, z), a, data.draw(arrays((n, k), 3.5, 5)), device=device)  # no 0 distance
    shape = data.draw(shapes(min_dims=2))
    x = data.draw(distinct_arrays(shape))
    d = data.draw(st.integers(0, len(shape) - 1))
    check_grad(lambda t: t.cummax(d).values, x, device=device)
    check_grad(lambda t: t.cummin(d).values, x, device=device)
    check_grad(lambda t: t.diff(dim=d), x, device=device)
    turns = data.draw(st.integers(-3, 3))
    check_grad(lambda t: t.rot90(turns, (0, 1)), x, device=device)
    check_grad(lambda t: t.tensor_split(2, d), x, device=device)


@given(data=st.data())
def test_index_writes_grad(device, data):
    x = data.draw(arrays_avoiding((3, 4), [0.0], margin=0.1))  # masked_scatter's mask t > 0 must not flip
    src = data.draw(arrays((3, 2)))
    check_grad(lambda t: t.index_fill(1, tl.tensor([0, 2], device=device), -1.0), x, device=device)
    check_grad(lambda t, s: t.index_copy(1, tl.tensor([3, 1], device=device), s), x, src, device=device)
    rows, cols = tl.tensor([0, 2, 0], device=device), tl.tensor([1, 3, 1], device=device)
    v = data.draw(arrays((3,)))
    check_grad(lambda t, u: t.index_put((rows, cols), u, accumulate=True), x, v, device=device)
    check_grad(lambda t, u: t.index_put((rows[:2], cols[:2]), u[:2]), x, v, device=device)
    check_grad(lambda t, s: t.masked_scatter(t > 0, s), x, data.draw(arrays((12,))), device=device)
    check_grad(lambda t: t.take(tl.tensor([[0, 11], [5, -1]], device=device)), x, device=device)


MORE = {
    "acosh": lambda L, t: (t.abs() + 1.1).acosh(),
    "asinh": lambda L, t: L.asinh(t),
    "atanh": lambda L, t: (t * 0.3).atanh(),
    "deg2rad": lambda L, t: L.deg2rad(t),
    "rad2deg": lambda L, t: t.rad2deg(),
    "logit": lambda L, t: (t.sigmoid()).logit(),
    "logit_eps": lambda L, t: L.logit(t.sigmoid(), eps=0.3),
    "xlogy": lambda L, t: L.xlogy(t, t.abs() + 0.5),
    "hypot": lambda L, t: t.hypot(t * 0.5 + 1),
    "logaddexp": lambda L, t: L.logaddexp(t, t * 2),
    "logaddexp2": lambda L, t: t.logaddexp2(-t),
    "copysign": lambda L, t: t.copysign(-t[0]),
    "nan_to_num": lambda L, t: L.nan_to_num(t.masked_fill(t > 1, float("inf")).masked_fill(t < -1, float("nan"))),
    "sinc": lambda L, t: L.sinc(t),
    "erfc": lambda L, t: t.erfc(),
    "float_power": lambda L, t: t.abs().float_power(1.5),
    "fmax": lambda L, t: L.fmax(t, -t),
    "ldexp": lambda L, t: t.ldexp(L.tensor([1, 2, 0, -1])),
    "addmm": lambda L, t: L.addmm(t, t[:, :3], t[:3], beta=0.5, alpha=2),
    "addmv": lambda L, t: t[0].addmv(t, t[1], alpha=3),
    "addbmm": lambda L, t: L.addbmm(t[:3, :3], t[None, :3, :2], t[None, :2, :3], beta=0),
    "addr": lambda L, t: t.addr(t[:, 0], t[0]),
    "inner": lambda L, t: L.inner(t, t),
    "outer": lambda L, t: L.outer(t[0], t[1]),
    "ravel": lambda L, t: t.t().ravel(),
    "rot90": lambda L, t: L.rot90(t, 3, (0, 1)),
    "diff": lambda L, t: L.diff(t, n=2, dim=1, prepend=t[:, :1]),
    "cummax": lambda L, t: t.cummax(1).values,
    "cummin": lambda L, t: L.cummin(t, 0).values,
    "hstack": lambda L, t: L.hstack([t, t[:, :1]]),
    "vstack": lambda L, t: L.vstack([t, t[0]]),
    "column_stack": lambda L, t: L.column_stack([t[:, 0], t]),
    "index_fill": lambda L, t: t.index_fill(1, L.tensor([0, 3]), 7.0),
    "index_copy": lambda L, t: t.index_copy(0, L.tensor([3, 0]), t[1:3] * 2),
    "index_put": lambda L, t: t.index_put((L.tensor([0, 0]), L.tensor([2, 2])), t[1, :2], accumulate=True),
    "masked_scatter": lambda L, t: t.masked_scatter(t > 0, t.flip(0) * 10),
    "take": lambda L, t: L.take(t, L.tensor([[0, 15], [3, -2]])),
    "cdist": lambda L, t: L.cdist(t, t[:2] + 0.5),
    "dist": lambda L, t: L.dist(t, t.flip(0), 3),
    "tensor_split": lambda L, t: L.cat(t.tensor_split([1, 3], dim=1), 1) * L.arange(4.0),
    "meshgrid": lambda L, t: L.meshgrid(t[0], t[1], indexing="xy")[0] * L.meshgrid(t[0], t[1])[1],
    "einsum": lambda L, t: L.einsum("ij,kj->ik", t, t),
}


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_matches_torch(name):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(9).uniform(-2, 2, size=(4, 4))
    t, r = tl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = MORE[name](tl, t), MORE[name](torch, r)
    np.testing.assert_allclose(host(ours), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(10).standard_normal(tuple(theirs.shape))
    ours.backward(tl.tensor(g))
    theirs.backward(torch.tensor(g))
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_non_differentiable_helpers_match_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[3.0, -1.0, 3.0], [0.0, 2.0, -1.0]])
    i = np.array([12, 18, 7])
    t, r = tl.tensor(x), torch.tensor(x)
    pairs = [
        (t.unique(), r.unique()), (t.unique(return_counts=True)[1], r.unique(return_counts=True)[1]),
        (t.unique(return_inverse=True)[1], r.unique(return_inverse=True)[1]),
        (tl.tensor([1, 1, 3]).bincount(minlength=5), torch.tensor([1, 1, 3]).bincount(minlength=5)),
        (tl.gcd(tl.tensor(i), tl.tensor(6)), torch.gcd(torch.tensor(i), torch.tensor(6))),
        (tl.lcm(tl.tensor(i), tl.tensor(4)), torch.lcm(torch.tensor(i), torch.tensor(4))),
        (t.signbit(), r.signbit()),
        (t.heaviside(tl.tensor(0.5, dtype=tl.float64)), r.heaviside(torch.tensor(0.5, dtype=torch.float64))),
        (t.frexp().mantissa, r.frexp().mantissa), (t.frexp().exponent, r.frexp().exponent),
        (t.cummax(1).indices, r.cummax(1).indices), (t.cummin(0).indices, r.cummin(0).indices),
        (tl.tril_indices(3, 4, -1), torch.tril_indices(3, 4, -1)),
        (tl.triu_indices(4, 3, 1), torch.triu_indices(4, 3, 1)),
        (tl.cartesian_prod(tl.arange(2), tl.arange(3)), torch.cartesian_prod(torch.arange(2), torch.arange(3))),
        (tl.dstack([t, t]), torch.dstack([r, r])), (t.nextafter(tl.zeros_like(t)), r.nextafter(torch.zeros_like(r))),
        (t.stride(), r.stride()),
    ]
    for ours, theirs in pairs:
        if isinstance(ours, tuple):
            assert ours == tuple(theirs)
            continue
        np.testing.assert_array_equal(host(ours), theirs.numpy())
    assert t.is_signed() and not t.is_complex() and t.is_same_size(t * 2) and tl.tensor([2.0]).is_nonzero()
    assert tl.as_tensor(x).array is x and tl.as_tensor(t) is t and tl.as_tensor([1, 2]).dtype == tl.int64
    assert t.H.shape == (3, 2) and t.mH.shape == (3, 2) and t.itemsize == 8 and t.nbytes == 48 and t.is_cpu


def test_in_place_function_forms(device):
    x = tl.tensor([-1.0, 0.25, 4.0], device=device)
    assert tl.relu_(x) is x and host(x).tolist() == [0.0, 0.25, 4.0]
    tl.sqrt_(x)
    tl.clamp_(x, max=1.0)
    assert host(x).tolist() == [0.0, 0.5, 1.0] and x._version == 3
    y = tl.tensor([1.0, 2.0], device=device)
    y.lt_(1.5)
    assert host(y).tolist() == [1.0, 0.0] and y.dtype == tl.float32
