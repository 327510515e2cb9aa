"""Every optimizer against PyTorch's, in float64, over several steps, for every combination of its options.

Both sides start from the same weights and, at each step, get the same function of their own weights as
the gradient (``tanh(theta) + noise_t``), so a difference anywhere in an update rule shows up in the
trajectory. Each run has two parameter groups with different options, and the state and the
``param_groups`` of the two optimizers are compared as well as the weights.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn, optim

torch = pytest.importorskip("torch")

STEPS = 12
SHAPES = [(3, 4), (4,)]


def _combos(**options):
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*options.values())]


def _valid_sgd(kw):
    return not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0)


SGD_COMBOS = [kw for kw in _combos(momentum=[0.0, 0.9], dampening=[0.0, 0.3], weight_decay=[0.0, 0.1],
                                   nesterov=[False, True], maximize=[False, True]) if _valid_sgd(kw)]
ADAM_COMBOS = _combos(betas=[(0.9, 0.999), (0.8, 0.9)], weight_decay=[0.0, 0.1], amsgrad=[False, True],
                      maximize=[False, True])
RMSPROP_COMBOS = _combos(alpha=[0.99, 0.3], weight_decay=[0.0, 0.1], momentum=[0.0, 0.5], centered=[False, True],
                         maximize=[False, True])
ADAGRAD_COMBOS = _combos(lr_decay=[0.0, 0.1], weight_decay=[0.0, 0.1], initial_accumulator_value=[0.0, 0.5],
                         eps=[1e-10, 1e-3], maximize=[False, True])

ADADELTA_COMBOS = _combos(rho=[0.9, 0.3], eps=[1e-6, 1e-3], weight_decay=[0.0, 0.1], maximize=[False, True])
ADAMAX_COMBOS = _combos(betas=[(0.9, 0.999), (0.3, 0.9)], weight_decay=[0.0, 0.1], maximize=[False, True])
NADAM_COMBOS = _combos(betas=[(0.9, 0.999), (0.3, 0.9)], weight_decay=[0.0, 0.1], momentum_decay=[4e-3, 0.1],
                       decoupled_weight_decay=[False, True], maximize=[False, True])
# (beta2 = 0.99 makes rho_t pass 5 at step 7: both branches of the rectification run)
RADAM_COMBOS = _combos(betas=[(0.9, 0.999), (0.3, 0.99)], weight_decay=[0.0, 0.1],
                       decoupled_weight_decay=[False, True], maximize=[False, True])

# (optimizer, its options for the first group, what the second group overrides)
CASES = (
    [("SGD", dict(lr=0.05, **kw), dict(lr=0.02, maximize=not kw["maximize"])) for kw in SGD_COMBOS]
    + [("Adam", dict(lr=0.01, **kw), dict(lr=0.03, amsgrad=not kw["amsgrad"], eps=1e-6)) for kw in ADAM_COMBOS]
    + [("Adam", dict(lr=0.01, decoupled_weight_decay=True, **kw), dict(weight_decay=0.3)) for kw in ADAM_COMBOS]
    + [("AdamW", dict(lr=0.01, **kw), dict(betas=(0.5, 0.6), maximize=not kw["maximize"])) for kw in ADAM_COMBOS]
    + [("RMSprop", dict(lr=0.01, **kw), dict(lr=0.002, centered=not kw["centered"], momentum=0.7))
       for kw in RMSPROP_COMBOS]
    # (PyTorch's Adagrad starts every group's sums at the constructor's initial_accumulator_value, so the
    # second group does not override it here; test_optim_state.py checks a group's own value)
    + [("Adagrad", dict(lr=0.1, **kw), dict(lr=0.05, lr_decay=0.5, maximize=not kw["maximize"]))
       for kw in ADAGRAD_COMBOS]
    + [("Adadelta", dict(lr=0.5, **kw), dict(lr=1.0, rho=0.5)) for kw in ADADELTA_COMBOS]
    + [("Adamax", dict(lr=0.01, **kw), dict(lr=0.03, eps=1e-3)) for kw in ADAMAX_COMBOS]
    + [("NAdam", dict(lr=0.01, **kw), dict(momentum_decay=0.5, maximize=not kw["maximize"])) for kw in NADAM_COMBOS]
    + [("RAdam", dict(lr=0.01, **kw), dict(betas=(0.5, 0.95), weight_decay=0.2)) for kw in RADAM_COMBOS]
)


@pytest.fixture(autouse=True)
def _torch_float64_scalars():
    """PyTorch keeps NAdam's ``mu_product`` (and the step counters) in the default dtype: float64 here, as ours."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _case_id(case):
    name, kw, override = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


def _grad(theta, noise):
    return np.tanh(theta) + noise


def _run_both(name, kw, override, seed=0, steps=STEPS):
    """Run ours and PyTorch's side by side; return both optimizers and both parameter lists."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(shape) for shape in SHAPES]
    noise = [[rng.standard_normal(shape) * 2.0 ** -(t % 4) for shape in SHAPES] for t in range(steps)]
    ours = [nn.Parameter(tl.tensor(w)) for w in start]
    theirs = [torch.nn.Parameter(torch.tensor(w)) for w in start]
    opt = getattr(optim, name)([{"params": [ours[0]]}, {"params": [ours[1]], **override}], **kw)
    topt = getattr(torch.optim, name)([{"params": [theirs[0]]}, {"params": [theirs[1]], **override}], **kw)
    for t in range(steps):
        for p, q, n in zip(ours, theirs, noise[t]):
            p.grad = tl.tensor(_grad(p.array, n))
            q.grad = torch.tensor(_grad(q.detach().numpy(), n))
        opt.step()
        topt.step()
    return opt, topt, ours, theirs


def _assert_same(opt, topt, ours, theirs):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"param {i}")
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"] == tsd["param_groups"]
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for idx, entry in tsd["state"].items():
        assert set(sd["state"][idx]) == set(entry), idx
        for key, value in entry.items():
            got = sd["state"][idx][key]
            got = got.numpy() if isinstance(got, tl.Tensor) else got
            np.testing.assert_allclose(got, value.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"state[{idx}][{key}]")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_option_combination_matches_pytorch(case):
    _assert_same(*_run_both(*case))


@given(seed=st.integers(0, 2**16), lr=st.floats(1e-4, 0.2), momentum=st.floats(0.0, 0.99),
       dampening=st.floats(0.0, 0.9), weight_decay=st.floats(0.0, 0.5), nesterov=st.booleans(),
       maximize=st.booleans())
def test_sgd_matches_pytorch_for_any_hyperparameters(seed, lr, momentum, dampening, weight_decay, nesterov, maximize):
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
              maximize=maximize)
    if not (_valid_sgd(kw) and momentum > 0):
        kw["nesterov"] = False
    _assert_same(*_run_both("SGD", kw, dict(momentum=momentum / 2), seed=seed))


@given(seed=st.integers(0, 2**16), name=st.sampled_from(["Adam", "AdamW"]), lr=st.floats(1e-4, 0.1),
       beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-10, 1e-2),
       weight_decay=st.floats(0.0, 0.5), amsgrad=st.booleans(), maximize=st.booleans())
def test_adam_matches_pytorch_for_any_hyperparameters(seed, name, lr, beta1, beta2, eps, weight_decay, amsgrad,
                                                      maximize):
    kw = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    _assert_same(*_run_both(name, kw, dict(lr=lr / 3), seed=seed))


# (alpha near 0 with centered=True: PyTorch's fused multiply-add takes v - a^2 = g^2 - g^2 below 0, so its
# weights become NaN; ours stay finite, see test_centered_rmsprop_without_averaging_stays_finite)
@given(seed=st.integers(0, 2**16), lr=st.floats(1e-4, 0.1), alpha=st.floats(0.05, 0.999),
       eps=st.floats(1e-8, 1e-2), weight_decay=st.floats(0.0, 0.5), momentum=st.floats(0.0, 0.95),
       centered=st.booleans(), maximize=st.booleans())
def test_rmsprop_matches_pytorch_for_any_hyperparameters(seed, lr, alpha, eps, weight_decay, momentum, centered,
                                                         maximize):
    kw = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
              maximize=maximize)
    _assert_same(*_run_both("RMSprop", kw, dict(alpha=alpha / 2), seed=seed))


@given(seed=st.integers(0, 2**16), lr=st.floats(1e-4, 0.5), lr_decay=st.floats(0.0, 1.0),
       weight_decay=st.floats(0.0, 0.5), initial_accumulator_value=st.floats(0.0, 2.0),
       eps=st.floats(1e-10, 1e-2), maximize=st.booleans())
def test_adagrad_matches_pytorch_for_any_hyperparameters(seed, lr, lr_decay, weight_decay, initial_accumulator_value,
                                                         eps, maximize):
    kw = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
              initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
    _assert_same(*_run_both("Adagrad", kw, dict(lr_decay=lr_decay / 2), seed=seed))


EVERY_NAME = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"]


@given(seed=st.integers(0, 2**16), name=st.sampled_from(["Adamax", "NAdam", "RAdam"]), lr=st.floats(1e-4, 0.1),
       beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-10, 1e-2),
       weight_decay=st.floats(0.0, 0.5), decoupled=st.booleans(), maximize=st.booleans(),
       momentum_decay=st.floats(0.0, 1.0))
def test_adam_variants_match_pytorch_for_any_hyperparameters(seed, name, lr, beta1, beta2, eps, weight_decay, decoupled,
                                                             maximize, momentum_decay):
    kw = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, maximize=maximize)
    if name != "Adamax":
        kw["decoupled_weight_decay"] = decoupled
    if name == "NAdam":
        kw["momentum_decay"] = momentum_decay
    _assert_same(*_run_both(name, kw, dict(lr=lr / 3), seed=seed))


@given(seed=st.integers(0, 2**16), lr=st.floats(1e-3, 2.0), rho=st.floats(0.0, 1.0), eps=st.floats(1e-8, 1e-2),
       weight_decay=st.floats(0.0, 0.5), maximize=st.booleans())
def test_adadelta_matches_pytorch_for_any_hyperparameters(seed, lr, rho, eps, weight_decay, maximize):
    kw = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    _assert_same(*_run_both("Adadelta", kw, dict(rho=rho / 2), seed=seed))


@pytest.mark.parametrize("name", EVERY_NAME)
def test_defaults_and_state_dict_before_any_step_match_pytorch(name):
    p, q = nn.Parameter(tl.zeros(3, dtype=tl.float64)), torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt, topt = getattr(optim, name)([p]), getattr(torch.optim, name)([q])
    assert opt.defaults == topt.defaults
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"] == tsd["param_groups"]
    assert {i: set(e) for i, e in sd["state"].items()} == {i: set(e) for i, e in tsd["state"].items()}


@pytest.mark.parametrize("name", EVERY_NAME)
def test_named_parameters_as_pytorch(name):
    ours = nn.Linear(3, 2)
    theirs = torch.nn.Linear(3, 2)
    opt, topt = getattr(optim, name)(ours.named_parameters()), getattr(torch.optim, name)(theirs.named_parameters())
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"] == ["weight", "bias"]
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


def test_a_real_model_trains_as_with_pytorch():
    """A small tanh network, losses through autograd on both sides: RMSprop with every option on."""
    rng = np.random.default_rng(5)
    w1, b1, w2 = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal((1, 4))
    ours = [nn.Parameter(tl.tensor(a)) for a in (w1, b1, w2)]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in (w1, b1, w2)]
    kw = dict(lr=0.01, alpha=0.9, weight_decay=0.01, momentum=0.5, centered=True)
    opt, topt = optim.RMSprop(ours, **kw), torch.optim.RMSprop(theirs, **kw)
    for _ in range(10):
        x = rng.standard_normal((5, 3))
        for lib, params, o in ((tl, ours, opt), (torch, theirs, topt)):
            o.zero_grad()
            h = (lib.tensor(x) @ params[0].T + params[1]).tanh()
            ((h @ params[2].T) ** 2).mean().backward()
            o.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_centered_rmsprop_without_averaging_stays_finite():
    """alpha = 0: v = g^2 and a = g, so the centered denominator is exactly eps, every step."""
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 4))
    p = nn.Parameter(tl.tensor(theta))
    opt = optim.RMSprop([p], lr=1e-3, alpha=0.0, eps=1e-2, centered=True)
    for _ in range(5):
        g = rng.standard_normal((3, 4)) * 1e3
        p.grad = tl.tensor(g)
        opt.step()
        theta = theta - 1e-3 * g / 1e-2
        np.testing.assert_allclose(p.array, theta, rtol=1e-12)
