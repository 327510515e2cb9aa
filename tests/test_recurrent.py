"""Recurrent layers: NumPy references of the lecture's equations, fused ops against unrolled cells, gradchecks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.nn.recurrent import _inter_layer_dropout

NONLINEARITIES = ["tanh", "relu", "sigmoid"]
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def np_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


NP_ACT = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "sigmoid": np_sigmoid}


def host(t):
    return t.detach().numpy()


def params_np(module, layer=None):
    """The module's (weight_ih, weight_hh, bias_ih, bias_hh) as NumPy (zeros for missing biases)."""
    sfx = "" if layer is None else f"_l{layer}"
    w_ih = host(getattr(module, "weight_ih" + sfx))
    w_hh = host(getattr(module, "weight_hh" + sfx))
    if module.bias:
        return w_ih, w_hh, host(getattr(module, "bias_ih" + sfx)), host(getattr(module, "bias_hh" + sfx))
    return w_ih, w_hh, np.zeros(w_ih.shape[0]), np.zeros(w_ih.shape[0])


def np_elman(x, h0, W_ax, W_ah, b_a, act):
    """The lecture's Elman network: h_t = act(W_ah h_{t-1} + W_ax x_t + b_a); x (T, B, IN) -> (T, B, H)."""
    h, out = h0, []
    for x_t in x:
        h = NP_ACT[act](h @ W_ah.T + x_t @ W_ax.T + b_a)
        out.append(h)
    return np.stack(out)


def np_lstm(x, h0, c0, W, b):
    """The lecture's LSTM with W[k] (H, H + IN) acting on [h_{t-1}, x_t], k in f, i, C, o."""
    h, c, out = h0, c0, []
    for x_t in x:
        hx = np.concatenate([h, x_t], axis=1)  # (B, H + IN)
        f = np_sigmoid(hx @ W["f"].T + b["f"])
        i = np_sigmoid(hx @ W["i"].T + b["i"])
        c_tilde = np.tanh(hx @ W["C"].T + b["C"])
        c = f * c + i * c_tilde
        o = np_sigmoid(hx @ W["o"].T + b["o"])
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out), c


def lecture_lstm_weights(w_ih, w_hh, b_ih, b_hh):
    """PyTorch's stacked (i, f, g, o) weights as the lecture's W_f, W_i, W_C, W_o on [h, x], as the docstring says."""
    H = w_hh.shape[1]
    rows = {"i": slice(0, H), "f": slice(H, 2 * H), "C": slice(2 * H, 3 * H), "o": slice(3 * H, 4 * H)}
    W = {k: np.concatenate([w_hh[r], w_ih[r]], axis=1) for k, r in rows.items()}
    b = {k: b_ih[r] + b_hh[r] for k, r in rows.items()}
    return W, b


def np_gru(x, h0, w_ih, w_hh, b_ih, b_hh):
    H = w_hh.shape[1]
    W_ir, W_iz, W_in = w_ih[:H], w_ih[H : 2 * H], w_ih[2 * H :]
    W_hr, W_hz, W_hn = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    h, out = h0, []
    for x_t in x:
        r = np_sigmoid(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = np_sigmoid(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = np.tanh(x_t @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def make(cls, IN, H, device, dtype="float64", **kw):
    return cls(IN, H, **kw).to(device=device, dtype=dtype)


def rand(rng, shape, device, scale=1.0):
    return tl.tensor(scale * rng.standard_normal(shape), dtype="float64", device=device)


def unrolled(layer, x, hx):
    """Run ``layer``'s parameters as cells, one Tensor-op step at a time: the reference path."""
    lstm = isinstance(layer, nn.LSTM)
    batched = x.ndim == 3
    time_dim = 1 if batched and layer.batch_first else 0
    seq = [x[:, t] if time_dim == 1 else x[t] for t in range(x.shape[time_dim])]
    finals = []
    for k in range(layer.num_layers):
        in_size = layer.input_size if k == 0 else layer.hidden_size
        if isinstance(layer, nn.RNN):
            cell = nn.RNNCell(in_size, layer.hidden_size, layer.bias, layer.nonlinearity)
        elif lstm:
            cell = nn.LSTMCell(in_size, layer.hidden_size, layer.bias)
        else:
            cell = nn.GRUCell(in_size, layer.hidden_size, layer.bias)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if layer.bias or name.startswith("weight"):
                setattr(cell, name, getattr(layer, f"{name}_l{k}"))
        if hx is None:
            state = None
        else:
            state = (hx[0][k], hx[1][k]) if lstm else hx[k]
        outs = []
        for x_t in seq:
            state = cell(x_t, state)
            outs.append(state[0] if lstm else state)
        seq = outs
        finals.append(state)
    out = tl.stack(seq, dim=time_dim)
    if lstm:
        return out, (tl.stack([s[0] for s in finals]), tl.stack([s[1] for s in finals]))
    return out, tl.stack(finals)


def flat_outputs(result):
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])




@pytest.mark.parametrize("cls,gates", [(nn.RNN, 1), (nn.LSTM, 4), (nn.GRU, 3)])
def test_layer_parameter_names_and_shapes(cls, gates):
    IN, H = 3, 5
    m = cls(IN, H, num_layers=2)
    expected = []
    for k, in_size in enumerate((IN, H)):
        expected += [
            (f"weight_ih_l{k}", (gates * H, in_size)),
            (f"weight_hh_l{k}", (gates * H, H)),
            (f"bias_ih_l{k}", (gates * H,)),
            (f"bias_hh_l{k}", (gates * H,)),
        ]
    assert [(n, p.shape) for n, p in m.named_parameters()] == expected
    assert all(p.dtype == np.float32 for p in m.parameters())
    no_bias = cls(IN, H, num_layers=2, bias=False)
    names = ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    assert [n for n, _ in no_bias.named_parameters()] == names


@pytest.mark.parametrize("cls,gates", [(nn.RNNCell, 1), (nn.LSTMCell, 4), (nn.GRUCell, 3)])
def test_cell_parameter_names_and_shapes(cls, gates):
    m = cls(3, 5)
    G = gates * 5
    assert [(n, p.shape) for n, p in m.named_parameters()] == [
        ("weight_ih", (G, 3)), ("weight_hh", (G, 5)), ("bias_ih", (G,)), ("bias_hh", (G,)),
    ]
    assert [n for n, _ in cls(3, 5, bias=False).named_parameters()] == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_default_init_is_uniform_one_over_sqrt_hidden(cls):
    H = 64
    bound = 1 / math.sqrt(H)
    values = np.concatenate([p.numpy().ravel() for p in cls(32, H).requires_grad_(False).parameters()])
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.98 * bound
    assert abs(values.std() - bound / math.sqrt(3)) < 0.05 * bound  # the std of U(-b, b)
    assert abs(values.mean()) < 0.05 * bound



shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))  # T, B, IN, H


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=shapes, act=st.sampled_from(NONLINEARITIES), seed=st.integers(0, 2**16))
def test_elman_matches_numpy_lecture_equations(device, shape, act, seed):
    T, B, IN, H = shape
    if IN == H:
        IN += 1  # input_size != hidden_size exposes transposed weights
    rng = np.random.default_rng(seed)
    rnn = make(nn.RNN, IN, H, device, num_layers=2, nonlinearity=act)
    x, h0 = rng.standard_normal((T, B, IN)), rng.standard_normal((2, B, H))
    expected, layer_in = [], x
    for k in range(2):
        W_ax, W_ah, b_ih, b_hh = params_np(rnn, k)
        layer_in = np_elman(layer_in, h0[k], W_ax, W_ah, b_ih + b_hh, act)
        expected.append(layer_in)
    out, h_n = rnn(tl.tensor(x, device=device), tl.tensor(h0, device=device))
    np.testing.assert_allclose(host(out), expected[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(h_n), np.stack([e[-1] for e in expected]), rtol=1e-10, atol=1e-12)
    cell = make(nn.RNNCell, IN, H, device, nonlinearity=act)
    W_ax, W_ah, b_ih, b_hh = params_np(cell)
    h1 = cell(tl.tensor(x[0], device=device), tl.tensor(h0[0], device=device))
    ref = np_elman(x[:1], h0[0], W_ax, W_ah, b_ih + b_hh, act)[0]
    np.testing.assert_allclose(host(h1), ref, rtol=1e-10, atol=1e-12)


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_lstm_matches_numpy_lecture_equations(device, shape, seed):
    T, B, IN, H = shape
    if IN == H:
        IN += 1
    rng = np.random.default_rng(seed)
    lstm = make(nn.LSTM, IN, H, device, num_layers=2)
    x, h0, c0 = rng.standard_normal((T, B, IN)), rng.standard_normal((2, B, H)), rng.standard_normal((2, B, H))
    layer_in, h_n, c_n = x, [], []
    for k in range(2):
        W, b = lecture_lstm_weights(*params_np(lstm, k))
        layer_in, c = np_lstm(layer_in, h0[k], c0[k], W, b)
        h_n.append(layer_in[-1])
        c_n.append(c)
    out, (h, c) = lstm(tl.tensor(x, device=device), (tl.tensor(h0, device=device), tl.tensor(c0, device=device)))
    np.testing.assert_allclose(host(out), layer_in, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(h), np.stack(h_n), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(c), np.stack(c_n), rtol=1e-10, atol=1e-12)
    cell = make(nn.LSTMCell, IN, H, device)
    W, b = lecture_lstm_weights(*params_np(cell))
    h1, c1 = cell(tl.tensor(x[0], device=device), (tl.tensor(h0[0], device=device), tl.tensor(c0[0], device=device)))
    ref_h, ref_c = np_lstm(x[:1], h0[0], c0[0], W, b)
    np.testing.assert_allclose(host(h1), ref_h[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(c1), ref_c, rtol=1e-10, atol=1e-12)


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=shapes, seed=st.integers(0, 2**16), bias=st.booleans())
def test_gru_matches_numpy_equations(device, shape, seed, bias):
    T, B, IN, H = shape
    if IN == H:
        IN += 1
    rng = np.random.default_rng(seed)
    gru = make(nn.GRU, IN, H, device, num_layers=2, bias=bias)
    x, h0 = rng.standard_normal((T, B, IN)), rng.standard_normal((2, B, H))
    layer_in, h_n = x, []
    for k in range(2):
        layer_in = np_gru(layer_in, h0[k], *params_np(gru, k))
        h_n.append(layer_in[-1])
    out, h = gru(tl.tensor(x, device=device), tl.tensor(h0, device=device))
    np.testing.assert_allclose(host(out), layer_in, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(h), np.stack(h_n), rtol=1e-10, atol=1e-12)
    cell = make(nn.GRUCell, IN, H, device, bias=bias)
    h1 = cell(tl.tensor(x[0], device=device), tl.tensor(h0[0], device=device))
    np.testing.assert_allclose(host(h1), np_gru(x[:1], h0[0], *params_np(cell))[0], rtol=1e-10, atol=1e-12)


def test_zero_initial_state_is_the_default(device):
    rng = np.random.default_rng(0)
    for cls in (nn.RNN, nn.GRU, nn.LSTM):
        m = make(cls, 3, 4, device, num_layers=2)
        x = rand(rng, (5, 2, 3), device)
        zeros = tl.zeros(2, 2, 4, dtype="float64", device=device)
        given_zeros = m(x, (zeros, zeros) if cls is nn.LSTM else zeros)
        for a, b in zip(flat_outputs(m(x)), flat_outputs(given_zeros)):
            np.testing.assert_array_equal(host(a), host(b))



LAYER_CASES = [(nn.RNN, {"nonlinearity": act}) for act in NONLINEARITIES] + [(nn.LSTM, {}), (nn.GRU, {})]


def _case_id(case):
    cls, kw = case
    return cls.__name__ + ("-" + kw["nonlinearity"] if kw else "")


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
@pytest.mark.parametrize("layout", ["seq_first", "batch_first", "unbatched"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_layer_equals_unrolled_cells(device, case, layout, bias):
    cls, kw = case
    T, B, IN, H, L = 4, 3, 5, 2, 2
    rng = np.random.default_rng(7)
    layer = make(cls, IN, H, device, num_layers=L, bias=bias, batch_first=layout == "batch_first", **kw)
    x_shape = {"seq_first": (T, B, IN), "batch_first": (B, T, IN), "unbatched": (T, IN)}[layout]
    h_shape = (L, H) if layout == "unbatched" else (L, B, H)
    x = rand(rng, x_shape, device).requires_grad_()
    states = [rand(rng, h_shape, device).requires_grad_() for _ in range(2 if cls is nn.LSTM else 1)]
    hx = tuple(states) if cls is nn.LSTM else states[0]
    x_before = host(x).copy()
    leaves = [x, *states, *layer.parameters()]

    fused = flat_outputs(layer(x, hx))
    weights = [rng.standard_normal(o.shape) for o in fused]
    loss = sum((o * tl.tensor(w, device=device)).sum() for o, w in zip(fused, weights))
    loss.backward()
    fused_grads = [host(p.grad) for p in leaves]
    for p in leaves:
        p.grad = None

    ref = flat_outputs(unrolled(layer, x, hx))
    loss = sum((o * tl.tensor(w, device=device)).sum() for o, w in zip(ref, weights))
    loss.backward()

    assert [o.shape for o in fused] == [o.shape for o in ref]
    out_shape = {"seq_first": (T, B, H), "batch_first": (B, T, H), "unbatched": (T, H)}[layout]
    assert fused[0].shape == out_shape and fused[1].shape == h_shape
    for a, b in zip(fused, ref):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-12)
    for p, g in zip(leaves, fused_grads):
        np.testing.assert_allclose(g, host(p.grad), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(host(x), x_before)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_fused_layer_without_input_or_state_gradients(device, cls):
    rng = np.random.default_rng(3)
    layer = make(cls, 3, 4, device, num_layers=2)
    x = rand(rng, (5, 2, 3), device)  # no requires_grad, no h0: only the parameters get gradients
    out = flat_outputs(layer(x))[0]
    (out * out).sum().backward()
    fused = [host(p.grad) for p in layer.parameters()]
    layer.zero_grad()
    ref = flat_outputs(unrolled(layer, x, None))[0]
    (ref * ref).sum().backward()
    assert x.grad is None
    for g, p in zip(fused, layer.parameters()):
        np.testing.assert_allclose(g, host(p.grad), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_float32_stays_float32(device, cls):
    m = cls(3, 4).to(device)
    is_layer = cls in (nn.RNN, nn.LSTM, nn.GRU)
    x = tl.randn(*((5, 2, 3) if is_layer else (2, 3)), device=device, requires_grad=True)
    outs = m(x)
    if is_layer:
        outs = flat_outputs(outs)
    elif cls is nn.LSTMCell:
        outs = list(outs)
    else:
        outs = [outs]
    assert all(o.dtype == np.float32 for o in outs)
    outs[0].sum().backward()
    assert x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in m.parameters())


def test_no_graph_under_no_grad(device):
    lstm = nn.LSTM(3, 4, num_layers=2).to(device)
    with tl.no_grad():
        out, (h, c) = lstm(tl.randn(5, 2, 3, device=device))
    assert not out.requires_grad and out.grad_fn is None and h.grad_fn is None and c.grad_fn is None



small = st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3))  # T, B, IN, H


def _sizes(shape):
    T, B, IN, H = shape
    return T, B, (IN + 1 if IN == H else IN), H


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=small, act=st.sampled_from(NONLINEARITIES), bias=st.booleans(), batched=st.booleans(),
       seed=st.integers(0, 2**16))
def test_gradcheck_rnn_cell(device, shape, act, bias, batched, seed):
    _, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    cell = make(nn.RNNCell, IN, H, device, bias=bias, nonlinearity=act)
    x = rand(rng, (B, IN) if batched else (IN,), device).requires_grad_()
    h = rand(rng, (B, H) if batched else (H,), device).requires_grad_()
    assert tl.gradcheck(lambda x, h, *p: cell(x, h), (x, h, *cell.parameters()))


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=small, bias=st.booleans(), batched=st.booleans(), seed=st.integers(0, 2**16))
def test_gradcheck_lstm_cell(device, shape, bias, batched, seed):
    _, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    cell = make(nn.LSTMCell, IN, H, device, bias=bias)
    x = rand(rng, (B, IN) if batched else (IN,), device).requires_grad_()
    h, c = (rand(rng, (B, H) if batched else (H,), device).requires_grad_() for _ in range(2))
    assert tl.gradcheck(lambda x, h, c, *p: cell(x, (h, c)), (x, h, c, *cell.parameters()))


@settings(suppress_health_check=FIXTURE_OK)
@given(shape=small, bias=st.booleans(), batched=st.booleans(), seed=st.integers(0, 2**16))
def test_gradcheck_gru_cell(device, shape, bias, batched, seed):
    _, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    cell = make(nn.GRUCell, IN, H, device, bias=bias)
    x = rand(rng, (B, IN) if batched else (IN,), device).requires_grad_()
    h = rand(rng, (B, H) if batched else (H,), device).requires_grad_()
    assert tl.gradcheck(lambda x, h, *p: cell(x, h), (x, h, *cell.parameters()))


@settings(suppress_health_check=FIXTURE_OK, max_examples=15)
@given(shape=small, act=st.sampled_from(NONLINEARITIES), bias=st.booleans(), batch_first=st.booleans(),
       seed=st.integers(0, 2**16))
def test_gradcheck_rnn_layer(device, shape, act, bias, batch_first, seed):
    T, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    rnn = make(nn.RNN, IN, H, device, num_layers=2, nonlinearity=act, bias=bias, batch_first=batch_first)
    x = rand(rng, (B, T, IN) if batch_first else (T, B, IN), device).requires_grad_()
    h0 = rand(rng, (2, B, H), device).requires_grad_()
    assert tl.gradcheck(lambda x, h0, *p: rnn(x, h0), (x, h0, *rnn.parameters()))


@settings(suppress_health_check=FIXTURE_OK, max_examples=15)
@given(shape=small, bias=st.booleans(), batch_first=st.booleans(), seed=st.integers(0, 2**16))
def test_gradcheck_lstm_layer(device, shape, bias, batch_first, seed):
    T, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    lstm = make(nn.LSTM, IN, H, device, num_layers=2, bias=bias, batch_first=batch_first)
    x = rand(rng, (B, T, IN) if batch_first else (T, B, IN), device).requires_grad_()
    h0, c0 = (rand(rng, (2, B, H), device).requires_grad_() for _ in range(2))
    assert tl.gradcheck(lambda x, h0, c0, *p: lstm(x, (h0, c0)), (x, h0, c0, *lstm.parameters()))


@settings(suppress_health_check=FIXTURE_OK, max_examples=15)
@given(shape=small, bias=st.booleans(), batch_first=st.booleans(), seed=st.integers(0, 2**16))
def test_gradcheck_gru_layer(device, shape, bias, batch_first, seed):
    T, B, IN, H = _sizes(shape)
    rng = np.random.default_rng(seed)
    gru = make(nn.GRU, IN, H, device, num_layers=2, bias=bias, batch_first=batch_first)
    x = rand(rng, (B, T, IN) if batch_first else (T, B, IN), device).requires_grad_()
    h0 = rand(rng, (2, B, H), device).requires_grad_()
    assert tl.gradcheck(lambda x, h0, *p: gru(x, h0), (x, h0, *gru.parameters()))


@settings(suppress_health_check=FIXTURE_OK, max_examples=8)
@given(T=st.integers(1, 4), IN=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_gradcheck_unbatched_layers(device, T, IN, seed):
    rng = np.random.default_rng(seed)
    H = IN + 1
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        m = make(cls, IN, H, device, num_layers=2)
        x = rand(rng, (T, IN), device).requires_grad_()
        states = [rand(rng, (2, H), device).requires_grad_() for _ in range(2 if cls is nn.LSTM else 1)]
        if cls is nn.LSTM:
            assert tl.gradcheck(lambda x, h, c, *p, m=m: m(x, (h, c)), (x, *states, *m.parameters()))
        else:
            assert tl.gradcheck(lambda x, h, *p, m=m: m(x, h), (x, *states, *m.parameters()))




@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_long_sequence_fused_backprop(device, cls):
    T = 2000
    m = cls(2, 3, num_layers=2).to(device)
    x = tl.randn(T, 1, 2, device=device, requires_grad=True)
    out = flat_outputs(m(x))[0]
    out.sum().backward()
    assert x.grad.shape == (T, 1, 2)
    assert np.isfinite(host(x.grad)).all() and np.abs(host(x.grad[-1])).sum() > 0


def test_long_sequence_unrolled_cells_match_fused(device):
    """2000 unrolled LSTMCell steps (~30,000 graph nodes) backprop without RecursionError, as the fused op does."""
    T = 2000
    lstm = make(nn.LSTM, 2, 3, device)
    x = rand(np.random.default_rng(0), (T, 1, 2), device).requires_grad_()
    h0 = tl.zeros(1, 1, 3, dtype="float64", device=device, requires_grad=True)
    c0 = tl.zeros(1, 1, 3, dtype="float64", device=device, requires_grad=True)
    out, _ = lstm(x, (h0, c0))
    out.sum().backward()
    fused = [host(t.grad) for t in (x, h0, c0, *lstm.parameters())]
    for t in (x, h0, c0, *lstm.parameters()):
        t.grad = None
    ref, _ = unrolled(lstm, x, (h0, c0))
    ref.sum().backward()
    for g, t in zip(fused, (x, h0, c0, *lstm.parameters())):
        np.testing.assert_allclose(g, host(t.grad), rtol=1e-8, atol=1e-12)




def test_inter_layer_dropout_mask(device):
    x = tl.ones(200, 50, dtype="float64", device=device)
    y = host(_inter_layer_dropout(x, 0.25))
    assert set(np.unique(y)) <= {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.03
    assert (host(_inter_layer_dropout(x, 1.0)) == 0).all()


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_dropout_only_between_layers_and_only_in_training(device, cls):
    rng = np.random.default_rng(1)
    m = make(cls, 3, 4, device, num_layers=2, dropout=1.0)
    x = rand(rng, (5, 2, 3), device)
    m.eval()
    eval_out = flat_outputs(m(x))
    plain = make(cls, 3, 4, device, num_layers=2)
    plain.load_state_dict(m.state_dict())
    for a, b in zip(eval_out, flat_outputs(plain(x))):
        np.testing.assert_array_equal(host(a), host(b))  # eval: no dropout at all
    m.train()
    train_out = flat_outputs(m(x))
    # dropout=1 zeroes the input of layer 1, and nothing else: layer 0's final state is untouched,
    # and the output is layer 1 run on zeros (not zeros itself: no dropout after the last layer).
    top = make(cls, 4, 4, device)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in m.state_dict().items() if k.endswith("_l1")})
    top_out = flat_outputs(top(tl.zeros(5, 2, 4, dtype="float64", device=device)))
    np.testing.assert_allclose(host(train_out[0]), host(top_out[0]), rtol=1e-12, atol=1e-12)
    assert np.abs(host(train_out[0])).max() > 0
    for full, no_dropout, one in zip(train_out[1:], flat_outputs(plain(x))[1:], top_out[1:]):
        np.testing.assert_array_equal(host(full[0]), host(no_dropout[0]))
        np.testing.assert_allclose(host(full[1]), host(one[0]), rtol=1e-12, atol=1e-12)


def test_dropout_is_random_in_training_and_warns_for_one_layer(device):
    m = make(nn.LSTM, 3, 4, device, num_layers=2, dropout=0.5)
    x = tl.randn(5, 2, 3, dtype="float64", device=device)
    a, b = host(m(x)[0]), host(m(x)[0])
    assert not np.allclose(a, b)
    with pytest.warns(UserWarning, match="num_layers=1"):
        single = make(nn.GRU, 3, 4, device, dropout=0.5)
    single.train()
    np.testing.assert_array_equal(host(single(x)[0]), host(single(x)[0]))  # nothing after the last layer




@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_layer_errors(cls):
    m = cls(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match=r"Expected 3, got 5"):
        m(tl.randn(6, 2, 5))
    with pytest.raises(RuntimeError, match=r"2D or 3D, got 4D"):
        m(tl.randn(6, 2, 3, 1))
    bad = tl.zeros(2, 2, 5)
    hx = (bad, tl.zeros(2, 2, 4)) if cls is nn.LSTM else bad
    with pytest.raises(RuntimeError, match=r"\(2, 2, 4\).*\(2, 2, 5\)"):
        m(tl.randn(6, 2, 3), hx)
    hx = (tl.zeros(2, 4), tl.zeros(2, 4)) if cls is nn.LSTM else tl.zeros(2, 4)
    with pytest.raises(RuntimeError, match="3-D"):
        m(tl.randn(6, 2, 3), hx)
    hx = (tl.zeros(2, 1, 4), tl.zeros(2, 1, 4)) if cls is nn.LSTM else tl.zeros(2, 1, 4)
    with pytest.raises(RuntimeError, match="2-D"):
        m(tl.randn(6, 3), hx)
    with pytest.raises(TypeError, match="float64.*float32"):
        m(tl.randn(6, 2, 3, dtype="float64"))
    with pytest.raises(TypeError, match="int64"):
        m(tl.zeros(6, 2, 3, dtype="int64"))
    with pytest.raises(RuntimeError, match="empty"):
        m(tl.randn(0, 2, 3))
    with pytest.raises(ValueError, match="dropout"):
        cls(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="num_layers"):
        cls(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="hidden_size"):
        cls(3, 0)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell])
def test_device_mismatch_names_both_devices(device, cls):
    if device == "cpu":
        pytest.skip("needs a second device")
    m = cls(3, 4).to(device)
    x = tl.randn(5, 2, 3) if cls is not nn.RNNCell else tl.randn(2, 3)
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        m(x)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"\(h0, c0\)"):
        nn.LSTM(3, 4)(tl.randn(5, 2, 3), tl.zeros(1, 2, 4))
    with pytest.raises(TypeError, match=r"\(h, c\)"):
        nn.LSTMCell(3, 4)(tl.randn(2, 3), tl.zeros(2, 4))


@pytest.mark.parametrize("cls", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_cell_errors(cls):
    cell = cls(3, 4)
    with pytest.raises(RuntimeError, match="got 5, expected 3"):
        cell(tl.randn(2, 5))
    with pytest.raises(RuntimeError, match="1D or 2D, got 3D"):
        cell(tl.randn(1, 2, 3))
    bad = tl.zeros(3, 4)
    with pytest.raises(RuntimeError, match=r"\(3, 4\).*\(2, 4\)"):
        cell(tl.randn(2, 3), (bad, bad) if cls is nn.LSTMCell else bad)
    with pytest.raises(TypeError, match="float64.*float32"):
        cell(tl.randn(2, 3, dtype="float64"))


def test_unknown_nonlinearity():
    for make_it in (lambda: nn.RNN(3, 4, nonlinearity="gelu"), lambda: nn.RNNCell(3, 4, nonlinearity="gelu")):
        with pytest.raises(ValueError, match="'gelu'.*'tanh', 'relu' or 'sigmoid'"):
            make_it()


def test_repr():
    assert repr(nn.RNN(3, 4, num_layers=2, nonlinearity="sigmoid", batch_first=True)) == (
        "RNN(3, 4, num_layers=2, batch_first=True, nonlinearity='sigmoid')"
    )
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"




@pytest.mark.parametrize("name,kw", [("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"}),
                                     ("LSTM", {}), ("GRU", {})])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_pytorch(name, kw, batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    IN, H, L, T, B = 3, 5, 2, 4, 2
    theirs = getattr(torch.nn, name)(IN, H, num_layers=L, batch_first=batch_first, **kw).double()
    ours = getattr(nn, name)(IN, H, num_layers=L, batch_first=batch_first, **kw).double()
    expected = [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert [(n, p.shape) for n, p in ours.named_parameters()] == expected
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, IN) if batch_first else (T, B, IN))
    states = [rng.standard_normal((L, B, H)) for _ in range(2 if name == "LSTM" else 1)]
    tx = torch.tensor(x, requires_grad=True)
    t_states = [torch.tensor(s, requires_grad=True) for s in states]
    ox = tl.tensor(x, requires_grad=True)
    o_states = [tl.tensor(s, requires_grad=True) for s in states]
    t_out = flat_outputs(theirs(tx, tuple(t_states) if name == "LSTM" else t_states[0]))
    o_out = flat_outputs(ours(ox, tuple(o_states) if name == "LSTM" else o_states[0]))
    weights = [rng.standard_normal(tuple(o.shape)) for o in t_out]
    sum((o * torch.tensor(w)).sum() for o, w in zip(t_out, weights)).backward()
    sum((o * tl.tensor(w)).sum() for o, w in zip(o_out, weights)).backward()
    for a, b in zip(o_out, t_out):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, b in zip([ox, *o_states], [tx, *t_states]):
        np.testing.assert_allclose(host(a.grad), b.grad.numpy(), rtol=1e-10, atol=1e-12)
    t_params = dict(theirs.named_parameters())
    for n, p in ours.named_parameters():
        np.testing.assert_allclose(host(p.grad), t_params[n].grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_pytorch(name):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, name)(3, 5).double()
    ours = getattr(nn, name)(3, 5).double()
    expected = [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert [(n, p.shape) for n, p in ours.named_parameters()] == expected
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    if name == "LSTMCell":
        t_out = theirs(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
        o_out = ours(tl.tensor(x), (tl.tensor(h), tl.tensor(c)))
    else:
        t_out, o_out = (theirs(torch.tensor(x), torch.tensor(h)),), (ours(tl.tensor(x), tl.tensor(h)),)
    for a, b in zip(o_out, t_out):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps_per_block", [1, 2, 3])
def test_lstm_backward_in_blocks_of_steps_equals_one_block(device, monkeypatch, steps_per_block):
    """The BPTT block size (BPTT_BLOCK_BYTES) of the fast LSTM's path without kernels (as without Numba)
    changes only where the factors are made, never the gradients."""
    from tinygrad_lm.fast import compiler, fused_recurrent

    monkeypatch.setattr(compiler, "_numba", False)  # as if Numba were not installed: no CPU kernels
    T, B, IN, H = 7, 3, 2, 4  # 7 steps: the last block is partial for 2 and 3 steps per block
    rng = np.random.default_rng(11)
    lstm = make(nn.LSTM, IN, H, device)
    x = rand(rng, (T, B, IN), device)
    state = tuple(rand(rng, (1, B, H), device) for _ in range(2))
    upstream = rand(rng, (T, B, H), device)

    def grads() -> list[np.ndarray]:
        xx, h0, c0 = (t.detach().requires_grad_() for t in (x, *state))
        lstm.zero_grad()
        out, (h_n, c_n) = lstm(xx, (h0, c0))
        ((out * upstream).sum() + (c_n * c_n).sum()).backward()
        return [t.grad.numpy() for t in (xx, h0, c0, *lstm.parameters())]

    whole = grads()  # one block: the default size is far above these 7 small steps
    monkeypatch.setattr(fused_recurrent, "BPTT_BLOCK_BYTES", steps_per_block * B * 4 * H * 8)
    for got, want in zip(grads(), whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    h0, c0 = (t.detach().requires_grad_() for t in state)
    xx = x.detach().requires_grad_()
    assert tl.gradcheck(lambda x, h0, c0, *p: lstm(x, (h0, c0)), (xx, h0, c0, *lstm.parameters()))


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
@pytest.mark.parametrize("used", [(0,), (1,), (2,), (1, 2), (0, 2)], ids=lambda u: "+".join(map(str, u)))
def test_gradients_through_any_subset_of_the_outputs(device, case, used):
    """Each layer op has several outputs (output, h_n, c_n); unused ones reach backward as None."""
    cls, kw = case
    n_outputs = 3 if cls is nn.LSTM else 2
    if any(i >= n_outputs for i in used):
        pytest.skip("only the LSTM has c_n")
    T, B, IN, H = 5, 3, 4, 3
    rng = np.random.default_rng(13)
    layer = make(cls, IN, H, device, num_layers=2, **kw)
    x = rand(rng, (T, B, IN), device).requires_grad_()
    states = [rand(rng, (2, B, H), device).requires_grad_() for _ in range(n_outputs - 1)]
    hx = tuple(states) if cls is nn.LSTM else states[0]
    leaves = [x, *states, *layer.parameters()]

    def grads(run):
        for p in leaves:
            p.grad = None
        outs = flat_outputs(run(layer, x, hx))
        loss = sum((outs[i] * outs[i]).sum() for i in used)
        loss.backward()
        return [None if p.grad is None else host(p.grad) for p in leaves]

    for got, want in zip(grads(lambda m, x, h: m(x, h)), grads(unrolled)):
        assert (got is None) == (want is None)
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
