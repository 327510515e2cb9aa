"""nn.Transformer* against PyTorch: same parameter names, and in float64 the same outputs and parameter
gradients after loading PyTorch's state_dict, for both batch_first and norm_first values, train and eval
(dropout 0), with attention masks and key padding masks. Without PyTorch, the finite-difference checks,
init and error tests still run."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm import nn

try:
    import torch
except ImportError:  # the gradchecks below still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
pytestmark = pytest.mark.filterwarnings(  # PyTorch's own advice about its fast paths
    "ignore:Support for mismatched:UserWarning", "ignore:enable_nested_tensor is True:UserWarning"
)

E, H, FF = 8, 2, 12


def _load_from_torch(ours, theirs) -> None:
    result = ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []


def _compare(ours, theirs, our_out, their_out, atol=1e-10) -> None:
    np.testing.assert_allclose(our_out.detach().numpy(), their_out.detach().numpy(), rtol=1e-9, atol=atol)
    (our_out * tl.tensor(np.cos(np.arange(our_out.numel())).reshape(our_out.shape))).sum().backward()
    (their_out * torch.tensor(np.cos(np.arange(their_out.numel())).reshape(their_out.shape))).sum().backward()
    theirs_grads = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(theirs_grads)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), theirs_grads[name].grad.numpy(), rtol=1e-8, atol=atol, err_msg=f"gradient of {name}"
        )


def _inputs(rng, L, B, batch_first):
    x = rng.normal(size=(B, L, E) if batch_first else (L, B, E))
    return x


def _padding(B, S):
    """Right padding (True = padded): batch b has its last b keys padded, key 0 is never padded."""
    pad = np.zeros((B, S), dtype=bool)
    for b in range(B):
        if b:
            pad[b, S - b :] = True
    return pad


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("masks", ["none", "causal_float", "bool_and_padding", "causal_hint"])
def test_encoder_layer_matches_torch(batch_first, norm_first, training, masks):
    rng = np.random.default_rng(0)
    L, B = 5, 3
    kwargs = dict(dim_feedforward=FF, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    theirs = torch.nn.TransformerEncoderLayer(E, H, **kwargs).double().train(training)
    ours = nn.TransformerEncoderLayer(E, H, **kwargs, dtype=tl.float64).train(training)
    _load_from_torch(ours, theirs)
    x = _inputs(rng, L, B, batch_first)
    our_kw, their_kw = {}, {}
    if masks in ("causal_float", "causal_hint"):
        our_kw["src_mask"] = nn.Transformer.generate_square_subsequent_mask(L, dtype=tl.float64)
        their_kw["src_mask"] = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
        if masks == "causal_hint":
            our_kw["is_causal"] = their_kw["is_causal"] = True
    elif masks == "bool_and_padding":
        attn = rng.uniform(size=(L, L)) < 0.3
        np.fill_diagonal(attn, False)  # every query keeps a key
        our_kw["src_mask"], their_kw["src_mask"] = tl.tensor(attn), torch.tensor(attn)
        pad = _padding(B, L)
        our_kw["src_key_padding_mask"], their_kw["src_key_padding_mask"] = tl.tensor(pad), torch.tensor(pad)
    _compare(ours, theirs, ours(tl.tensor(x), **our_kw), theirs(torch.tensor(x), **their_kw))


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_decoder_layer_matches_torch_with_masks(batch_first, norm_first, training):
    rng = np.random.default_rng(1)
    T, S, B = 4, 6, 3
    kwargs = dict(dim_feedforward=FF, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    theirs = torch.nn.TransformerDecoderLayer(E, H, **kwargs).double().train(training)
    ours = nn.TransformerDecoderLayer(E, H, **kwargs).double().train(training)
    _load_from_torch(ours, theirs)
    tgt, mem = _inputs(rng, T, B, batch_first), _inputs(rng, S, B, batch_first)
    tgt_pad, mem_pad = _padding(B, T), _padding(B, S)
    out = ours(
        tl.tensor(tgt), tl.tensor(mem), tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=tl.float64),
        tgt_key_padding_mask=tl.tensor(tgt_pad), memory_key_padding_mask=tl.tensor(mem_pad),
    )
    ref = theirs(
        torch.tensor(tgt), torch.tensor(mem),
        tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64),
        tgt_key_padding_mask=torch.tensor(tgt_pad), memory_key_padding_mask=torch.tensor(mem_pad),
    )
    _compare(ours, theirs, out, ref)


@needs_torch
@pytest.mark.parametrize("activation", ["gelu", "callable", "module"])
def test_encoder_stack_with_norm_and_activation_matches_torch(activation):
    rng = np.random.default_rng(2)
    our_act = {"gelu": "gelu", "callable": nn.functional.silu, "module": nn.GELU(approximate="tanh")}[activation]
    their_act = {
        "gelu": "gelu", "callable": torch.nn.functional.silu, "module": torch.nn.GELU(approximate="tanh")
    }[activation]
    kwargs = dict(dim_feedforward=FF, dropout=0.0, batch_first=True)
    theirs = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(E, H, activation=their_act, **kwargs), 2, norm=torch.nn.LayerNorm(E),
        enable_nested_tensor=False,
    ).double()
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, activation=our_act, **kwargs), 2,
                                 norm=nn.LayerNorm(E)).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())  # layers.0.self_attn.in_proj_weight, ..., norm.bias
    assert ours.layers[0].linear1.weight is not ours.layers[1].linear1.weight  # deep copies, as PyTorch
    _load_from_torch(ours, theirs)
    x = rng.normal(size=(2, 5, E))
    pad = _padding(2, 5)
    out = ours(tl.tensor(x), mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=tl.float64),
               src_key_padding_mask=tl.tensor(pad))
    ref = theirs(torch.tensor(x), mask=torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64),
                 src_key_padding_mask=torch.tensor(pad))
    _compare(ours, theirs, out, ref)


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
def test_full_transformer_matches_torch(batch_first):
    rng = np.random.default_rng(3)
    kwargs = dict(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=FF, dropout=0.0,
                  batch_first=batch_first)
    theirs = torch.nn.Transformer(**kwargs).double()
    ours = nn.Transformer(**kwargs, dtype=tl.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    _load_from_torch(ours, theirs)
    src, tgt = _inputs(rng, 6, 2, batch_first), _inputs(rng, 4, 2, batch_first)
    out = ours(tl.tensor(src), tl.tensor(tgt),
               tgt_mask=nn.Transformer.generate_square_subsequent_mask(4, dtype=tl.float64))
    ref = theirs(torch.tensor(src), torch.tensor(tgt),
                 tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64))
    _compare(ours, theirs, out, ref)


@needs_torch
def test_generate_square_subsequent_mask_matches_torch():
    ours = nn.Transformer.generate_square_subsequent_mask(4)
    assert ours.dtype == tl.float32 and ours.shape == (4, 4)
    np.testing.assert_array_equal(ours.numpy(), torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())


def test_default_init_distributions_and_factory_kwargs():
    layer = nn.TransformerEncoderLayer(16, 4, dtype=tl.float64)
    assert all(p.dtype == tl.float64 for p in layer.parameters())
    assert layer.linear1.weight.shape == (2048, 16) and layer.self_attn.in_proj_weight.shape == (48, 16)
    assert layer.dropout.p == 0.1 and layer.norm1.eps == 1e-5 and layer.norm_first is False
    bound = 1 / np.sqrt(16)  # Linear's default U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(layer.linear1.weight.detach().numpy()).max() <= bound
    model = nn.Transformer(d_model=16, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32)
    xavier = np.sqrt(6 / (16 + 32))  # _reset_parameters: xavier_uniform_ on every matrix
    assert np.abs(model.encoder.layers[0].linear1.weight.detach().numpy()).max() <= xavier


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        nn.TransformerEncoderLayer(8, 3)
    with pytest.raises(TypeError, match="TransformerEncoder"):
        nn.TransformerEncoder("layer", 2)
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8)
    with pytest.raises(RuntimeError, match="batch number"):
        model(tl.randn(5, 2, 8), tl.randn(4, 3, 8))
    with pytest.raises(RuntimeError, match="d_model=8"):
        model(tl.randn(5, 2, 8), tl.randn(4, 2, 6))
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=8)
    with pytest.raises(RuntimeError, match="is_causal"):
        layer(tl.randn(5, 2, 8), is_causal=True)  # PyTorch: the hint needs the mask itself


@needs_torch
def test_unbatched_encoder_layer_with_padding_matches_torch():
    x = np.random.default_rng(4).normal(size=(5, E))
    pad = np.array([False, False, False, False, True])
    theirs = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0).double()
    ours = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0).double()
    _load_from_torch(ours, theirs)
    out = ours(tl.tensor(x), src_key_padding_mask=tl.tensor(pad))
    assert out.shape == (5, E)
    _compare(ours, theirs, out, theirs(torch.tensor(x), src_key_padding_mask=torch.tensor(pad)))


def test_encoder_and_decoder_layers_gradcheck():
    """Finite differences through both layers (float64, dropout 0), w.r.t. the inputs and one weight."""
    tl.manual_seed(0)
    enc = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, dtype=tl.float64)
    dec = nn.TransformerDecoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=True, batch_first=True,
                                     dtype=tl.float64)
    rng = np.random.default_rng(5)
    src = tl.tensor(rng.normal(size=(3, 2, 4)), requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=tl.float64)
    assert tl.gradcheck(lambda x, w: enc(x, src_mask=mask) * w.sum(), [src, enc.linear1.weight])
    tgt = tl.tensor(rng.normal(size=(2, 3, 4)), requires_grad=True)
    mem = tl.tensor(rng.normal(size=(2, 4, 4)), requires_grad=True)
    pad = tl.tensor(np.array([[False, False, False, True], [False, False, False, False]]))
    assert tl.gradcheck(lambda t, m: dec(t, m, tgt_mask=mask, memory_key_padding_mask=pad), [tgt, mem])


def test_dropout_is_active_in_training_only():
    tl.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5)
    x = tl.randn(4, 2, 8)
    assert not np.allclose(layer(x).detach().numpy(), layer(x).detach().numpy())  # fresh masks each call
    layer.eval()
    reference = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
    reference.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(layer(x).detach().numpy(), reference(x).detach().numpy())
