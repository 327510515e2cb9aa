"""nn.Module: registration, dotted names, modes, zero_grad, state dicts, dtype moves, buffers."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(4)
        self.ff = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        self.scale = nn.Parameter(tl.ones(1))
        self.register_buffer("steps", tl.zeros(1))
        self.register_buffer("cache", tl.zeros(2), persistent=False)

    def forward(self, x):
        return x + self.ff(self.ln(x)) * self.scale


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.heads = nn.ModuleDict({"lm": nn.Linear(4, 10), "aux": nn.Linear(4, 2, bias=False)})

    def forward(self, ids):
        h = self.emb(ids)
        for b in self.blocks:
            h = b(h)
        return self.heads["lm"](h)


BLOCK_PARAMS = ["scale", "ln.weight", "ln.bias", "ff.0.weight", "ff.0.bias", "ff.2.weight", "ff.2.bias"]


def test_dotted_names_through_nested_containers():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    expected = ["emb.weight"]
    for i in range(2):
        expected += [f"blocks.{i}.{n}" for n in BLOCK_PARAMS]
    expected += ["heads.lm.weight", "heads.lm.bias", "heads.aux.weight"]
    assert names == expected  # PyTorch's order: each module's own parameters, then its children's
    assert len(list(net.parameters())) == len(expected)
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.steps", "blocks.0.cache", "blocks.1.steps",
                                                   "blocks.1.cache"]
    assert [type(m).__name__ for m in net.children()] == ["Embedding", "ModuleList", "ModuleDict"]
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 6


def test_shared_parameters_are_counted_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.Tanh(), lin)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    other = nn.Linear(3, 3)
    other.weight = lin.weight  # tied weights, as in an LM's embedding and output layer
    pair = nn.ModuleList([lin, other])
    assert [n for n, _ in pair.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    x = tl.randn(2, 3)
    pair[1](pair[0](x)).sum().backward()
    # the tied weight's gradient is the sum of its two uses' gradients
    w1 = tl.tensor(lin.weight.detach().numpy(), requires_grad=True)
    w2 = tl.tensor(lin.weight.detach().numpy(), requires_grad=True)
    h = x @ w1.T + lin.bias.detach()
    (h @ w2.T + other.bias.detach()).sum().backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), w1.grad.numpy() + w2.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_reassigning_an_attribute_unregisters_it():
    lin = nn.Linear(2, 2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    seq = nn.Sequential(nn.Linear(2, 2))
    seq.extra = nn.Linear(2, 1)
    assert "extra.weight" in dict(seq.named_parameters())
    with pytest.raises(TypeError, match="child module 'extra'"):
        seq.extra = 3  # PyTorch: a module slot takes a Module or None
    seq.extra = None
    assert "extra.weight" not in dict(seq.named_parameters())


def test_train_and_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.blocks.train()
    assert net.blocks[1].ff[0].training and not net.training
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad(device):
    net = Net().to(device)
    out = net(tl.tensor([[1, 2, 3]], device=device))
    out.sum().backward()
    grads = [p for p in net.parameters() if p.grad is not None]
    assert len(grads) == len(list(net.parameters())) - 1  # the unused aux head gets none
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in grads)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_is_host_numpy_copies(device):
    net = Net().to(device)
    sd = net.state_dict()
    expected = ["emb.weight"]
    for i in range(2):
        expected += [f"blocks.{i}.scale", f"blocks.{i}.steps"] + [f"blocks.{i}.{n}" for n in BLOCK_PARAMS[1:]]
    expected += ["heads.lm.weight", "heads.lm.bias", "heads.aux.weight"]
    assert list(sd) == expected  # PyTorch's order: each module's parameters, then its buffers, then children
    assert "blocks.0.cache" not in sd
    assert all(type(v) is np.ndarray for v in sd.values())
    before = net.emb.weight.detach().numpy().copy()
    sd["emb.weight"][...] = 42.0
    np.testing.assert_array_equal(net.emb.weight.detach().numpy(), before)
    with tl.no_grad():
        net.emb.weight.array[...] = 7.0
    assert not np.any(sd["emb.weight"] == 7.0)


def test_load_state_dict_round_trip(device):
    a, b = Net().to(device), Net().to(device)
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.detach().numpy(), pb.detach().numpy())
        assert pb.device == a.emb.weight.device and pb.requires_grad
    ids = tl.tensor([[0, 5, 9]], device=device)
    np.testing.assert_array_equal(a(ids).detach().numpy(), b(ids).detach().numpy())


def snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def assert_unchanged(module, snap):
    now = module.state_dict()
    assert set(now) == set(snap)
    for k in snap:
        np.testing.assert_array_equal(now[k], snap[k])


def test_load_state_dict_missing_key_changes_nothing():
    net, src = Net(), Net()
    snap = snapshot(net)
    sd = src.state_dict()
    del sd["blocks.1.ln.bias"]
    with pytest.raises(RuntimeError, match=r"missing key\(s\): 'blocks.1.ln.bias'"):
        net.load_state_dict(sd)
    assert_unchanged(net, snap)


def test_load_state_dict_unexpected_key_changes_nothing():
    net, src = Net(), Net()
    snap = snapshot(net)
    sd = src.state_dict()
    sd["blocks.0.ln.running_mean"] = np.zeros(4, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"unexpected key\(s\): 'blocks.0.ln.running_mean'"):
        net.load_state_dict(sd)
    assert_unchanged(net, snap)


def test_load_state_dict_shape_mismatch_names_key_and_both_shapes_and_changes_nothing():
    net, src = Net(), Net()
    snap = snapshot(net)
    sd = src.state_dict()
    sd["heads.lm.weight"] = np.zeros((11, 4), dtype=np.float32)  # one of the last keys: earlier ones are valid
    with pytest.raises(RuntimeError, match=r"'heads.lm.weight'.*\(11, 4\).*\(10, 4\)"):
        net.load_state_dict(sd)
    assert_unchanged(net, snap)


def test_load_state_dict_non_strict_reports_keys_and_loads_the_rest():
    net, src = Net(), Net()
    sd = src.state_dict()
    del sd["emb.weight"]
    sd["extra"] = np.ones(1, dtype=np.float32)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["emb.weight"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(net.heads["lm"].weight.detach().numpy(), sd["heads.lm.weight"])


def test_load_state_dict_keeps_dtype_and_copies():
    lin = nn.Linear(2, 2)
    w = np.arange(4.0).reshape(2, 2)  # float64 source into a float32 model
    lin.load_state_dict({"weight": w, "bias": np.zeros(2)})
    assert lin.weight.dtype == tl.float32
    w[0, 0] = 99.0
    assert lin.weight.detach().numpy()[0, 0] == 0.0


def test_to_dtype_casts_parameters_grads_and_float_buffers(device):
    net = Net().to(device)
    net.register_buffer("count", tl.tensor([3], device=device))
    net(tl.tensor([[1, 2]], device=device)).sum().backward()
    assert net.to(tl.float64) is net
    assert all(p.dtype == tl.float64 for p in net.parameters())
    assert all(p.grad.dtype == tl.float64 for p in net.parameters() if p.grad is not None)
    assert net.blocks[0].steps.dtype == tl.float64 and net.count.dtype == tl.int64
    out = net(tl.tensor([[1, 2]], device=device))
    assert out.dtype == tl.float64
    net.float()
    assert all(p.dtype == tl.float32 for p in net.parameters())


def test_buffers_are_state_but_not_parameters():
    block = Block()
    assert "steps" not in dict(block.named_parameters())
    assert [n for n, _ in block.named_buffers()] == ["steps", "cache"]
    assert "steps" in block.state_dict() and "cache" not in block.state_dict()
    block.steps = tl.ones(1)  # reassigning keeps it a buffer
    assert block.state_dict()["steps"][0] == 1.0
    fresh = Block()
    fresh.load_state_dict(block.state_dict())
    assert fresh.steps.numpy()[0] == 1.0


def test_module_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    assert len(seq) == 2 and isinstance(seq[1], nn.Tanh)
    seq.append(nn.Linear(3, 1))
    assert seq(tl.randn(4, 2)).shape == (4, 1)
    ml = nn.ModuleList()
    ml.append(nn.Linear(1, 1)).extend([nn.Linear(1, 2)])
    ml.insert(0, nn.Identity())
    assert [n for n, _ in ml.named_parameters()] == ["1.weight", "1.bias", "2.weight", "2.bias"]
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.Linear(1, 1)
    assert list(md.keys()) == ["a", "b"] and "b" in md and len(md) == 2
    del md["a"]
    assert [n for n, _ in md.named_parameters()] == ["b.weight", "b.bias"]


def test_module_repr_nests():
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1)))
    assert text == (  # as PyTorch
        "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): Dropout(p=0.1, inplace=False)\n)"
    )


def test_assigning_before_super_init_is_an_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tl.ones(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()
