"""nn layers: parameters and their default initialisation, forward against NumPy, gradchecks, reprs, errors."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn


def t64(a, device, grad=True):
    return tl.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=grad)


def host(t):
    return t.detach().numpy()


def params_as_host(module):
    return {k: host(v) for k, v in module.named_parameters()}


# ---------------------------------------------------------------------- Linear
def test_linear_parameters_and_default_init(device):
    layer = nn.Linear(400, 300, device=device)
    assert [(k, p.shape) for k, p in layer.named_parameters()] == [("weight", (300, 400)), ("bias", (300,))]
    assert all(p.dtype == tl.float32 and p.requires_grad for p in layer.parameters())
    bound = 1 / math.sqrt(400)
    w, b = params_as_host(layer).values()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.abs(b).max() <= bound
    assert abs(w.mean()) < 0.01 * bound and w.var() == pytest.approx(bound**2 / 3, rel=0.02)  # U(-a, a)
    assert repr(layer) == "Linear(in_features=400, out_features=300, bias=True)"


def test_linear_without_bias_and_dtype(device):
    layer = nn.Linear(3, 2, bias=False, dtype=tl.float64, device=device)
    assert layer.bias is None and [k for k, _ in layer.named_parameters()] == ["weight"]
    assert layer.weight.dtype == tl.float64
    assert "bias=False" in repr(layer)


@given(seed=st.integers(0, 2**31 - 1), lead=st.sampled_from([(), (2,), (2, 3)]), bias=st.booleans())
def test_linear_forward_and_gradcheck(device, seed, lead, bias):
    tl.manual_seed(seed)
    layer = nn.Linear(3, 2, bias=bias, device=device).double()
    x = np.random.default_rng(seed).standard_normal(lead + (3,))
    w = host(layer.weight)
    expected = x @ w.T + (host(layer.bias) if bias else 0)
    np.testing.assert_allclose(host(layer(t64(x, device, False))), expected, rtol=1e-12)
    assert tl.gradcheck(lambda x, *params: layer(x), [t64(x, device)] + list(layer.parameters()))


def test_linear_input_size_mismatch_names_shapes(device):
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(2, 3\)"):
        nn.Linear(3, 2, device=device)(tl.randn(4, 5, device=device))


# ---------------------------------------------------------------------- Embedding
def test_embedding_parameters_and_default_init(device):
    emb = nn.Embedding(500, 200, device=device)
    assert [(k, p.shape) for k, p in emb.named_parameters()] == [("weight", (500, 200))]
    w = host(emb.weight)
    assert w.dtype == np.float32
    assert abs(w.mean()) < 0.01 and w.std() == pytest.approx(1.0, rel=0.01)  # N(0, 1): 100,000 samples
    assert repr(emb) == "Embedding(500, 200)"


def test_embedding_padding_row_is_zero_and_never_learns(device):
    emb = nn.Embedding(6, 3, padding_idx=2, device=device)
    assert repr(emb) == "Embedding(6, 3, padding_idx=2)"
    assert np.all(host(emb.weight)[2] == 0) and np.any(host(emb.weight)[1] != 0)
    ids = tl.tensor([[2, 1, 2], [0, 2, 1]], device=device)
    (emb(ids) ** 2 + emb(ids)).sum().backward()
    grad = emb.weight.grad.numpy()
    assert np.all(grad[2] == 0) and np.all(grad[1] != 0)
    assert nn.Embedding(6, 3, padding_idx=-1).padding_idx == 5


@given(seed=st.integers(0, 2**31 - 1))
def test_embedding_forward_and_gradcheck(device, seed):
    tl.manual_seed(seed)
    emb = nn.Embedding(4, 3, device=device).double()
    ids = np.random.default_rng(seed).integers(0, 4, (2, 3))
    ids[0, :2] = 3  # a repeated id
    out = emb(tl.tensor(ids, device=device))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(host(out), host(emb.weight)[ids])
    assert tl.gradcheck(lambda w: emb(tl.tensor(ids, device=device)), [emb.weight])


def test_embedding_errors(device):
    emb = nn.Embedding(5, 2, device=device)
    with pytest.raises(IndexError, match=r"id 7 .*num_embeddings=5"):
        emb(tl.tensor([1, 7], device=device))
    with pytest.raises(TypeError, match="integer"):
        emb(tl.tensor([1.0], device=device))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)


def test_embedding_from_pretrained(device):
    table = tl.tensor(np.arange(6.0).reshape(3, 2), device=device)
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(tl.tensor([2, 0], device=device)).numpy(), [[4.0, 5.0], [0.0, 1.0]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


# ---------------------------------------------------------------------- LayerNorm
def test_layernorm_parameters_and_repr(device):
    ln = nn.LayerNorm(4, device=device)
    assert [(k, p.shape) for k, p in ln.named_parameters()] == [("weight", (4,)), ("bias", (4,))]
    assert np.all(host(ln.weight) == 1) and np.all(host(ln.bias) == 0)
    assert repr(ln) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)"  # as PyTorch
    ln2 = nn.LayerNorm([2, 3], eps=1e-3, elementwise_affine=False)
    assert list(ln2.parameters()) == [] and ln2.normalized_shape == (2, 3)
    assert repr(ln2) == "LayerNorm((2, 3), eps=0.001, elementwise_affine=False, bias=False)"
    ln3 = nn.LayerNorm(3, bias=False)
    assert [k for k, _ in ln3.named_parameters()] == ["weight"]


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(3,), (2, 3)]), lead=st.sampled_from([(), (2,)]),
       affine=st.booleans())
def test_layernorm_forward_and_gradcheck(device, seed, shape, lead, affine):
    rng = np.random.default_rng(seed)
    ln = nn.LayerNorm(shape, elementwise_affine=affine, device=device).double()
    if affine:
        with tl.no_grad():
            ln.weight.array[...] = t64(rng.standard_normal(shape), device, False).array  # on the layer's device
            ln.bias.array[...] = t64(rng.standard_normal(shape), device, False).array
    x = rng.standard_normal(lead + shape) * 2 + 3
    axes = tuple(range(-len(shape), 0))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    if affine:
        y = y * host(ln.weight) + host(ln.bias)
    np.testing.assert_allclose(host(ln(t64(x, device, False))), y, rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(lambda x, *p: ln(x), [t64(x, device)] + list(ln.parameters()))


def test_layernorm_shape_mismatch(device):
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(4,\)"):
        nn.LayerNorm(4, device=device)(tl.randn(2, 5, device=device))


# ---------------------------------------------------------------------- Dropout and activations
def test_dropout_train_and_eval(device):
    drop = nn.Dropout(0.25)
    assert repr(drop) == "Dropout(p=0.25, inplace=False)"  # as PyTorch
    x = tl.ones(300, 300, device=device)
    out = drop(x).numpy()
    assert abs((out == 0).mean() - 0.25) < 0.01  # 90,000 draws: std 0.0015
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    drop.train()
    assert np.any(drop(x).numpy() == 0)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=f"but got {bad}"):
            nn.Dropout(bad)


def test_dropout_gradient_is_the_mask(device):
    x = tl.randn(20, 20, device=device, requires_grad=True)
    out = nn.Dropout(0.5)(x)
    out.sum().backward()
    kept = out.detach().numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), kept * 2.0)


ACTIVATIONS = [
    (nn.Tanh(), np.tanh, "Tanh()"),
    (nn.ReLU(), lambda x: np.maximum(x, 0), "ReLU()"),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)), "Sigmoid()"),
    (nn.GELU(), lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), "GELU(approximate='none')"),
    (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
     "GELU(approximate='tanh')"),
    (nn.Identity(54, unused=1), lambda x: x, "Identity()"),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True), "Softmax(dim=1)"),
]


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, len(ACTIVATIONS) - 1))
def test_activation_layers(device, seed, which):
    layer, ref, text = ACTIVATIONS[which]
    x = np.random.default_rng(seed).standard_normal((2, 3)) * 2
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    assert repr(layer) == text
    np.testing.assert_allclose(host(layer(t64(x, device, False))), ref(x), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(layer, [t64(x, device)])


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_layers_in_a_sequential_train(device):
    tl.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.LayerNorm(4), nn.Linear(4, 8), nn.GELU(), nn.Dropout(0.1),
                          nn.Linear(8, 7)).to(device)
    ids = tl.tensor([[1, 2, 3], [4, 5, 6]], device=device)
    targets = tl.tensor([[2, 3, 4], [5, 6, 0]], device=device)
    first = None
    for _ in range(30):
        model.zero_grad()
        loss = F.cross_entropy(model(ids).reshape(-1, 7), targets.reshape(-1))
        loss.backward()
        first = loss.item() if first is None else first
        with tl.no_grad():
            for p in model.parameters():
                p.array -= 0.3 * p.grad.array
    model.eval()
    final = F.cross_entropy(model(ids).reshape(-1, 7), targets.reshape(-1)).item()
    assert final < 0.5 * first


# ---------------------------------------------------------------------- against PyTorch (reference machines only)
def torch_state_to_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def compare_with_torch(torch, ours, theirs, x_ours, x_theirs):
    ours.load_state_dict(torch_state_to_numpy(theirs))
    out, ref = ours(x_ours), theirs(x_theirs)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(0).standard_normal(ref.shape).astype(np.float32)
    out.backward(tl.tensor(g))
    ref.backward(torch.tensor(g))
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname and p.shape == tuple(tp.shape)
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-5)
    if x_theirs.requires_grad:
        np.testing.assert_allclose(x_ours.grad.numpy(), x_theirs.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    compare_with_torch(torch, nn.Linear(5, 4), torch.nn.Linear(5, 4), tl.tensor(x, requires_grad=True),
                       torch.tensor(x, requires_grad=True))


def test_embedding_matches_torch():
    torch = pytest.importorskip("torch")
    ids = np.array([[0, 3, 3, 1], [1, 0, 2, 3]])
    compare_with_torch(torch, nn.Embedding(4, 3, padding_idx=1), torch.nn.Embedding(4, 3, padding_idx=1),
                       tl.tensor(ids), torch.tensor(ids))


def test_layernorm_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    theirs = torch.nn.LayerNorm((3, 4))
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    compare_with_torch(torch, nn.LayerNorm((3, 4)), theirs, tl.tensor(x, requires_grad=True),
                       torch.tensor(x, requires_grad=True))


def test_our_state_dict_loads_into_torch():
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    theirs = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ids = np.array([[1, 4], [0, 2]])
    np.testing.assert_allclose(host(ours(tl.tensor(ids))), theirs(torch.tensor(ids)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for shape, weighted, red, eps in itertools.product([(5,), (4, 5), (3, 5, 2, 2)], [False, True],
                                                       ["none", "mean", "sum"], [0.0, 0.2]):
        c = shape[0] if len(shape) == 1 else shape[1]
        tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
        x = rng.standard_normal(shape)
        t = rng.integers(0, c, tshape)
        if t.ndim:
            t.reshape(-1)[::3] = -100
        w = rng.random(c) + 0.1
        xt, xo = torch.tensor(x, requires_grad=True), t64(x, "cpu")
        ref = torch.nn.functional.cross_entropy(xt, torch.tensor(t), weight=torch.tensor(w) if weighted else None,
                                                reduction=red, label_smoothing=eps)
        out = F.cross_entropy(xo, tl.tensor(t), weight=t64(w, "cpu", False) if weighted else None, reduction=red,
                              label_smoothing=eps)
        np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(ref.shape)
        ref.backward(torch.tensor(g))
        out.backward(tl.tensor(g))
        np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [7, 300])  # below and above fused_nn.ONE_HOT_MAX_ROWS: both gradient paths
def test_embedding_gradient_paths_match_numpy_scatter(device, rows):
    from tinygrad_lm.fast import fused_nn

    assert (rows <= fused_nn.ONE_HOT_MAX_ROWS) == (rows == 7)
    rng = np.random.default_rng(rows)
    ids_np = rng.integers(0, rows, size=(5, 9))
    ids_np[0, :4] = 3  # repeated ids must accumulate
    g_np = rng.standard_normal((5, 9, 4))
    emb = nn.Embedding(rows, 4, padding_idx=1, device=device).double()
    out = emb(tl.tensor(ids_np, device=device))
    out.backward(tl.tensor(g_np, device=device))
    expected = np.zeros((rows, 4))
    np.add.at(expected, ids_np.reshape(-1), g_np.reshape(-1, 4))
    expected[1] = 0
    np.testing.assert_allclose(emb.weight.grad.numpy(), expected, rtol=1e-12, atol=1e-12)
