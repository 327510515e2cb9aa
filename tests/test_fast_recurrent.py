"""The fast recurrent layer ops (tinygrad_lm.fast.fused_recurrent) against the reference (tinygrad_lm.ops.recurrent):
outputs and the gradients of every input, with and without biases, through any subset of the outputs, with and
without compiled kernels; and float64 gradchecks of both."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.fast import compiler, fused_recurrent
from tinygrad_lm.ops import recurrent

# (op, gates per row of W_ih, initial states, outputs, keyword arguments)
CASES = {
    "RNN-tanh": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "tanh"}),
    "RNN-relu": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "relu"}),
    "RNN-sigmoid": (recurrent.RNNLayer, 1, 1, 2, {"nonlinearity": "sigmoid"}),
    "LSTM": (recurrent.LSTMLayer, 4, 2, 3, {}),
    "GRU": (recurrent.GRULayer, 3, 1, 2, {}),
}


def _arrays(case: str, T: int, B: int, n_in: int, H: int, bias: bool, dtype: str, seed: int) -> list[Any]:
    """x, the initial states, W_ih, W_hh, b_ih, b_hh (None without bias); weights of PyTorch's init scale."""
    _, gates, n_states, _, _ = CASES[case]
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    arrays: list[Any] = [rng.standard_normal((T, B, n_in))]
    arrays += [rng.standard_normal((B, H)) for _ in range(n_states)]
    arrays += [rng.uniform(-k, k, (gates * H, n_in)), rng.uniform(-k, k, (gates * H, H))]
    arrays += [rng.uniform(-k, k, gates * H) if bias else None for _ in range(2)]
    return [None if a is None else a.astype(dtype) for a in arrays]


def _run(case: str, fast: bool, arrays: list[Any], used: tuple[int, ...], transpose_out: bool,
         device: str = "cpu") -> list[Any]:
    """The op's outputs and every input's gradient (None for an absent bias) from a loss over the ``used`` outputs.

    Each used output is weighted by a fixed random array; with ``transpose_out`` the first output reaches the
    loss through a (B, T, H) transpose, as in a batch_first layer, so its gradient arrives strided.
    """
    op, _, _, _, kwargs = CASES[case]
    tl.fast.set_enabled(fast)
    inputs = [None if a is None else tl.tensor(a, requires_grad=True, device=device) for a in arrays]
    outs = op.apply(*inputs, **kwargs)
    assert type(outs[0].grad_fn) is (tl.fast.registry()[op] if fast else op)
    rng = np.random.default_rng(7)
    loss = None
    for i in used:
        out = outs[i].transpose(0, 1) if i == 0 and transpose_out else outs[i]
        weight = tl.tensor(rng.standard_normal(out.shape), dtype=out.dtype, device=device)
        term = (out * weight).sum()
        loss = term if loss is None else loss + term
    assert loss is not None
    loss.backward()
    return [o.detach().numpy() for o in outs] + [None if t is None else t.grad.numpy() for t in inputs]


def _assert_close(got: list[Any], want: list[Any], dtype: str) -> None:
    """Equal within float32's or float64's rounding, relative to each array's largest value."""
    tol = 2e-5 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == np.dtype(dtype) and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max(initial=0))))


@settings(max_examples=40)
@given(case=st.sampled_from(list(CASES)), T=st.integers(1, 6), B=st.integers(1, 4), n_in=st.integers(1, 5),
       H=st.integers(1, 5), bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       used=st.sets(st.integers(0, 2), min_size=1), transpose_out=st.booleans(), kernels=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_fast_equals_reference(monkeypatch, device, case, T, B, n_in, H, bias, dtype, used, transpose_out, kernels,
                               seed):
    """Outputs and all gradients; unused outputs reach backward as None; kernels off is as without Numba."""
    used = tuple(sorted(i for i in used if i < CASES[case][3])) or (0,)
    arrays = _arrays(case, T, B, n_in, H, bias, dtype, seed)
    kept = [None if a is None else a.copy() for a in arrays]
    with monkeypatch.context() as m:
        if not kernels:
            m.setattr(compiler, "_numba", False)
        got = _run(case, True, arrays, used, transpose_out, device)
    want = _run(case, False, arrays, used, transpose_out, device)
    _assert_close(got, want, dtype)
    for a, k in zip(arrays, kept):  # neither path writes into its inputs
        if a is not None:
            np.testing.assert_array_equal(a, k)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_equals_reference_over_many_steps(device, case, dtype):
    """100 steps of a wider layer: the kernels, the blocked BPTT and the reference agree over a long recurrence."""
    arrays = _arrays(case, 100, 3, 7, 16, True, dtype, 5)
    used = tuple(range(CASES[case][3]))
    _assert_close(_run(case, True, arrays, used, False, device), _run(case, False, arrays, used, False, device), dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_ops_keep_the_reference_names(case):
    op = CASES[case][0]
    fast = tl.fast.registry()[op]
    assert issubclass(fast, op) and fast.__name__ == op.__name__ and fast is getattr(fused_recurrent, op.__name__)


@settings(max_examples=10)
@given(case=st.sampled_from(list(CASES)), T=st.integers(1, 4), B=st.integers(1, 3), H=st.integers(1, 3),
       bias=st.booleans(), fast=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_gradcheck(case, T, B, H, bias, fast, seed):
    """float64 central differences against the backward of the reference and of the fast op, every output."""
    op, _, _, n_outputs, kwargs = CASES[case]
    tl.fast.set_enabled(fast)
    arrays = _arrays(case, T, B, 2, H, bias, "float64", seed)
    inputs = [tl.tensor(a, requires_grad=True) for a in arrays if a is not None]

    def run(*ts: Any) -> Any:
        it = iter(ts)
        return op.apply(*[None if a is None else next(it) for a in arrays], **kwargs)

    for k in range(n_outputs):
        assert tl.gradcheck(lambda *ts, k=k: run(*ts)[k], inputs)
