"""BatchNorm1d/2d/3d and F.batch_norm: against PyTorch in float64 (outputs, gradients, running statistics
over several training steps, eval mode, momentum=None, without affine or running stats) and by gradcheck."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, check_grad, host
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn import functional as F


@given(data=st.data(), shape=st.sampled_from([(4, 3), (3, 2, 4), (2, 2, 3, 2)]), affine=st.booleans())
def test_batch_norm_training_gradcheck(device, data, shape, affine):
    x = data.draw(arrays(shape))
    x = x + np.arange(x.size).reshape(shape) * 0.1  # every channel varies: its variance is well above 0
    c = shape[1]
    w, b = data.draw(arrays((c,), 0.5, 2.0)), data.draw(arrays((c,)))
    if affine:
        check_grad(lambda t, g, h: F.batch_norm(t, None, None, g, h, training=True), x, w, b, device=device)
    else:
        check_grad(lambda t: F.batch_norm(t, None, None, training=True), x, device=device)


@given(data=st.data())
def test_batch_norm_eval_gradcheck(device, data):
    x = data.draw(arrays((3, 2, 4)))
    mean = tl.tensor(data.draw(arrays((2,))), device=device)
    var = tl.tensor(data.draw(arrays((2,), 0.5, 2.0)), device=device)
    check_grad(lambda t, g: F.batch_norm(t, mean, var, g, None, training=False), x, data.draw(arrays((2,))),
               device=device)


def _torch():
    return pytest.importorskip("torch")


CASES = [
    ("BatchNorm1d", (6, 3), {}),
    ("BatchNorm1d", (4, 3, 5), {"momentum": None}),
    ("BatchNorm1d", (5, 3), {"affine": False, "momentum": 0.3}),
    ("BatchNorm1d", (5, 3), {"bias": False}),
    ("BatchNorm1d", (5, 3), {"track_running_stats": False}),
    ("BatchNorm2d", (2, 3, 4, 2), {"eps": 1e-3}),
    ("BatchNorm3d", (2, 3, 2, 2, 2), {}),
]


@pytest.mark.parametrize("name,shape,kwargs", CASES)
def test_batchnorm_matches_torch_over_steps(device, name, shape, kwargs):
    torch = _torch()
    ours = getattr(nn, name)(3, **kwargs, device=device, dtype=tl.float64)
    theirs = getattr(torch.nn, name)(3, **kwargs).double()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if kwargs.get("affine", True):
        w = np.random.default_rng(0).uniform(0.5, 2, size=3)
        ours.weight.data.array[...] = tl.tensor(w, device=device).array
        theirs.weight.data.copy_(torch.tensor(w))
    rng = np.random.default_rng(1)
    for step in range(4):
        training = step < 3
        ours.train(training)
        theirs.train(training)
        x = rng.normal(size=shape) * 2 + 1
        xo, xt = tl.tensor(x, device=device, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ref = ours(xo), theirs(xt)
        np.testing.assert_allclose(host(y), ref.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}")
        g = np.cos(np.arange(y.numel())).reshape(shape)
        (y * tl.tensor(g, device=device)).sum().backward()
        (ref * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(host(xo.grad), xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-12, err_msg=f"{key}, step {step}")
    for (n, p), (tn, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert n == tn
        np.testing.assert_allclose(host(p.grad), tp.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_batchnorm_loads_torch_state_and_moves_dtype():
    torch = _torch()
    theirs = torch.nn.BatchNorm1d(4)
    theirs(torch.randn(8, 4))  # running statistics and num_batches_tracked move
    ours = nn.BatchNorm1d(4)
    assert repr(ours.load_state_dict(theirs.state_dict())) == "<All keys matched successfully>"
    assert int(ours.num_batches_tracked.item()) == 1
    ours.double()
    assert ours.running_mean.dtype == tl.float64 and ours.num_batches_tracked.dtype == tl.int64
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(2).normal(size=(3, 4))
    np.testing.assert_allclose(host(ours(tl.tensor(x))), theirs.double()(torch.tensor(x)).detach().numpy(),
                               rtol=1e-10)


def test_batchnorm_errors_name_the_problem():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bn(tl.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="expected 3 channels"):
        bn(tl.randn(4, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(tl.randn(1, 3))
    bn.eval()
    assert bn(tl.randn(1, 3)).shape == (1, 3)  # eval mode uses the running statistics
    with pytest.raises(TypeError, match="running_mean"):
        bn(tl.randn(2, 3, dtype=tl.float64))
    with pytest.raises(ValueError, match="running_mean and running_var"):
        F.batch_norm(tl.randn(2, 3), None, None)
