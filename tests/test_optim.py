"""Optimizers and schedulers against plain NumPy references of PyTorch's documented update rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import backend, nn, optim
from tinygrad_lm.optim import lr_scheduler


def ref_sgd(theta, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    """PyTorch's SGD, one step per gradient, written out of place in float64."""
    theta, buf = theta.copy(), None
    for t, grad in enumerate(grads, start=1):
        g = -grad if maximize else grad
        if weight_decay:
            g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if t == 1 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
    return theta


def ref_adam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
             decoupled=False):
    """PyTorch's Adam (decoupled=False) and AdamW (decoupled=True), out of place in float64."""
    theta = theta.copy()
    b1, b2 = betas
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    for t, grad in enumerate(grads, start=1):
        g = -grad if maximize else grad
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        if amsgrad:
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1 - b2**t)
        else:
            v_hat = v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def ref_rmsprop(theta, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    """PyTorch's RMSprop, out of place in float64."""
    theta = theta.copy()
    v, a, b = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for grad in grads:
        g = -grad if maximize else grad
        if weight_decay:
            g = g + weight_decay * theta
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            a = alpha * a + (1 - alpha) * g
            denom = np.sqrt(np.maximum(v - a * a, 0.0)) + eps
        else:
            denom = np.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / denom
            theta = theta - lr * b
        else:
            theta = theta - lr * g / denom
    return theta


def ref_adagrad(theta, grads, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    """PyTorch's Adagrad, out of place in float64."""
    theta = theta.copy()
    s = np.full_like(theta, initial_accumulator_value)
    for t, grad in enumerate(grads, start=1):
        g = -grad if maximize else grad
        if weight_decay:
            g = g + weight_decay * theta
        s = s + g * g
        theta = theta - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return theta


def run_steps(opt_cls, theta, grads, device, **kw):
    """Apply ``opt_cls`` to one parameter, feeding the given gradients; returns the final host array."""
    p = nn.Parameter(tl.tensor(theta, device=device))
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = tl.tensor(g, device=device)
        opt.step()
    return backend.to_host(p.array), p


def random_problem(seed=0, shape=(3, 4), steps=6, dtype=np.float64):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(shape).astype(dtype)
    # shrinking gradients make AMSGrad's max differ from Adam's v
    grads = [(rng.standard_normal(shape) * 2.0 ** (-i)).astype(dtype) for i in range(steps)]
    return theta, grads


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, maximize=True),
    dict(lr=0.03, momentum=0.7, nesterov=True, weight_decay=0.1, maximize=True),
    dict(lr=0.03, momentum=0.7, dampening=0.5, weight_decay=0.1, maximize=True),
]

ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, maximize=True, weight_decay=0.05, amsgrad=True),
]


RMSPROP_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5),
    dict(lr=0.01, centered=True, weight_decay=0.1),
    dict(lr=0.01, centered=True, momentum=0.9, maximize=True),
]

ADAGRAD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.3),
    dict(lr=0.1, weight_decay=0.1, eps=1e-6, maximize=True),
]


@pytest.mark.parametrize("kw", RMSPROP_CONFIGS)
def test_rmsprop_matches_reference(device, kw):
    theta, grads = random_problem(seed=5)
    got, _ = run_steps(optim.RMSprop, theta, grads, device, **kw)
    np.testing.assert_allclose(got, ref_rmsprop(theta, grads, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw", ADAGRAD_CONFIGS)
def test_adagrad_matches_reference(device, kw):
    theta, grads = random_problem(seed=6)
    got, _ = run_steps(optim.Adagrad, theta, grads, device, **kw)
    np.testing.assert_allclose(got, ref_adagrad(theta, grads, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw", SGD_CONFIGS)
def test_sgd_matches_reference(device, kw):
    theta, grads = random_problem()
    got, _ = run_steps(optim.SGD, theta, grads, device, **kw)
    np.testing.assert_allclose(got, ref_sgd(theta, grads, **kw), rtol=1e-12, atol=1e-14)


def test_sgd_first_momentum_step_ignores_dampening(device):
    theta, grads = random_problem(steps=1)
    got, p = run_steps(optim.SGD, theta, grads, device, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(got, theta - 0.1 * grads[0], rtol=1e-14)
    np.testing.assert_array_equal(backend.to_host(p.grad.array), grads[0])  # the gradient itself is not modified


@pytest.mark.parametrize("kw", ADAM_CONFIGS)
def test_adam_matches_reference(device, kw):
    theta, grads = random_problem(seed=1)
    got, _ = run_steps(optim.Adam, theta, grads, device, **kw)
    np.testing.assert_allclose(got, ref_adam(theta, grads, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw", ADAM_CONFIGS + [dict(lr=0.01, weight_decay=0.3)])
def test_adamw_matches_reference(device, kw):
    kw = {"weight_decay": 1e-2, **kw}
    theta, grads = random_problem(seed=2)
    got, _ = run_steps(optim.AdamW, theta, grads, device, **kw)
    np.testing.assert_allclose(got, ref_adam(theta, grads, decoupled=True, **kw), rtol=1e-12, atol=1e-14)


def test_amsgrad_changes_the_trajectory():
    theta, grads = random_problem(seed=3)
    plain, _ = run_steps(optim.Adam, theta, grads, "cpu", lr=0.01)
    ams, _ = run_steps(optim.Adam, theta, grads, "cpu", lr=0.01, amsgrad=True)
    assert np.abs(plain - ams).max() > 1e-6


def test_adam_and_adamw_weight_decay_differ():
    theta, grads = random_problem(seed=4)
    l2, _ = run_steps(optim.Adam, theta, grads, "cpu", lr=0.01, weight_decay=0.1)
    decoupled, _ = run_steps(optim.AdamW, theta, grads, "cpu", lr=0.01, weight_decay=0.1)
    assert np.abs(l2 - decoupled).max() > 1e-6


@settings(max_examples=20)
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from([(1,), (5,), (2, 3), (2, 1, 4)]),
    steps=st.integers(1, 5),
    lr=st.floats(1e-4, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.25]),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    nesterov=st.booleans(),
    maximize=st.booleans(),
)
def test_sgd_property(seed, shape, steps, lr, momentum, dampening, weight_decay, nesterov, maximize):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
              maximize=maximize)
    theta, grads = random_problem(seed, shape, steps)
    got, _ = run_steps(optim.SGD, theta, grads, "cpu", **kw)
    np.testing.assert_allclose(got, ref_sgd(theta, grads, **kw), rtol=1e-12, atol=1e-14)


@settings(max_examples=20)
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from([(1,), (5,), (2, 3), (2, 1, 4)]),
    steps=st.integers(1, 5),
    lr=st.floats(1e-4, 0.1),
    beta1=st.sampled_from([0.0, 0.5, 0.9]),
    beta2=st.sampled_from([0.9, 0.999]),
    weight_decay=st.sampled_from([0.0, 0.01, 0.2]),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
    decoupled=st.booleans(),
)
def test_adam_property(seed, shape, steps, lr, beta1, beta2, weight_decay, amsgrad, maximize, decoupled):
    kw = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    theta, grads = random_problem(seed, shape, steps)
    got, _ = run_steps(optim.AdamW if decoupled else optim.Adam, theta, grads, "cpu", **kw)
    np.testing.assert_allclose(got, ref_adam(theta, grads, decoupled=decoupled, **kw), rtol=1e-12, atol=1e-14)


ALL_OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.01, amsgrad=True, maximize=True)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.05, amsgrad=True)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, maximize=True)),
]
REFERENCES = {optim.SGD: ref_sgd, optim.Adam: ref_adam, optim.RMSprop: ref_rmsprop, optim.Adagrad: ref_adagrad,
              optim.AdamW: lambda *a, **kw: ref_adam(*a, decoupled=True, **kw)}


@pytest.mark.parametrize("opt_cls, kw", ALL_OPTIMIZERS)
def test_float32_stays_float32_and_updates_in_place(device, opt_cls, kw):
    theta, grads = random_problem(dtype=np.float32)
    p = nn.Parameter(tl.tensor(theta, device=device))
    array = p.array
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = tl.tensor(g, device=device)
        opt.step()
    assert p.array is array and p.dtype == np.float32
    for name, value in opt.state[p].items():
        if backend.is_backend_array(value):
            assert value.dtype == np.float32, name
            assert backend.device_of(value) == p.device, name
    ref = REFERENCES[opt_cls](theta.astype(np.float64), [g.astype(np.float64) for g in grads], **kw)
    np.testing.assert_allclose(backend.to_host(p.array), ref, rtol=1e-4, atol=1e-5)


def test_param_groups_fill_defaults_and_use_their_own_lr(device):
    a = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    b = nn.Parameter(tl.tensor([3.0], device=device))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["momentum"] == 0.9
    assert set(opt.param_groups[0]) == {"params", "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                                        "foreach", "differentiable", "fused"}  # PyTorch's keys
    a.grad = tl.tensor([1.0, 1.0], device=device)
    b.grad = tl.tensor([2.0], device=device)
    opt.step()
    np.testing.assert_allclose(backend.to_host(a.array), [0.9, 1.9], rtol=1e-6)
    np.testing.assert_allclose(backend.to_host(b.array), [2.0], rtol=1e-6)
    assert "momentum_buffer" not in opt.state[a] and "momentum_buffer" in opt.state[b]


def test_add_param_group():
    a, b = nn.Parameter(tl.zeros(2)), nn.Parameter(tl.zeros(3))
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_bad_arguments_raise():
    p, q = nn.Parameter(tl.zeros(2)), nn.Parameter(tl.zeros(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p, q]}, {"params": [q]}], lr=0.1)
    with pytest.raises(ValueError, match="same parameter twice"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([{"params": [p], "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([p], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="epsilon"):
        optim.AdamW([p], eps=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.Adam([p], weight_decay=-1.0)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="floating point"):
        optim.SGD([tl.tensor([1, 2])], lr=0.1)


def test_zero_grad(device):
    p = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    opt = optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and backend.to_host(p.grad.array).tolist() == [0.0, 0.0]
    (p * p).sum().backward()
    np.testing.assert_allclose(backend.to_host(p.grad.array), [2.0, 4.0])
    opt.zero_grad()
    assert p.grad is None


def test_parameters_without_grad_are_skipped():
    a, b = nn.Parameter(tl.tensor([1.0])), nn.Parameter(tl.tensor([2.0]))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = tl.tensor([1.0])
    opt.step()
    assert b.array.tolist() == [2.0] and b not in opt.state and opt.state[a]["step"] == 1


def test_step_with_closure_returns_loss():
    p = nn.Parameter(tl.tensor([3.0]))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0 and p.array.tolist() == [1.5]


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        loss = ((model(tl.tensor(x)) - tl.tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()


def _batches(seed, n):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32))
            for _ in range(n)]


@pytest.mark.parametrize("opt_cls, kw", ALL_OPTIMIZERS)
def test_state_dict_round_trip_continues_identically(opt_cls, kw):
    batches = _batches(0, 8)
    model = nn.Linear(3, 2)
    opt = opt_cls(model.parameters(), **kw)
    _train(model, opt, batches[:4])
    model_sd, opt_sd = model.state_dict(), opt.state_dict()
    _train(model, opt, batches[4:])

    resumed = nn.Linear(3, 2)
    resumed_opt = opt_cls(resumed.parameters(), **{**kw, "lr": 123.0})
    resumed.load_state_dict(model_sd)
    resumed_opt.load_state_dict(opt_sd)
    assert resumed_opt.param_groups[0]["lr"] == kw["lr"]
    _train(resumed, resumed_opt, batches[4:])
    for (name, a), (_, b) in zip(model.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_state_dict_layout_is_pytorchs_and_holds_host_copies():
    model = nn.Linear(3, 2)
    extra = nn.Parameter(tl.zeros(5))
    opt = optim.Adam([{"params": model.parameters()}, {"params": [extra], "lr": 0.5}], lr=0.01, amsgrad=True)
    _train(model, opt, _batches(1, 2))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(sd["state"]) == [0, 1]  # ``extra`` never had a gradient
    entry = sd["state"][0]
    assert entry["step"] == 2 and set(entry) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert isinstance(entry["exp_avg"], tl.Tensor) and entry["exp_avg"].shape == (2, 3)
    assert entry["exp_avg"].device == "cpu" and entry["exp_avg"].dtype == np.float32
    before = entry["exp_avg"].numpy().copy()
    _train(model, opt, _batches(2, 1))
    np.testing.assert_array_equal(entry["exp_avg"].numpy(), before)  # a snapshot, not a live view


def test_load_state_dict_restores_tuples_and_moves_state(device):
    p = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    opt = optim.Adam([p], lr=0.1)
    p.grad = tl.tensor([1.0, -1.0], device=device)
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["betas"] = list(sd["param_groups"][0]["betas"])  # what a JSON round trip gives
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].numpy().astype(np.float64)  # a NumPy array is fine
    opt2 = optim.Adam([p], lr=0.1)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)
    assert backend.device_of(opt2.state[p]["exp_avg"]) == p.device
    assert opt2.state[p]["exp_avg"].dtype == p.dtype


def test_load_state_dict_validates():
    a, b = nn.Parameter(tl.zeros(2)), nn.Parameter(tl.zeros(3))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = tl.ones(2), tl.ones(3)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="has 1 parameter group.*this optimizer has 2"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="has 2 parameter"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
        optim.SGD([b, a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_training_reduces_loss():
    tl.manual_seed(0)
    model = nn.Linear(3, 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    for opt in (optim.SGD(model.parameters(), lr=0.1, momentum=0.9), optim.AdamW(model.parameters(), lr=0.05)):
        losses = []
        for _ in range(60):
            opt.zero_grad()
            loss = ((model(tl.tensor(x)) - tl.tensor(y)) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.05 * losses[0]


def _sgd_with_lr(lr=1.0, groups=1):
    params = [nn.Parameter(tl.zeros(1)) for _ in range(groups)]
    return optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr)


def _lrs(sched, n):
    out = [sched.get_last_lr()]
    for _ in range(n):
        sched.optimizer.step()
        sched.step()
        out.append(sched.get_last_lr())
    return np.array(out)


def test_step_lr_values():
    sched = lr_scheduler.StepLR(_sgd_with_lr(0.5, groups=2), step_size=3, gamma=0.1)
    got = _lrs(sched, 10)
    epochs = np.arange(11)[:, None]
    np.testing.assert_allclose(got, np.array([[0.5, 1.0]]) * 0.1 ** (epochs // 3), rtol=1e-12)
    assert sched.last_epoch == 10 and sched.base_lrs == [0.5, 1.0]
    assert [g["initial_lr"] for g in sched.optimizer.param_groups] == [0.5, 1.0]
    assert sched.optimizer.param_groups[0]["lr"] == got[-1][0]


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_follows_the_closed_form(eta_min):
    T = 7
    sched = lr_scheduler.CosineAnnealingLR(_sgd_with_lr(0.1), T_max=T, eta_min=eta_min)
    got = _lrs(sched, 4 * T)[:, 0]
    t = np.arange(4 * T + 1)
    closed = eta_min + (0.1 - eta_min) * (1 + np.cos(np.pi * t / T)) / 2
    np.testing.assert_allclose(got, closed, rtol=1e-9, atol=1e-12)
    assert got[T] == pytest.approx(eta_min, abs=1e-12) and got[2 * T] == pytest.approx(0.1)


def test_lambda_lr_per_group_and_shared():
    sched = lr_scheduler.LambdaLR(_sgd_with_lr(1.0, groups=2), [lambda e: 0.5**e, lambda e: 1.0 / (e + 1)])
    got = _lrs(sched, 5)
    e = np.arange(6)
    np.testing.assert_allclose(got, np.stack([0.5**e, 2.0 / (e + 1)], axis=1), rtol=1e-12)
    shared = lr_scheduler.LambdaLR(_sgd_with_lr(1.0, groups=2), lambda e: e + 1)
    np.testing.assert_allclose(_lrs(shared, 3), np.array([[1, 2], [2, 4], [3, 6], [4, 8]]), rtol=1e-12)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(_sgd_with_lr(1.0, groups=2), [lambda e: 1.0])


def test_linear_lr_warmup():
    sched = lr_scheduler.LinearLR(_sgd_with_lr(1.0), start_factor=0.25, end_factor=1.0, total_iters=3)
    np.testing.assert_allclose(_lrs(sched, 5)[:, 0], [0.25, 0.5, 0.75, 1.0, 1.0, 1.0], rtol=1e-12)


def test_scheduler_state_dict_round_trip():
    opt = _sgd_with_lr(0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    _lrs(sched, 4)
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 4
    expected = _lrs(sched, 5)

    opt2 = _sgd_with_lr(0.1)
    opt2.param_groups[0]["lr"] = sd["_last_lr"][0]
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(sd)
    np.testing.assert_allclose(_lrs(sched2, 5), expected, rtol=1e-15)


def test_scheduler_errors():
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(_sgd_with_lr(), step_size=0)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(_sgd_with_lr(), step_size=2, last_epoch=3)


def _torch_pair(torch, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 3)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    ours = [nn.Parameter(tl.tensor(w)), nn.Parameter(tl.tensor(b))]
    theirs = [torch.nn.Parameter(torch.tensor(w)), torch.nn.Parameter(torch.tensor(b))]
    return ours, theirs


@pytest.mark.parametrize(
    "name, kw",
    [("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
     ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True, weight_decay=0.01)),
     ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
     ("Adam", dict(lr=0.01, betas=(0.8, 0.9), maximize=True)),
     ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True))],
)
def test_trajectories_match_pytorch(name, kw):
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_pair(torch, 0)
    opt, topt = getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = rng.standard_normal((4, 3))
        opt.zero_grad()
        topt.zero_grad()
        ((tl.tensor(x) @ ours[0].T + ours[1]).tanh() ** 2).sum().backward()
        ((torch.tensor(x) @ theirs[0].T + theirs[1]).tanh() ** 2).sum().backward()
        opt.step()
        topt.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10, atol=1e-12)
    ours_sd, theirs_sd = opt.state_dict(), topt.state_dict()
    for idx, entry in theirs_sd["state"].items():
        for key, value in entry.items():
            np.testing.assert_allclose(np.asarray(ours_sd["state"][idx][key]), value.numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "name, kw",
    [("StepLR", dict(step_size=3, gamma=0.3)), ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001)),
     ("CosineAnnealingLR", dict(T_max=1)), ("LambdaLR", dict(lr_lambda=lambda e: 0.9**e + 0.01 * e)),
     ("LinearLR", dict(start_factor=0.1, total_iters=4))],
)
def test_schedules_match_pytorch(name, kw):
    torch = pytest.importorskip("torch")
    opt = _sgd_with_lr(0.1, groups=2)
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (i + 1)} for i in range(2)])
    ours = getattr(lr_scheduler, name)(opt, **kw)
    theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    got, expected = [ours.get_last_lr()], [theirs.get_last_lr()]
    for _ in range(20):
        opt.step()
        topt.step()
        ours.step()
        theirs.step()
        got.append(ours.get_last_lr())
        expected.append(theirs.get_last_lr())
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-14, atol=0)
    assert math.isclose(ours.base_lrs[1], theirs.base_lrs[1])


@pytest.mark.parametrize("name", ["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "SGD"])
@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_a_0d_parameter_steps_as_a_1_element_one(name, fast):
    """A scalar parameter (nn.Parameter(torch.tensor(1.0)), a learnable temperature) follows the same path as a
    one-element vector; the update rules once failed on it, where NumPy returns a scalar instead of a 0-d array."""
    extra = {"RMSprop": dict(momentum=0.9, centered=True), "SGD": dict(momentum=0.9)}.get(name, dict(weight_decay=0.1))
    values = []
    for shape in ((), (1,)):
        p = tl.tensor(np.full(shape, 0.5, dtype=np.float32), requires_grad=True)
        opt = getattr(tl.optim, name)([p], lr=0.01, **extra)
        with tl.fast.enabled(fast):
            for _ in range(3):
                opt.zero_grad()
                (p * p * 3).sum().backward()
                opt.step()
        assert p.shape == shape
        values.append(float(p.detach().numpy().reshape(())))
    assert values[0] == values[1]
