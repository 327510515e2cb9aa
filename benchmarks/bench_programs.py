"""Users' training programs, tinygrad_lm against PyTorch side by side: makemore's models and nanoGPT.

The programs are written the way PyTorch users write them, once, as functions of the framework
module: ``makemore(torch, ...)`` and ``nanogpt(torch, ...)`` are handed either the real ``torch``
or ``tinygrad_lm``, and that argument is the only difference between the two runs.

- makemore (Karpathy's makemore.py, its default sizes: 4 layers, 64 wide, 4 heads, batch 32, a block
  of 16 tokens): ``bigram``, ``mlp`` (embeddings of the previous tokens + tanh hidden layer), ``rnn``
  and ``gru`` (cells written with ``Linear``/``cat``, unrolled in Python), ``bow`` (causal bag of words)
  and ``transformer`` (hand-written attention with a ``tril`` mask buffer, ``NewGELU``), trained with
  AdamW (lr 5e-4, weight decay 0.01, betas (0.9, 0.99)), ``F.cross_entropy(..., ignore_index=-1)``,
  ``optimizer.zero_grad(set_to_none=True)``, ``loss.backward()``, ``optimizer.step()``, on a names
  data set (2,000 lowercase names made up deterministically by :func:`make_names`).
- nanogpt (nanoGPT's model.py and train.py at shakespeare_char's settings, scaled down: 2 layers,
  64 wide, 4 heads, batch 32, 64 tokens, no bias, dropout 0): LayerNorm -> CausalSelfAttention (one
  ``c_attn`` Linear split into q, k, v; the hand-written attention of nanoGPT's slow path) -> MLP
  with GELU, ``wte``/``lm_head`` weight tying, nanoGPT's init, AdamW with weight-decay and no-decay
  parameter groups, the cosine learning-rate schedule, ``clip_grad_norm_(..., 1.0)`` and its
  ``get_batch`` from a uint16 token array (a made-up character text, :func:`make_text`).

How it is measured (as benchmarks/bench_train_step.py does it):

- Both frameworks run in one process and alternate step by step, the order swapped every step;
  ``--warmup`` steps of each are dropped, then ``--steps`` are timed; medians are quoted, and the
  ratio is tinygrad_lm's tokens/s over PyTorch's (> 1: tinygrad_lm is faster).
- A step is everything in the user's loop body: fetching the batch, forward, loss, zero_grad,
  backward, (clipping, lr schedule,) optimizer step and ``loss.item()``.
- PyTorch's model is built first (``torch.manual_seed(0)``) and its initial weights are copied into
  tinygrad_lm's through NumPy (``state_dict`` -> ``load_state_dict``); both draw their batches from
  NumPy generators with the same seed, so both train the same function on the same data. The first
  losses must agree to 1e-4, or the script fails.
- Threads (``--threads N``, or ``all`` for every core this process may use): ``torch.set_num_threads``
  for PyTorch; for tinygrad_lm ``tinygrad_lm.set_num_threads`` where it exists, otherwise
  threadpoolctl on NumPy's BLAS (without threadpoolctl, the OMP/OpenBLAS/MKL environment variables,
  set before NumPy is imported). The threads in effect are printed before and after the runs.

Deviations from the originals, so that both frameworks see the same batches and both runs are
deterministic: the batch indices come from ``numpy.random.default_rng`` instead of makemore's
``DataLoader(RandomSampler)`` and nanoGPT's ``torch.randint``; makemore's data set is encoded by its
``CharDataset`` once up front and batches are gathered with a tensor index (makemore's DataLoader
does the same work in worker processes, off the training loop).

    python benchmarks/bench_programs.py [--threads 1|N|all] [--steps 20] [--warmup 3]
                                        [--programs makemore,nanogpt | bigram,mlp,rnn,gru,bow,transformer]
                                        [--no-torch] [--isolated ROUNDS]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.dirname(HERE))  # a checkout without an install; an installed or PYTHONPATH copy wins

from bench_train_step import fmt_row, print_isolated_rows  # noqa: E402  (imports neither NumPy nor PyTorch)

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MAKEMORE_MODELS = ("bigram", "mlp", "rnn", "gru", "bow", "transformer")
PROGRAMS = MAKEMORE_MODELS + ("nanogpt",)


# ---------------------------------------------------------------------------------------------- data


def make_names(n: int = 2000, seed: int = 0, max_len: int = 15) -> list[str]:
    """``n`` made-up lowercase names of 2 to ``max_len`` letters (the longest exactly ``max_len``), all 26
    letters used: a stand-in for makemore's names.txt that needs no download and is the same every run."""
    rng = random.Random(seed)
    onsets = list("bcdfghjklmnprstvwz") + ["br", "ch", "cl", "dr", "gr", "kr", "ph", "qu", "sh", "st", "th", "tr"]
    vowels = list("aeiouy") + ["ae", "ai", "ea", "ia", "ie", "io", "ou"]
    codas = ["", "", "", "n", "l", "r", "s", "x", "h", "nn", "ll", "th", "nd"]
    names = []
    for _ in range(n):
        name = "".join(rng.choice(onsets) * (rng.random() < 0.8) + rng.choice(vowels) + rng.choice(codas)
                       for _ in range(rng.choice((1, 2, 2, 2, 3, 3, 4))))
        names.append(name[:max_len] if len(name) >= 2 else name + "a")
    longest = max(range(n), key=lambda i: len(names[i]))
    names[longest] = (names[longest] * max_len)[:max_len]  # makemore's block size is the longest name + 1
    assert set("".join(names)) == set("abcdefghijklmnopqrstuvwxyz")
    return names


def make_text(names: list[str], n_chars: int = 100_000, seed: int = 1) -> str:
    """A made-up play text of about ``n_chars`` characters (speakers' names in capitals, lines of names and
    punctuation), a stand-in for nanoGPT's shakespeare_char input.txt."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        words = [rng.choice(names) for _ in range(rng.randint(3, 12))]
        words[0] = words[0].capitalize()
        line = f"{rng.choice(names).upper()}:\n{' '.join(words)}{rng.choice('.,;:!?')}\n\n"
        parts.append(line)
        size += len(line)
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- makemore


def makemore(torch: Any, model_type: str, words: list[str], batch_seed: int = 0,
             state: dict[str, Any] | None = None, batch_size: int = 32) -> tuple[Any, Callable[[], float], int]:
    """makemore's model ``model_type`` and training step on ``words``, in the framework ``torch``.

    Returns the model, a function running one training step (returning the loss as a float) and the
    tokens per step (batch * block size). The model code is makemore.py's (lightly trimmed).
    """
    import numpy as np

    nn = torch.nn
    F = torch.nn.functional

    @dataclass
    class ModelConfig:
        block_size: int = None  # length of the input sequences of integers
        vocab_size: int = None  # the input integers are in range [0 .. vocab_size -1]
        n_layer: int = 4
        n_embd: int = 64
        n_embd2: int = 64
        n_head: int = 4

    class NewGELU(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    class CausalSelfAttention(nn.Module):
        def __init__(self, config):
            super().__init__()
            assert config.n_embd % config.n_head == 0
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
            self.c_proj = nn.Linear(config.n_embd, config.n_embd)
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                 .view(1, 1, config.block_size, config.block_size))
            self.n_head = config.n_head
            self.n_embd = config.n_embd

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Block(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.ln_1 = nn.LayerNorm(config.n_embd)
            self.attn = CausalSelfAttention(config)
            self.ln_2 = nn.LayerNorm(config.n_embd)
            self.mlp = nn.ModuleDict(dict(
                c_fc=nn.Linear(config.n_embd, 4 * config.n_embd),
                c_proj=nn.Linear(4 * config.n_embd, config.n_embd),
                act=NewGELU(),
            ))
            m = self.mlp
            self.mlpf = lambda x: m.c_proj(m.act(m.c_fc(x)))  # MLP forward

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlpf(self.ln_2(x))
            return x

    class Transformer(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.block_size = config.block_size
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd),
            ))
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

        def forward(self, idx, targets=None):
            device = idx.device
            b, t = idx.size()
            assert t <= self.block_size, f"Cannot forward sequence of length {t}, block size is only {self.block_size}"
            pos = torch.arange(0, t, dtype=torch.long, device=device).unsqueeze(0)  # shape (1, t)
            tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
            pos_emb = self.transformer.wpe(pos)  # (1, t, n_embd)
            x = tok_emb + pos_emb
            for block in self.transformer.h:
                x = block(x)
            x = self.transformer.ln_f(x)
            logits = self.lm_head(x)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    class CausalBoW(nn.Module):
        """Causal bag of words: averages the preceding elements (a uniform, masked attention)."""

        def __init__(self, config):
            super().__init__()
            self.block_size = config.block_size
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                 .view(1, config.block_size, config.block_size))

        def forward(self, x):
            B, T, C = x.size()
            att = torch.zeros((B, T, T), device=x.device)
            att = att.masked_fill(self.bias[:, :T, :T] == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            y = att @ x  # (B, T, T) x (B, T, C) -> (B, T, C)
            return y

    class BoWBlock(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.cbow = CausalBoW(config)
            self.mlp = nn.ModuleDict(dict(
                c_fc=nn.Linear(config.n_embd, config.n_embd2),
                c_proj=nn.Linear(config.n_embd2, config.n_embd),
            ))
            m = self.mlp
            self.mlpf = lambda x: m.c_proj(F.tanh(m.c_fc(x)))  # MLP forward

        def forward(self, x):
            x = x + self.cbow(x)
            x = x + self.mlpf(x)
            return x

    class BoW(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.block_size = config.block_size
            self.vocab_size = config.vocab_size
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
            self.context_block = BoWBlock(config)
            self.lm_head = nn.Linear(config.n_embd, self.vocab_size)

        def forward(self, idx, targets=None):
            device = idx.device
            b, t = idx.size()
            assert t <= self.block_size, f"Cannot forward sequence of length {t}, block size is only {self.block_size}"
            pos = torch.arange(0, t, dtype=torch.long, device=device).unsqueeze(0)  # shape (1, t)
            tok_emb = self.wte(idx)  # (b, t, n_embd)
            pos_emb = self.wpe(pos)  # (1, t, n_embd)
            x = tok_emb + pos_emb
            x = self.context_block(x)
            logits = self.lm_head(x)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    class RNNCell(nn.Module):
        """h_t = tanh(W [x_t, h_{t-1}] + b)"""

        def __init__(self, config):
            super().__init__()
            self.xh_to_h = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)

        def forward(self, xt, hprev):
            xh = torch.cat([xt, hprev], dim=1)
            ht = F.tanh(self.xh_to_h(xh))
            return ht

    class GRUCell(nn.Module):
        """The GRU cell: a reset gate r, an update gate z, a candidate hbar."""

        def __init__(self, config):
            super().__init__()
            self.xh_to_z = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)
            self.xh_to_r = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)
            self.xh_to_hbar = nn.Linear(config.n_embd + config.n_embd2, config.n_embd2)

        def forward(self, xt, hprev):
            xh = torch.cat([xt, hprev], dim=1)
            r = F.sigmoid(self.xh_to_r(xh))
            hprev_reset = r * hprev
            xhr = torch.cat([xt, hprev_reset], dim=1)
            hbar = F.tanh(self.xh_to_hbar(xhr))
            z = F.sigmoid(self.xh_to_z(xh))
            ht = (1 - z) * hprev + z * hbar
            return ht

    class RNN(nn.Module):
        def __init__(self, config, cell_type):
            super().__init__()
            self.block_size = config.block_size
            self.vocab_size = config.vocab_size
            self.start = nn.Parameter(torch.zeros(1, config.n_embd2))  # the starting hidden state
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings table
            if cell_type == 'rnn':
                self.cell = RNNCell(config)
            elif cell_type == 'gru':
                self.cell = GRUCell(config)
            self.lm_head = nn.Linear(config.n_embd2, self.vocab_size)

        def forward(self, idx, targets=None):
            b, t = idx.size()
            emb = self.wte(idx)  # (b, t, n_embd)
            hprev = self.start.expand((b, -1))
            hiddens = []
            for i in range(t):
                xt = emb[:, i, :]  # (b, n_embd)
                ht = self.cell(xt, hprev)  # (b, n_embd2)
                hprev = ht
                hiddens.append(ht)
            hidden = torch.stack(hiddens, 1)  # (b, t, n_embd2)
            logits = self.lm_head(hidden)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    class MLP(nn.Module):
        """Bengio et al. 2003: embeddings of the previous block_size tokens, concatenated, through an MLP."""

        def __init__(self, config):
            super().__init__()
            self.block_size = config.block_size
            self.vocab_size = config.vocab_size
            self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)  # +1: the <BLANK> token
            self.mlp = nn.Sequential(
                nn.Linear(self.block_size * config.n_embd, config.n_embd2),
                nn.Tanh(),
                nn.Linear(config.n_embd2, self.vocab_size)
            )

        def forward(self, idx, targets=None):
            embs = []
            for _ in range(self.block_size):
                tok_emb = self.wte(idx)  # token embeddings of shape (b, t, n_embd)
                idx = torch.roll(idx, 1, 1)
                idx[:, 0] = self.vocab_size  # special <BLANK> token
                embs.append(tok_emb)
            x = torch.cat(embs, -1)  # (b, t, n_embd * block_size)
            logits = self.mlp(x)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    class Bigram(nn.Module):
        """A lookup table of logits for the next character given the previous one."""

        def __init__(self, config):
            super().__init__()
            n = config.vocab_size
            self.logits = nn.Parameter(torch.zeros((n, n)))

        def forward(self, idx, targets=None):
            logits = self.logits[idx]
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            return logits, loss

    class CharDataset(torch.utils.data.Dataset):
        def __init__(self, words, chars, max_word_length):
            self.words = words
            self.chars = chars
            self.max_word_length = max_word_length
            self.stoi = {ch: i + 1 for i, ch in enumerate(chars)}
            self.itos = {i: s for s, i in self.stoi.items()}  # inverse mapping

        def __len__(self):
            return len(self.words)

        def get_vocab_size(self):
            return len(self.chars) + 1  # all the possible characters and special 0 token

        def get_output_length(self):
            return self.max_word_length + 1  # <START> token followed by words

        def encode(self, word):
            return torch.tensor([self.stoi[w] for w in word], dtype=torch.long)

        def __getitem__(self, idx):
            word = self.words[idx]
            ix = self.encode(word)
            x = torch.zeros(self.max_word_length + 1, dtype=torch.long)
            y = torch.zeros(self.max_word_length + 1, dtype=torch.long)
            x[1:1 + len(ix)] = ix
            y[:len(ix)] = ix
            y[len(ix) + 1:] = -1  # index -1 will mask the loss at the inactive locations
            return x, y

    chars = sorted(set(''.join(words)))
    max_word_length = max(len(w) for w in words)
    train_dataset = CharDataset(words, chars, max_word_length)
    config = ModelConfig(vocab_size=train_dataset.get_vocab_size(), block_size=train_dataset.get_output_length(),
                         n_layer=4, n_head=4, n_embd=64, n_embd2=64)
    if model_type == 'transformer':
        model = Transformer(config)
    elif model_type == 'bigram':
        model = Bigram(config)
    elif model_type == 'mlp':
        model = MLP(config)
    elif model_type == 'rnn':
        model = RNN(config, cell_type='rnn')
    elif model_type == 'gru':
        model = RNN(config, cell_type='gru')
    elif model_type == 'bow':
        model = BoW(config)
    else:
        raise ValueError(f'model type {model_type} is not recognized')
    if state is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, betas=(0.9, 0.99), eps=1e-8)

    # the whole data set, encoded once; each step gathers a batch of rows
    examples = [train_dataset[i] for i in range(len(train_dataset))]
    X_all = torch.stack([x for x, _ in examples])
    Y_all = torch.stack([y for _, y in examples])
    rng = np.random.default_rng(batch_seed)

    def train_step() -> float:
        ix = torch.from_numpy(rng.integers(0, len(train_dataset), size=batch_size))
        X, Y = X_all[ix], Y_all[ix]
        logits, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, train_step, batch_size * config.block_size


# ---------------------------------------------------------------------------------------------- nanoGPT


def nanogpt(torch: Any, text: str, batch_seed: int = 0, state: dict[str, Any] | None = None,
            n_layer: int = 2, n_head: int = 4, n_embd: int = 64, batch_size: int = 32,
            block_size: int = 64) -> tuple[Any, Callable[[], float], int]:
    """nanoGPT's GPT and the body of train.py's loop, in the framework ``torch``, on the characters of ``text``.

    Returns the model, a function running one iteration of the loop (returning the loss as a float)
    and the tokens per step (batch * block size). The model code is nanoGPT's model.py (the flash
    branch taken out: the attention is the hand-written one), the loop is train.py's on the CPU
    (no autocast, no GradScaler, one micro-step per iteration).
    """
    import inspect

    import numpy as np

    nn = torch.nn
    F = torch.nn.functional

    class LayerNorm(nn.Module):
        """ LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False """

        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

        def forward(self, input):
            return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)

    class CausalSelfAttention(nn.Module):

        def __init__(self, config):
            super().__init__()
            assert config.n_embd % config.n_head == 0
            # key, query, value projections for all heads, but in a batch
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
            # output projection
            self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
            # regularization
            self.attn_dropout = nn.Dropout(config.dropout)
            self.resid_dropout = nn.Dropout(config.dropout)
            self.n_head = config.n_head
            self.n_embd = config.n_embd
            self.dropout = config.dropout
            # causal mask to ensure that attention is only applied to the left in the input sequence
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                 .view(1, 1, config.block_size, config.block_size))

        def forward(self, x):
            B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)

            # calculate query, key, values for all heads in batch and move head forward to be the batch dim
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

            # manual implementation of attention
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
            y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side

            # output projection
            y = self.resid_dropout(self.c_proj(y))
            return y

    class MLP(nn.Module):

        def __init__(self, config):
            super().__init__()
            self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
            self.dropout = nn.Dropout(config.dropout)

        def forward(self, x):
            x = self.c_fc(x)
            x = self.gelu(x)
            x = self.c_proj(x)
            x = self.dropout(x)
            return x

    class Block(nn.Module):

        def __init__(self, config):
            super().__init__()
            self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
            self.attn = CausalSelfAttention(config)
            self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
            self.mlp = MLP(config)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    @dataclass
    class GPTConfig:
        block_size: int = 1024
        vocab_size: int = 50304
        n_layer: int = 12
        n_head: int = 12
        n_embd: int = 768
        dropout: float = 0.0
        bias: bool = True

    class GPT(nn.Module):

        def __init__(self, config):
            super().__init__()
            assert config.vocab_size is not None
            assert config.block_size is not None
            self.config = config

            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            ))
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # https://paperswithcode.com/method/weight-tying

            # init all weights
            self.apply(self._init_weights)
            # apply special scaled init to the residual projections, per GPT-2 paper
            for pn, p in self.named_parameters():
                if pn.endswith('c_proj.weight'):
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

        def get_num_params(self, non_embedding=True):
            n_params = sum(p.numel() for p in self.parameters())
            if non_embedding:
                n_params -= self.transformer.wpe.weight.numel()
            return n_params

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            device = idx.device
            b, t = idx.size()
            assert t <= self.config.block_size, \
                f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
            pos = torch.arange(0, t, dtype=torch.long, device=device)  # shape (t)

            # forward the GPT model itself
            tok_emb = self.transformer.wte(idx)  # token embeddings of shape (b, t, n_embd)
            pos_emb = self.transformer.wpe(pos)  # position embeddings of shape (t, n_embd)
            x = self.transformer.drop(tok_emb + pos_emb)
            for block in self.transformer.h:
                x = block(x)
            x = self.transformer.ln_f(x)

            if targets is not None:
                # if we are given some desired targets also calculate the loss
                logits = self.lm_head(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
            else:
                # inference-time mini-optimization: only forward the lm_head on the very last position
                logits = self.lm_head(x[:, [-1], :])  # note: using list [-1] to preserve the time dim
                loss = None

            return logits, loss

        def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
            # start with all of the candidate parameters
            param_dict = {pn: p for pn, p in self.named_parameters()}
            # filter out those that do not require grad
            param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
            # create optim groups. Any parameters that is 2D will be weight decayed, otherwise no.
            # i.e. all weight tensors in matmuls + embeddings decay, all biases and layernorms don't.
            decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
            nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
            optim_groups = [
                {'params': decay_params, 'weight_decay': weight_decay},
                {'params': nodecay_params, 'weight_decay': 0.0}
            ]
            # Create AdamW optimizer and use the fused version if it is available
            fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters
            use_fused = fused_available and device_type == 'cuda'
            extra_args = dict(fused=True) if use_fused else dict()
            optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)
            return optimizer

    # data/shakespeare_char/prepare.py: a character vocabulary, the text as a uint16 token array
    chars = sorted(list(set(text)))
    vocab_size = len(chars)
    stoi = {ch: i for i, ch in enumerate(chars)}
    train_data = np.array([stoi[c] for c in text], dtype=np.uint16)

    # train.py, config/train_shakespeare_char.py's settings at a smaller model
    device = 'cpu'
    device_type = 'cpu'
    learning_rate = 1e-3
    lr_decay_iters = 5000
    min_lr = 1e-4
    beta1, beta2 = 0.9, 0.99
    weight_decay = 1e-1
    grad_clip = 1.0
    warmup_iters = 100
    decay_lr = True
    rng = np.random.default_rng(batch_seed)

    def get_batch(split):
        data = train_data
        ix = rng.integers(len(data) - block_size, size=(batch_size,))  # nanoGPT: torch.randint
        x = torch.stack([torch.from_numpy((data[i:i + block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + block_size]).astype(np.int64)) for i in ix])
        x, y = x.to(device), y.to(device)
        return x, y

    def get_lr(it):
        # 1) linear warmup for warmup_iters steps
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        # 2) if it > lr_decay_iters, return min learning rate
        if it > lr_decay_iters:
            return min_lr
        # 3) in between, use cosine decay down to min learning rate
        decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
        assert 0 <= decay_ratio <= 1
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
        return min_lr + coeff * (learning_rate - min_lr)

    model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                      bias=False, vocab_size=vocab_size, dropout=0.0)
    model = GPT(GPTConfig(**model_args))
    if state is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.to(device)
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)

    X, Y = get_batch('train')  # fetch the very first batch
    iter_num = 0

    def train_step() -> float:
        nonlocal X, Y, iter_num
        # determine and set the learning rate for this iteration
        lr = get_lr(iter_num) if decay_lr else learning_rate
        for param_group in optimizer.param_groups:
            param_group['lr'] = lr
        logits, loss = model(X, Y)
        # immediately async prefetch next batch while model is doing the forward pass on the GPU
        X, Y = get_batch('train')
        loss.backward()
        # clip the gradient
        if grad_clip != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        # flush the gradients as soon as we can, no need for this memory anymore
        optimizer.zero_grad(set_to_none=True)
        iter_num += 1
        return loss.item()

    return model, train_step, batch_size * block_size


# ---------------------------------------------------------------------------------------------- runner


class Side:
    """One framework's run of one program: its model, its step function, step times and losses."""

    def __init__(self, name: str, model: Any, train_step: Callable[[], float], tokens: int) -> None:
        self.name, self.model, self.train_step, self.tokens = name, model, train_step, tokens
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, record: bool) -> None:
        t0 = time.perf_counter()
        loss = self.train_step()
        elapsed = time.perf_counter() - t0
        self.losses.append(loss)
        if record:
            self.times.append(elapsed)


def build_sides(program: str, tl: Any, pt: Any, data: dict[str, Any], seed: int = 0) -> list[Side]:
    """tinygrad_lm's side of ``program`` (and PyTorch's, built first, whose initial weights tinygrad_lm's gets)."""

    def build(fw: Any, state: dict[str, Any] | None) -> tuple[Any, Callable[[], float], int]:
        fw.manual_seed(seed)
        if program == "nanogpt":
            return nanogpt(fw, data["text"], batch_seed=seed, state=state)
        return makemore(fw, program, data["names"], batch_seed=seed, state=state)

    sides = []
    state = None
    if pt is not None:
        model, step, tokens = build(pt, None)
        state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        sides.append(Side("torch", model, step, tokens))
    model, step, tokens = build(tl, state)
    sides.insert(0, Side("tinygrad_lm", model, step, tokens))
    return sides


def run_interleaved(sides: list[Side], steps: int, warmup: int) -> None:
    """``warmup`` untimed then ``steps`` timed steps of every side, alternating, the order swapped every step."""
    for i in range(warmup + steps):
        for side in sides if i % 2 == 0 else sides[::-1]:
            side.step(record=i >= warmup)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_threads(value: str) -> int:
    if value == "all":
        return cores()
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be at least 1 or 'all', got {value}")
    return n


_BLAS_LIMIT: Any = None  # threadpoolctl's handle, kept alive for the process


def set_threads(n: int, pt: Any) -> str:
    """Run both frameworks on ``n`` threads; returns how. Call before importing NumPy (the fallback needs it)."""
    global _BLAS_LIMIT
    how = []
    if importlib.util.find_spec("threadpoolctl") is None:
        if "numpy" in sys.modules:
            how.append("NumPy was imported before the thread limit and threadpoolctl is missing: BLAS NOT limited")
        else:
            for var in THREAD_ENV_VARS:
                os.environ[var] = str(n)
            how.append(f"{'/'.join(THREAD_ENV_VARS)}={n} before NumPy's import")
    import tinygrad_lm as tl

    try:  # load Numba now, if the fast path uses it, so that a thread limit reaches its pool too
        from tinygrad_lm.fast import compiler

        compiler.numba_available()
    except (ImportError, AttributeError):
        pass
    if hasattr(tl, "set_num_threads"):
        tl.set_num_threads(n)
        how.append(f"tinygrad_lm.set_num_threads({n})")
    else:
        if importlib.util.find_spec("threadpoolctl") is not None:
            import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl sees it)
            import threadpoolctl

            _BLAS_LIMIT = threadpoolctl.threadpool_limits(limits=n, user_api="blas")
            how.append(f"threadpoolctl.threadpool_limits({n}, user_api='blas')")
        numba = sys.modules.get("numba")
        if numba is not None:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            how.append(f"numba.set_num_threads({min(n, numba.config.NUMBA_NUM_THREADS)})")
    numba = sys.modules.get("numba")
    if numba is not None:
        # The first use of Numba's thread pool starts its threading layer, which (with the OpenMP layer)
        # resets the OpenMP thread count PyTorch uses (numba/numba#9387): start it now, set PyTorch's after.
        numba.get_num_threads()
    if pt is not None:
        pt.set_num_threads(n)
        how.append(f"torch.set_num_threads({n})")
    return "; ".join(how)


def threads_in_effect(pt: Any) -> list[str]:
    """What each thread pool in the process says it uses now."""
    lines = []
    if pt is not None:
        lines.append(f"torch.get_num_threads() = {pt.get_num_threads()}")
    tl = sys.modules.get("tinygrad_lm")
    if tl is not None and hasattr(tl, "get_num_threads"):
        lines.append(f"tinygrad_lm.get_num_threads() = {tl.get_num_threads()}")
    numba = sys.modules.get("numba")
    if numba is not None:
        lines.append(f"numba.get_num_threads() = {numba.get_num_threads()} (threading layer "
                     f"{numba.config.THREADING_LAYER})")
    try:
        import threadpoolctl
    except ImportError:
        lines.append("threadpoolctl not installed: the BLAS pools cannot be listed")
        return lines
    for info in threadpoolctl.threadpool_info():
        lines.append(f"threadpoolctl: {info['user_api']} {info['internal_api']} {info.get('version') or ''} "
                     f"num_threads={info['num_threads']} ({os.path.basename(info['filepath'])})")
    return lines


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Restart Linux's peak-RSS count (VmHWM) from the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def expand_programs(names: str) -> list[str]:
    out: list[str] = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        chosen = MAKEMORE_MODELS if name == "makemore" else (name,)
        for c in chosen:
            if c not in PROGRAMS:
                raise SystemExit(f"unknown program {c!r}; known: makemore, {', '.join(PROGRAMS)}")
            if c not in out:
                out.append(c)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--programs", default="makemore,nanogpt",
                   help=f"comma-separated: makemore (its six models), nanogpt, or models ({', '.join(PROGRAMS)})")
    p.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per framework first")
    p.add_argument("--threads", type=parse_threads, default=1, help="threads for both frameworks: N or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the batches")
    p.add_argument("--no-torch", action="store_true", help="run tinygrad_lm alone even if PyTorch is installed")
    p.add_argument("--isolated", type=int, default=0, metavar="ROUNDS",
                   help="also time each framework alone in fresh processes, ROUNDS rounds (no cross-framework "
                        "thread contention; see benchmarks/README.md)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)  # "framework:program", an isolated run
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    args.programs = expand_programs(args.programs)
    return args


def worker(args: argparse.Namespace) -> int:
    """In a fresh process: one framework's run of one program alone; prints its median ms per step (JSON)."""
    fw_name, program = args._worker.split(":")
    pt = None
    if fw_name == "torch":
        import torch as pt
    set_threads(args.threads, pt)
    import tinygrad_lm as tl

    data = {"names": make_names(), "text": None}
    data["text"] = make_text(data["names"])
    side = next(s for s in build_sides(program, tl, pt, data, seed=args.seed) if s.name == fw_name)
    run_interleaved([side], args.steps, args.warmup)
    print(json.dumps({"ms_per_step": 1e3 * statistics.median(side.times)}))
    return 0


def isolated_table(args: argparse.Namespace, frameworks: list[str]) -> None:
    """Each framework alone in a fresh process per program and round (see bench_train_step.isolated_table):
    in one process, each library's idle thread pools spin into the other's steps."""
    print(f"\nisolated: each framework alone in a fresh process, median of {args.steps} steps after {args.warmup}, "
          f"{args.isolated} rounds, order swapped every round")
    print_isolated_rows(frameworks, args.isolated, ("program", "tl ms/step", "torch ms/step"), (13, 12, 15),
                        args.programs, lambda fw, program: run_worker(fw, program, args))


def run_worker(fw: str, program: str, args: argparse.Namespace) -> float:
    """The median ms per step of ``program`` run by ``fw`` alone in a fresh process (:func:`worker`)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", f"{fw}:{program}", "--threads",
           str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"worker {fw}:{program} failed:\n{res.stderr}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["ms_per_step"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._worker:
        return worker(args)
    pt = None
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        import torch as pt
    how = set_threads(args.threads, pt)
    import numpy as np

    import tinygrad_lm as tl

    print(f"tinygrad_lm {tl.__version__}, NumPy {np.__version__}, "
          + (f"PyTorch {pt.__version__}" if pt is not None else "no PyTorch (not installed, or --no-torch)"))
    print(f"threads: {args.threads} of {cores()} cores ({how})")
    for line in threads_in_effect(pt):
        print("  " + line)
    data = {"names": make_names(), "text": None}
    data["text"] = make_text(data["names"])
    print(f"data: {len(data['names'])} made-up names (makemore), {len(data['text']):,} characters of made-up "
          f"text (nanogpt)")
    print(f"median of {args.steps} timed steps after {args.warmup} warm-up steps, frameworks interleaved; "
          "a step is the loop body: batch, forward, backward, optimizer, loss.item()\n")
    has_torch = pt is not None
    head = ["program", "params", "tokens", "tl ms/step"]
    widths = [13, 10, 8, 12]
    if has_torch:
        head += ["torch ms/step", "ratio"]
        widths += [15, 8]
    head += ["peak RSS +MB"]
    widths += [14]
    print(fmt_row(head, widths), flush=True)
    checks, failures = [], []
    for program in args.programs:
        before = rss_bytes()
        can_peak = reset_peak()
        sides = build_sides(program, tl, pt, data, seed=args.seed)
        run_interleaved(sides, args.steps, args.warmup)
        growth = f"{(peak_rss() - before) / 2**20:.1f}" if can_peak else "n/a"
        ours = sides[0]
        n_params = sum(p.numel() for p in ours.model.parameters())
        med = {s.name: statistics.median(s.times) for s in sides}
        row: list[Any] = [program, f"{n_params:,}", ours.tokens, f"{med['tinygrad_lm'] * 1e3:.2f}"]
        if has_torch:
            theirs = sides[1]
            row += [f"{med['torch'] * 1e3:.2f}", f"{med['torch'] / med['tinygrad_lm']:.2f}"]
            d0 = abs(ours.losses[0] - theirs.losses[0])
            dn = abs(ours.losses[-1] - theirs.losses[-1])
            ok = d0 <= 1e-4 * max(1.0, abs(theirs.losses[0]))
            if not ok:
                failures.append(program)
            checks.append(f"{program:<12} first loss tinygrad_lm {ours.losses[0]:.6f} torch {theirs.losses[0]:.6f} "
                          f"|diff| {d0:.1e} {'ok' if ok else 'MISMATCH'}; after {len(ours.losses)} steps "
                          f"{ours.losses[-1]:.6f} vs {theirs.losses[-1]:.6f}, |diff| {dn:.1e}")
        else:
            checks.append(f"{program:<12} first loss {ours.losses[0]:.6f}, after {len(ours.losses)} steps "
                          f"{ours.losses[-1]:.6f}")
        row.append(growth)
        print(fmt_row(row, widths), flush=True)
        del sides
    print()
    if has_torch:
        print("ratio = tinygrad_lm tokens/s / torch tokens/s = torch ms / tinygrad_lm ms (> 1: tinygrad_lm is faster)")
    print(f"peak RSS +MB: the process's peak RSS while the program ran{' (both frameworks)' if has_torch else ''} over "
          "its RSS before; the first program's includes what the libraries load on first use (Numba's compiler...)")
    print("\nsanity check (same initial weights, same batches):" if has_torch else "\nlosses:")
    for line in checks:
        print("  " + line)
    if args.isolated:
        isolated_table(args, ["tinygrad_lm"] + (["torch"] if has_torch else []))
    print("\nthreads in effect after the runs:")
    for line in threads_in_effect(pt):
        print("  " + line)
    if pt is not None and pt.get_num_threads() != args.threads:
        print(f"WARNING: PyTorch ended on {pt.get_num_threads()} threads, not {args.threads}: something reset its "
              "OpenMP thread count during the runs; its times are not at the requested thread count", file=sys.stderr)
    if failures:
        print(f"\nFAILED: the first losses of {', '.join(failures)} differ between the frameworks by more than 1e-4",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
