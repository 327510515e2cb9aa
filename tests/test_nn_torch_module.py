"""The nn.Module API as PyTorch's: traversal orders, registration rules, state_dict keys and
load_state_dict results, dtype/device moves, reprs and the containers, each checked against torch
on the same model structure where torch is installed."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
from helpers import host

import tinygrad_lm as tl
from tinygrad_lm import nn


def _torch():
    return pytest.importorskip("torch")


def build(nn_, tensor_ones):
    """The same model written against either framework's ``nn``: nested containers, buffers, tied weights."""

    class Block(nn_.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn_.LayerNorm(4)
            self.ff = nn_.Sequential(OrderedDict(fc=nn_.Linear(4, 8), act=nn_.GELU(), proj=nn_.Linear(8, 4)))
            self.register_buffer("steps", tensor_ones(1))
            self.register_buffer("cache", tensor_ones(2), persistent=False)

        def forward(self, x):
            return x + self.ff(self.ln(x))

    class Net(nn_.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn_.Embedding(10, 4, padding_idx=0)
            self.blocks = nn_.ModuleList([Block() for _ in range(3)])
            self.heads = nn_.ModuleDict({"lm": nn_.Linear(4, 10, bias=False), "aux": nn_.Linear(4, 2)})
            self.scale = nn_.Parameter(tensor_ones(4))
            self.heads["lm"].weight = self.emb.weight  # weight tying
            self.drop = nn_.Dropout(0.1)

        def forward(self, ids):
            h = self.emb(ids) * self.scale
            for b in self.blocks:
                h = b(h)
            return self.heads["lm"](h)

    return Net()


def _pair():
    torch = _torch()
    return build(nn, tl.ones), build(torch.nn, torch.ones)


def test_traversal_orders_and_names_match_torch():
    ours, theirs = _pair()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters(remove_duplicate=False)] == [
        n for n, _ in theirs.named_parameters(remove_duplicate=False)
    ]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_modules(prefix="net")] == [n for n, _ in theirs.named_modules(prefix="net")]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [n for n, _ in ours.blocks[1].named_parameters("b", recurse=False)] == []
    assert [type(m).__name__ for m in ours.children()] == [type(m).__name__ for m in theirs.children()]
    ours_order, theirs_order = [], []
    ours.apply(lambda m: ours_order.append(type(m).__name__))
    theirs.apply(lambda m: theirs_order.append(type(m).__name__))
    assert ours_order == theirs_order  # children first, then the module itself
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert list(ours.state_dict()) == list(theirs.state_dict())  # the tied weight under both names
    assert "blocks.0.cache" not in ours.state_dict()


def test_load_state_dict_results_match_torch():
    torch = _torch()
    ours, theirs = _pair()
    theirs_sd = theirs.state_dict()
    assert repr(ours.load_state_dict(theirs_sd)) == repr(theirs.load_state_dict(theirs_sd))
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, theirs_sd[key].numpy(), err_msg=key)
    # strict=False: load what matches, report the rest exactly as torch does
    partial = {k: v.numpy() * 2 for k, v in theirs_sd.items() if not k.startswith("blocks.2")}
    partial["extra.weight"] = np.zeros(3, dtype=np.float32)
    ours_result = ours.load_state_dict(partial, strict=False)
    theirs_result = theirs.load_state_dict({k: torch.tensor(v) for k, v in partial.items()}, strict=False)
    assert ours_result.missing_keys == theirs_result.missing_keys
    assert ours_result.unexpected_keys == theirs_result.unexpected_keys == ["extra.weight"]
    assert ours_result == (theirs_result.missing_keys, ["extra.weight"])  # a named tuple, as torch's
    np.testing.assert_array_equal(host(ours.heads["aux"].weight), theirs.heads["aux"].weight.detach().numpy())
    # strict=True names the keys; a shape mismatch raises even with strict=False, as torch
    with pytest.raises(RuntimeError, match="missing key.*blocks.2.ln.weight"):
        ours.load_state_dict(partial)
    bad = {k: v.numpy() for k, v in theirs_sd.items()}
    bad["heads.aux.bias"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"size mismatch for 'heads.aux.bias'.*\(3,\).*\(2,\)"):
        ours.load_state_dict(bad, strict=False)
    with pytest.raises(RuntimeError, match="size mismatch for heads.aux.bias"):
        theirs.load_state_dict({k: torch.tensor(v) for k, v in bad.items()}, strict=False)


def test_state_dict_values_and_keep_vars():
    net = build(nn, tl.ones)
    sd = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())  # host copies (shared/API.md)
    sd["scale"][:] = 7
    assert np.all(host(net.scale) == 1)
    kept = net.state_dict(keep_vars=True)
    assert kept["scale"] is net.scale and kept["heads.lm.weight"] is net.emb.weight
    assert list(net.state_dict(prefix="model.")) == ["model." + k for k in sd]
    other = build(nn, tl.ones)
    assert repr(other.load_state_dict(net.state_dict())) == "<All keys matched successfully>"
    assert repr(other.load_state_dict(net.state_dict(keep_vars=True))) == "<All keys matched successfully>"
    np.testing.assert_array_equal(host(other.blocks[2].ff.fc.weight), host(net.blocks[2].ff.fc.weight))


def test_shared_module_appears_under_both_paths_in_state_dict_as_torch():
    torch = _torch()
    lin, tlin = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    ours, theirs = nn.Sequential(lin, nn.Tanh(), lin), torch.nn.Sequential(tlin, torch.nn.Tanh(), tlin)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()] == ["", "0", "1"]
    assert len([n for n, _ in ours.named_modules(remove_duplicate=False)]) == 4


def test_registration_rules_match_torch():
    torch = _torch()
    for nn_, ones in ((nn, tl.ones), (torch.nn, torch.ones)):
        lin = nn_.Linear(2, 2)
        with pytest.raises(TypeError, match="weight"):
            lin.weight = ones(2, 2)  # a plain tensor into a parameter slot
        lin.bias = None
        assert [n for n, _ in lin.named_parameters()] == ["weight"]
        new = nn_.Parameter(ones(2))
        lin.bias = new
        assert lin.bias is new and [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
        with pytest.raises(KeyError, match="already exists"):
            lin.register_buffer("in_features", ones(1))
        with pytest.raises(KeyError, match=r'contain "\."'):
            lin.register_parameter("a.b", None)
        with pytest.raises(TypeError):
            lin.register_parameter("extra", ones(1))
        with pytest.raises(TypeError):
            lin.add_module("child", 3)
        lin.register_module("child", nn_.Tanh())
        lin.register_parameter("gain", nn_.Parameter(ones(1)))
        lin.register_buffer("count", None)
        assert [n for n, _ in lin.named_children()] == ["child"]
        assert [n for n, _ in lin.named_parameters()] == ["weight", "bias", "gain"]
        assert list(lin.state_dict()) == ["weight", "bias", "gain"]
        with pytest.raises(TypeError):
            lin.count = 3
        del lin.gain
        assert "gain" not in lin.state_dict()


def test_get_submodule_parameter_buffer():
    net = build(nn, tl.ones)
    assert net.get_submodule("blocks.1.ff.fc") is net.blocks[1].ff.fc
    assert net.get_submodule("") is net
    assert net.get_parameter("blocks.2.ff.proj.bias") is net.blocks[2].ff.proj.bias
    assert net.get_parameter("scale") is net.scale
    assert net.get_buffer("blocks.0.steps") is net.blocks[0].steps
    with pytest.raises(AttributeError, match="`nope`"):
        net.get_submodule("blocks.nope")
    with pytest.raises(AttributeError, match="no parameter `steps`"):
        net.get_parameter("blocks.0.steps")


def test_modes_grads_and_requires_grad():
    net = build(nn, tl.ones)
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert net.train() is net and all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")
    assert net.requires_grad_(False) is net and not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    net(tl.tensor([[1, 2, 3]])).sum().backward()
    assert all(p.grad is not None for p in net.blocks[0].parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(host(p.grad)) for p in net.blocks[0].parameters())
    net.zero_grad()  # PyTorch's default: set_to_none=True
    assert all(p.grad is None for p in net.parameters())


def test_dtype_and_device_moves(device):
    net = build(nn, tl.ones)
    assert net.to(device) is net
    assert net.double() is net
    assert all(t.dtype == tl.float64 for t in list(net.parameters()) + list(net.buffers()))
    net.float()
    assert all(p.dtype == tl.float32 for p in net.parameters())
    net.to(tl.zeros(1, dtype=tl.float64, device=device))
    assert all(p.dtype == tl.float64 for p in net.parameters())
    net.to(device, tl.float32)
    net.to(device=device, dtype=tl.float32, non_blocking=True)
    with pytest.raises(TypeError, match="float16"):
        net.half()  # not every op computes in float16: refused clearly rather than failing later
    with pytest.raises(TypeError, match="floating point"):
        net.to(tl.int64)
    with pytest.raises(TypeError, match="bfloat16"):
        net.bfloat16()
    with pytest.raises(TypeError, match="memory_format"):
        net.to(memory_format="channels_last")
    assert net.cpu().scale.device == "cpu"


def test_deepcopy_gives_independent_parameters():
    net = build(nn, tl.ones)
    twin = copy.deepcopy(net)
    assert twin.heads["lm"].weight is twin.emb.weight  # ties survive the copy
    assert twin.emb.weight is not net.emb.weight
    twin.scale.data.array[...] = 5
    assert np.all(host(net.scale) == 1)


def test_reprs_match_torch():
    torch = _torch()
    ours, theirs = _pair()
    assert repr(ours) == repr(theirs)  # nested indentation, (0-2): 3 x Block(...) runs, extra_repr
    ours_seq = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.2), nn.LayerNorm((3,), bias=False),
                             nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3), nn.Tanh()]), nn.Softmax(dim=-1),
                             nn.Flatten(), nn.CrossEntropyLoss(label_smoothing=0.1), nn.Identity())
    theirs_seq = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                     torch.nn.LayerNorm((3,), bias=False),
                                     torch.nn.ModuleList([torch.nn.Linear(3, 3), torch.nn.Linear(3, 3),
                                                          torch.nn.Tanh()]),
                                     torch.nn.Softmax(dim=-1), torch.nn.Flatten(),
                                     torch.nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.Identity())
    assert repr(ours_seq) == repr(theirs_seq)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList()) == "ModuleList()"

    class Custom(nn.Module):
        def extra_repr(self):
            return "alpha=1\nbeta=2"

    assert repr(Custom()) == "Custom(\n  alpha=1\n  beta=2\n)"


def test_sequential_and_module_list_operations_match_torch():
    torch = _torch()
    for nn_ in (nn, torch.nn):
        seq = nn_.Sequential(OrderedDict(a=nn_.Linear(2, 3), b=nn_.ReLU(), c=nn_.Linear(3, 1)))
        assert isinstance(seq[1:], nn_.Sequential) and [n for n, _ in seq[1:].named_children()] == ["b", "c"]
        assert isinstance(seq[-1], nn_.Linear) and len(seq) == 3
        seq.append(nn_.Sigmoid())
        assert [n for n, _ in seq.named_children()] == ["a", "b", "c", "3"]
        del seq[1]
        assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
        with pytest.raises(IndexError):
            seq[5]
        ml = nn_.ModuleList([nn_.Linear(1, 1)])
        ml.append(nn_.Tanh()).extend([nn_.ReLU(), nn_.GELU()])
        ml.insert(1, nn_.Sigmoid())
        ml += [nn_.Identity()]
        assert [type(m).__name__ for m in ml] == ["Linear", "Sigmoid", "Tanh", "ReLU", "GELU", "Identity"]
        assert isinstance(ml[1:3], nn_.ModuleList) and len(ml[1:3]) == 2 and isinstance(ml[-1], nn_.Identity)
        assert type(ml.pop(2)).__name__ == "Tanh"
        del ml[0]
        assert [n for n, _ in ml.named_children()] == ["0", "1", "2", "3"]
        ml[0] = nn_.Linear(2, 2)
        assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias"]
        md = nn_.ModuleDict({"x": nn_.Linear(1, 1)})
        md.update([("y", nn_.Tanh())])
        md["z"] = nn_.ReLU()
        assert list(md.keys()) == ["x", "y", "z"] and "y" in md and len(md) == 3
        assert [type(v).__name__ for v in md.values()] == ["Linear", "Tanh", "ReLU"]
        assert type(md.pop("y")).__name__ == "Tanh" and [k for k, _ in md.items()] == ["x", "z"]


def test_parameter_list_and_dict_match_torch():
    torch = _torch()
    names = []
    for nn_, ones in ((nn, tl.ones), (torch.nn, torch.ones)):
        plist = nn_.ParameterList([nn_.Parameter(ones(2, 3)), ones(3)])  # a plain tensor becomes a Parameter
        plist.append(nn_.Parameter(ones(1)))
        plist.extend([ones(4)])
        pdict = nn_.ParameterDict({"w": nn_.Parameter(ones(2))})
        pdict["b"] = ones(5)
        pdict.update({"c": nn_.Parameter(ones(1))})

        holder = nn_.Module()
        holder.plist, holder.pdict = plist, pdict
        assert all(isinstance(p, nn_.Parameter) and p.requires_grad for p in plist)
        assert len(plist) == 4 and tuple(plist[-1].shape) == (4,) and tuple(plist[1].shape) == (3,)
        assert len(plist[1:3]) == 2
        assert list(pdict.keys()) == ["w", "b", "c"] and "b" in pdict and tuple(pdict["b"].shape) == (5,)
        assert isinstance(pdict["b"], nn_.Parameter)
        assert tuple(pdict.pop("c").shape) == (1,)
        names.append([(n, tuple(p.shape)) for n, p in holder.named_parameters()])
    assert names[0] == names[1]
    assert names[0][0] == ("plist.0", (2, 3))


def test_module_without_super_init_or_forward_raises():
    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tl.ones(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        NoInit()
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(tl.ones(1))


def test_nn_parallel_is_exported_lazily():
    import importlib.util

    if importlib.util.find_spec("tinygrad_lm.nn.parallel") is None:
        with pytest.raises(AttributeError):
            nn.parallel  # noqa: B018
    else:
        assert nn.parallel.__name__ == "tinygrad_lm.nn.parallel"
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        nn.nonexistent  # noqa: B018


def _hook_trace(nn_, tensor):
    seen = []
    lin = nn_.Linear(2, 2)
    net = nn_.Sequential(lin, nn_.ReLU())
    h1 = lin.register_forward_hook(lambda m, args, out: seen.append(("fwd", type(m).__name__, len(args))))
    h2 = net.register_forward_pre_hook(lambda m, args: (args[0] * 0,))  # replaces the input
    h3 = net.register_forward_hook(lambda m, args, out: out + 1)  # replaces the output
    h4 = lin.register_forward_pre_hook(lambda m, args: seen.append("pre-first"), prepend=True)
    h5 = lin.register_forward_pre_hook(lambda m, args, kwargs: seen.append(("pre-kw", sorted(kwargs))),
                                       with_kwargs=True)
    x = tensor([[1.0, -2.0]])
    out = net(x)
    expected = lin.bias.detach().numpy().clip(0) + 1  # the input was zeroed, then +1
    np.testing.assert_allclose(out.detach().numpy()[0], expected, rtol=1e-6)
    for handle in (h1, h2, h3, h4):
        handle.remove()
    with h5:
        net(x)
    net(x)
    return seen


def test_forward_hooks_match_torch():
    torch = _torch()
    ours, theirs = _hook_trace(nn, tl.tensor), _hook_trace(torch.nn, torch.tensor)
    assert ours == theirs == ["pre-first", ("pre-kw", []), ("fwd", "Linear", 1), ("pre-kw", [])]
