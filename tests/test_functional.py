"""nn.functional: gradchecks, NumPy references, fused ops against primitive compositions, errors."""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import ops

REDUCTIONS = ["none", "mean", "sum"]


def t64(a, device, grad=True):
    return tl.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


def host(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def ce_problem(seed, kind, with_weight, with_ignore, soft=False):
    """Logits, target and class weights for one of the input layouts cross_entropy accepts."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 5))
    shape = {"unbatched": (c,), "2d": (int(rng.integers(1, 4)), c), "4d": (2, c, 2, int(rng.integers(1, 3)))}[kind]
    x = rng.standard_normal(shape) * 2
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if soft:
        target = rng.random(shape)
        target /= target.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    else:
        target = rng.integers(0, c, tshape)
        if with_ignore:
            flat = target.reshape(-1)
            flat[rng.random(flat.size) < 0.4] = -100
            if flat.size > 1:
                flat[0], flat[-1] = -100, 0  # at least one ignored element and one that counts
    weight = rng.random(c) + 0.2 if with_weight else None
    return x, np.asarray(target), weight


def np_cross_entropy(x, t, weight, ignore_index, reduction, eps):
    """PyTorch's documented formula, written with NumPy, for class-index targets."""
    unbatched = x.ndim == 1
    if unbatched:
        x, t = x[None], t[None]
    c = x.shape[1]
    logp = np.moveaxis(np_log_softmax(x, 1), 1, -1)  # (N, d..., C)
    w = np.ones(c) if weight is None else weight
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    picked = np.take_along_axis(logp, ts[..., None], axis=-1)[..., 0]
    w_t = np.where(valid, w[ts], 0.0)
    nll = -w_t * picked
    smooth = np.where(valid, -(logp * w).sum(-1), 0.0)
    loss = (1 - eps) * nll + eps / c * smooth
    if reduction == "none":
        return loss[0] if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w_t.sum()


def composed_cross_entropy(x, t, weight, ignore_index, reduction, eps):
    """The same loss from primitive Tensor ops (log_softmax, gather, masks): the fused op must agree."""
    unbatched = x.ndim == 1
    if unbatched:
        x, t = x.unsqueeze(0), t.unsqueeze(0)
    c = x.shape[1]
    logp = x.log_softmax(1)
    valid = t != ignore_index
    ts = tl.where(valid, t, tl.zeros_like(t))
    picked = logp.gather(1, ts.unsqueeze(1)).squeeze(1)
    w = tl.ones(c, dtype=x.dtype, device=x.device) if weight is None else weight
    w_t = tl.where(valid, w[ts], tl.zeros(ts.shape, dtype=x.dtype, device=x.device))
    wshape = (1, c) + (1,) * (x.ndim - 2)
    smooth = tl.where(valid, -(logp * w.reshape(wshape)).sum(1), tl.zeros(ts.shape, dtype=x.dtype, device=x.device))
    loss = -(picked * w_t) * (1 - eps) + smooth * (eps / c)
    if reduction == "none":
        return loss.squeeze(0) if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w_t.sum()


ce_options = dict(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["unbatched", "2d", "4d"]),
    with_weight=st.booleans(),
    with_ignore=st.booleans(),
    reduction=st.sampled_from(REDUCTIONS),
    eps=st.sampled_from([0.0, 0.25, 1.0]),
)


@given(**ce_options)
def test_cross_entropy_gradcheck(device, seed, kind, with_weight, with_ignore, reduction, eps):
    x, t, w = ce_problem(seed, kind, with_weight, with_ignore)
    weight = None if w is None else t64(w, device, grad=False)
    target = tl.tensor(t, device=device)
    fn = lambda x: F.cross_entropy(x, target, weight=weight, reduction=reduction, label_smoothing=eps)
    assert tl.gradcheck(fn, [t64(x, device)])


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the references' 0/0 when all are ignored
@given(**ce_options)
def test_cross_entropy_matches_numpy_and_composition(device, seed, kind, with_weight, with_ignore, reduction, eps):
    x, t, w = ce_problem(seed, kind, with_weight, with_ignore)
    expected = np_cross_entropy(x, t, w, -100, reduction, eps)
    xf = t64(x, device)
    xc = t64(x, device)
    x_before = x.copy()
    target = tl.tensor(t, device=device)
    weight = None if w is None else t64(w, device, grad=False)
    out = F.cross_entropy(xf, target, weight=weight, reduction=reduction, label_smoothing=eps)
    ref = composed_cross_entropy(xc, target, weight, -100, reduction, eps)
    assert isinstance(out.grad_fn, ops.CrossEntropy)
    assert out.shape == np.shape(expected) == ref.shape
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(tl.tensor(g, device=device))
    np.testing.assert_array_equal(host(xf), x_before)  # the fused op never writes into its input
    if np.isnan(expected).any():  # a mean over only ignored targets: NaN loss, but no gradient reaches x
        assert np.all(host(xf.grad) == 0)
        return
    ref.backward(tl.tensor(g, device=device))
    np.testing.assert_allclose(host(xf.grad), host(xc.grad), rtol=1e-10, atol=1e-12)


def test_cross_entropy_default_is_mean_over_non_ignored(device):
    x = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, -3.0, 2.0]])
    t = np.array([0, -100, 2])
    out = F.cross_entropy(tl.tensor(x, device=device), tl.tensor(t, device=device))
    lp = np_log_softmax(x, 1)
    assert out.item() == pytest.approx(-(lp[0, 0] + lp[2, 2]) / 2, rel=1e-12)


def test_cross_entropy_weighted_mean_divides_by_target_weights(device):
    x = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    w = np.array([3.0, 1.0, 0.5])
    out = F.cross_entropy(t64(x, device, False), tl.tensor([0, 2], device=device), weight=t64(w, device, False))
    lp = np_log_softmax(x, 1)
    assert out.item() == pytest.approx(-(3.0 * lp[0, 0] + 0.5 * lp[1, 2]) / 3.5, rel=1e-12)


def test_cross_entropy_all_ignored_mean_is_nan_with_zero_grad(device):
    x = t64(np.ones((2, 3)), device)
    out = F.cross_entropy(x, tl.tensor([-100, -100], device=device))
    assert math.isnan(out.item())
    out.backward()
    assert np.all(host(x.grad) == 0)


def test_cross_entropy_extreme_logits_are_finite(device):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [1e4, 1e4, -1e4]], dtype=np.float32)
    xt = tl.tensor(x, device=device, requires_grad=True)
    out = F.cross_entropy(xt, tl.tensor([1, 1, 0], device=device), label_smoothing=0.1)
    out.backward()
    assert out.dtype == tl.float32 and xt.grad.dtype == tl.float32
    assert np.isfinite(out.item()) and np.all(np.isfinite(host(xt.grad)))
    expected = np_cross_entropy(x.astype(np.float64), np.array([1, 1, 0]), None, -100, "mean", 0.1)
    assert out.item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_float32_stays_float32(device):
    x = tl.randn(4, 5, device=device, requires_grad=True)
    w = tl.rand(5, device=device, dtype=tl.float64)
    out = F.cross_entropy(x, tl.tensor([0, 1, 2, 3], device=device), weight=w, label_smoothing=0.1)
    out.backward()
    assert out.dtype == tl.float32 and x.grad.dtype == tl.float32


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["unbatched", "2d", "4d"]), with_weight=st.booleans(),
       reduction=st.sampled_from(REDUCTIONS), eps=st.sampled_from([0.0, 0.3]))
def test_cross_entropy_probability_targets(device, seed, kind, with_weight, reduction, eps):
    x, y, w = ce_problem(seed, kind, with_weight, False, soft=True)
    weight = None if w is None else t64(w, device, grad=False)
    fn = lambda x, y: F.cross_entropy(x, y, weight=weight, reduction=reduction, label_smoothing=eps)
    assert tl.gradcheck(fn, [t64(x, device), t64(y, device)])
    axis = 0 if x.ndim == 1 else 1
    c = x.shape[axis]
    q = (1 - eps) * y + eps / c
    wb = np.ones(c) if w is None else w
    wb = wb if x.ndim == 1 else wb.reshape((1, c) + (1,) * (x.ndim - 2))
    loss = -(wb * q * np_log_softmax(x, axis)).sum(axis)
    expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
    out = fn(t64(x, device, False), t64(y, device, False))
    np.testing.assert_allclose(host(out), expected, rtol=1e-12)


def test_soft_cross_entropy_fused_matches_composition(device):
    x, y, w = ce_problem(4, "4d", True, False, soft=True)
    xa, ya, xb, yb = t64(x, device), t64(y, device), t64(x, device), t64(y, device)
    weight = t64(w, device, False)
    out = F.cross_entropy(xa, ya, weight=weight, label_smoothing=0.2)
    assert isinstance(out.grad_fn, ops.SoftCrossEntropy)
    c = x.shape[1]
    q = yb * 0.8 + 0.2 / c
    ref = -(xb.log_softmax(1) * q * weight.reshape(1, c, 1, 1)).sum(1).mean()
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(host(xa.grad), host(xb.grad), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(ya.grad), host(yb.grad), rtol=1e-10, atol=1e-12)


def test_cross_entropy_errors(device):
    x = tl.randn(3, 4, device=device)
    with pytest.raises(IndexError, match=r"target 4 .*4 classes"):
        F.cross_entropy(x, tl.tensor([0, 4, 1], device=device))
    with pytest.raises(IndexError, match=r"target -1 .*4 classes"):
        F.cross_entropy(x, tl.tensor([0, -1, 1], device=device))
    with pytest.raises(IndexError, match="target -100"):
        F.cross_entropy(x, tl.tensor([0, -100, 1], device=device), ignore_index=3)
    for dtype in (tl.int8, tl.int16, tl.int32, tl.uint8):  # each integer dtype's range check
        with pytest.raises(IndexError, match=r"target 4 .*4 classes"):
            F.cross_entropy(x, tl.tensor([0, 4, 1], dtype=dtype, device=device))
        if dtype != tl.uint8:
            with pytest.raises(IndexError, match=r"target -2 .*4 classes"):
                F.cross_entropy(x, tl.tensor([0, -2, 1], dtype=dtype, device=device), ignore_index=-1)
            kept = F.cross_entropy(x, tl.tensor([0, -1, 1], dtype=dtype, device=device), ignore_index=-1)
            assert kept.item() == pytest.approx(F.cross_entropy(x[[0, 2]], tl.tensor([0, 1], device=device)).item())
    with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
        F.cross_entropy(x, tl.tensor([0, 1], device=device))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 4\)"):
        F.cross_entropy(x, tl.rand(3, 2, device=device))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, tl.tensor([0, 1, 2], device=device), reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, tl.tensor([0, 1, 2], device=device), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(x, tl.tensor([0, 1, 2], device=device), weight=tl.ones(3, device=device))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(x, tl.tensor([True, False, True], device=device))
    with pytest.raises(TypeError, match="floating point"):
        F.cross_entropy(tl.tensor([[1, 2]], device=device), tl.tensor([0], device=device))


def test_cross_entropy_accepts_int32_targets_and_lists(device):
    x = tl.randn(3, 4, device=device)
    a = F.cross_entropy(x, tl.tensor([0, 3, 1], dtype=tl.int32, device=device))
    b = F.cross_entropy(x, [0, 3, 1])
    assert a.item() == pytest.approx(b.item())


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["unbatched", "2d", "4d"]), with_weight=st.booleans(),
       with_ignore=st.booleans(), reduction=st.sampled_from(REDUCTIONS))
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_nll_loss(device, seed, kind, with_weight, with_ignore, reduction):
    x, t, w = ce_problem(seed, kind, with_weight, with_ignore)
    logp = np_log_softmax(x, 0 if x.ndim == 1 else 1)
    target = tl.tensor(t, device=device)
    weight = None if w is None else t64(w, device, grad=False)
    fn = lambda x: F.nll_loss(x, target, weight=weight, reduction=reduction)
    assert tl.gradcheck(fn, [t64(logp, device)])
    # nll_loss(log_softmax(x)) is cross_entropy(x) without smoothing
    expected = np_cross_entropy(x, t, w, -100, reduction, 0.0)
    out = fn(t64(logp, device, False))
    assert isinstance(out, tl.Tensor) and out.shape == np.shape(expected)
    np.testing.assert_allclose(host(out), expected, rtol=1e-12, atol=1e-12)


def test_nll_loss_matches_composition(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 2))
    t = np.array([[0, 2], [1, -100], [2, 2], [0, 1]])
    w = np.array([0.5, 2.0, 1.0])
    a, b = t64(x, device), t64(x, device)
    target = tl.tensor(t, device=device)
    out = F.nll_loss(a, target, weight=t64(w, device, False))
    valid = target != -100
    ts = tl.where(valid, target, tl.zeros_like(target))
    w_t = tl.where(valid, t64(w, device, False)[ts], tl.zeros(ts.shape, dtype=tl.float64, device=device))
    ref = -(b.gather(1, ts.unsqueeze(1)).squeeze(1) * w_t).sum() / w_t.sum()
    assert out.item() == pytest.approx(ref.item(), rel=1e-12)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(host(a.grad), host(b.grad), rtol=1e-12)


def test_nll_loss_errors(device):
    x = tl.randn(2, 3, device=device)
    with pytest.raises(IndexError, match=r"target 3 .*3 classes"):
        F.nll_loss(x, tl.tensor([0, 3], device=device))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        F.nll_loss(x, tl.tensor([0, 1, 2], device=device))


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(3,), (2, 3), (2, 1, 3)]),
       reduction=st.sampled_from(REDUCTIONS))
def test_mse_loss(device, seed, shape, reduction):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    fn = lambda a, b: F.mse_loss(a, b, reduction=reduction)
    assert tl.gradcheck(fn, [t64(a, device), t64(b, device)])
    sq = (a - b) ** 2
    expected = {"none": sq, "sum": sq.sum(), "mean": sq.mean()}[reduction]
    np.testing.assert_allclose(host(fn(t64(a, device, False), t64(b, device, False))), expected, rtol=1e-12)


def test_mse_loss_warns_on_broadcast_and_rejects_bad_reduction(device):
    with pytest.warns(UserWarning, match=r"\(3, 1\).*\(3,\)|\(3,\).*\(3, 1\)"):
        F.mse_loss(tl.randn(3, device=device), tl.randn(3, 1, device=device))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(tl.randn(3, device=device), tl.randn(3, device=device), reduction="avg")


def test_one_hot(device):
    t = tl.tensor([[0, 2], [1, 0]], device=device)
    out = F.one_hot(t, num_classes=4)
    assert out.dtype == tl.int64 and out.shape == (2, 2, 4) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.int64)[[[0, 2], [1, 0]]])
    assert F.one_hot(tl.tensor([3, 1], device=device)).shape == (2, 4)
    with pytest.raises(ValueError, match="num_classes=3"):
        F.one_hot(tl.tensor([3], device=device), 3)
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(tl.tensor([-1], device=device), 3)
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(tl.tensor([1.0], device=device), 3)


def np_gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


UNARY = {
    "relu": (F.relu, lambda x: np.maximum(x, 0)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (F.tanh, np.tanh),
    "gelu": (F.gelu, lambda x: np_gelu(x, "none")),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: np_gelu(x, "tanh")),
    "softmax0": (lambda x: F.softmax(x, 0), lambda x: np.exp(np_log_softmax(x, 0))),
    "softmax-1": (lambda x: F.softmax(x, dim=-1), lambda x: np.exp(np_log_softmax(x, -1))),
    "log_softmax": (lambda x: F.log_softmax(x, dim=-1), lambda x: np_log_softmax(x, -1)),
}


@given(name=st.sampled_from(sorted(UNARY)), seed=st.integers(0, 2**31 - 1),
       shape=st.sampled_from([(4,), (2, 3), (2, 1, 3)]))
def test_activations(device, name, seed, shape):
    fn, ref = UNARY[name]
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    if name == "relu":
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # keep finite differences away from the kink
    assert tl.gradcheck(fn, [t64(x, device)])
    np.testing.assert_allclose(host(fn(t64(x, device, False))), ref(x), rtol=1e-10, atol=1e-12)


def test_softmax_implicit_dim_warns_like_pytorch(device):
    x = tl.randn(2, 3, device=device)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        out = F.softmax(x)
    np.testing.assert_allclose(out.numpy().sum(1), 1.0, rtol=1e-6)


def test_softmax_dtype_argument(device):
    x = tl.randn(2, 3, device=device)
    assert F.softmax(x, 1, dtype=tl.float64).dtype == tl.float64


@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(), (3,), (2, 2)]), bias=st.booleans())
def test_linear(device, seed, lead, bias):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(lead + (3,)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    args = [t64(x, device), t64(w, device)] + ([t64(b, device)] if bias else [])
    assert tl.gradcheck(lambda *a: F.linear(*a), args)
    expected = x @ w.T + (b if bias else 0)
    np.testing.assert_allclose(host(F.linear(*args)), expected, rtol=1e-12)


def test_linear_fused_matches_composition(device):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    a = [t64(v, device) for v in (x, w, b)]
    c = [t64(v, device) for v in (x, w, b)]
    out = F.linear(*a)
    ref = c[0] @ c[1].T + c[2]
    assert isinstance(out.grad_fn, ops.Linear)
    np.testing.assert_allclose(host(out), host(ref), rtol=1e-12)
    g = tl.tensor(rng.standard_normal(out.shape), device=device)
    out.backward(g)
    ref.backward(g)
    for p, q in zip(a, c):
        np.testing.assert_allclose(host(p.grad), host(q.grad), rtol=1e-12)


def test_linear_errors(device):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(tl.randn(2, 3, device=device), tl.randn(4, 5, device=device))
    with pytest.raises(TypeError, match="float64.*float32|float32.*float64"):
        F.linear(tl.randn(2, 3, device=device), tl.randn(4, 3, device=device, dtype=tl.float64))
    with pytest.raises(ValueError, match="bias shape"):
        F.linear(tl.randn(2, 3, device=device), tl.randn(4, 3, device=device), tl.randn(3, device=device))
    with pytest.raises(ValueError, match=r"bias shape \(1, 4\)"):
        F.linear(tl.randn(2, 3, device=device), tl.randn(4, 3, device=device), tl.randn(1, 4, device=device))
    with pytest.raises(TypeError, match="input is float32 but bias is float64"):
        F.linear(tl.randn(2, 3, device=device), tl.randn(4, 3, device=device), tl.randn(4, device=device).double())


def np_layer_norm(x, k, w, b, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@given(seed=st.integers(0, 2**31 - 1), k=st.sampled_from([1, 2]), affine=st.sampled_from(["none", "weight", "both"]),
       lead=st.sampled_from([(), (2,), (2, 1)]))
def test_layer_norm(device, seed, k, affine, lead):
    rng = np.random.default_rng(seed)
    norm_shape = (3,) if k == 1 else (2, 3)
    x = rng.standard_normal(lead + norm_shape) * 3 + 1
    w = rng.standard_normal(norm_shape) if affine != "none" else None
    b = rng.standard_normal(norm_shape) if affine == "both" else None
    inputs = [t64(x, device)] + [t64(v, device) for v in (w, b) if v is not None]

    def fn(x, *wb):
        return F.layer_norm(x, norm_shape if k == 2 else 3, *wb, eps=1e-5)

    assert tl.gradcheck(fn, inputs)
    np.testing.assert_allclose(host(fn(*inputs)), np_layer_norm(x, k, w, b, 1e-5), rtol=1e-10, atol=1e-12)


def test_layer_norm_fused_matches_composition(device):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    a = [t64(v, device) for v in (x, w, b)]
    c = [t64(v, device) for v in (x, w, b)]
    out = F.layer_norm(a[0], (2, 4), a[1], a[2], eps=1e-5)
    mu = c[0].mean((-2, -1), keepdim=True)
    var = c[0].var((-2, -1), keepdim=True, correction=0)
    ref = (c[0] - mu) / (var + 1e-5).sqrt() * c[1] + c[2]
    assert isinstance(out.grad_fn, ops.LayerNorm)
    np.testing.assert_allclose(host(out), host(ref), rtol=1e-12, atol=1e-12)
    g = tl.tensor(rng.standard_normal(out.shape), device=device)
    out.backward(g)
    ref.backward(g)
    for p, q in zip(a, c):
        np.testing.assert_allclose(host(p.grad), host(q.grad), rtol=1e-10, atol=1e-12)


def test_layer_norm_errors(device):
    x = tl.randn(2, 3, device=device)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        F.layer_norm(x, 4)
    with pytest.raises(ValueError, match=r"weight shape \(2,\)"):
        F.layer_norm(x, 3, weight=tl.ones(2, device=device))
    with pytest.raises(ValueError, match=r"bias shape \(1, 3\)"):
        F.layer_norm(x, (3,), bias=tl.ones(1, 3, device=device))
    with pytest.raises(TypeError, match="input is float32 but weight is float64"):
        F.layer_norm(x, (3,), weight=tl.ones(3, device=device).double())
    with pytest.raises(TypeError, match="input must be a floating point tensor, got int64"):
        F.layer_norm(tl.tensor([[1, 2, 3]], device=device), (3,))
    with pytest.raises(ValueError, match="negative"):
        F.layer_norm(x, (-3,))
    with pytest.raises(TypeError, match="normalized_shape must be an int or a tuple of ints"):
        F.layer_norm(x, (3.0,))
    assert F.layer_norm(x, [3]).shape == x.shape == F.layer_norm(x, np.int64(3)).shape


@given(seed=st.integers(0, 2**31 - 1), ids_shape=st.sampled_from([(4,), (2, 3)]),
       padding_idx=st.sampled_from([None, 0, 2, -1]))
def test_embedding_gradcheck_repeated_ids_and_padding(device, seed, ids_shape, padding_idx):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 2))
    ids = rng.integers(0, 4, ids_shape)
    ids.reshape(-1)[:2] = 1  # a repeated id: its gradient rows accumulate
    ids_t = tl.tensor(ids, device=device)
    fn = lambda w: F.embedding(ids_t, w, padding_idx=padding_idx)
    if padding_idx is None:  # with padding the row is deliberately frozen, checked against NumPy below
        assert tl.gradcheck(fn, [t64(w, device)])
    wt = t64(w, device)
    out = fn(wt)
    np.testing.assert_array_equal(host(out), w[ids])
    g = rng.standard_normal(out.shape)
    out.backward(tl.tensor(g, device=device))
    expected = np.zeros_like(w)
    np.add.at(expected, ids.reshape(-1), g.reshape(-1, 2))
    if padding_idx is not None:
        expected[padding_idx % 4] = 0
    np.testing.assert_allclose(host(wt.grad), expected, rtol=1e-12)


def test_embedding_fused_matches_indexing(device):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 3))
    ids = tl.tensor([[0, 4, 4], [2, 0, 4]], device=device)
    a, c = t64(w, device), t64(w, device)
    out = F.embedding(ids, a)
    ref = c[ids]
    assert isinstance(out.grad_fn, ops.Embedding)
    g = tl.tensor(rng.standard_normal(out.shape), device=device)
    out.backward(g)
    ref.backward(g)
    np.testing.assert_array_equal(host(out), host(ref))
    np.testing.assert_allclose(host(a.grad), host(c.grad), rtol=1e-12)


def test_embedding_errors(device):
    w = tl.randn(5, 3, device=device)
    with pytest.raises(IndexError, match=r"id 5 .*num_embeddings=5"):
        F.embedding(tl.tensor([0, 5], device=device), w)
    with pytest.raises(IndexError, match=r"id -1 .*num_embeddings=5"):
        F.embedding(tl.tensor([-1, 2], device=device), w)
    with pytest.raises(TypeError, match="integer"):
        F.embedding(tl.tensor([0.0, 1.0], device=device), w)
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(tl.tensor([0], device=device), w, padding_idx=5)


def test_dropout_gradcheck_with_a_fixed_mask(device):
    x = np.random.default_rng(0).standard_normal((3, 4))

    def fn(x):
        tl.manual_seed(7)
        return F.dropout(x, p=0.3, training=True)

    assert tl.gradcheck(fn, [t64(x, device)])


def test_dropout_fused_matches_mask_multiplication(device):
    x = np.random.default_rng(0).standard_normal((50, 20))
    a = t64(x, device)
    out = F.dropout(a, p=0.4)
    assert isinstance(out.grad_fn, ops.Dropout)
    kept = host(out) != 0
    mask = tl.tensor(kept / 0.6, device=device)
    b = t64(x, device)
    ref = b * mask
    np.testing.assert_allclose(host(out), host(ref), rtol=1e-12)
    g = tl.tensor(np.random.default_rng(1).standard_normal(x.shape), device=device)
    out.backward(g)
    ref.backward(g)
    np.testing.assert_allclose(host(a.grad), host(b.grad), rtol=1e-12)


def test_dropout_statistics_and_modes(device):
    x = tl.ones(200, 500, device=device)
    out = F.dropout(x, p=0.3).numpy()
    kept = out != 0
    assert set(np.unique(out).tolist()) <= {0.0, np.float32(1 / 0.7)}
    assert abs(kept.mean() - 0.7) < 0.01  # 100,000 Bernoulli draws: std 0.0015
    assert abs(out.mean() - 1.0) < 0.02
    assert F.dropout(x, p=0.3, training=False) is x
    assert F.dropout(x, p=0.0) is x
    assert np.all(F.dropout(x, p=1.0).numpy() == 0)
    assert F.dropout(x, p=0.5).dtype == tl.float32
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        F.dropout(x, p=1.5)


def test_dropout_reproducible_under_manual_seed(device):
    x = tl.ones(10, 10, device=device)
    tl.manual_seed(3)
    a = F.dropout(x).numpy().copy()
    tl.manual_seed(3)
    b = F.dropout(x).numpy()
    np.testing.assert_array_equal(a, b)


def test_scaled_dot_product_attention_is_exposed(device):
    from tinygrad_lm.nn import attention

    if not hasattr(attention, "scaled_dot_product_attention"):
        pytest.skip("nn.attention does not define scaled_dot_product_attention yet")
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    out = F.scaled_dot_product_attention(t64(q, device, False), t64(k, device, False), t64(v, device, False))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(4)
    expected = np.exp(np_log_softmax(scores, -1)) @ v
    np.testing.assert_allclose(host(out), expected, rtol=1e-10)


def test_nn_sources_do_not_import_numpy():
    root = pathlib.Path(tl.__file__).parent
    for rel in ("ops/loss.py", "ops/norm.py", "nn/functional.py", "nn/layers.py", "nn/init.py", "nn/utils.py"):
        text = (root / rel).read_text()
        assert "import numpy" not in text and "import cupy" not in text, rel
