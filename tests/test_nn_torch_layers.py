"""Activation, shape and loss layers and the new nn.functional functions, against PyTorch and by gradcheck.

Forward values and input gradients are compared with PyTorch in float64 (when torch is installed);
every new differentiable function is also checked by finite differences (``tl.gradcheck``) over
Hypothesis-drawn shapes and values, on every backend.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from helpers import arrays, arrays_avoiding, check_grad, host, shapes
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import functional as F

# ---------------------------------------------------------------------- gradchecks (no torch needed)
UNARY = {
    "silu": (lambda x: F.silu(x), []),
    "softplus": (lambda x: F.softplus(x), []),
    "softplus_beta": (lambda x: F.softplus(x, beta=2.0, threshold=3.0), [1.5]),  # kink where beta x = threshold
    "logsigmoid": (lambda x: F.logsigmoid(x), []),
    "mish": (lambda x: F.mish(x), []),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), [0.0]),
    "elu": (lambda x: F.elu(x, alpha=1.3), [0.0]),
    "hardtanh": (lambda x: F.hardtanh(x, -0.5, 2.0), [-0.5, 2.0]),
    "relu6": (lambda x: F.relu6(x * 3), [0.0, 2.0]),
    "hardsigmoid": (lambda x: F.hardsigmoid(x), [-3.0, 3.0]),
    "hardswish": (lambda x: F.hardswish(x), [-3.0, 3.0]),
    "selu": (lambda x: F.selu(x), [0.0]),
    "celu": (lambda x: F.celu(x, alpha=0.7), [0.0]),
    "softsign": (lambda x: F.softsign(x), [0.0]),
    "tanhshrink": (lambda x: F.tanhshrink(x), []),
    "threshold": (lambda x: F.threshold(x, 0.5, -2.0), [0.5]),
}


@given(data=st.data(), name=st.sampled_from(sorted(UNARY)))
def test_activation_gradcheck(device, data, name):
    fn, kinks = UNARY[name]
    x = data.draw(arrays_avoiding(data.draw(shapes()), kinks, lo=-4, hi=4))
    check_grad(fn, x, device=device)


@given(data=st.data(), dim=st.sampled_from([0, -1]))
def test_glu_gradcheck(device, data, dim):
    shape = data.draw(shapes(min_dims=1))
    shape = (2 * shape[0],) + shape[1:] if dim == 0 else shape[:-1] + (2 * shape[-1],)
    check_grad(lambda x: F.glu(x, dim), data.draw(arrays(shape)), device=device)


@given(data=st.data(), p=st.sampled_from([1.5, 2.0, 3.0]))
def test_normalize_gradcheck(device, data, p):
    x = data.draw(arrays_avoiding((3, 4), [0.0], margin=0.2))  # |x|^p has a kink at 0 for p < 2
    check_grad(lambda t: F.normalize(t, p=p, dim=1), x, device=device)


@given(data=st.data(), affine=st.booleans(), eps=st.sampled_from([None, 1e-5]))
def test_rms_norm_gradcheck(device, data, affine, eps):
    x = data.draw(arrays_avoiding((2, 3, 4), [0.0], margin=0.3))  # RMS >= 0.3: well conditioned
    w = data.draw(arrays((3, 4), 0.5, 2.0))
    if affine:
        check_grad(lambda t, g: F.rms_norm(t, (3, 4), g, eps), x, w, device=device)
    else:
        check_grad(lambda t: F.rms_norm(t, 4, eps=eps), x, device=device)


@given(data=st.data())
def test_distances_gradcheck(device, data):
    x1 = data.draw(arrays_avoiding((3, 4), [0.0], margin=0.2))  # norms well away from 0 (sqrt's kink)
    x2 = data.draw(arrays_avoiding((1, 4), [0.0], margin=0.2))
    x1 = np.where(np.abs(x1 - x2) < 0.1, x2 + 0.3, x1)  # nonzero differences (|d|^p kinks)
    check_grad(lambda a, b: F.cosine_similarity(a, b, dim=1), x1, x2, device=device)
    check_grad(lambda a, b: F.pairwise_distance(a, b), x1, x2, device=device)
    check_grad(lambda a, b: F.pairwise_distance(a, b, p=3.0, keepdim=True), x1, x2, device=device)


@given(data=st.data(), mode=st.sampled_from(["constant", "reflect", "replicate", "circular"]))
def test_pad_gradcheck(device, data, mode):
    x = data.draw(arrays((2, 3, 4)))
    pads = data.draw(st.sampled_from([(1, 2), (2, 0, 1, 1), (0, 3, 2, 1)]))
    check_grad(lambda t: F.pad(t, pads, mode=mode), x, device=device)


def _pair(data, lo=-3.0, hi=3.0):
    shape = data.draw(shapes(min_dims=1))
    return data.draw(arrays(shape, lo, hi)), data.draw(arrays(shape, lo, hi))


@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_regression_losses_gradcheck(device, data, reduction):
    x, t = _pair(data)
    x = np.where(np.abs(x - t) < 0.1, t + 0.3, x)  # keep away from |d| = 0 and from |d| = beta / delta
    for bad in (0.5, 1.0):
        x = np.where(np.abs(np.abs(x - t) - bad) < 0.05, x + 0.2 * np.sign(x - t), x)
    check_grad(lambda a, b: F.l1_loss(a, b, reduction=reduction), x, t, device=device)
    check_grad(lambda a, b: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.5), x, t, device=device)
    check_grad(lambda a, b: F.huber_loss(a, b, reduction=reduction, delta=1.0), x, t, device=device)


@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]), weighted=st.booleans())
def test_binary_cross_entropy_gradcheck(device, data, reduction, weighted):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, 0.05, 0.95))
    t = data.draw(arrays(shape, 0.0, 1.0))
    w = data.draw(arrays(shape[-1:], 0.5, 2.0))
    if weighted:
        check_grad(lambda a, b, c: F.binary_cross_entropy(a, b, weight=c, reduction=reduction), x, t, w,
                   device=device)
    else:
        check_grad(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), x, t, device=device)


@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_binary_cross_entropy_with_logits_gradcheck(device, data, reduction):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, -5, 5))
    t = data.draw(arrays(shape, 0.0, 1.0))
    pw = data.draw(arrays(shape[-1:], 0.5, 3.0))
    check_grad(lambda a, b, c: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, pos_weight=c),
               x, t, pw, device=device)


@given(data=st.data(), reduction=st.sampled_from(["batchmean", "sum", "none"]), log_target=st.booleans())
def test_kl_div_gradcheck(device, data, reduction, log_target):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, -3, 0))
    t = data.draw(arrays(shape, -3, 0)) if log_target else data.draw(arrays(shape, 0.05, 1.0))
    check_grad(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), x, t, device=device)


def test_softplus_is_finite_for_large_inputs(device):
    x = tl.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=tl.float64, device=device, requires_grad=True)
    y = F.softplus(x)
    y.sum().backward()
    assert np.all(np.isfinite(host(y))) and np.all(np.isfinite(host(x.grad)))
    np.testing.assert_allclose(host(y)[2:], [np.log(2.0), 30.0 + np.log1p(np.exp(-30.0)), 1000.0], rtol=1e-12)
    z = F.binary_cross_entropy_with_logits(x, tl.ones_like(x.detach()), reduction="none")
    assert np.all(np.isfinite(host(z)))


_INPLACE_LAYERS = [
    lambda nn_: nn_.ReLU(inplace=True), lambda nn_: nn_.SiLU(inplace=True), lambda nn_: nn_.LeakyReLU(0.2, True),
    lambda nn_: nn_.ELU(0.5, True), lambda nn_: nn_.Hardtanh(-0.5, 0.5, True), lambda nn_: nn_.ReLU6(True),
    lambda nn_: nn_.Hardswish(True), lambda nn_: nn_.SELU(True), lambda nn_: nn_.CELU(0.7, True),
    lambda nn_: nn_.Threshold(0.1, -1.0, True), lambda nn_: nn_.Mish(True), lambda nn_: nn_.Hardsigmoid(True),
]


@pytest.mark.parametrize("make", _INPLACE_LAYERS)
def test_inplace_activations_write_into_their_input_and_backprop_through_it(make, device):
    """``inplace=True`` (common in PyTorch code): the input's memory holds the result, and the gradient
    flows through the activation, as in PyTorch."""
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    x = tl.tensor(x0, device=device)
    w = tl.tensor(w0, device=device, requires_grad=True)
    h = x @ w
    out = make(nn)(h)
    assert out is h
    (out * out).sum().backward()
    ref_w = tl.tensor(w0, device=device, requires_grad=True)
    ref = make(nn)
    ref.inplace = False  # the same layer, out of place
    r = ref(x @ ref_w)
    (r * r).sum().backward()
    np.testing.assert_allclose(host(out), host(r), rtol=1e-12)
    np.testing.assert_allclose(host(w.grad), host(ref_w.grad), rtol=1e-12)
    leaf = tl.tensor(x0, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        make(nn)(leaf)


def test_inplace_dropout_and_relu_match_torch():
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(1).standard_normal((5, 4))
    w0 = np.random.default_rng(2).standard_normal((4, 4))
    grads = []
    for lib, mod in ((tl, nn), (torch, torch.nn)):
        w = lib.tensor(w0, requires_grad=True)
        h = lib.tensor(x0) @ w
        net = mod.Sequential(mod.ReLU(inplace=True), mod.Dropout(0.0, inplace=True))
        y = net(h)
        y.sum().backward()
        grads.append((np.asarray(y.detach().numpy()), np.asarray(w.grad.numpy()), repr(net)))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-12)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12)
    assert grads[0][2] == grads[1][2]


def test_bad_arguments_raise_clear_errors():
    x = tl.randn(2, 3)
    with pytest.raises(RuntimeError, match="dimension -1 is size 3"):
        F.glu(x)
    with pytest.raises(ValueError, match="padding length"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(NotImplementedError, match="mode"):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(RuntimeError, match="negative output size"):
        F.pad(x, (-2, -2))
    assert F.pad(x, (-1, -2)).shape == (2, 0)
    with pytest.raises(RuntimeError, match="less than the input size"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(x, tl.zeros(2, 3))
    with pytest.raises(ValueError, match="target size"):
        F.binary_cross_entropy_with_logits(x, tl.zeros(3))
    with pytest.raises(NotImplementedError, match="size_average"):
        nn.CrossEntropyLoss(size_average=True)
    with pytest.raises(ValueError, match="reduction"):
        F.l1_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        nn.KLDivLoss(reduction="batch")(x, x)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(3, 2, max_norm=1.0)
    with pytest.raises(NotImplementedError, match="named"):
        nn.Unflatten("features", (2, 2))
    with pytest.raises(IndexError, match="dim 3"):
        nn.Unflatten(3, (1, 3))(x)
    with pytest.warns(UserWarning, match="broadcast"):
        F.l1_loss(x, tl.randn(3))


def test_unflatten_flatten_round_trip(device):
    x = tl.randn(2, 12, 3, device=device)
    y = nn.Unflatten(1, (3, -1))(x)
    assert y.shape == (2, 3, 4, 3)
    assert nn.Flatten()(y).shape == (2, 36) and nn.Flatten(1, 2)(y).shape == (2, 12, 3)
    np.testing.assert_array_equal(host(nn.Flatten(1, 2)(y)), host(x))
    assert nn.Unflatten(-1, (1, 3))(x).shape == (2, 12, 1, 3)


# ---------------------------------------------------------------------- against PyTorch
def _torch():
    return pytest.importorskip("torch")


def _compare(ours, theirs, *arrays_, device="cpu", rtol=1e-10, atol=1e-12, labels=()):
    """Same values and input gradients; float inputs get gradients unless their position is in ``labels``."""
    torch = _torch()
    grad = [np.asarray(a).dtype.kind == "f" and i not in labels for i, a in enumerate(arrays_)]
    xs = [tl.tensor(a, device=device, requires_grad=g) for a, g in zip(arrays_, grad)]
    ts = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays_, grad)]
    y, ref = ours(*xs), theirs(*ts)
    np.testing.assert_allclose(host(y), ref.detach().numpy(), rtol=rtol, atol=atol)
    g = np.cos(np.arange(ref.numel())).reshape(tuple(ref.shape))
    (y * tl.tensor(g, device=device)).sum().backward()
    (ref * torch.tensor(g)).sum().backward()
    for x, t in zip(xs, ts):
        if t.requires_grad and t.grad is not None:  # None: torch does not differentiate that input (a label)
            np.testing.assert_allclose(host(x.grad), t.grad.numpy(), rtol=rtol, atol=atol)


ACTIVATIONS = [
    ("Tanh", {}), ("ReLU", {}), ("Sigmoid", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}),
    ("Mish", {}), ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.3}), ("ELU", {"alpha": 0.7}),
    ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 4.0}), ("LogSigmoid", {}), ("GLU", {}),
    ("GLU", {"dim": 0}), ("Softmax", {"dim": -1}), ("LogSoftmax", {"dim": 1}), ("Identity", {}),
    ("Flatten", {}), ("Flatten", {"start_dim": 0, "end_dim": 1}), ("Unflatten", {"dim": 1, "unflattened_size": (2, 3)}),
    ("Hardtanh", {}), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("ReLU6", {}), ("SELU", {}),
    ("CELU", {"alpha": 0.5}), ("Softsign", {}), ("Tanhshrink", {}), ("Threshold", {"threshold": 0.3, "value": -1.0}),
    ("Softmin", {"dim": 1}), ("Softmax2d", {}),
]


@pytest.mark.parametrize("name,kwargs", ACTIVATIONS, ids=[f"{n}{k or ''}" for n, k in ACTIVATIONS])
def test_activation_layers_match_torch(device, name, kwargs):
    torch = _torch()
    x = np.random.default_rng(0).normal(size=(4, 6, 2)) * 4
    ours, theirs = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, x, device=device)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pads", [(1, 2), (2, 1, 0, 2), (-1, 2, 1, -1)])
def test_pad_matches_torch(device, mode, pads):
    torch = _torch()
    if mode != "constant" and min(pads) < 0:
        pytest.skip("negative padding crops only in constant mode")
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    value = {"value": 1.5} if mode == "constant" else {}
    _compare(lambda t: F.pad(t, pads, mode=mode, **value),
             lambda t: torch.nn.functional.pad(t, pads, mode=mode, **value), x, device=device)


def test_normalize_matches_torch(device):
    torch = _torch()
    x = np.random.default_rng(2).normal(size=(3, 5))
    for kwargs in ({}, {"p": 1.0, "dim": 0}, {"p": 3.0, "dim": -1}):
        _compare(partial(F.normalize, **kwargs), partial(torch.nn.functional.normalize, **kwargs), x, device=device)


def _loss_cases():
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    probs, target01 = 1 / (1 + np.exp(-x)), rng.uniform(size=(4, 5))
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    classes = rng.integers(0, 5, size=4)
    classes[1] = 2
    w = rng.uniform(0.5, 2.0, size=5)
    signs = np.where(rng.uniform(size=(4, 5)) < 0.5, -1.0, 1.0)
    return [
        ("MSELoss", {}, (x, t)), ("L1Loss", {"reduction": "sum"}, (x, t)),
        ("SmoothL1Loss", {"beta": 0.5}, (x, t)), ("HuberLoss", {"delta": 0.8, "reduction": "none"}, (x, t)),
        ("KLDivLoss", {"reduction": "batchmean"}, (logp, target01 / target01.sum(1, keepdims=True))),
        ("KLDivLoss", {"reduction": "sum", "log_target": True}, (logp, logp[::-1].copy())),
        ("BCELoss", {}, (probs, target01)), ("BCELoss", {"weight": w, "reduction": "sum"}, (probs, target01)),
        ("BCEWithLogitsLoss", {}, (x, target01)),
        ("BCEWithLogitsLoss", {"pos_weight": w, "weight": w[::-1].copy()}, (x, target01)),
        ("CrossEntropyLoss", {}, (x, classes)),
        ("CrossEntropyLoss", {"weight": w, "ignore_index": 2, "label_smoothing": 0.1}, (x, classes)),
        ("CrossEntropyLoss", {"reduction": "none"}, (x, target01)),
        ("NLLLoss", {"weight": w, "ignore_index": 2}, (logp, classes)),
        ("NLLLoss", {"reduction": "sum"}, (logp, classes)),
        ("MarginRankingLoss", {"margin": 0.3}, (x[:, 0].copy(), t[:, 0].copy(), signs[:, 0].copy())),
        ("HingeEmbeddingLoss", {"margin": 0.5, "reduction": "sum"}, (np.abs(x), signs)),
        ("SoftMarginLoss", {}, (x, signs)),
        ("MultiLabelSoftMarginLoss", {}, (x, (target01 > 0.5).astype(np.float64))),
        ("MultiLabelSoftMarginLoss", {"weight": w, "reduction": "none"}, (x, target01)),
        ("CosineEmbeddingLoss", {"margin": 0.1}, (x, t, signs[:, 0].copy())),
        ("TripletMarginLoss", {}, (x, t, x[::-1].copy())),
        ("TripletMarginLoss", {"p": 1.5, "swap": True, "margin": 2.0}, (x, t, x[::-1].copy())),
        ("PoissonNLLLoss", {}, (x, np.abs(t) * 3)),
        ("PoissonNLLLoss", {"log_input": False, "full": True}, (np.abs(x) + 0.1, np.abs(t) * 3)),
    ]


@pytest.mark.parametrize("case", range(len(_loss_cases())))
def test_loss_layers_match_torch(device, case):
    torch = _torch()
    name, kwargs, inputs = _loss_cases()[case]
    ours_kw = {k: tl.tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    theirs_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    ours, theirs = getattr(nn, name)(**ours_kw), getattr(torch.nn, name)(**theirs_kw)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # class weights are buffers, as PyTorch
    _compare(ours, theirs, *inputs, device=device, labels=LABEL_ARGS.get(name, ()))


LABEL_ARGS = {  # the positions of +-1 / 0-1 label inputs that PyTorch does not differentiate
    "SoftMarginLoss": (1,), "HingeEmbeddingLoss": (1,), "MarginRankingLoss": (2,), "CosineEmbeddingLoss": (2,),
    "MultiLabelSoftMarginLoss": (1,),
}


def test_embedding_from_pretrained_matches_torch():
    torch = _torch()
    w = np.random.default_rng(4).normal(size=(5, 3))
    ours = nn.Embedding.from_pretrained(tl.tensor(w), padding_idx=1)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(w), padding_idx=1)
    assert repr(ours) == repr(theirs) and not ours.weight.requires_grad
    np.testing.assert_array_equal(host(ours.weight), w)  # the pad row is not zeroed, as PyTorch
    trainable = nn.Embedding.from_pretrained(tl.tensor(w), freeze=False)
    assert trainable.weight.requires_grad
    _compare(trainable, torch.nn.Embedding.from_pretrained(torch.tensor(w), freeze=False), np.array([[0, 4], [4, 4]]))
    with pytest.raises(ValueError, match="2-dimensional"):
        nn.Embedding.from_pretrained(tl.tensor(w[0]))


def test_factory_kwargs_on_layer_constructors(device):
    layers = [
        nn.Linear(3, 2, device=device, dtype=tl.float64), nn.Embedding(4, 2, device=device, dtype=tl.float64),
        nn.LayerNorm(3, device=device, dtype=tl.float64),
        nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, device=device, dtype=tl.float64),
    ]
    for layer in layers:
        assert all(p.dtype == tl.float64 and p.device == tl.tensor(0.0, device=device).device
                   for p in layer.parameters())


@pytest.mark.parametrize("kwargs", [{}, {"eps": 1e-5}, {"elementwise_affine": False}])
def test_rms_norm_matches_torch(device, kwargs):
    torch = _torch()
    ours, theirs = nn.RMSNorm((3, 4), **kwargs, dtype=tl.float64, device=device), torch.nn.RMSNorm((3, 4), **kwargs)
    assert repr(ours) == repr(theirs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    theirs = theirs.double()
    x = np.random.default_rng(5).normal(size=(2, 3, 4))
    _compare(ours, theirs, x, device=device)
    if kwargs.get("elementwise_affine", True):
        ours.weight.grad = None
        w = np.random.default_rng(6).uniform(0.5, 2, size=(3, 4))
        ours.load_state_dict({"weight": w})
        theirs.load_state_dict({"weight": torch.tensor(w)})
        _compare(ours, theirs, x, device=device)


@pytest.mark.parametrize("name,kwargs", [("CosineSimilarity", {}), ("CosineSimilarity", {"dim": -1}),
                                         ("PairwiseDistance", {}), ("PairwiseDistance", {"p": 1.5, "keepdim": True})])
def test_distance_layers_match_torch(device, name, kwargs):
    torch = _torch()
    rng = np.random.default_rng(7)
    ours, theirs = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), device=device)


def test_hardsigmoid_and_hardswish_are_exact(device):
    """PyTorch's float64 kernels use a float32 1/6 (relative error 3e-8), so these are checked against the formula."""
    torch = _torch()
    x = np.random.default_rng(8).normal(size=(4, 6)) * 4
    expected = np.clip(x + 3, 0, 6) / 6
    for name, ref in (("Hardsigmoid", expected), ("Hardswish", x * expected)):
        assert repr(getattr(nn, name)()) == repr(getattr(torch.nn, name)())
        t = tl.tensor(x, device=device, requires_grad=True)
        y = getattr(nn, name)()(t)
        np.testing.assert_allclose(host(y), ref, rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(host(y), getattr(torch.nn, name)()(torch.tensor(x)).numpy(), rtol=1e-7)
        y.sum().backward()
        slope = np.where(np.abs(x) < 3, 1 / 6, 0.0)
        want = slope if name == "Hardsigmoid" else expected + x * slope
        np.testing.assert_allclose(host(t.grad), want, rtol=1e-15, atol=1e-15)


def test_zero_vectors_give_finite_gradients_as_torch(device):
    torch = _torch()
    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    y = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    _compare(lambda t: F.normalize(t, dim=1), lambda t: torch.nn.functional.normalize(t, dim=1), x, device=device)
    _compare(lambda t: F.normalize(t, p=3.0, dim=1), lambda t: torch.nn.functional.normalize(t, p=3.0, dim=1), x,
             device=device)
    _compare(lambda a, b: F.cosine_similarity(a, b), lambda a, b: torch.nn.functional.cosine_similarity(a, b), x, y,
             device=device)


@given(data=st.data(), shared=st.booleans())
def test_prelu_gradcheck(device, data, shared):
    x = data.draw(arrays_avoiding((2, 3, 2), [0.0]))
    w = data.draw(arrays((1,) if shared else (3,), -1.0, 1.0))
    check_grad(lambda t, a: F.prelu(t, a), x, w, device=device)


@given(data=st.data(), groups=st.sampled_from([1, 2, 4]), affine=st.booleans())
def test_group_norm_gradcheck(device, data, groups, affine):
    x = data.draw(arrays((2, 4, 3)))
    x = x + np.arange(x.size).reshape(x.shape) * 0.1  # no group is constant
    if affine:
        check_grad(lambda t, g, b: F.group_norm(t, groups, g, b), x, data.draw(arrays((4,), 0.5, 2.0)),
                   data.draw(arrays((4,))), device=device)
    else:
        check_grad(lambda t: F.group_norm(t, groups), x, device=device)


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_matches_torch(device, num_parameters):
    torch = _torch()
    ours = nn.PReLU(num_parameters, init=0.1, device=device, dtype=tl.float64)
    theirs = torch.nn.PReLU(num_parameters, init=0.1).double()
    assert repr(ours) == repr(theirs)
    np.testing.assert_allclose(host(ours.weight), theirs.weight.detach().numpy(), rtol=1e-7)  # torch's init is float32
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(9).normal(size=(4, 3, 2))
    _compare(ours, theirs, x, device=device)
    np.testing.assert_allclose(host(ours.weight.grad), theirs.weight.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"bias": False, "eps": 1e-3}])
def test_group_norm_matches_torch(device, kwargs):
    torch = _torch()
    ours = nn.GroupNorm(2, 4, **kwargs, device=device, dtype=tl.float64)
    theirs = torch.nn.GroupNorm(2, 4, **kwargs).double()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if ours.weight is not None:
        w = np.random.default_rng(10).uniform(0.5, 2, size=4)
        ours.load_state_dict({**{k: v for k, v in ours.state_dict().items()}, "weight": w})
        theirs.weight.data.copy_(torch.tensor(w))
    _compare(ours, theirs, np.random.default_rng(11).normal(size=(3, 4, 5)), device=device)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)


PADDINGS = [
    ("ZeroPad1d", ((1, 2),), (2, 3, 4)), ("ZeroPad2d", (2,), (2, 3, 4)),
    ("ZeroPad3d", ((1, 0, 0, 1, 2, 0),), (2, 3, 4)),
    ("ConstantPad1d", (2, 3.5), (3, 4)), ("ConstantPad2d", ((1, 0, 2, 1), -1.0), (2, 3, 4)),
    ("ConstantPad3d", (1, 0.5), (2, 3, 4)),
    ("ReflectionPad1d", ((1, 2),), (2, 3, 4)), ("ReflectionPad2d", ((1, 1, 2, 0),), (1, 2, 3, 4)),
    ("ReflectionPad3d", (1,), (1, 2, 3, 4)), ("ReplicationPad1d", (3,), (3, 4)),
    ("ReplicationPad2d", ((0, 2, 1, 1),), (2, 3, 4)), ("ReplicationPad3d", ((1, 0, 0, 1, 2, 0),), (1, 2, 3, 4)),
    ("CircularPad1d", ((2, 1),), (2, 3, 4)), ("CircularPad2d", (1,), (2, 3, 4)), ("CircularPad3d", (1,), (1, 2, 3, 4)),
]


@pytest.mark.parametrize("name,args,shape", PADDINGS, ids=[p[0] for p in PADDINGS])
def test_padding_layers_match_torch(device, name, args, shape):
    torch = _torch()
    ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, np.random.default_rng(12).normal(size=shape), device=device)


def test_padding_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="tuple of 4 ints"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.ReflectionPad1d(1)(tl.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="3D or 4D"):
        nn.Softmax2d()(tl.randn(2, 3))
    with pytest.raises(RuntimeError, match="3 slopes"):
        F.prelu(tl.randn(2, 4), tl.ones(3))


@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_margin_losses_gradcheck(device, data, reduction):
    x1 = data.draw(arrays_avoiding((3, 4), [0.0], margin=0.3))  # norms away from 0 (cosine's sqrt)
    x2 = data.draw(arrays_avoiding((3, 4), [0.0], margin=0.3))
    x2 = np.where(np.abs(x1 - x2) < 0.2, x1 + 0.5, x2)  # distances and differences away from kinks
    y = np.where(data.draw(arrays((3, 4), 0, 1)) < 0.5, -1.0, 1.0)
    y = tl.tensor(y, device=device)  # labels: no gradient
    check_grad(lambda a: F.soft_margin_loss(a, y, reduction=reduction), x1, device=device)
    check_grad(lambda a: F.multilabel_soft_margin_loss(a, (y > 0).to(tl.float64), reduction=reduction), x1,
               device=device)
    far = tl.full((3, 4), 10.0, dtype=tl.float64, device=device)  # a negative far from both: no kinks
    check_grad(lambda a, b: F.triplet_margin_loss(a, b, far, margin=50.0, reduction=reduction), x1, x2,
               device=device)
    # margin -2 keeps max(0, cos - margin) on its linear side, away from its kink
    check_grad(lambda a, b: F.cosine_embedding_loss(a, b, y[:, 0], margin=-2.0, reduction=reduction), x1, x2,
               device=device)
    check_grad(lambda a: F.poisson_nll_loss(a, tl.tensor(np.abs(x2), device=device), reduction=reduction), x1,
               device=device)


@pytest.mark.parametrize("name,shape", [("Dropout1d", (40, 6, 5)), ("Dropout2d", (40, 6, 3, 2)),
                                        ("Dropout3d", (40, 6, 2, 2, 2)), ("Dropout2d", (50, 3, 2))])
def test_channel_dropout_zeroes_whole_channels(device, name, shape):
    layer = getattr(nn, name)(p=0.4)
    assert repr(layer) == f"{name}(p=0.4, inplace=False)"
    x = tl.tensor(np.random.default_rng(13).uniform(1, 2, size=shape), device=device, requires_grad=True)
    y = layer(x)
    ratio = host(y) / host(x)
    lead = len(shape) - {"Dropout1d": 1, "Dropout2d": 2, "Dropout3d": 3}[name]
    per_channel = ratio.reshape(shape[:lead] + (-1,))
    np.testing.assert_allclose(per_channel, per_channel[..., :1] * np.ones_like(per_channel))  # one draw per channel
    assert set(np.round(np.unique(per_channel), 12)) <= {0.0, round(1 / 0.6, 12)}
    kept = (per_channel[..., 0] > 0).mean()
    assert 0.4 < kept < 0.8  # about 1 - p of the channels survive
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), ratio)  # the gradient is the same mask
    layer.eval()
    assert layer(x) is x
    with pytest.raises(RuntimeError, match="batched"):
        layer(tl.randn(2, device=device))
