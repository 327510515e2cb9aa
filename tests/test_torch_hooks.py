"""Tensor.register_hook: gradients seen and replaced as in PyTorch, for leaves and non-leaves."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lm as tl

try:
    import torch
except ImportError:
    torch = None

W0 = np.array([[0.5, -1.0, 0.25], [1.5, 0.3, -0.7]])
X0 = np.array([[0.2, -0.4], [1.0, 0.5], [-0.3, 0.8]])


def _program(lib, device=None):
    """An RNN unrolled op by op (the weight is used at every step), hooks on the weight, on every hidden state
    and on the outputs of a split; returns what the hooks saw and the gradients."""
    kw = {} if device is None else {"device": device}
    seen: dict[str, list] = {"w": [], "h": [], "half": []}
    w = lib.tensor(W0, requires_grad=True, **kw)
    w.register_hook(lambda g: seen["w"].append(g.detach().clone()))
    w.register_hook(lambda g: g * 0.5)  # runs after the first: halves what reaches .grad
    h = lib.zeros(1, 3, dtype=w.dtype, **kw)
    for t in range(3):
        x = lib.tensor(X0[t:t + 1], **kw)
        h = (x @ w[:, :2].T @ w + h).tanh()  # (1, 3)
        h.register_hook(lambda g: seen["h"].append(g.detach().clone()))
    a, b = h.split([1, 2], dim=1)
    b.register_hook(lambda g: seen["half"].append(g.detach().clone()))
    a.register_hook(lambda g: g * 3)
    a.retain_grad()
    (a.sum() * 2 + (b * b).sum()).backward()
    out = {k: [v.numpy() for v in vs] for k, vs in seen.items()}
    out["w.grad"] = [w.grad.numpy()]
    out["a.grad"] = [a.grad.numpy()]
    return out


def test_hooks_run_once_per_backward_with_the_whole_gradient(device):
    got = _program(tl, device)
    assert [len(got[k]) for k in ("w", "h", "half")] == [1, 3, 1]  # the weight's hook: once, with the sum
    np.testing.assert_allclose(got["w.grad"][0], got["w"][0] * 0.5, rtol=1e-12)
    np.testing.assert_allclose(got["a.grad"][0], [[6.0]], rtol=1e-12)  # retain_grad keeps the hooked gradient


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_hooks_match_torch():
    ours, theirs = _program(tl), _program(torch)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert len(ours[key]) == len(theirs[key]), key
        for u, v in zip(ours[key], theirs[key]):
            np.testing.assert_allclose(u, v, rtol=1e-12, err_msg=key)


def test_a_removed_hook_no_longer_runs_and_leaves_accumulate(device):
    w = tl.ones(2, dtype=tl.float64, device=device, requires_grad=True)
    handle = w.register_hook(lambda g: g * 10)
    (w * 3).sum().backward()
    handle.remove()
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [33.0, 33.0])
    root = tl.ones(2, dtype=tl.float64, device=device, requires_grad=True)
    root.register_hook(lambda g: g + 1)
    root.backward(tl.ones(2, dtype=tl.float64, device=device))  # a leaf as the root of backward
    np.testing.assert_allclose(root.grad.numpy(), [2.0, 2.0])


def test_hooks_apply_inside_autograd_grad(device):
    w = tl.tensor([1.0, 2.0], dtype=tl.float64, device=device, requires_grad=True)
    w.register_hook(lambda g: -g)
    (g,) = tl.autograd.grad((w * w).sum(), w)
    np.testing.assert_allclose(g.numpy(), [-2.0, -4.0])
    assert w.grad is None


def test_bad_hooks_and_tensors_are_named(device):
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        tl.ones(2, device=device).register_hook(lambda g: g)
    w = tl.ones(2, device=device, requires_grad=True)
    h = w * 2
    h.register_hook(lambda g: tl.ones(3, device=device))
    with pytest.raises(RuntimeError, match=r"shape \(3,\).*expected shape \(2,\)"):
        h.sum().backward()
    v = w * 2
    v.register_hook(lambda g: g.numpy())
    with pytest.raises(TypeError, match="must return a Tensor or None, got ndarray"):
        v.sum().backward()


def test_removing_a_leafs_last_hook_empties_the_registry():
    """Backward looks for hooked leaves only while some are registered: the last remove() drops the entry."""
    from tinygrad_lm import autograd

    w = tl.ones(2, requires_grad=True)
    first, second = w.register_hook(lambda g: g), w.register_hook(lambda g: g)
    with first:  # a handle is also a context manager, as PyTorch's
        pass
    assert id(w) in autograd._leaf_grad_hooks
    second.remove()
    assert id(w) not in autograd._leaf_grad_hooks
