"""Every learning-rate scheduler against PyTorch's: the rates (and cycled momenta) of every group over many
steps, resuming with ``last_epoch``, the deprecated ``step(epoch)``, and state dicts through tl.save/tl.load."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn, optim
from tinygrad_lm.optim import lr_scheduler

torch = pytest.importorskip("torch")

STEPS = 120


def _optimizers(name="SGD", groups=2, **kw):
    """Ours and PyTorch's, each with ``groups`` groups at lr 0.1, 0.2, ..."""
    kw = {"momentum": 0.9, **kw} if name == "SGD" else kw
    ours = getattr(optim, name)(
        [{"params": [nn.Parameter(tl.zeros(1))], "lr": 0.1 * (i + 1)} for i in range(groups)], **kw)
    theirs = getattr(torch.optim, name)(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (i + 1)} for i in range(groups)], **kw)
    return ours, theirs


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _trace(opt, sched, steps, metrics=None):
    """The rates after construction and after each step, with each group's momentum (or beta1) beside them."""
    out = [sched.get_last_lr() + _momenta(opt)]
    for t in range(steps):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[t])
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        out.append(sched.get_last_lr() + _momenta(opt))
    return np.array(out, dtype=float)


def _assert_traces_equal(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)


def _lambda(e):
    return 0.95**e + 0.01 * (e % 3)


SCHEDULES = {
    "StepLR": lambda L, o: L.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, milestones=[3, 10, 10, 40], gamma=0.3),
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, gamma=0.97),
    "ConstantLR": lambda L, o: L.ConstantLR(o, factor=0.25, total_iters=6),
    "LinearLR": lambda L, o: L.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=30),
    "LinearLR-decay": lambda L, o: L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=50),
    "PolynomialLR": lambda L, o: L.PolynomialLR(o, total_iters=60, power=2.0),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=17, eta_min=0.001),
    "CosineAnnealingLR-T1": lambda L, o: L.CosineAnnealingLR(o, T_max=1),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lr_lambda=_lambda),
    "LambdaLR-per-group": lambda L, o: L.LambdaLR(o, lr_lambda=[_lambda, lambda e: 1.0 / (1 + e)]),
    "MultiplicativeLR": lambda L, o: L.MultiplicativeLR(o, lr_lambda=lambda e: 0.99 if e % 2 else 0.97),
    "CosineAnnealingWarmRestarts": lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=5, eta_min=0.002),
    "CosineAnnealingWarmRestarts-Tmult": lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2),
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=STEPS),
    "OneCycleLR-linear-3phase": lambda L, o: L.OneCycleLR(
        o, max_lr=0.8, epochs=12, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear", three_phase=True,
        base_momentum=[0.8, 0.7], max_momentum=0.9, div_factor=10.0, final_div_factor=100.0),
    "OneCycleLR-no-momentum": lambda L, o: L.OneCycleLR(o, max_lr=0.3, total_steps=STEPS + 5, cycle_momentum=False),
    "CyclicLR": lambda L, o: L.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=7),
    "CyclicLR-triangular2": lambda L, o: L.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=0.3, step_size_up=5,
                                                    step_size_down=11, mode="triangular2", base_momentum=0.7),
    "CyclicLR-exp_range": lambda L, o: L.CyclicLR(o, base_lr=0.05, max_lr=0.5, step_size_up=9, mode="exp_range",
                                                  gamma=0.99, max_momentum=[0.95, 0.9]),
    "CyclicLR-scale_fn": lambda L, o: L.CyclicLR(o, base_lr=0.05, max_lr=0.5, step_size_up=4,
                                                 scale_fn=lambda x: 1 / (1 + 0.1 * x), scale_mode="iterations",
                                                 cycle_momentum=False),
    "SequentialLR-warmup-cosine": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=10), L.CosineAnnealingLR(o, T_max=50)], milestones=[10]),
    "SequentialLR-three": lambda L, o: L.SequentialLR(
        o, [L.ConstantLR(o, factor=0.5, total_iters=4), L.ExponentialLR(o, gamma=0.9),
            L.StepLR(o, step_size=5, gamma=0.5)], milestones=[8, 30]),
    "SequentialLR-lambda": lambda L, o: L.SequentialLR(
        o, [L.LambdaLR(o, lambda e: (e + 1) / 5), L.MultiStepLR(o, [20, 50])], milestones=[5]),
    "ChainedScheduler": lambda L, o: L.ChainedScheduler(
        [L.ConstantLR(o, factor=0.1, total_iters=3), L.ExponentialLR(o, gamma=0.95)]),
    "ChainedScheduler-cosine": lambda L, o: L.ChainedScheduler(
        [L.LinearLR(o, start_factor=0.2, total_iters=8), L.CosineAnnealingLR(o, T_max=25, eta_min=0.01)],
        optimizer=o),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_rates_match_pytorch_over_many_steps(name, opt_name):
    opt, topt = _optimizers(opt_name)
    ours, theirs = SCHEDULES[name](lr_scheduler, opt), SCHEDULES[name](torch.optim.lr_scheduler, topt)
    _assert_traces_equal(_trace(opt, ours, STEPS), _trace(topt, theirs, STEPS))
    assert ours.last_epoch == theirs.last_epoch if hasattr(theirs, "last_epoch") else True
    for group, tgroup in zip(opt.param_groups, topt.param_groups):
        assert {k: v for k, v in group.items() if k != "params"} == {k: v for k, v in tgroup.items() if k != "params"}


@pytest.mark.parametrize("name", [n for n in SCHEDULES if not n.startswith(("Sequential", "Chained"))])
def test_resuming_with_last_epoch_matches_pytorch(name):
    """A scheduler made with last_epoch=k after the optimizer's groups got their 'initial_lr' (as after loading
    an optimizer state dict) continues from the rates in the groups."""
    opt, topt = _optimizers()
    for o in (opt, topt):
        for group in o.param_groups:
            group["initial_lr"] = group["lr"]
            group["lr"] = group["lr"] * 0.7
    factory = SCHEDULES[name]
    if name.startswith("OneCycleLR"):
        for o in (opt, topt):
            for group in o.param_groups:
                group.update(max_lr=1.0, min_lr=1e-4, max_momentum=0.95, base_momentum=0.85)
    ours = _with_last_epoch(factory, lr_scheduler, opt, 9)
    theirs = _with_last_epoch(factory, torch.optim.lr_scheduler, topt, 9)
    steps = 60 if name.startswith("OneCycleLR") else STEPS
    _assert_traces_equal(_trace(opt, ours, steps), _trace(topt, theirs, steps))


def _with_last_epoch(factory, module, opt, last_epoch):
    """Call ``factory`` with every scheduler class of ``module`` taking ``last_epoch`` as well."""

    class Patched:
        def __getattr__(self, attr):
            cls = getattr(module, attr)
            return lambda *a, **kw: cls(*a, last_epoch=last_epoch, **kw)

    return factory(Patched(), opt)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "ConstantLR", "LinearLR",
                                  "PolynomialLR", "CosineAnnealingLR", "LambdaLR", "CosineAnnealingWarmRestarts",
                                  "CosineAnnealingWarmRestarts-Tmult"])
def test_deprecated_step_with_an_epoch_matches_pytorch(name):
    opt, topt = _optimizers()
    ours, theirs = SCHEDULES[name](lr_scheduler, opt), SCHEDULES[name](torch.optim.lr_scheduler, topt)
    epochs = [3, 4, 10, 9, 0, 25, 26, 61, 30, 7]
    if name.startswith("CosineAnnealingWarmRestarts"):
        epochs += [2.5, 7.25, 13.9, 0.1]
    got, expected = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in epochs:
            opt.step()
            topt.step()
            ours.step(epoch)
            theirs.step(epoch)
            got.append(ours.get_last_lr())
            expected.append(theirs.get_last_lr())
    _assert_traces_equal(np.array(got), np.array(expected))
    if not name.startswith("CosineAnnealingWarmRestarts"):  # (where step(epoch) is the documented use)
        with pytest.warns(UserWarning, match="epoch parameter"):
            ours.step(3)


def test_warm_restarts_with_fractional_epochs_as_documented():
    opt, topt = _optimizers()
    ours = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2, eta_min=0.01)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0=4, T_mult=2, eta_min=0.01)
    got, expected = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(20):
            for i in range(5):
                opt.step()
                topt.step()
                ours.step(epoch + i / 5)
                theirs.step(epoch + i / 5)
                got.append(ours.get_last_lr() + [ours.T_cur, ours.T_i])
                expected.append(theirs.get_last_lr() + [theirs.T_cur, theirs.T_i])
    _assert_traces_equal(np.array(got), np.array(expected))


PLATEAU_CONFIGS = [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(patience=3, threshold=0.05, threshold_mode="abs", cooldown=2),
    dict(mode="max", threshold=0.1, threshold_mode="rel", cooldown=1, patience=0, min_lr=[0.01, 0.05]),
    dict(factor=0.5, patience=1, min_lr=0.03, eps=1e-3),
]


@pytest.mark.parametrize("kw", PLATEAU_CONFIGS)
def test_reduce_lr_on_plateau_matches_pytorch(kw):
    rng = np.random.default_rng(0)
    # a loss that falls, then stalls and wobbles: improvements come rarer and rarer
    metrics = [1.0 / (1 + t) ** 0.5 + 0.05 * rng.standard_normal() * (t > 20) for t in range(STEPS)]
    metrics[50] = float("nan")
    opt, topt = _optimizers()
    ours = lr_scheduler.ReduceLROnPlateau(opt, **kw)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    got = _trace(opt, ours, STEPS, metrics)
    expected = _trace(topt, theirs, STEPS, [torch.tensor(m, dtype=torch.float64) for m in metrics])
    _assert_traces_equal(got, expected)
    assert len(set(got[:, 0])) >= 2  # the rate was reduced
    for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_reduce_lr_on_plateau_takes_tensors_and_rejects_other_metrics():
    opt, _ = _optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    sched.step(tl.tensor(1.0))
    sched.step(tl.tensor([2.0]))
    assert sched.get_last_lr() == pytest.approx([0.01, 0.02])
    with pytest.raises(TypeError, match="needs a number .*got str"):
        sched.step("loss")
    with pytest.raises(TypeError, match=r"needs a number .*got Tensor of shape \(2,\)"):
        sched.step(tl.tensor([1.0, 2.0]))


def test_one_cycle_cycles_adams_beta1_and_keeps_beta2():
    opt, topt = _optimizers("Adam", betas=(0.9, 0.99))
    ours = lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=50)
    theirs = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.01, total_steps=50)
    _assert_traces_equal(_trace(opt, ours, 50), _trace(topt, theirs, 50))
    assert [g["betas"][1] for g in opt.param_groups] == [0.99, 0.99]
    with pytest.raises(ValueError, match="Tried to step 51 times. The specified number of total steps is 50"):
        ours.step()


def test_one_cycle_cycles_rmsprop_momentum_and_refuses_adagrad():
    opt = optim.RMSprop([nn.Parameter(tl.zeros(1))], momentum=0.5)
    topt = torch.optim.RMSprop([torch.nn.Parameter(torch.zeros(1))], momentum=0.5)
    ours = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=30)
    theirs = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.1, total_steps=30)
    _assert_traces_equal(_trace(opt, ours, 30), _trace(topt, theirs, 30))
    with pytest.raises(ValueError, match="momentum or beta1.*Adagrad has neither"):
        lr_scheduler.OneCycleLR(optim.Adagrad([nn.Parameter(tl.zeros(1))]), max_lr=0.1, total_steps=10)


ALL_FOR_STATE = {**SCHEDULES, "ReduceLROnPlateau": lambda L, o: L.ReduceLROnPlateau(o, patience=1, cooldown=1)}


@pytest.mark.parametrize("name", list(ALL_FOR_STATE))
def test_state_dict_through_tl_save_resumes_identically(tmp_path, name):
    metrics = [1.0 / (1 + (t % 7)) for t in range(STEPS)]
    plateau = name == "ReduceLROnPlateau"
    opt, _ = _optimizers()
    sched = ALL_FOR_STATE[name](lr_scheduler, opt)
    _trace(opt, sched, 40, metrics[:40] if plateau else None)
    tl.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt")
    expected = _trace(opt, sched, 60, metrics[40:] if plateau else None)

    checkpoint = tl.load(tmp_path / "ckpt")
    opt2, _ = _optimizers()
    sched2 = ALL_FOR_STATE[name](lr_scheduler, opt2)
    opt2.load_state_dict(checkpoint["optimizer"])
    sched2.load_state_dict(checkpoint["scheduler"])
    np.testing.assert_array_equal(_trace(opt2, sched2, 60, metrics[40:] if plateau else None), expected)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "OneCycleLR", "SequentialLR-warmup-cosine",
                                  "LambdaLR", "CosineAnnealingWarmRestarts"])
def test_state_dict_keys_are_pytorchs(name):
    opt, topt = _optimizers()
    ours, theirs = SCHEDULES[name](lr_scheduler, opt), SCHEDULES[name](torch.optim.lr_scheduler, topt)
    _trace(opt, ours, 5)
    _trace(topt, theirs, 5)
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert set(sd) <= set(tsd)
    for key in set(sd) - {"_schedulers"}:
        assert sd[key] == tsd[key], key


def test_state_dict_is_a_copy():
    opt, _ = _optimizers()
    sched = lr_scheduler.MultiStepLR(opt, milestones=[2, 4])
    sd = sched.state_dict()
    sd["base_lrs"].append(5.0)
    sd["milestones"][7] = 1
    assert sched.base_lrs == [0.1, 0.2] and 7 not in sched.milestones


def test_load_state_dict_rejects_another_schedulers_or_malformed_dicts():
    opt, _ = _optimizers()
    step = lr_scheduler.StepLR(opt, step_size=3)
    cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    with pytest.raises(ValueError, match="key 'step_size', which CosineAnnealingLR does not have"):
        cosine.load_state_dict(step.state_dict())
    with pytest.raises(ValueError, match="expects the dict that state_dict.. returns, got str"):
        step.load_state_dict("scheduler.pt")
    with pytest.raises(ValueError, match="'base_lrs'.*has 1 value.*2 parameter group"):
        step.load_state_dict({**step.state_dict(), "base_lrs": [0.1]})
    with pytest.raises(ValueError, match="'base_lrs'.*list of numbers"):
        step.load_state_dict({**step.state_dict(), "base_lrs": "0.1"})
    with pytest.raises(ValueError, match="'last_epoch'.*must be a number"):
        step.load_state_dict({**step.state_dict(), "last_epoch": "3"})
    lam = lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    with pytest.raises(ValueError, match="'lr_lambdas'.*2 entries"):
        lam.load_state_dict({**lam.state_dict(), "lr_lambdas": [None]})
    seq = lr_scheduler.SequentialLR(opt, [lr_scheduler.ConstantLR(opt), lr_scheduler.ExponentialLR(opt, 0.9)], [3])
    with pytest.raises(ValueError, match="'_schedulers'.*list of 2 scheduler state dicts"):
        seq.load_state_dict({**seq.state_dict(), "_schedulers": []})
    before = step.state_dict()
    with pytest.raises(ValueError):
        step.load_state_dict({**step.state_dict(), "base_lrs": [0.1]})
    assert step.state_dict() == before


def test_stepping_the_scheduler_before_the_optimizer_warns():
    opt, _ = _optimizers()
    sched = lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2, _ = _optimizers()
    sched2 = lr_scheduler.StepLR(opt2, step_size=2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()


@pytest.mark.parametrize("call, exc, message", [
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1), ValueError, "total_steps OR .epochs AND steps_per_epoch"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=0), ValueError, "positive integer total_steps"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=0.1), ValueError,
     "phase 0 of the schedule has no steps"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError,
     "anneal_strategy"),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=[0.1, 0.2, 0.3], total_steps=10), ValueError,
     "max_lr must have the same length as optimizer.param_groups"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="up"), ValueError, "mode 'up' is unknown"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, threshold_mode="x"), ValueError, "threshold mode 'x' is unknown"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr must have the same length"),
    (lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=-1), ValueError, "patience must be a non-negative"),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "positive integer T_0"),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), ValueError, "T_mult >= 1"),
    (lambda o: lr_scheduler.MultiStepLR(o, milestones=[2.5]), ValueError, "milestones must be integers"),
    (lambda o: lr_scheduler.ConstantLR(o, factor=2.0), ValueError, "between 0 and 1"),
    (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.ConstantLR(o)], milestones=[3]), ValueError,
     "one more than the number of milestone"),
    (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.ReduceLROnPlateau(o), lr_scheduler.ConstantLR(o)], [2]),
     ValueError, "does not support `ReduceLROnPlateau`"),
    (lambda o: lr_scheduler.ChainedScheduler([]), ValueError, "at least one scheduler"),
    (lambda o: lr_scheduler.MultiplicativeLR(o, lr_lambda=0.9), TypeError, "lr_lambda should be a function"),
    (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: lr_scheduler.CyclicLR(o, 0.1, 1.0, mode="sawtooth"), ValueError, "mode is invalid"),
    (lambda o: lr_scheduler.CyclicLR(o, 0.1, 1.0, step_size_up=0), ValueError, "step_size_up must be a positive"),
    (lambda o: lr_scheduler.CyclicLR(o, [0.1], 1.0), ValueError, "base_lr must have the same length"),
])
def test_bad_scheduler_arguments_raise_clear_errors(call, exc, message):
    opt, _ = _optimizers()
    with pytest.raises(exc, match=message):
        call(opt)


def test_sequential_lr_rejects_a_scheduler_of_another_optimizer():
    opt, _ = _optimizers()
    other, _ = _optimizers()
    with pytest.raises(ValueError, match="same optimizer.*index 1"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.ConstantLR(opt), lr_scheduler.ConstantLR(other)], [2])


def test_every_pytorch_scheduler_name_exists():
    names = {n for n in dir(torch.optim.lr_scheduler) if n.endswith("LR") or n in ("LRScheduler", "ChainedScheduler",
                                                                                    "ReduceLROnPlateau")}
    missing = sorted(n for n in names if not hasattr(lr_scheduler, n))
    assert not missing, missing
    assert issubclass(lr_scheduler.ReduceLROnPlateau, lr_scheduler.LRScheduler)
    assert math.isclose(lr_scheduler.StepLR(_optimizers()[0], 2).base_lrs[1], 0.2)


_factor = st.floats(0.05, 1.0)
RANDOM_SCHEDULES = {
    "StepLR": st.fixed_dictionaries(dict(step_size=st.integers(1, 30), gamma=st.floats(0.1, 1.0))),
    "MultiStepLR": st.fixed_dictionaries(dict(milestones=st.lists(st.integers(1, 80), max_size=5),
                                              gamma=st.floats(0.1, 1.0))),
    "ExponentialLR": st.fixed_dictionaries(dict(gamma=st.floats(0.5, 1.0))),
    "ConstantLR": st.fixed_dictionaries(dict(factor=_factor, total_iters=st.integers(0, 50))),
    "LinearLR": st.fixed_dictionaries(dict(start_factor=_factor, end_factor=st.floats(0.0, 1.0),
                                           total_iters=st.integers(1, 60))),
    "PolynomialLR": st.fixed_dictionaries(dict(total_iters=st.integers(1, 60), power=st.floats(0.5, 3.0))),
    "CosineAnnealingLR": st.fixed_dictionaries(dict(T_max=st.integers(1, 40), eta_min=st.floats(0.0, 0.05))),
    "CosineAnnealingWarmRestarts": st.fixed_dictionaries(dict(T_0=st.integers(1, 20), T_mult=st.integers(1, 3),
                                                              eta_min=st.floats(0.0, 0.05))),
    "OneCycleLR": st.fixed_dictionaries(dict(
        max_lr=st.floats(0.01, 2.0), total_steps=st.integers(STEPS, 2 * STEPS), pct_start=st.floats(0.0, 1.0),
        anneal_strategy=st.sampled_from(["cos", "linear"]), cycle_momentum=st.booleans(),
        base_momentum=st.floats(0.5, 0.85), max_momentum=st.floats(0.86, 0.99), div_factor=st.floats(1.0, 100.0),
        final_div_factor=st.floats(1.0, 1e4), three_phase=st.booleans())),
    "CyclicLR": st.fixed_dictionaries(dict(
        base_lr=st.floats(1e-4, 0.1), max_lr=st.floats(0.1, 1.0), step_size_up=st.integers(1, 30),
        step_size_down=st.one_of(st.none(), st.integers(0, 30)),
        mode=st.sampled_from(["triangular", "triangular2", "exp_range"]), gamma=st.floats(0.9, 1.0),
        cycle_momentum=st.booleans())),
}


@given(data=st.data(), name=st.sampled_from(sorted(RANDOM_SCHEDULES)), opt_name=st.sampled_from(["SGD", "Adam"]))
def test_any_hyperparameters_give_pytorchs_rates(data, name, opt_name):
    kw = data.draw(RANDOM_SCHEDULES[name], label="kw")
    opt, topt = _optimizers(opt_name)
    try:
        theirs = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    except ZeroDivisionError:  # OneCycleLR with a warm-up of exactly one step: ours says so
        with pytest.raises(ValueError, match="has no steps"):
            getattr(lr_scheduler, name)(opt, **kw)
        return
    ours = getattr(lr_scheduler, name)(opt, **kw)
    steps = min(STEPS, kw.get("total_steps", STEPS))
    _assert_traces_equal(_trace(opt, ours, steps), _trace(topt, theirs, steps))


@given(metrics=st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=60),
       kw=st.fixed_dictionaries(dict(mode=st.sampled_from(["min", "max"]), factor=st.floats(0.0, 0.9),
                                     patience=st.integers(0, 5), threshold=st.floats(0.0, 0.5),
                                     threshold_mode=st.sampled_from(["rel", "abs"]), cooldown=st.integers(0, 4),
                                     min_lr=st.floats(0.0, 0.05), eps=st.floats(0.0, 1e-3))))
def test_reduce_lr_on_plateau_for_any_metrics_gives_pytorchs_rates(metrics, kw):
    opt, topt = _optimizers()
    ours = lr_scheduler.ReduceLROnPlateau(opt, **kw)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    _assert_traces_equal(_trace(opt, ours, len(metrics), metrics),
                         _trace(topt, theirs, len(metrics), [torch.tensor(m, dtype=torch.float64) for m in metrics]))
