"""The benchmark's language models, written once against the API PyTorch and tinygrad_lm share.

``build(config, nn, F)`` returns a model for either framework: pass ``torch.nn`` and
``torch.nn.functional`` for PyTorch, ``tinygrad_lm.nn`` and ``tinygrad_lm.nn.functional``
for tinygrad_lm. The source below only uses names both frameworks have (``nn.Module``,
``nn.Embedding``, ``nn.Linear``, ``nn.RNN``/``nn.LSTM`` with ``batch_first=True``,
``nn.LayerNorm``, ``nn.GELU``, ``nn.ModuleList``, ``reshape``/``transpose``/``split``/``tanh``,
``F.cross_entropy``, ``F.scaled_dot_product_attention``), so both frameworks train the same
function once the weights are copied across with ``state_dict``/``load_state_dict``. ``gpt-manual`` is
``gpt`` with the attention written by hand (``q @ k.transpose(-2, -1)``, ``masked_fill`` with a
registered ``tril(ones(T, T))`` buffer, ``F.softmax``, ``att @ v``), as users write it; it also uses
the framework's ``tril``/``ones``, found from the package of ``nn``. ``gpt-mha`` runs the attention
through ``nn.MultiheadAttention(batch_first=True)`` with a causal ``attn_mask`` and ``need_weights=False``,
as PyTorch's own ``nn.TransformerEncoderLayer`` calls it; ``gpt-mha-weights`` leaves ``need_weights``
at its default (True), so that the averaged attention weights are computed as well, as most hand-written
blocks do.

Each model class below is a plain mixin; :func:`_bind` makes it a subclass of the chosen
framework's ``nn.Module``. This file imports neither NumPy nor PyTorch.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Config:
    """One benchmark configuration (the issue's table). ``hidden`` is the MLP width for ``gpt``."""

    name: str
    kind: str  # "tiny", "rnn", "lstm" or "gpt"
    vocab: int
    embed: int
    hidden: int
    layers: int
    batch: int
    seq: int
    heads: int = 4
    # gpt only: "sdpa" (F.scaled_dot_product_attention), "manual" (written by hand), "mha" (nn.MultiheadAttention,
    # need_weights=False) or "mha-weights" (nn.MultiheadAttention with its default need_weights=True)
    attention: str = "sdpa"

    @property
    def tokens(self) -> int:
        """Tokens per training step: batch * seq."""
        return self.batch * self.seq


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("tiny", "tiny", vocab=16, embed=16, hidden=32, layers=2, batch=8, seq=8),
        Config("rnn", "rnn", vocab=96, embed=128, hidden=256, layers=1, batch=32, seq=64),
        Config("lstm", "lstm", vocab=96, embed=128, hidden=256, layers=1, batch=32, seq=64),
        Config("gpt", "gpt", vocab=96, embed=128, hidden=512, layers=4, batch=32, seq=64),
        Config("gpt-manual", "gpt", vocab=96, embed=128, hidden=512, layers=4, batch=32, seq=64, attention="manual"),
        Config("gpt-mha", "gpt", vocab=96, embed=128, hidden=512, layers=4, batch=32, seq=64, attention="mha"),
        Config("gpt-mha-weights", "gpt", vocab=96, embed=128, hidden=512, layers=4, batch=32, seq=64,
               attention="mha-weights"),
        Config("lstm2", "lstm", vocab=96, embed=256, hidden=512, layers=2, batch=64, seq=128),
    )
}

LONG_SEQ_CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("lstm_seq1000", "lstm", vocab=96, embed=32, hidden=64, layers=1, batch=4, seq=1000),
        Config("lstm_seq10000", "lstm", vocab=96, embed=32, hidden=64, layers=1, batch=4, seq=10000),
    )
}


def get_config(config: str | Config, **overrides: Any) -> Config:
    """A Config by name (from CONFIGS or LONG_SEQ_CONFIGS), with fields replaced by ``overrides``."""
    if isinstance(config, str):
        table = {**CONFIGS, **LONG_SEQ_CONFIGS}
        if config not in table:
            raise KeyError(f"unknown benchmark configuration {config!r}; known: {', '.join(table)}")
        config = table[config]
    return dataclasses.replace(config, **overrides) if overrides else config


class TinyMLP:
    """h_0 = E[idx]; h_l = tanh(h_{l-1} W_l^T + b_l) for l = 1..layers; logits = h_L W_head^T + b_head."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.embed)
        widths = [cfg.embed] + [cfg.hidden] * cfg.layers
        self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nn.Linear(cfg.hidden, cfg.vocab)

    def forward(self, idx: Any) -> Any:
        h = self.wte(idx)  # (B, T, E)
        for layer in self.hidden:
            h = layer(h).tanh()  # (B, T, H)
        return self.head(h)  # (B, T, V)


class RecurrentLM:
    """Embedding -> RNN (h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)) or LSTM -> linear head."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.embed)
        if cfg.kind == "rnn":
            self.rnn = nn.RNN(cfg.embed, cfg.hidden, num_layers=cfg.layers, nonlinearity="tanh", batch_first=True)
        else:
            self.rnn = nn.LSTM(cfg.embed, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden, cfg.vocab)

    def forward(self, idx: Any) -> Any:
        x = self.wte(idx)  # (B, T, E)
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out)  # (B, T, V)


class CausalSelfAttention:
    """softmax(Q K^T / sqrt(d) + causal mask) V per head, with Q, K, V from one fused qkv Linear."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.n_head = cfg.heads
        self.qkv = nn.Linear(cfg.embed, 3 * cfg.embed)
        self.proj = nn.Linear(cfg.embed, cfg.embed)
        self._F = F

    def forward(self, x: Any) -> Any:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = self._attend(q, k, v)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)

    def _attend(self, q: Any, k: Any, v: Any) -> Any:
        return self._F.scaled_dot_product_attention(q, k, v, is_causal=True)


class ManualCausalSelfAttention(CausalSelfAttention):
    """The same attention as :class:`CausalSelfAttention`, written by hand the way users write it (nanoGPT's
    slow path): ``softmax(masked_fill(Q K^T / sqrt(d), mask == 0, -inf)) V`` with a registered causal-mask buffer."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__(cfg, nn, F)
        fw = _framework(nn)  # torch or tinygrad_lm, for tril/ones
        self.register_buffer("mask", fw.tril(fw.ones(cfg.seq, cfg.seq)).view(1, 1, cfg.seq, cfg.seq))

    def _attend(self, q: Any, k: Any, v: Any) -> Any:
        T = q.shape[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, T)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = self._F.softmax(att, dim=-1)
        return att @ v  # (B, nh, T, hs)


class MultiheadSelfAttention:
    """The same attention through ``nn.MultiheadAttention(batch_first=True)``: its in-projection (one
    ``in_proj_weight`` for q, k and v), heads and out-projection, with a causal boolean ``attn_mask`` buffer
    (True: masked out, the module's convention). ``need_weights`` False is how PyTorch's
    ``nn.TransformerEncoderLayer`` calls it; True (the module's default) also returns the attention weights
    averaged over the heads, which this block drops, as users who leave the default do."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.embed, cfg.heads, batch_first=True)
        self.need_weights = cfg.attention == "mha-weights"
        fw = _framework(nn)  # torch or tinygrad_lm, for ones/triu
        self.register_buffer("mask", fw.ones(cfg.seq, cfg.seq).triu(1) > 0, persistent=False)

    def forward(self, x: Any) -> Any:
        T = x.shape[1]
        y, _ = self.attn(x, x, x, attn_mask=self.mask[:T, :T], need_weights=self.need_weights)  # (B, T, C)
        return y


_ATTENTION = {"sdpa": CausalSelfAttention, "manual": ManualCausalSelfAttention, "mha": MultiheadSelfAttention,
              "mha-weights": MultiheadSelfAttention}


def _framework(nn: Any) -> Any:
    """The package whose ``nn`` this is: ``torch`` for ``torch.nn``, ``tinygrad_lm`` for ``tinygrad_lm.nn``."""
    return importlib.import_module(nn.__name__.partition(".")[0])


class Block:
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + W_2 GELU(W_1 ln_2(x))."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed)
        if cfg.attention not in _ATTENTION:
            raise ValueError(f"unknown attention {cfg.attention!r} in configuration {cfg.name!r}; known: "
                             f"{', '.join(_ATTENTION)}")
        attention = _ATTENTION[cfg.attention]
        self.attn = _bind(attention, nn)(cfg, nn, F)
        self.ln_2 = nn.LayerNorm(cfg.embed)
        self.fc = nn.Linear(cfg.embed, cfg.hidden)
        self.gelu = nn.GELU()
        self.fc_proj = nn.Linear(cfg.hidden, cfg.embed)

    def forward(self, x: Any) -> Any:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        return x + self.fc_proj(self.gelu(self.fc(self.ln_2(x))))  # (B, T, C)


class GPT:
    """Token + learned position embeddings, ``layers`` pre-LN blocks, final LayerNorm, linear head."""

    def __init__(self, cfg: Config, nn: Any, F: Any) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.embed)
        self.wpe = nn.Embedding(cfg.seq, cfg.embed)
        self.blocks = nn.ModuleList([_bind(Block, nn)(cfg, nn, F) for _ in range(cfg.layers)])
        self.ln_f = nn.LayerNorm(cfg.embed)
        self.head = nn.Linear(cfg.embed, cfg.vocab)

    def forward(self, idx: Any) -> Any:
        B, T = idx.shape
        x = self.wte(idx) + self.wpe.weight[:T]  # (B, T, C); rows 0..T-1 are the positions' embeddings
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        return self.head(self.ln_f(x))  # (B, T, V)


_KINDS = {"tiny": TinyMLP, "rnn": RecurrentLM, "lstm": RecurrentLM, "gpt": GPT}
_BOUND: dict[tuple[type, Any], type] = {}


def _bind(mixin: type, nn: Any) -> type:
    """``mixin`` as a subclass of ``nn.Module`` of the given framework (one class per framework)."""
    key = (mixin, nn)
    if key not in _BOUND:
        _BOUND[key] = type(mixin.__name__, (mixin, nn.Module), {"__doc__": mixin.__doc__})
    return _BOUND[key]


def build(config: str | Config, nn: Any, F: Any) -> Any:
    """The model of ``config`` (a name or a Config) as an ``nn.Module`` of the framework of ``nn``/``F``."""
    cfg = get_config(config)
    if cfg.kind not in _KINDS:
        raise ValueError(f"unknown model kind {cfg.kind!r} in configuration {cfg.name!r}")
    return _bind(_KINDS[cfg.kind], nn)(cfg, nn, F)


def train_step(model: Any, optimizer: Any, idx: Any, targets: Any, F: Any) -> Any:
    """One training step: logits -> mean cross-entropy -> zero_grad -> backward -> optimizer step; the loss."""
    logits = model(idx)  # (B, T, V)
    B, T, V = logits.shape
    loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def matmul_flops(config: str | Config) -> int:
    """Matrix-multiply FLOPs of one training step: 2*M*N*K per forward GEMM, twice that again in backward.

    Counted: every Linear, the input and recurrent projections of RNN/LSTM layers (4 gates for
    the LSTM), and the two attention products Q K^T and A V at full T x T (the causal half is
    computed and masked, as dense kernels do). Not counted: embeddings, elementwise work,
    softmax, LayerNorm, the loss.
    """
    cfg = get_config(config)
    N, E, H, V = cfg.tokens, cfg.embed, cfg.hidden, cfg.vocab
    if cfg.kind == "tiny":
        forward = 2 * N * (E * H + (cfg.layers - 1) * H * H + H * V)
    elif cfg.kind in ("rnn", "lstm"):
        gates = 4 if cfg.kind == "lstm" else 1
        inputs = [E] + [H] * (cfg.layers - 1)
        forward = sum(2 * N * gates * H * (i + H) for i in inputs) + 2 * N * H * V
    elif cfg.kind == "gpt":
        attention = 2 * N * E * 3 * E + 2 * (2 * cfg.batch * cfg.seq * cfg.seq * E) + 2 * N * E * E
        mlp = 2 * (2 * N * E * H)
        forward = cfg.layers * (attention + mlp) + 2 * N * E * V
    else:
        raise ValueError(f"unknown model kind {cfg.kind!r}")
    return 3 * forward
