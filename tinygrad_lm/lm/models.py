"""Neural language models: Elman RNN, LSTM and GRU LMs, and a decoder-only Transformer.

Every model maps token ids ``idx (B, T)`` to next-token logits ``(B, T, V)`` and,
given ``targets (B, T)``, the loss of the lecture, the per-step cross-entropies
ell = sum_t ell_t (``loss_reduction='sum'``) or their mean (``'mean'``, the default):

    logits, loss = model(idx, targets)

Unbatched ids ``(T,)`` give logits ``(T, V)`` (targets ``(T,)``), as in PyTorch.

For generation each model also has ``prefill(idx) -> (logits of the last position,
state)`` and ``step(token, state) -> (logits, state)``, so that a new token costs
O(1) model work: recurrent models carry their hidden state, the Transformer its
cached keys and values. Both give the logits that ``forward`` on the whole
prefix gives at its last position (to rounding: tests/test_lm_models.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .. import creation, nn
from ..nn import functional as F
from ..tensor import Tensor

_REDUCTIONS = ("mean", "sum")


def _check_positive(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def _check_common(config: Any) -> None:
    if config.loss_reduction not in _REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {_REDUCTIONS}, got {config.loss_reduction!r}")
    if isinstance(config.dropout, bool) or not isinstance(config.dropout, (int, float)) or not 0 <= config.dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {config.dropout!r}")


def _check_idx(idx: Any, what: str = "idx") -> tuple[Tensor, bool]:
    """``idx`` as an integer ``(B, T)`` tensor, and whether it came unbatched ``(T,)``."""
    if not isinstance(idx, Tensor):
        idx = creation.tensor(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer token ids, got dtype {idx.dtype}")
    if idx.ndim not in (1, 2) or idx.shape[-1] == 0:
        raise ValueError(f"{what} must have shape (B, T) or (T,) with T >= 1, got {idx.shape}")
    if idx.ndim == 1:
        return idx.unsqueeze(0), True  # (1, T)
    return idx, False


def _loss(logits: Tensor, targets: Any, reduction: str, unbatched: bool) -> Tensor | None:
    """Cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)`` (``(T,)`` when unbatched)."""
    if targets is None:
        return None
    if not isinstance(targets, Tensor):
        targets = creation.tensor(targets, device=logits.device)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integer token ids, got dtype {targets.dtype}")
    expected = logits.shape[1:-1] if unbatched else logits.shape[:-1]
    if targets.shape != expected:
        raise ValueError(f"targets have shape {targets.shape}, expected {expected} (one id per position of idx)")
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), reduction=reduction)  # (B*T, V)


@dataclass
class RNNLMConfig:
    """Configuration of a recurrent LM: embedding -> ``num_layers`` recurrent layers -> linear head."""

    vocab_size: int
    embed_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 1
    cell: str = "lstm"  # 'rnn' (Elman), 'lstm' or 'gru'
    nonlinearity: str = "tanh"  # for cell='rnn': 'tanh', 'relu' or 'sigmoid' (the lecture's Elman network)
    dropout: float = 0.0
    loss_reduction: str = "mean"

    def __post_init__(self) -> None:
        _check_positive(self, ("vocab_size", "embed_dim", "hidden_size", "num_layers"))
        if self.cell not in ("rnn", "lstm", "gru"):
            raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru', got {self.cell!r}")
        if self.nonlinearity not in ("tanh", "relu", "sigmoid"):
            raise ValueError(f"nonlinearity must be 'tanh', 'relu' or 'sigmoid', got {self.nonlinearity!r}")
        _check_common(self)


class RecurrentLM(nn.Module):
    """x_t = E[w_t];  h_t = RNN(x_t, h_{t-1});  logits_t = W_hy h_t + b_y;  ell_t = -log softmax(logits_t)[w_{t+1}].

    The recurrent layer is ``nn.RNN`` (Elman), ``nn.LSTM`` or ``nn.GRU`` as ``config.cell`` says; dropout
    (``config.dropout``) acts on the embeddings, between recurrent layers and before the head.
    The state is ``h (num_layers, B, H)``, or ``(h, C)`` for the LSTM.
    """

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__()
        if not isinstance(config, RNNLMConfig):
            raise TypeError(f"{type(self).__name__} needs an RNNLMConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        inner_dropout = c.dropout if c.num_layers > 1 else 0.0
        self.rnn: nn.Module
        if c.cell == "rnn":
            self.rnn = nn.RNN(c.embed_dim, c.hidden_size, c.num_layers, nonlinearity=c.nonlinearity,
                              batch_first=True, dropout=inner_dropout)
        elif c.cell == "lstm":
            self.rnn = nn.LSTM(c.embed_dim, c.hidden_size, c.num_layers, batch_first=True, dropout=inner_dropout)
        else:
            self.rnn = nn.GRU(c.embed_dim, c.hidden_size, c.num_layers, batch_first=True, dropout=inner_dropout)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)

    def forward(self, idx: Any, targets: Any = None, state: Any = None, return_state: bool = False) -> Any:
        """``(logits, loss)``; with ``return_state=True``, ``(logits, loss, state)``.

        ``state`` is where the previous chunk ended (None: zeros). In truncated BPTT pass it
        detached (:func:`detach_state`), so that backward stops at the chunk boundary.
        Unbatched ``idx (T,)`` uses states with a batch of 1.
        """
        idx, unbatched = _check_idx(idx)
        x = self.drop(self.embedding(idx))  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = _loss(logits, targets, self.config.loss_reduction, unbatched)
        if unbatched:
            logits = logits[0]  # (T, V)
        return (logits, loss, state) if return_state else (logits, loss)

    def prefill(self, idx: Any) -> tuple[Tensor, Any]:
        """Read the prompt ``idx (B, T)``: the logits of its last position ``(B, V)`` and the state after it."""
        idx, _ = _check_idx(idx)
        logits, _, state = self.forward(idx, return_state=True)  # (B, T, V)
        return logits[:, -1], state  # (B, V)

    def step(self, token: Any, state: Any) -> tuple[Tensor, Any]:
        """Feed one token per row, ``token (B,)``, after ``state``: the next logits ``(B, V)`` and the new state."""
        token, _ = _check_idx(token, "token")
        logits, _, state = self.forward(token.reshape(-1, 1), state=state, return_state=True)  # (B, 1, V)
        return logits[:, -1], state  # (B, V)


def _with_cell(config: RNNLMConfig, cell: str) -> RNNLMConfig:
    if not isinstance(config, RNNLMConfig):
        raise TypeError(f"expected an RNNLMConfig, got {type(config).__name__}")
    return RNNLMConfig(**{**asdict(config), "cell": cell})


class RNNLM(RecurrentLM):
    """The lecture's Elman RNN language model (``config.cell`` is set to ``'rnn'``)."""

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__(_with_cell(config, "rnn"))


class LSTMLM(RecurrentLM):
    """An LSTM language model (``config.cell`` is set to ``'lstm'``)."""

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__(_with_cell(config, "lstm"))


class GRULM(RecurrentLM):
    """A GRU language model (``config.cell`` is set to ``'gru'``)."""

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__(_with_cell(config, "gru"))


def detach_state(state: Any) -> Any:
    """Cut a recurrent state (a Tensor, or a tuple/list of them) from the graph: truncated BPTT."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"a recurrent state is a Tensor or a tuple of Tensors, got {type(state).__name__}")


@dataclass
class TransformerConfig:
    """A decoder-only Transformer: learned positions, pre-LayerNorm blocks, causal self-attention, GELU MLP."""

    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_hidden: int = 512
    dropout: float = 0.0
    bias: bool = True
    loss_reduction: str = "mean"

    def __post_init__(self) -> None:
        _check_positive(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_hidden"))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        _check_common(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only.

    q, k, v = x W_qkv (split in three, then into heads);  y = softmax(q k^T / sqrt(d) + causal mask) v.
    With a key/value cache, the new positions attend to every cached one as well.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``(y, (k, v))`` for ``x (B, T, C)``; ``cache`` holds the keys and values of earlier positions."""
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = k.reshape(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        v = v.reshape(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        past = 0
        if cache is not None:
            past = cache[0].shape[2]
            k = creation.cat([cache[0], k], dim=2)  # (B, nh, past + T, hd)
            v = creation.cat([cache[1], v], dim=2)  # (B, nh, past + T, hd)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new position sees everything cached
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # new position i may see key j when j <= past + i
            mask = creation.ones(T, past + T, dtype="bool", device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_drop(self.c_proj(y)), (k, v)


class Block(nn.Module):
    """x = x + attn(LN(x));  x = x + MLP(LN(x)), with MLP(u) = W_2 GELU(W_1 u)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias),
            nn.GELU(),
            nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        a, cache = self.attn(self.ln_1(x), cache)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, cache


class TransformerLM(nn.Module):
    """Decoder-only Transformer LM: token + learned position embeddings, ``n_layer`` blocks, LayerNorm, head.

    h_0 = E[w_t] + P[t];  h_l = Block_l(h_{l-1});  logits_t = W_head LN(h_L)_t.
    It reads at most ``block_size`` tokens; ``generate`` slides a window over longer texts.
    The generation state is ``(caches, length)``: per block the keys and values ``(B, nh, length, hd)``.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"TransformerLM needs a TransformerConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's scheme: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layer)."""
        residual = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                nn.init.normal_(p, 0.0, residual if name.endswith(("c_proj.weight", "mlp.2.weight")) else 0.02)

    def _run(self, idx: Tensor, caches: list[Any] | None, start: int) -> tuple[Tensor, list[Any]]:
        B, T = idx.shape
        if start + T > self.config.block_size:
            raise ValueError(f"a sequence of {start + T} tokens is longer than block_size {self.config.block_size}; "
                             "crop it (generate() slides a window)")
        pos = creation.arange(start, start + T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block(x, None if caches is None else caches[i])  # (B, T, C)
            new_caches.append(cache)
        return self.lm_head(self.ln_f(x)), new_caches  # (B, T, V)

    def forward(self, idx: Any, targets: Any = None) -> tuple[Tensor, Tensor | None]:
        """``(logits (B, T, V), loss or None)`` for ``idx (B, T)`` with ``T <= block_size``."""
        idx, unbatched = _check_idx(idx)
        logits, _ = self._run(idx, None, 0)  # (B, T, V)
        loss = _loss(logits, targets, self.config.loss_reduction, unbatched)
        return (logits[0] if unbatched else logits), loss

    def prefill(self, idx: Any) -> tuple[Tensor, Any]:
        """Read the prompt ``idx (B, T)``: the logits of its last position ``(B, V)`` and the key/value caches."""
        idx, _ = _check_idx(idx)
        logits, caches = self._run(idx, None, 0)  # (B, T, V)
        return logits[:, -1], (caches, idx.shape[1])  # (B, V)

    def step(self, token: Any, state: Any) -> tuple[Tensor, Any]:
        """Feed one token per row, ``token (B,)``, after the cached positions: logits ``(B, V)`` and the new state."""
        token, _ = _check_idx(token, "token")
        caches, length = state
        logits, caches = self._run(token.reshape(-1, 1), caches, length)  # (B, 1, V)
        return logits[:, -1], (caches, length + 1)  # (B, V)
