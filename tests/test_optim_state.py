"""Optimizer state dicts (PyTorch's layout, through tl.save / tl.load), their validation, bad
hyperparameters and implementation flags, and the version bump of every updated parameter."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm import backend, nn, optim

EVERY_OPTIMIZER = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01, maximize=True)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    (optim.Adadelta, dict(lr=1.0, rho=0.8, weight_decay=0.01)),
    (optim.Adamax, dict(lr=0.01, maximize=True)),
    (optim.NAdam, dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1)),
    (optim.RAdam, dict(lr=0.01, betas=(0.9, 0.9), weight_decay=0.1)),
]
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(EVERY_OPTIMIZER)]


def _model():
    tl.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _train(model, opt, seed, steps):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = tl.tensor(rng.standard_normal((5, 3)).astype(np.float32))
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()


def _make(opt_cls, kw, model):
    """Two groups with different options: the first layer's parameters, and the second's at a lower lr."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return opt_cls([{"params": layers[0].parameters()}, {"params": layers[1].parameters(), "lr": kw["lr"] / 2}], **kw)


@pytest.mark.parametrize("opt_cls, kw", EVERY_OPTIMIZER, ids=IDS)
def test_save_load_resume_continues_identically(tmp_path, opt_cls, kw):
    model = _model()
    opt = _make(opt_cls, kw, model)
    _train(model, opt, seed=0, steps=3)
    tl.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "ckpt.safetensors")
    _train(model, opt, seed=1, steps=3)

    checkpoint = tl.load(tmp_path / "ckpt.safetensors")
    resumed = _model()
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt = _make(opt_cls, {**kw, "lr": 5.0}, resumed)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    assert [g["lr"] for g in resumed_opt.param_groups] == [kw["lr"], kw["lr"] / 2]
    _train(resumed, resumed_opt, seed=1, steps=3)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("opt_cls, kw", EVERY_OPTIMIZER, ids=IDS)
def test_state_dict_is_a_snapshot_of_host_tensors(opt_cls, kw):
    model = _model()
    opt = _make(opt_cls, kw, model)
    _train(model, opt, seed=0, steps=2)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    params = list(model.parameters())
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if name == "step":
                assert value == 2
            elif name == "mu_product":
                assert isinstance(value, float)
            else:
                assert isinstance(value, tl.Tensor) and value.device == "cpu", name
                assert value.shape == params[idx].shape and value.dtype == params[idx].dtype, name
    before = {(i, k): v.numpy().copy() for i, e in sd["state"].items() for k, v in e.items()
              if isinstance(v, tl.Tensor)}
    _train(model, opt, seed=1, steps=1)
    for (i, k), value in before.items():
        np.testing.assert_array_equal(sd["state"][i][k].numpy(), value)


def test_load_state_dict_moves_state_to_the_parameters_device_and_dtype(device):
    p = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    opt = optim.RMSprop([p], momentum=0.9)
    p.grad = tl.tensor([1.0, -1.0], device=device)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["square_avg"] = sd["state"][0]["square_avg"].numpy().astype(np.float64)
    opt2 = optim.RMSprop([p], momentum=0.9)
    opt2.load_state_dict(sd)
    for name, value in opt2.state[p].items():
        if name != "step":
            assert backend.device_of(value) == p.device and value.dtype == p.dtype, name
    np.testing.assert_allclose(backend.to_host(opt2.state[p]["square_avg"]), [0.01, 0.01], rtol=1e-6)


def test_load_state_dict_accepts_what_pytorch_saves():
    """A PyTorch state dict (its tensors as NumPy arrays, ``step`` a 0-d float) continues the same run."""
    torch = pytest.importorskip("torch")
    w = np.array([[0.5, -1.0], [2.0, 0.25]])
    q = torch.nn.Parameter(torch.tensor(w))
    topt = torch.optim.Adam([q], lr=0.1, amsgrad=True)
    for _ in range(3):
        topt.zero_grad()
        (q**3).sum().backward()
        topt.step()
    tsd = topt.state_dict()
    sd = {"state": {i: {k: v.numpy() for k, v in e.items()} for i, e in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    p = nn.Parameter(tl.tensor(q.detach().numpy().copy()))
    opt = optim.Adam([p])
    opt.load_state_dict(sd)
    assert opt.state[p]["step"] == 3 and opt.param_groups[0]["amsgrad"] is True
    for _ in range(3):
        for o, t in ((opt, p), (topt, q)):
            o.zero_grad()
            (t**3).sum().backward()
            o.step()
    np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10)


def _trained_sgd():
    a, b = nn.Parameter(tl.zeros(2)), nn.Parameter(tl.zeros(3))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = tl.ones(2), tl.ones(3)
    opt.step()
    return opt, a, b


def test_load_state_dict_checks_groups_and_shapes():
    opt, a, b = _trained_sgd()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="has 1 parameter group.*this optimizer has 2"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 of the loaded state dict has 2 parameter.*group 0 has 1"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\].*\(2,\).*parameter 0 has shape \(3,\)"):
        optim.SGD([b, a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="'exp_avg'.*not state SGD keeps"):
        optim.SGD([a, b], lr=0.1).load_state_dict({**sd, "state": {0: {"exp_avg": np.zeros(2)}}})
    with pytest.raises(ValueError, match="lacks 'exp_avg_sq', which Adam needs"):
        optim.Adam([a, b]).load_state_dict({**sd, "state": {0: {"step": 1, "exp_avg": np.zeros(2)}}})
    with pytest.raises(ValueError, match="state for parameter 7"):
        optim.SGD([a, b], lr=0.1).load_state_dict({**sd, "state": {7: {}}})
    with pytest.raises(ValueError, match="parameter index 0 in more than one place"):
        optim.SGD([a, b], lr=0.1).load_state_dict({**sd, "param_groups": [{**sd["param_groups"][0], "params": [0, 0]}]})


def test_a_failed_load_changes_nothing():
    opt, a, b = _trained_sgd()
    sd = opt.state_dict()
    groups_before = [dict(g) for g in opt.param_groups]
    state_before = {p: dict(s) for p, s in opt.state.items()}
    bad = {"state": sd["state"], "param_groups": [{**sd["param_groups"][0], "lr": -1.0}]}
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        opt.load_state_dict(bad)
    bad = {"state": {0: sd["state"][0], 1: {"momentum_buffer": np.zeros(7)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert opt.param_groups == groups_before and dict(opt.state) == state_before


MALFORMED = [
    ("not-a-dict", "checkpoint.pt", "must be a dict"),
    ("no-state", {"param_groups": []}, "no 'state' entry"),
    ("no-groups", {"state": {}}, "no 'param_groups' entry"),
    ("groups-a-string", {"state": {}, "param_groups": "lr=0.1"}, "'param_groups'.*list of dicts, got str"),
    ("group-a-string", {"state": {}, "param_groups": ["lr"]}, r"param_groups\[0\].*must be a dict, got str"),
    ("group-without-params", {"state": {}, "param_groups": [{"lr": 0.1}]}, r"param_groups\[0\].*no 'params'"),
    ("params-a-string", {"state": {}, "param_groups": [{"lr": 0.1, "params": "01"}]},
     r"param_groups\[0\]\['params'\].*parameter indices"),
    ("params-negative", {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, -1]}]},
     r"param_groups\[0\]\['params'\].*parameter indices"),
    ("state-a-string", {"state": "momentum", "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
     "'state'.*dict from parameter index.*got str"),
    ("state-key", {"state": {"w": {}}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
     "'state'.*key 'w'.*not a parameter index"),
    ("entry-a-string", {"state": {0: "buffer"}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
     r"state\[0\].*must be a dict of buffers, got str"),
    ("buffer-a-string", {"state": {0: {"momentum_buffer": "zeros"}}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
     r"state\[0\]\['momentum_buffer'\].*array or Tensor.*got str"),
    ("lr-a-string", {"state": {}, "param_groups": [{"lr": "0.1", "params": [0, 1]}]},
     r"param_groups\[0\].*lr must be a number.*'0.1'"),
    ("nesterov-a-string", {"state": {}, "param_groups": [{"nesterov": "no", "params": [0, 1]}]},
     r"param_groups\[0\].*nesterov must be True or False"),
]


@pytest.mark.parametrize("sd, message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_state_dicts_raise_value_error_naming_the_key(sd, message):
    opt, _, _ = _trained_sgd()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)


def test_nadams_mu_product_is_a_number_and_loads_from_pytorchs_0d_tensor():
    p = nn.Parameter(tl.zeros(2))
    opt = optim.NAdam([p])
    p.grad = tl.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["mu_product"], float) and 0 < sd["state"][0]["mu_product"] < 1
    sd["state"][0]["mu_product"] = np.array(sd["state"][0]["mu_product"], dtype=np.float32)
    optim.NAdam([p]).load_state_dict(sd)
    sd["state"][0]["mu_product"] = "0.9"
    with pytest.raises(ValueError, match=r"state\[0\]\['mu_product'\].*must be a finite number"):
        optim.NAdam([p]).load_state_dict(sd)


def test_malformed_step_counter():
    p = nn.Parameter(tl.zeros(2))
    good = {"step": 1, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}
    groups = optim.Adam([p]).state_dict()["param_groups"]
    for step in ("1", 1.5, -1, float("nan"), np.zeros(2)):
        with pytest.raises(ValueError, match=r"state\[0\]\['step'\]"):
            optim.Adam([p]).load_state_dict({"state": {0: {**good, "step": step}}, "param_groups": groups})
    opt = optim.Adam([p])
    opt.load_state_dict({"state": {0: {**good, "step": np.array(4.0, dtype=np.float32)}}, "param_groups": groups})
    assert opt.state[p]["step"] == 4 and isinstance(opt.state[p]["step"], int)


BAD_HYPERPARAMETERS = [
    (optim.RMSprop, dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (optim.RMSprop, dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    (optim.RMSprop, dict(alpha=1.5), "Invalid alpha value: 1.5"),
    (optim.RMSprop, dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (optim.RMSprop, dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (optim.RMSprop, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.Adagrad, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adagrad, dict(lr_decay=-0.1), "Invalid lr_decay value: -0.1"),
    (optim.Adagrad, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value value: -1.0"),
    (optim.Adagrad, dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    (optim.Adadelta, dict(rho=1.5), "Invalid rho value: 1.5"),
    (optim.Adadelta, dict(lr=-0.5), "Invalid learning rate: -0.5"),
    (optim.Adamax, dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    (optim.NAdam, dict(momentum_decay=-1.0), "Invalid momentum_decay value: -1.0"),
    (optim.RAdam, dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    (optim.SGD, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adam, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (optim.Adam, dict(lr=float("nan")), "Invalid learning rate: nan"),
]


@pytest.mark.parametrize("opt_cls, kw, message", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_pytorchs_messages(opt_cls, kw, message):
    p = nn.Parameter(tl.zeros(2))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        opt_cls([p], **kw)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        opt_cls([{"params": [p], **kw}])


@pytest.mark.parametrize("opt_cls, kw", [
    (optim.SGD, dict(momentum="0.9")), (optim.RMSprop, dict(alpha=None)), (optim.Adagrad, dict(lr_decay="x")),
    (optim.RMSprop, dict(centered="yes")), (optim.Adam, dict(amsgrad="False")), (optim.SGD, dict(maximize=None)),
])
def test_hyperparameters_of_the_wrong_type_raise_type_error_naming_them(opt_cls, kw):
    (name, value), = kw.items()
    with pytest.raises(TypeError, match=f"{name} must be .*{value!r}"):
        opt_cls([nn.Parameter(tl.zeros(2))], **kw)


FLAGS = {
    optim.SGD: ("foreach", "differentiable", "fused"),
    optim.Adam: ("foreach", "capturable", "differentiable", "fused"),
    optim.AdamW: ("foreach", "capturable", "differentiable", "fused"),
    optim.RMSprop: ("foreach", "capturable", "differentiable"),
    optim.Adagrad: ("foreach", "differentiable", "fused"),
    optim.Adadelta: ("foreach", "capturable", "differentiable"),
    optim.Adamax: ("foreach", "capturable", "differentiable"),
    optim.NAdam: ("foreach", "capturable", "differentiable"),
    optim.RAdam: ("foreach", "capturable", "differentiable"),
}


@pytest.mark.parametrize("opt_cls", list(FLAGS), ids=lambda c: c.__name__)
def test_implementation_flags_take_only_their_default_like_values(opt_cls):
    p = nn.Parameter(tl.zeros(2))
    for flag in FLAGS[opt_cls]:
        for value in ((None, False) if flag in ("foreach", "fused") else (False,)):
            assert opt_cls([p], **{flag: value}).param_groups[0][flag] is value
        with pytest.raises(ValueError, match=f"{opt_cls.__name__}: {flag}=True is not supported"):
            opt_cls([p], **{flag: True})
        with pytest.raises(ValueError, match=f"{flag}=True is not supported"):
            opt_cls([{"params": [p], flag: True}])
    with pytest.raises(TypeError, match="unexpected keyword argument 'fusd'"):
        opt_cls([p], fusd=False)


def test_adagrad_state_exists_from_the_start_and_uses_each_groups_initial_value():
    a, b = nn.Parameter(tl.zeros(2, dtype=tl.float64)), nn.Parameter(tl.zeros(3, dtype=tl.float64))
    opt = optim.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 16.0}], lr=1.0,
                        initial_accumulator_value=1.0)
    c = nn.Parameter(tl.zeros(1, dtype=tl.float64))
    opt.add_param_group({"params": [c], "initial_accumulator_value": 9.0})
    assert [opt.state[p]["step"] for p in (a, b, c)] == [0, 0, 0]
    assert [opt.state[p]["sum"].tolist()[0] for p in (a, b, c)] == [1.0, 16.0, 9.0]
    for p in (a, b, c):
        p.grad = tl.ones(p.shape, dtype=tl.float64) * 3.0
    opt.step()
    # theta = 0 - lr * g / (sqrt(s0 + g^2) + eps): with g = 3 and s0 = 16 for b, that is -3 / 5
    np.testing.assert_allclose([a.array[0], b.array[0], c.array[0]],
                               [-3 / np.sqrt(10), -3 / 5, -3 / np.sqrt(18)], rtol=1e-9)


def test_a_parameter_in_two_groups_raises():
    p, q = nn.Parameter(tl.zeros(2)), nn.Parameter(tl.zeros(2))
    for opt_cls in (optim.RMSprop, optim.Adagrad):
        with pytest.raises(ValueError, match="more than one parameter group"):
            opt_cls([{"params": [p, q]}, {"params": [q]}])
        opt = opt_cls([p])
        with pytest.raises(ValueError, match="more than one parameter group"):
            opt.add_param_group({"params": [p]})
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD({p, q})
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD([{"params": {p, q}}])
    with pytest.raises(ValueError, match="with or without names"):
        optim.SGD([{"params": [("w", p)]}, {"params": [q]}])


def test_zero_grad_sets_to_none_by_default():
    p = nn.Parameter(tl.tensor([1.0, 2.0]))
    for opt in (optim.RMSprop([p]), optim.Adagrad([p])):
        (p * p).sum().backward()
        opt.zero_grad(set_to_none=False)
        assert p.grad is not None and p.grad.tolist() == [0.0, 0.0]
        opt.zero_grad()
        assert p.grad is None


def test_state_is_a_defaultdict_as_in_pytorch():
    p = nn.Parameter(tl.zeros(2))
    opt = optim.Adam([p])
    assert opt.state[p] == {}
    assert opt.state_dict()["state"] == {}


class _Counted(nn.Parameter):
    """A parameter that counts the version bumps the optimizer reports."""

    __slots__ = ("bumps",)
    bumps: int

    def _bump_version(self) -> None:
        self.bumps += 1


@pytest.mark.parametrize("opt_cls, kw", EVERY_OPTIMIZER, ids=IDS)
def test_each_step_bumps_the_version_of_each_updated_parameter(opt_cls, kw):
    a, b = _Counted(tl.zeros(2)), _Counted(tl.zeros(3))
    a.bumps = b.bumps = 0
    opt = opt_cls([a, b], **kw)
    a.grad = tl.ones(2)
    opt.step()
    opt.step()
    assert (a.bumps, b.bumps) == (2, 0)  # b has no gradient, so it is not updated


@pytest.mark.parametrize("opt_cls, kw", EVERY_OPTIMIZER, ids=IDS)
def test_backward_through_a_graph_saved_before_the_step_raises(opt_cls, kw):
    model = nn.Linear(3, 2)
    opt = opt_cls(model.parameters(), **kw)
    x = tl.randn(4, 3)
    (model(x).tanh() ** 2).sum().backward()
    loss = (model(x).tanh() ** 2).sum()
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation|version"):
        loss.backward()
    before = model.weight.detach().numpy().copy()
    fresh = (model(x).tanh() ** 2).sum()  # a graph made after the step is fine
    fresh.backward()
    np.testing.assert_array_equal(model.weight.detach().numpy(), before)


class _SignSGD(optim.Optimizer):
    """An optimizer written the way PyTorch's documentation writes one: its own ``step`` over the groups."""

    def __init__(self, params, lr=0.1, decay=0.5):
        super().__init__(params, dict(lr=lr, decay=decay))

    @tl.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "avg" not in state:
                    state["step"] = 0
                    state["avg"] = tl.zeros_like(p)
                state["step"] += 1
                state["avg"].mul_(group["decay"]).add_(p.grad)
                p.add_(state["avg"].sign(), alpha=-group["lr"])


def test_a_pytorch_style_optimizer_subclass_steps_saves_loads_and_schedules(tmp_path):
    def run(opt, p, n):
        for _ in range(n):
            opt.zero_grad()
            ((p - 3.0) ** 2).sum().backward()
            opt.step()

    p = nn.Parameter(tl.tensor([0.0, 5.0]))
    opt = _SignSGD([p], lr=0.5)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run(opt, p, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the subclass's own step counts as the optimizer's step
        sched.step()
    tl.save({"opt": opt.state_dict(), "p": p.detach()}, tmp_path / "ckpt")
    run(opt, p, 2)

    checkpoint = tl.load(tmp_path / "ckpt")
    q = nn.Parameter(tl.tensor(checkpoint["p"]))
    opt2 = _SignSGD([q])
    opt2.load_state_dict(checkpoint["opt"])
    assert opt2.param_groups[0]["lr"] == 0.25 and opt2.state[q]["step"] == 2
    assert isinstance(opt2.state[q]["avg"], tl.Tensor)  # a Tensor, as the subclass's step expects
    run(opt2, q, 2)
    np.testing.assert_array_equal(q.detach().numpy(), p.detach().numpy())


def test_zeroing_a_gradient_in_place_counts_as_a_change_and_leaves_its_graph():
    p = nn.Parameter(tl.tensor([1.0, 2.0]))
    opt = optim.SGD([p])
    p.grad = tl.tensor([1.0, 2.0], requires_grad=True) * 3.0  # as backward(create_graph=True) leaves it
    assert p.grad.grad_fn is not None
    version = p.grad._version
    opt.zero_grad(set_to_none=False)
    assert p.grad.grad_fn is None and p.grad.tolist() == [0.0, 0.0] and p.grad._version > version


@pytest.mark.parametrize("opt_cls, kw", EVERY_OPTIMIZER, ids=IDS)
def test_float32_stays_float32_in_place_on_every_backend(device, opt_cls, kw):
    rng = np.random.default_rng(0)
    p = nn.Parameter(tl.tensor(rng.standard_normal((3, 4)).astype(np.float32), device=device))
    q = nn.Parameter(tl.tensor(p.detach().numpy().astype(np.float64), device=device))
    array = p.array
    opt, opt64 = opt_cls([p], **kw), opt_cls([q], **kw)
    for _ in range(4):
        g = rng.standard_normal((3, 4))
        p.grad = tl.tensor(g.astype(np.float32), device=device)
        q.grad = tl.tensor(g, device=device)
        opt.step()
        opt64.step()
    assert p.array is array and p.dtype == np.float32
    for name, value in opt.state[p].items():
        if backend.is_backend_array(value):
            assert value.dtype == np.float32 and backend.device_of(value) == p.device, name
    np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5)
