"""Recurrent layers: the Elman RNN, the LSTM and the GRU, with PyTorch's names and weight layouts.

Two paths compute the same thing:

* The cells (``RNNCell``, ``LSTMCell``, ``GRUCell``) do one time step with ordinary
  Tensor ops; unrolling a cell over a sequence in a Python loop records a graph
  you can inspect node by node. It is the reference.
* The layers (``RNN``, ``LSTM``, ``GRU``) run a whole sequence through each layer
  with one fused op from :mod:`tinygrad_lm.ops.recurrent` (one GEMM for all input
  projections, a tight loop for the recurrence, hand-written backpropagation
  through time). The tests check that both paths agree in values and gradients.

Every weight and bias starts as U(-1/sqrt(H), 1/sqrt(H)) with H = ``hidden_size``, as in PyTorch.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from .. import creation
from ..ops.recurrent import GRULayer, LSTMLayer, RNNLayer
from ..tensor import Tensor
from .module import Module, Parameter

_NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": Tensor.tanh,
    "relu": Tensor.relu,
    "sigmoid": Tensor.sigmoid,
}


def _check_nonlinearity(nonlinearity: str) -> str:
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh', 'relu' or 'sigmoid'.")
    return nonlinearity


def _check_sizes(input_size: int, hidden_size: int) -> None:
    for name, n in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"{name} must be a positive int, got {n!r}")


def _uniform(bound: float, *shape: int) -> Parameter:
    """A parameter drawn from U(-bound, bound)."""
    return Parameter(creation.rand(*shape) * (2 * bound) - bound)


def _check_float_input(name: str, input: Tensor, weight: Tensor) -> None:
    """Token ids are not inputs of a recurrent layer: they become float vectors through an embedding first."""
    if input.dtype.kind != "f":
        raise TypeError(
            f"{name}: input has dtype {input.dtype}, but a recurrent layer takes float vectors like its "
            f"{weight.dtype} parameters (e.g. embeddings of shape (..., input_size)); pass integer token ids "
            "through nn.Embedding first"
        )


def _check_dtype(name: str, what: str, t: Tensor, weight: Tensor) -> None:
    """``t`` must match the parameters' device and dtype (checked before any math on it)."""
    if t.dtype.kind != "f":
        raise TypeError(f"{name}: {what} has dtype {t.dtype}, but it must be a float tensor like the parameters "
                        f"({weight.dtype})")
    if t.device != weight.device:
        raise RuntimeError(f"{name}: {what} is on {t.device} but the parameters are on {weight.device}")
    if t.dtype != weight.dtype:
        raise TypeError(
            f"{name}: {what} has dtype {t.dtype} but the parameters are {weight.dtype}; "
            f"convert one of them (e.g. x.to(dtype={str(weight.dtype)!r}) or module.to(dtype={str(t.dtype)!r}))"
        )


class _CellBase(Module):
    """A cell's parameters: ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih`` and ``bias_hh (G*H,)``."""

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        k = 1.0 / math.sqrt(hidden_size)
        G = self._gates * hidden_size
        self.weight_ih = _uniform(k, G, input_size)
        self.weight_hh = _uniform(k, G, hidden_size)
        if bias:
            self.bias_ih = _uniform(k, G)
            self.bias_hh = _uniform(k, G)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def _check_input(self, input: Tensor) -> tuple[Tensor, bool]:
        """``input`` as ``(B, I)`` and whether it came with a batch dim."""
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        _check_float_input(name, input, self.weight_ih)
        if input.ndim not in (1, 2):
            raise RuntimeError(
                f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead (shape {input.shape})"
            )
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"{name}: input has inconsistent input_size: got {input.shape[-1]}, expected {self.input_size}"
            )
        _check_dtype(name, "input", input, self.weight_ih)
        batched = input.ndim == 2
        return (input if batched else input.unsqueeze(0)), batched  # (B, I)

    def _check_state(self, h: Tensor | None, x: Tensor, batched: bool, what: str) -> Tensor:
        """A state ``(B, H)``: zeros when ``h`` is None, else ``h`` after checking its shape."""
        name = type(self).__name__
        B = x.shape[0]
        if h is None:
            return creation.zeros(B, self.hidden_size, dtype=x.dtype, device=x.device)
        if not isinstance(h, Tensor):
            raise TypeError(f"{name}: {what} must be a Tensor, got {type(h).__name__}")
        expected = (B, self.hidden_size) if batched else (self.hidden_size,)
        if h.shape != expected:
            raise RuntimeError(
                f"{name}: {what} has shape {h.shape}, expected {expected} for input of shape "
                f"{x.shape if batched else x.shape[1:]}"
            )
        _check_dtype(name, what, h, self.weight_ih)
        return h if batched else h.unsqueeze(0)  # (B, H)

    def _projections(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """x W_ih^T + b_ih and h W_hh^T + b_hh, both ``(B, G*H)``."""
        gi = x @ self.weight_ih.T  # (B, G*H)
        gh = h @ self.weight_hh.T  # (B, G*H)
        if self.bias:
            gi = gi + self.bias_ih
            gh = gh + self.bias_hh
        return gi, gh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


class RNNCell(_CellBase):
    """One step of the Elman network: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh).

    In the lecture's names, h_t = sigma(W_ah h_{t-1} + W_ax x_t + b_a) with W_ax = ``weight_ih (H, I)``,
    W_ah = ``weight_hh (H, H)`` and b_a = ``bias_ih + bias_hh`` (PyTorch keeps two biases; only
    their sum matters). ``nonlinearity`` is ``'tanh'`` (the default, as PyTorch), ``'relu'``,
    or ``'sigmoid'`` (the lecture's sigma). ``cell(x, h=None) -> h'``; x is ``(B, I)`` or ``(I,)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = _check_nonlinearity(nonlinearity)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._check_input(input)  # (B, I)
        h = self._check_state(hx, x, batched, "hx")  # (B, H)
        gi, gh = self._projections(x, h)
        h_new = _NONLINEARITIES[self.nonlinearity](gi + gh)  # (B, H)
        return h_new if batched else h_new.squeeze(0)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else f"{s}, nonlinearity={self.nonlinearity!r}"


class LSTMCell(_CellBase):
    """One LSTM step, the lecture's equations:

        f_t = sigma(W_f [h_{t-1}, x_t] + b_f)        forget gate
        i_t = sigma(W_i [h_{t-1}, x_t] + b_i)        input gate
        C~_t = tanh(W_C [h_{t-1}, x_t] + b_C)        candidate cell state
        C_t = f_t * C_{t-1} + i_t * C~_t
        o_t = sigma(W_o [h_{t-1}, x_t] + b_o)        output gate
        h_t = o_t * tanh(C_t)

    PyTorch stacks the four gates' weights in the order i, f, g (= C~), o: rows ``[0:H]`` of
    ``weight_ih (4H, I)``, ``weight_hh (4H, H)`` and the biases ``(4H,)`` belong to i, ``[H:2H]`` to f,
    ``[2H:3H]`` to C~, ``[3H:4H]`` to o. The lecture's W_f acting on the concatenation [h_{t-1}, x_t]
    is ``[weight_hh[H:2H] | weight_ih[H:2H]]`` side by side, and b_f = ``bias_ih[H:2H] + bias_hh[H:2H]``.
    ``cell(x, (h, c)=None) -> (h', c')``.
    """

    _gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, batched = self._check_input(input)  # (B, I)
        state: Any = (None, None) if hx is None else hx
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(state).__name__}")
        h = self._check_state(state[0], x, batched, "h")  # (B, H)
        c = self._check_state(state[1], x, batched, "c")  # (B, H)
        H = self.hidden_size
        gi, gh = self._projections(x, h)
        gates = gi + gh  # (B, 4H)
        i = gates[:, :H].sigmoid()
        f = gates[:, H : 2 * H].sigmoid()
        g = gates[:, 2 * H : 3 * H].tanh()
        o = gates[:, 3 * H :].sigmoid()
        c_new = f * c + i * g
        h_new = o * c_new.tanh()
        if not batched:
            return h_new.squeeze(0), c_new.squeeze(0)
        return h_new, c_new


class GRUCell(_CellBase):
    """One GRU step, as PyTorch (gate order r, z, n in the stacked weights):

        r = sigma(x W_ir^T + b_ir + h W_hr^T + b_hr)            reset gate
        z = sigma(x W_iz^T + b_iz + h W_hz^T + b_hz)            update gate
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))       candidate
        h' = (1 - z) * n + z * h

    W_ir, W_iz, W_in are rows ``[0:H]``, ``[H:2H]``, ``[2H:3H]`` of ``weight_ih (3H, I)``; likewise for
    ``weight_hh (3H, H)`` and the biases. ``cell(x, h=None) -> h'``.
    """

    _gates = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._check_input(input)  # (B, I)
        h = self._check_state(hx, x, batched, "hx")  # (B, H)
        H = self.hidden_size
        gi, gh = self._projections(x, h)  # (B, 3H) each
        r = (gi[:, :H] + gh[:, :H]).sigmoid()
        z = (gi[:, H : 2 * H] + gh[:, H : 2 * H]).sigmoid()
        n = (gi[:, 2 * H :] + r * gh[:, 2 * H :]).tanh()
        h_new = (1 - z) * n + z * h
        return h_new if batched else h_new.squeeze(0)


def _inter_layer_dropout(x: Tensor, p: float) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (inverted dropout)."""
    if p >= 1:
        return x * 0.0
    keep = creation.rand(*x.shape, dtype=x.dtype, device=x.device) >= p
    return x * (keep.to(dtype=x.dtype) * (1.0 / (1.0 - p)))


class _RNNBase(Module):
    """A stack of ``num_layers`` recurrent layers; layer k has ``weight_ih_l{k}``, ``weight_hh_l{k}``, biases."""

    _gates = 1
    _num_states = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 dropout: float) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"num_layers must be an int >= 1, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(
                f"dropout should be a number in range [0, 1] representing the probability of an element "
                f"being zeroed, got {dropout!r}"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} acts between recurrent layers only (not after the last one), "
                "so it does nothing with num_layers=1",
                stacklevel=3,
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        k = 1.0 / math.sqrt(hidden_size)
        G = self._gates * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", _uniform(k, G, in_size))
            setattr(self, f"weight_hh_l{layer}", _uniform(k, G, hidden_size))
            if bias:
                setattr(self, f"bias_ih_l{layer}", _uniform(k, G))
                setattr(self, f"bias_hh_l{layer}", _uniform(k, G))

    def flatten_parameters(self) -> None:
        """Does nothing (PyTorch packs cuDNN weights here; the fused ops read the parameters directly)."""

    def _layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        w_ih = getattr(self, f"weight_ih_l{layer}")
        w_hh = getattr(self, f"weight_hh_l{layer}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")

    def _check_input(self, input: Tensor) -> tuple[Tensor, bool]:
        """``input`` as ``(T, B, I)`` and whether it came with a batch dim."""
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        _check_float_input(name, input, self._layer_weights(0)[0])
        if input.ndim not in (2, 3):
            raise RuntimeError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D tensor instead "
                               f"(shape {input.shape})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]} (input shape {input.shape})"
            )
        _check_dtype(name, "input", input, self._layer_weights(0)[0])
        if input.numel() == 0:
            raise RuntimeError(f"{name}: input of shape {input.shape} is empty")
        if input.ndim == 2:
            return input.unsqueeze(1), False  # (T, 1, I)
        return (input.transpose(0, 1) if self.batch_first else input), True  # (T, B, I)

    def _check_state(self, h: Tensor | None, x: Tensor, batched: bool, what: str) -> Tensor:
        """An initial state ``(num_layers, B, H)``: zeros when ``h`` is None."""
        name = type(self).__name__
        L, B, H = self.num_layers, x.shape[1], self.hidden_size
        if h is None:
            return creation.zeros(L, B, H, dtype=x.dtype, device=x.device)
        if not isinstance(h, Tensor):
            raise TypeError(f"{name}: {what} must be a Tensor, got {type(h).__name__}")
        if batched and h.ndim != 3:
            raise RuntimeError(f"{name}: For batched 3-D input, {what} should also be 3-D but got {h.ndim}-D tensor")
        if not batched and h.ndim != 2:
            raise RuntimeError(f"{name}: For unbatched 2-D input, {what} should also be 2-D but got {h.ndim}-D tensor")
        expected = (L, B, H) if batched else (L, H)
        if h.shape != expected:
            raise RuntimeError(f"{name}: Expected hidden size {expected} for {what}, got {h.shape}")
        _check_dtype(name, what, h, self._layer_weights(0)[0])
        return h if batched else h.unsqueeze(1)  # (L, B, H)

    def _initial_states(self, hx: Any, x: Tensor, batched: bool) -> list[Tensor]:
        return [self._check_state(hx, x, batched, "hx")]

    def _run_layer(self, layer: int, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def _run(self, input: Tensor, hx: Any) -> tuple[Tensor, list[Tensor]]:
        """The output ``(T, B, H)`` (or batch-first/unbatched as the input) and the final states ``(L, B, H)``."""
        x, batched = self._check_input(input)  # (T, B, I)
        states = self._initial_states(hx, x, batched)  # each (L, B, H)
        finals: list[list[Tensor]] = [[] for _ in states]
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = _inter_layer_dropout(x, self.dropout)
            x, last = self._run_layer(layer, x, [s[layer] for s in states])  # (T, B, H)
            for f, s in zip(finals, last):
                f.append(s)
        out_states = [creation.stack(f) for f in finals]  # each (L, B, H)
        if not batched:
            return x.squeeze(1), [s.squeeze(1) for s in out_states]  # (T, H), (L, H)
        if self.batch_first:
            x = x.transpose(0, 1)  # (B, T, H)
        return x, out_states

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


class RNN(_RNNBase):
    """A stack of Elman layers: h_t^(k) = act(x_t^(k) W_ih_l{k}^T + b_ih_l{k} + h_{t-1}^(k) W_hh_l{k}^T + b_hh_l{k}).

    The lecture's h_t = sigma(W_ah h_{t-1} + W_ax x_t + b_a) is layer 0 with ``nonlinearity='sigmoid'``,
    W_ax = ``weight_ih_l0 (H, I)``, W_ah = ``weight_hh_l0 (H, H)``, b_a = ``bias_ih_l0 + bias_hh_l0``;
    layer k > 0 reads the outputs h_t of layer k-1 (after dropout, in training mode).
    ``rnn(x, h0=None) -> (output, h_n)`` with x ``(T, B, I)`` (``(B, T, I)`` if ``batch_first``, or
    ``(T, I)`` unbatched), h0 and h_n ``(num_layers, B, H)``, output the last layer's h_t for every t.
    Each layer runs as one fused op (:class:`tinygrad_lm.ops.recurrent.RNNLayer`).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0) -> None:
        nonlinearity = _check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        self.nonlinearity = nonlinearity

    def _run_layer(self, layer: int, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y, h_n = RNNLayer.apply(x, states[0], *self._layer_weights(layer), nonlinearity=self.nonlinearity)
        return y, [h_n]  # (T, B, H), [(B, H)]

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, hx)
        return output, h_n

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else f"{s}, nonlinearity={self.nonlinearity!r}"


class LSTM(_RNNBase):
    """A stack of LSTM layers: the equations of :class:`LSTMCell` applied at every step of every layer.

    Parameters per layer k as PyTorch: ``weight_ih_l{k} (4H, I_k)``, ``weight_hh_l{k} (4H, H)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k} (4H,)``, gate order i, f, g (= C~), o.
    ``lstm(x, (h0, c0)=None) -> (output, (h_n, c_n))``, states ``(num_layers, B, H)``.
    Each layer runs as one fused op (:class:`tinygrad_lm.ops.recurrent.LSTMLayer`).
    """

    _gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)

    def _initial_states(self, hx: Any, x: Tensor, batched: bool) -> list[Tensor]:
        if hx is None:
            hx = (None, None)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTM: hx must be a tuple (h0, c0), got {type(hx).__name__}")
        return [self._check_state(hx[0], x, batched, "h0"), self._check_state(hx[1], x, batched, "c0")]

    def _run_layer(self, layer: int, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y, h_n, c_n = LSTMLayer.apply(x, states[0], states[1], *self._layer_weights(layer))
        return y, [h_n, c_n]  # (T, B, H), [(B, H), (B, H)]

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, (h_n, c_n) = self._run(input, hx)
        return output, (h_n, c_n)


class GRU(_RNNBase):
    """A stack of GRU layers: the equations of :class:`GRUCell` applied at every step of every layer.

    Parameters per layer k as PyTorch: ``weight_ih_l{k} (3H, I_k)``, ``weight_hh_l{k} (3H, H)``,
    biases ``(3H,)``, gate order r, z, n. ``gru(x, h0=None) -> (output, h_n)``.
    Each layer runs as one fused op (:class:`tinygrad_lm.ops.recurrent.GRULayer`).
    """

    _gates = 3

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)

    def _run_layer(self, layer: int, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y, h_n = GRULayer.apply(x, states[0], *self._layer_weights(layer))
        return y, [h_n]  # (T, B, H), [(B, H)]

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, hx)
        return output, h_n
