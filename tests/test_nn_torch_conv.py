"""Conv1d/2d, MaxPool1d/2d, AvgPool1d/2d and AdaptiveAvgPool1d/2d: against PyTorch in float64 (values,
input and parameter gradients, reprs, state_dict keys) and by finite differences, plus a small CNN
written for PyTorch that runs with only its import changed."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, check_grad, distinct_arrays, host
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import functional as F


def _torch():
    return pytest.importorskip("torch")


def _compare(ours, theirs, x, device, rtol=1e-10, atol=1e-12):
    torch = _torch()
    xo = tl.tensor(x, device=device, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    y, ref = ours(xo), theirs(xt)
    assert y.shape == tuple(ref.shape)
    np.testing.assert_allclose(host(y), ref.detach().numpy(), rtol=rtol, atol=atol)
    g = np.cos(np.arange(ref.numel())).reshape(tuple(ref.shape))
    (y * tl.tensor(g, device=device)).sum().backward()
    (ref * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(host(xo.grad), xt.grad.numpy(), rtol=rtol, atol=atol)
    if isinstance(ours, nn.Module):
        theirs_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(host(p.grad), theirs_params[name].grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=name)


CONVS = [
    ("Conv1d", (4, 6, 3), {}, (2, 4, 9)),
    ("Conv1d", (4, 6, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}, (2, 4, 11)),
    ("Conv1d", (3, 2, 4), {"padding": "same", "bias": False, "padding_mode": "reflect"}, (2, 3, 8)),
    ("Conv1d", (3, 2, 2), {"padding": "valid"}, (3, 7)),  # unbatched
    ("Conv2d", (3, 4, 3), {"padding": 1}, (2, 3, 6, 5)),
    ("Conv2d", (4, 4, (2, 3)), {"stride": (2, 1), "padding": (1, 0), "groups": 4}, (2, 4, 7, 6)),
    ("Conv2d", (2, 6, 3), {"dilation": (1, 2), "padding": "same", "padding_mode": "circular"}, (1, 2, 5, 7)),
    ("Conv2d", (2, 3, 2), {"padding_mode": "replicate", "padding": 1, "stride": 3}, (2, 2, 7, 7)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", CONVS)
def test_conv_layers_match_torch(device, name, args, kwargs, shape):
    torch = _torch()
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    ours = getattr(nn, name)(*args, **kwargs, device=device, dtype=tl.float64)
    assert repr(ours) == repr(theirs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert repr(ours.load_state_dict(theirs.state_dict())) == "<All keys matched successfully>"
    _compare(ours, theirs, np.random.default_rng(0).normal(size=shape), device)


POOLS = [
    ("MaxPool1d", (3,), {}, (2, 3, 10)),
    ("MaxPool1d", (3,), {"stride": 1, "padding": 1, "dilation": 2}, (2, 3, 9)),
    ("MaxPool2d", (2,), {}, (2, 3, 6, 5)),
    ("MaxPool2d", ((2, 3),), {"stride": 1, "padding": 1}, (3, 5, 6)),
    ("AvgPool1d", (3,), {"stride": 2}, (2, 3, 10)),
    ("AvgPool1d", (3,), {"padding": 1, "count_include_pad": False}, (2, 3, 9)),
    ("AvgPool2d", (2,), {}, (2, 3, 6, 5)),
    ("AvgPool2d", ((3, 2),), {"stride": (1, 2), "padding": (1, 1), "count_include_pad": False}, (2, 2, 5, 6)),
    ("AvgPool2d", (3,), {"padding": 1, "divisor_override": 2}, (1, 2, 6, 6)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveAvgPool2d", ((1, 1),), {}, (2, 3, 5, 7)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 7, 4)),
    ("AdaptiveAvgPool2d", (4,), {}, (3, 6, 9)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", POOLS)
def test_pool_layers_match_torch(device, name, args, kwargs, shape):
    torch = _torch()
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(1).permutation(np.prod(shape)).reshape(shape) * 0.1  # no ties for max
    _compare(ours, theirs, x, device)


@given(data=st.data(), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]),
       groups=st.sampled_from([1, 2]))
def test_conv2d_gradcheck(device, data, stride, padding, groups):
    x = data.draw(arrays((2, 2, 4, 4)))
    w = data.draw(arrays((2, 2 // groups, 2, 3)))
    b = data.draw(arrays((2,)))
    check_grad(lambda t, k, c: F.conv2d(t, k, c, stride=stride, padding=padding, groups=groups), x, w, b,
               device=device)


@given(data=st.data(), dilation=st.sampled_from([1, 2]))
def test_conv1d_and_pools_gradcheck(device, data, dilation):
    x = data.draw(arrays((2, 3, 7)))
    w = data.draw(arrays((2, 3, 2)))
    check_grad(lambda t, k: F.conv1d(t, k, dilation=dilation, padding="same"), x, w, device=device)
    check_grad(lambda t: F.avg_pool1d(t, 3, 2, padding=1, count_include_pad=False), x, device=device)
    check_grad(lambda t: F.adaptive_avg_pool2d(t, (2, 3)), x, device=device)
    distinct = data.draw(distinct_arrays((2, 3, 7), gap=0.05))  # max without ties
    check_grad(lambda t: F.max_pool1d(t, 3, 2, padding=1, dilation=dilation), distinct, device=device)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv1d(2, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv1d(2, 2, 3, padding_mode="mirror")
    with pytest.raises(RuntimeError, match="groups=1"):
        F.conv2d(tl.randn(1, 3, 5, 5), tl.randn(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="smaller than the"):
        F.conv1d(tl.randn(1, 2, 2), tl.randn(3, 2, 3))
    with pytest.raises(RuntimeError, match="4D"):
        nn.Conv2d(2, 2, 3)(tl.randn(2, 5, 5, 5, 5))
    with pytest.raises(NotImplementedError, match="ceil_mode"):
        nn.MaxPool2d(2, ceil_mode=True)
    with pytest.raises(NotImplementedError, match="return_indices"):
        nn.MaxPool1d(2, return_indices=True)
    with pytest.raises(RuntimeError, match="half of effective kernel size"):
        nn.AvgPool2d(2, padding=2)
    with pytest.raises(TypeError, match="float64"):
        nn.Conv1d(2, 2, 2)(tl.randn(1, 2, 4, dtype=tl.float64))


CNN_PROGRAM = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dropout1 = nn.Dropout(0.25)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.fc1 = nn.Linear(32, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.bn(self.conv2(x))
        x = F.max_pool2d(F.relu(x), 2)
        x = self.dropout1(x)
        x = torch.flatten(self.pool(x), 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)
'''


def _run_program(imports: str) -> dict:
    namespace: dict = {}
    exec(compile(imports + CNN_PROGRAM, "<cnn program>", "exec"), namespace)
    return namespace


def test_mnist_style_cnn_program_matches_torch():
    torch = _torch()
    ours = _run_program("import tinygrad_lm as torch\nimport tinygrad_lm.nn as nn\n"
                        "import tinygrad_lm.nn.functional as F\n")
    theirs = _run_program("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n")
    model, ref = ours["Net"]().double(), theirs["Net"]().double()
    assert list(model.state_dict()) == list(ref.state_dict())
    model.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 1, 10, 10)), rng.integers(0, 10, size=4)
    model.eval()
    ref.eval()  # dropout off; batch norm on its running statistics
    out = model(tl.tensor(x))
    expected = ref(torch.tensor(x))
    np.testing.assert_allclose(host(out), expected.detach().numpy(), rtol=1e-9, atol=1e-12)
    F.nll_loss(out, tl.tensor(y)).backward()
    torch.nn.functional.nll_loss(expected, torch.tensor(y)).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(host(p.grad), ref_params[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)
