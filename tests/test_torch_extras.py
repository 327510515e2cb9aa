"""bmm, broadcast_to, retains_grad and the seed functions, against PyTorch where it is installed."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_grad, host

import tinygrad_lm as tl


def test_bmm_values_gradients_and_errors(device):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 4, 5))
    out = tl.tensor(a, device=device).bmm(tl.tensor(b, device=device))
    np.testing.assert_allclose(host(out), a @ b, rtol=1e-12)
    check_grad(lambda x, y: tl.bmm(x, y), a, b, device=device)
    with pytest.raises(RuntimeError, match="3-D"):
        tl.randn(2, 3, device=device).bmm(tl.randn(3, 2, device=device))
    with pytest.raises(RuntimeError, match=r"\(2, 3, 4\) and \(2, 5, 1\)"):
        tl.randn(2, 3, 4, device=device).bmm(tl.randn(2, 5, 1, device=device))


def test_broadcast_to_is_expand(device):
    x = tl.tensor([[1.0], [2.0]], device=device)
    assert host(x.broadcast_to((2, 3))).tolist() == [[1.0] * 3, [2.0] * 3]
    assert tl.broadcast_to(x, (4, 2, 3)).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="expand"):
        x.broadcast_to((3, 3))


def test_retains_grad_as_torch():
    torch = pytest.importorskip("torch")
    for lib in (tl, torch):
        leaf = lib.ones(2, requires_grad=True)
        h = leaf * 2
        before = h.retains_grad
        h.retain_grad()
        (h * h).sum().backward()
        assert (leaf.retains_grad, before, h.retains_grad) == (False, False, True)
        assert h.grad is not None


def test_seed_and_initial_seed():
    s = tl.seed()
    assert tl.initial_seed() == s
    tl.manual_seed(7)
    assert tl.initial_seed() == 7
    assert tl.poisson(tl.full((1000,), 3.0)).mean().item() == pytest.approx(3.0, abs=5 * (3.0 / 1000) ** 0.5)
