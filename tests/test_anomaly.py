"""Anomaly mode: ``tl.detect_anomaly()`` finds the op that first produced NaN or Inf.

Inside the context (or a function decorated with it) every op's forward result and every
gradient its backward returns are scanned; the first non-finite one raises
``tinygrad_lm.autograd.AnomalyError`` (a ``RuntimeError``) naming the op (``Log.forward``,
``Sqrt.backward``, ``CrossEntropy.forward``) and the place in the user's code where the op
was created. Outside it nothing is checked, and the module flag is back to False however
the context was left.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import tinygrad_lm as tl
import tinygrad_lm.autograd as autograd
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn
from tinygrad_lm.autograd import AnomalyError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's warnings for log(-1), 1/0
HERE = os.path.basename(__file__)


def _next_line() -> int:
    """The line number just after the caller's line (where the op under test is created)."""
    return inspect.currentframe().f_back.f_lineno + 1


def site(line: int) -> str:
    return f"{HERE}:{line}"


def test_anomaly_error_is_a_runtime_error():
    assert issubclass(AnomalyError, RuntimeError)


def test_forward_nan_names_the_op_and_the_line(device):
    x = tl.tensor([-1.0, 2.0], device=device)
    with tl.detect_anomaly():
        line = _next_line()
        with pytest.raises(AnomalyError, match=r"Log\.forward produced NaN or Inf") as info:
            x.log()
    assert site(line + 1) in str(info.value)


def test_forward_inf_names_the_op_also_for_leaves_that_require_grad(device):
    x = tl.tensor([1000.0], device=device, requires_grad=True)  # exp overflows float32
    with tl.detect_anomaly():
        line = _next_line()
        with pytest.raises(AnomalyError, match=r"Exp\.forward produced NaN or Inf") as info:
            x.exp()
    assert site(line + 1) in str(info.value)


def test_the_first_bad_op_is_named_not_a_later_one(device):
    x = tl.tensor([-1.0], device=device, requires_grad=True)
    with tl.detect_anomaly():
        y = x * 2.0  # finite: no error here
        with pytest.raises(AnomalyError, match=r"Log\.forward") as info:
            (y.log() + 1.0).sum()
    assert "Add" not in str(info.value).splitlines()[0]


def _model(x: tl.Tensor) -> tl.Tensor:
    h = x * 3.0
    return h.sqrt()  # the line the error must point at


def test_the_site_is_the_innermost_user_frame(device):
    x = tl.tensor([-4.0], device=device)
    line = inspect.getsourcelines(_model)[1] + 2
    with tl.detect_anomaly(), pytest.raises(AnomalyError, match=r"Sqrt\.forward") as info:
        _model(x)
    msg = str(info.value)
    assert f"created at {os.path.abspath(__file__)}:{line} in _model" in msg


def test_backward_inf_names_the_backward_and_the_forward_line(device):
    x = tl.tensor([0.0, 4.0], device=device, requires_grad=True)
    with tl.detect_anomaly():
        line = _next_line()
        y = x.sqrt()  # finite forward; d sqrt at 0 is inf
        with pytest.raises(AnomalyError, match=r"Sqrt\.backward produced NaN or Inf") as info:
            y.sum().backward()
    assert site(line) in str(info.value)


def test_backward_of_a_power_at_zero_is_named(device):
    x = tl.tensor([0.0, 1.0], device=device, requires_grad=True)
    with tl.detect_anomaly():
        y = (x**0.5).sum()  # finite forward; d x^0.5 = 0.5 x^-0.5 is inf at 0
        with pytest.raises(AnomalyError, match=r"Pow\.backward produced NaN or Inf"):
            y.backward()
    assert x.grad is None  # the error stopped the pass before anything reached the leaf


def test_backward_of_a_graph_built_outside_still_names_the_op(device):
    x = tl.tensor([0.0], device=device, requires_grad=True)
    y = x.sqrt().sum()  # built outside anomaly mode: no creation site recorded
    assert "_created_at" not in y.grad_fn.__dict__
    with tl.detect_anomaly(), pytest.raises(AnomalyError, match=r"Sqrt\.backward") as info:
        y.backward()
    assert "inside detect_anomaly()" in str(info.value)


def test_outside_the_context_nothing_is_checked(device):
    assert autograd._anomaly_mode is False and not autograd.is_anomaly_enabled()
    x = tl.tensor([-1.0, 0.0], device=device, requires_grad=True)
    y = x.log()
    assert np.isnan(y.detach().numpy()[0]) and np.isneginf(y.detach().numpy()[1])
    assert "_created_at" not in y.grad_fn.__dict__  # no stack walked for ordinary ops
    z = tl.tensor([0.0], device=device, requires_grad=True)
    z.sqrt().sum().backward()
    assert np.isposinf(z.grad.numpy()[0])


def test_finite_work_inside_the_context_runs_normally(device):
    x = tl.tensor([[0.5, -1.0], [2.0, 0.25]], device=device, requires_grad=True)
    with tl.detect_anomaly():
        assert autograd.is_anomaly_enabled()
        loss = F.cross_entropy(x.tanh() @ x, tl.tensor([0, 1], device=device))
        loss.backward()
    assert np.isfinite(x.grad.numpy()).all()
    assert autograd._anomaly_mode is False


def test_the_flag_is_restored_after_an_exception(device):
    with pytest.raises(AnomalyError), tl.detect_anomaly():
        tl.tensor([-1.0], device=device).log()
    assert autograd._anomaly_mode is False
    with pytest.raises(ValueError, match="boom"), tl.detect_anomaly():
        raise ValueError("boom")
    assert autograd._anomaly_mode is False


def test_nesting(device):
    x = tl.tensor([-1.0], device=device)
    with tl.detect_anomaly():
        with tl.detect_anomaly():
            assert autograd._anomaly_mode is True
        assert autograd._anomaly_mode is True  # leaving the inner block keeps the outer one on
        with pytest.raises(AnomalyError):
            x.log()
        with tl.no_grad():
            with pytest.raises(AnomalyError, match=r"Log\.forward"):
                x.log()
    assert autograd._anomaly_mode is False
    x.log()  # and off again


def test_as_a_decorator(device):
    @tl.detect_anomaly()
    def bad(t: tl.Tensor) -> tl.Tensor:
        return t.log()

    @tl.detect_anomaly()
    def good(t: tl.Tensor) -> tl.Tensor:
        assert autograd._anomaly_mode is True
        return t.exp()

    x = tl.tensor([-1.0], device=device)
    with pytest.raises(AnomalyError, match=r"Log\.forward") as info:
        bad(x)
    assert "in bad" in str(info.value)
    assert autograd._anomaly_mode is False
    assert good(x).item() == pytest.approx(np.exp(-1.0))
    assert autograd._anomaly_mode is False


def test_a_decorated_function_may_call_itself(device):
    @tl.detect_anomaly()
    def depth(n: int) -> int:
        assert autograd._anomaly_mode is True
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert autograd._anomaly_mode is False

    @tl.detect_anomaly()
    def fails_deep(n: int) -> None:
        if n == 0:
            tl.tensor([-1.0], device=device).log()
        else:
            fails_deep(n - 1)

    with pytest.raises(AnomalyError):
        fails_deep(3)
    assert autograd._anomaly_mode is False


def test_fused_cross_entropy_is_named(device):
    logits = tl.tensor([[float("nan"), 1.0], [0.0, 1.0]], device=device, requires_grad=True)
    target = tl.tensor([0, 1], device=device)
    with tl.detect_anomaly():
        line = _next_line()
        with pytest.raises(AnomalyError, match=r"CrossEntropy\.forward") as info:
            F.cross_entropy(logits, target)
    assert site(line + 1) in str(info.value)


def test_fused_cross_entropy_backward_is_named(device):
    logits = tl.tensor([[0.5, 1.0], [0.0, 1.0]], device=device, requires_grad=True)
    with tl.detect_anomaly():
        loss = F.cross_entropy(logits, tl.tensor([0, 1], device=device))
        with pytest.raises(AnomalyError, match=r"CrossEntropy\.backward"):
            loss.backward(tl.tensor(float("inf"), device=device))


def test_lstm_with_a_nan_weight_is_named(device):
    lstm = nn.LSTM(2, 3).to(device)
    with tl.no_grad():
        lstm.weight_hh_l0[0, 0] = float("nan")
    x = tl.ones(4, 1, 2, device=device)
    with tl.detect_anomaly():
        line = _next_line()
        with pytest.raises(AnomalyError, match=r"LSTMLayer\.forward") as info:
            lstm(x)
    assert site(line + 1) in str(info.value)


def test_attention_backward_is_named(device):
    q = tl.ones(2, 3, device=device, requires_grad=True)
    with tl.detect_anomaly():
        out = F.scaled_dot_product_attention(q, q, q)
        with pytest.raises(AnomalyError, match=r"ScaledDotProductAttention\.backward"):
            out.backward(tl.full((2, 3), float("nan"), device=device))


def test_linear_and_layer_norm_with_inf_input_are_named(device):
    layer = nn.Linear(2, 2).to(device)
    x = tl.tensor([[float("inf"), 1.0]], device=device)
    with tl.detect_anomaly():
        with pytest.raises(AnomalyError, match=r"Linear\.forward"):
            layer(x)
        with pytest.raises(AnomalyError, match=r"LayerNorm\.forward"):
            F.layer_norm(x, (2,))


def test_a_nan_input_is_named_rather_than_the_op_that_received_it(device):
    """An LSTM fed data holding a NaN: the error says the input already held it (not that the first op made it)."""
    lstm = nn.LSTM(2, 3, batch_first=True).to(device)
    x = tl.ones(1, 4, 2, device=device)
    x[0, 1, 0] = float("nan")
    with tl.detect_anomaly():
        with pytest.raises(AnomalyError, match=r"input 0 \(a tensor of shape \(1, 4, 2\)\) already held NaN or Inf "
                                               r"\(made outside the checked ops: your data or a parameter\)"):
            lstm(x)
        with pytest.raises(AnomalyError, match=r"Log\.forward produced NaN or Inf; the op was created"):
            tl.tensor([-1.0, 1.0], device=device).log()  # the op itself made the NaN: no input is blamed
