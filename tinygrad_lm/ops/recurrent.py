"""Fused recurrent layers: one op runs a whole sequence through one RNN, LSTM or GRU layer.

Unrolling a cell with Tensor ops records about ten graph nodes per time step,
and every node costs Python work in forward and again in backward. The ops here
do the same math on raw arrays. Take the lecture's Elman network,

    h_t = sigma(W_ah h_{t-1} + W_ax x_t + b_a),    t = 1 .. T,

with W_ax = ``W_ih``, W_ah = ``W_hh``, b_a = ``b_ih + b_hh`` and a batch of B sequences:

1. Input projections, one GEMM for all steps. W_ax x_t + b_a does not depend on
   the recurrence, so for every t at once: ``P = x.reshape(T*B, I) @ W_ih^T + b_ih + b_hh``.
2. The recurrence, a tight loop over t: ``a_t = P_t + h_{t-1} @ W_hh^T``, ``h_t = sigma(a_t)``;
   one small GEMM and a few elementwise calls per step; h_0 .. h_T are kept for backward.
3. Backpropagation through time, a loop from t = T down to 1. dL/dh_t has two parts:
   the gradient of the output h_t itself and what flows back from step t+1. Then
   delta_t = dL/da_t = dL/dh_t * sigma'(a_t) and dL/dh_{t-1} = delta_t @ W_hh (plus its own
   output gradient, added at the next iteration). After the loop, every weight
   gradient is a sum over steps, so one GEMM or one sum over all T*B rows each:
   dW_hh = sum_t delta_t^T h_{t-1}, dW_ih = sum_t delta_t^T x_t, db_ih = db_hh = sum_t delta_t,
   dx_t = delta_t @ W_ih, and dL/dh_0 is what is left after the loop.

The LSTM and the GRU follow the same three steps with 4 and 3 stacked gates per
row of ``W_ih`` and ``W_hh`` (their classes below give the equations); the LSTM
also carries dL/dC_t backwards next to dL/dh_t.

Inputs are ``x (T, B, I)``, the initial state ``h0 (B, H)`` (and ``c0``), ``W_ih``,
``W_hh`` and the optional biases ``b_ih``, ``b_hh`` (``None`` for a layer without
bias); each of them gets its gradient. Each op has several outputs: the hidden states
of all steps ``(T, B, H)``, the last one ``h_T (B, H)`` and, for the LSTM, the last cell
state ``C_T (B, H)``; its backward gets their gradients (``None`` for an unused one).
"""
from __future__ import annotations

from typing import Any

from ..autograd import Function
from .elementwise import sigmoid


def _check_shapes(name: str, x: Any, states: tuple[Any, ...], w_ih: Any, w_hh: Any, gates: int) -> None:
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be (T, B, I), got shape {x.shape}")
    T, B, n_in = x.shape
    H = w_hh.shape[1]
    if T == 0:
        raise ValueError(f"{name}: the sequence is empty (T = 0)")
    if w_ih.shape != (gates * H, n_in) or w_hh.shape != (gates * H, H):
        raise ValueError(
            f"{name}: expected W_ih {(gates * H, n_in)} and W_hh {(gates * H, H)}, got {w_ih.shape} and {w_hh.shape}"
        )
    for s in states:
        if s.shape != (B, H):
            raise ValueError(f"{name}: the initial state must be {(B, H)}, got {s.shape}")


def _affine(x: Any, w: Any, *biases: Any) -> Any:
    """x W^T plus the given biases (None: no bias); for x (T, B, I), all T steps in one product: (T, B, G)."""
    out = x @ w.T  # (..., G)
    for b in biases:
        if b is not None:
            out = out + b
    return out


def _weight_grads(x: Any, h_prev: Any, w_ih: Any, d_ih: Any, d_hh: Any) -> tuple[Any, Any, Any, Any, Any]:
    """dx, dW_ih, dW_hh, db_ih, db_hh from the pre-activation gradients of all steps.

    ``d_ih (T, B, G)`` is dL/d(x_t W_ih^T + b_ih), ``d_hh (T, B, G)`` is dL/d(h_{t-1} W_hh^T + b_hh) and
    ``h_prev (T, B, H)`` holds h_0 .. h_{T-1}: dx_t = d_ih_t W_ih, dW_ih = sum_t d_ih_t^T x_t,
    dW_hh = sum_t d_hh_t^T h_{t-1}, db_ih = sum_t d_ih_t, db_hh = sum_t d_hh_t (each sum over the
    steps and the batch is one product or one sum over the T*B rows).
    """
    T, B, G = d_ih.shape
    d_ih2, d_hh2 = d_ih.reshape(T * B, G), d_hh.reshape(T * B, G)  # (T*B, G)
    dx = d_ih @ w_ih  # (T, B, I)
    dw_ih = d_ih2.T @ x.reshape(T * B, -1)  # (G, I)
    dw_hh = d_hh2.T @ h_prev.reshape(T * B, -1)  # (G, H)
    return dx, dw_ih, dw_hh, d_ih2.sum(axis=0), d_hh2.sum(axis=0)


def _state_grads(xp: Any, grads: list[Any], B: int, H: int, dtype: Any) -> tuple[Any, list[Any]]:
    """The gradient of every step's output (or None) and those of the last states (zeros if unused)."""
    return grads[0], [xp.zeros((B, H), dtype=dtype) if g is None else g for g in grads[1:]]


def _activation(xp: Any, a: Any, nonlinearity: str) -> Any:
    if nonlinearity == "tanh":
        return xp.tanh(a)
    if nonlinearity == "relu":
        return xp.maximum(a, 0)
    return sigmoid(xp, a)


def _activation_grad(h: Any, nonlinearity: str) -> Any:
    """act'(a) from h = act(a): 1 - h^2 (tanh), [h > 0] (relu), h (1 - h) (sigmoid)."""
    if nonlinearity == "tanh":
        return 1 - h * h
    if nonlinearity == "relu":
        return (h > 0).astype(h.dtype)
    return h * (1 - h)


class RNNLayer(Function):
    """The Elman layer over a whole sequence: h_t = act(a_t), a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh;
    with dy_t the gradient of output t: dh_t = dy_t + da_{t+1} W_hh, da_t = dh_t act'(a_t),
    dW_hh = sum_t da_t^T h_{t-1}, dW_ih = sum_t da_t^T x_t, db_ih = db_hh = sum_t da_t, dx_t = da_t W_ih.

    act' is 1 - h^2 (tanh), [h > 0] (relu), h (1 - h) (sigmoid). Returns h_1 .. h_T (T, B, H) and h_T (B, H).
    """

    def forward(self, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, nonlinearity: str = "tanh") -> Any:
        xp = self.xp
        _check_shapes("RNNLayer", x, (h0,), w_ih, w_hh, 1)
        T = x.shape[0]
        proj = _affine(x, w_ih, b_ih, b_hh)  # (T, B, H): x_t W_ih^T + b_ih + b_hh
        h = [h0]
        for t in range(T):
            h.append(_activation(xp, proj[t] + h[t] @ w_hh.T, nonlinearity))  # h_t = act(a_t)
        hs = xp.stack(h)  # (T + 1, B, H): h_0 .. h_T
        self.x, self.w_ih, self.w_hh, self.hs, self.nonlinearity = x, w_ih, w_hh, hs, nonlinearity
        return hs[1:], hs[T]  # output (T, B, H), h_T (B, H)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        xp = self.xp
        h = self.hs[1:]  # (T, B, H)
        T, B, H = h.shape
        grad, (dh,) = _state_grads(xp, grads, B, H, h.dtype)  # dh: dL/dh_T from h_n, then from step t+1
        act_grad = _activation_grad(h, self.nonlinearity)  # (T, B, H)
        da = xp.empty_like(h)  # (T, B, H): dL/da_t
        for t in range(T - 1, -1, -1):
            if grad is not None:
                dh = dh + grad[t]  # dL/dh_t: its output's gradient and what step t+1 sends back
            da[t] = dh * act_grad[t]
            dh = da[t] @ self.w_hh  # dL/dh_{t-1} through a_t
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self.x, self.hs[:T], self.w_ih, da, da)
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh


class LSTMLayer(Function):
    """The LSTM over a whole sequence, with PyTorch's stacked gates (order i, f, g, o):
    [a_i, a_f, a_g, a_o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, i_t, f_t, o_t = sigma(a_i, a_f, a_o),
    C~_t = g_t = tanh(a_g), C_t = f_t C_{t-1} + i_t C~_t, h_t = o_t tanh(C_t); with dy_t the gradient of
    output t: dh_t = dy_t + da_{t+1} W_hh, dC_t = dC_{t+1} f_{t+1} + dh_t o_t (1 - tanh^2 C_t),
    da_i = dC_t g_t i_t (1 - i_t), da_f = dC_t C_{t-1} f_t (1 - f_t), da_g = dC_t i_t (1 - g_t^2),
    da_o = dh_t tanh(C_t) o_t (1 - o_t); the weights as in RNNLayer.

    Returns h_1 .. h_T (T, B, H), h_T and C_T (B, H).
    """

    def forward(self, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
        xp = self.xp
        _check_shapes("LSTMLayer", x, (h0, c0), w_ih, w_hh, 4)
        T = x.shape[0]
        H = w_hh.shape[1]
        proj = _affine(x, w_ih, b_ih, b_hh)  # (T, B, 4H): x_t W_ih^T + b_ih + b_hh
        h, c, gates = [h0], [c0], []
        for t in range(T):
            a = proj[t] + h[t] @ w_hh.T  # (B, 4H): [a_i, a_f, a_g, a_o]
            i, f = sigmoid(xp, a[:, :H]), sigmoid(xp, a[:, H : 2 * H])
            g, o = xp.tanh(a[:, 2 * H : 3 * H]), sigmoid(xp, a[:, 3 * H :])
            c.append(f * c[t] + i * g)  # C_t = f_t C_{t-1} + i_t C~_t
            h.append(o * xp.tanh(c[t + 1]))  # h_t = o_t tanh(C_t)
            gates.append(xp.concatenate([i, f, g, o], axis=1))  # (B, 4H)
        self.gates = xp.stack(gates)  # (T, B, 4H): i, f, g, o of every step
        self.hs, self.cs = xp.stack(h), xp.stack(c)  # (T + 1, B, H): h_0 .. h_T and C_0 .. C_T
        self.x, self.w_ih, self.w_hh = x, w_ih, w_hh
        return self.hs[1:], self.hs[T], self.cs[T]  # output (T, B, H), h_T and C_T (B, H)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        xp = self.xp
        gates, cs = self.gates, self.cs
        T, B, G = gates.shape
        H = G // 4
        grad, (dh, dc) = _state_grads(xp, grads, B, H, gates.dtype)  # dL/dh_T, dL/dC_T from h_n and c_n
        da = xp.empty_like(gates)  # (T, B, 4H): dL/da_t
        for t in range(T - 1, -1, -1):
            i, f, g, o = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H : 3 * H], gates[t, :, 3 * H :]
            tanh_c = xp.tanh(cs[t + 1])
            if grad is not None:
                dh = dh + grad[t]  # dL/dh_t: its output's gradient and what step t+1 sends back
            dc = dc + dh * o * (1 - tanh_c * tanh_c)  # dC_t = dC_{t+1} f_{t+1} + dh_t o_t (1 - tanh^2 C_t)
            da[t, :, :H] = dc * g * i * (1 - i)
            da[t, :, H : 2 * H] = dc * cs[t] * f * (1 - f)
            da[t, :, 2 * H : 3 * H] = dc * i * (1 - g * g)
            da[t, :, 3 * H :] = dh * tanh_c * o * (1 - o)
            dc = dc * f  # dL/dC_{t-1} along C_t = f_t C_{t-1} + ...
            dh = da[t] @ self.w_hh  # dL/dh_{t-1} through a_t
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self.x, self.hs[:T], self.w_ih, da, da)
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


class GRULayer(Function):
    """The GRU over a whole sequence, with PyTorch's gate order r, z, n and h = h_{t-1}:
    r = sigma(x_t W_ir^T + b_ir + h W_hr^T + b_hr), z = sigma(x_t W_iz^T + b_iz + h W_hz^T + b_hz),
    n = tanh(x_t W_in^T + b_in + r (h W_hn^T + b_hn)), h_t = (1 - z) n + z h; with dh = dL/dh_t:
    da_n = dh (1 - z)(1 - n^2), da_z = dh (h - n) z (1 - z), da_r = da_n (h W_hn^T + b_hn) r (1 - r),
    d_ih = [da_r, da_z, da_n] (the x side's pre-activations), d_hh = [da_r, da_z, r da_n] (the h side's),
    dL/dh_{t-1} = dy_{t-1} + dh z + d_hh W_hh; dW_ih = sum_t d_ih^T x_t, dW_hh = sum_t d_hh^T h_{t-1},
    db_ih = sum_t d_ih, db_hh = sum_t d_hh, dx_t = d_ih W_ih.

    Returns h_1 .. h_T (T, B, H) and h_T (B, H).
    """

    def forward(self, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> Any:
        xp = self.xp
        _check_shapes("GRULayer", x, (h0,), w_ih, w_hh, 3)
        T = x.shape[0]
        H = w_hh.shape[1]
        proj = _affine(x, w_ih, b_ih)  # (T, B, 3H): x_t W_ih^T + b_ih
        h, gates, hh_n = [h0], [], []
        for t in range(T):
            hh = _affine(h[t], w_hh, b_hh)  # (B, 3H): h_{t-1} W_hh^T + b_hh
            r = sigmoid(xp, proj[t, :, :H] + hh[:, :H])
            z = sigmoid(xp, proj[t, :, H : 2 * H] + hh[:, H : 2 * H])
            n = xp.tanh(proj[t, :, 2 * H :] + r * hh[:, 2 * H :])
            h.append((1 - z) * n + z * h[t])  # h_t = (1 - z) n + z h_{t-1}
            gates.append(xp.concatenate([r, z, n], axis=1))  # (B, 3H)
            hh_n.append(hh[:, 2 * H :])  # h_{t-1} W_hn^T + b_hn, which dr needs
        self.gates, self.hh_n = xp.stack(gates), xp.stack(hh_n)  # (T, B, 3H), (T, B, H)
        self.hs = xp.stack(h)  # (T + 1, B, H): h_0 .. h_T
        self.x, self.w_ih, self.w_hh = x, w_ih, w_hh
        return self.hs[1:], self.hs[T]  # output (T, B, H), h_T (B, H)

    def backward(self, grads: list[Any]) -> tuple[Any, ...]:
        xp = self.xp
        gates, h_prev = self.gates, self.hs[:-1]
        T, B, H = h_prev.shape
        grad, (dh,) = _state_grads(xp, grads, B, H, gates.dtype)  # dh: dL/dh_T from h_n, then from step t+1
        d_ih = xp.empty_like(gates)  # (T, B, 3H): dL/d(x_t W_ih^T + b_ih)
        d_hh = xp.empty_like(gates)  # (T, B, 3H): dL/d(h_{t-1} W_hh^T + b_hh)
        for t in range(T - 1, -1, -1):
            r, z, n = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H :]
            if grad is not None:
                dh = dh + grad[t]  # dL/dh_t: its output's gradient and what step t+1 sends back
            da_n = dh * (1 - z) * (1 - n * n)  # dn = dh (1 - z), through tanh
            da_z = dh * (h_prev[t] - n) * z * (1 - z)  # dz = dh (h_{t-1} - n), through sigma
            da_r = da_n * self.hh_n[t] * r * (1 - r)  # dr = da_n (h W_hn^T + b_hn), through sigma
            d_ih[t, :, :H], d_ih[t, :, H : 2 * H], d_ih[t, :, 2 * H :] = da_r, da_z, da_n
            d_hh[t, :, :H], d_hh[t, :, H : 2 * H], d_hh[t, :, 2 * H :] = da_r, da_z, r * da_n
            dh = dh * z + d_hh[t] @ self.w_hh  # dL/dh_{t-1}: directly through z h_{t-1}, and through W_hh
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(self.x, h_prev, self.w_ih, d_ih, d_hh)
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh
