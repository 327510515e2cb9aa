'''A makemore-style name generator written for PyTorch runs on tinygrad_lm with only its imports changed.

``PROGRAM`` is plain PyTorch code: its own ``Dataset``, ``DataLoader`` with ``RandomSampler(replacement=True,
num_samples=...)``, worker processes and ``pin_memory``; bigram, MLP, RNN and GRU cells written by hand, and a
causal bag-of-words model (a ``register_buffer`` mask, ``masked_fill``, softmax); training by manual SGD through
``p.data``; accuracy with ``_, pred = logits.max(1)`` under ``torch.inference_mode()``; sampling with
``torch.multinomial`` and a ``torch.Generator``. It is executed twice, as written and with its imports swapped
for tinygrad_lm's; starting from PyTorch's weights, every model must give the same losses, in float64, step
after step, the same accuracy and the same greedy samples.
'''
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the tinygrad_lm half of the program still runs
    torch = None

TORCH_IMPORTS = """import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler
"""
TL_IMPORTS = """import tinygrad_lm as torch
import tinygrad_lm.nn as nn
import tinygrad_lm.nn.functional as F
from tinygrad_lm.utils.data import DataLoader, Dataset, RandomSampler
"""

PROGRAM = '''
WORDS = """emma olivia ava isabella sophia charlotte mia amelia harper evelyn abigail emily elizabeth mila ella
avery sofia camila aria scarlett victoria madison luna grace chloe penelope layla riley zoey nora lily eleanor
hannah lillian addison aubrey ellie stella natalie zoe leah hazel violet aurora savannah audrey brooklyn""".split()
CHARS = sorted(set("".join(WORDS)))
STOI = {ch: i + 1 for i, ch in enumerate(CHARS)}
STOI["."] = 0
ITOS = {i: ch for ch, i in STOI.items()}
VOCAB = len(STOI)
BLOCK = 3


class NamesDataset(Dataset):
    """(context of BLOCK previous characters, next character) for every position of every name."""

    def __init__(self, words, block_size):
        xs, ys = [], []
        for w in words:
            context = [0] * block_size
            for ch in w + ".":
                ix = STOI[ch]
                xs.append(list(context))
                ys.append(ix)
                context = context[1:] + [ix]
        self.X = torch.tensor(xs)
        self.Y = torch.tensor(ys)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.Y[i]


class Bigram(nn.Module):
    def __init__(self, n_embd=8, n_hidden=16):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(VOCAB, VOCAB) * 0.1)

    def forward(self, idx, targets=None):
        logits = self.logits[idx[:, -1]]
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


class MLP(nn.Module):
    def __init__(self, n_embd=8, n_hidden=16):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, n_embd)
        self.mlp = nn.Sequential(nn.Linear(BLOCK * n_embd, n_hidden), nn.Tanh(), nn.Linear(n_hidden, VOCAB))

    def forward(self, idx, targets=None):
        emb = self.wte(idx)  # (B, T, C)
        logits = self.mlp(emb.view(emb.size(0), -1))
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


class RNNCell(nn.Module):
    def __init__(self, n_embd, n_hidden):
        super().__init__()
        self.xh_to_h = nn.Linear(n_embd + n_hidden, n_hidden)

    def forward(self, xt, hprev):
        return F.tanh(self.xh_to_h(torch.cat([xt, hprev], dim=1)))


class GRUCell(nn.Module):
    def __init__(self, n_embd, n_hidden):
        super().__init__()
        self.xh_to_z = nn.Linear(n_embd + n_hidden, n_hidden)
        self.xh_to_r = nn.Linear(n_embd + n_hidden, n_hidden)
        self.xh_to_hbar = nn.Linear(n_embd + n_hidden, n_hidden)

    def forward(self, xt, hprev):
        xh = torch.cat([xt, hprev], dim=1)
        r = F.sigmoid(self.xh_to_r(xh))
        hbar = F.tanh(self.xh_to_hbar(torch.cat([xt, r * hprev], dim=1)))
        z = F.sigmoid(self.xh_to_z(xh))
        return (1 - z) * hprev + z * hbar


class RNN(nn.Module):
    def __init__(self, n_embd=8, n_hidden=16, cell_type="rnn"):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(1, n_hidden))
        self.wte = nn.Embedding(VOCAB, n_embd)
        self.cell = RNNCell(n_embd, n_hidden) if cell_type == "rnn" else GRUCell(n_embd, n_hidden)
        self.lm_head = nn.Linear(n_hidden, VOCAB)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        emb = self.wte(idx)  # (B, T, C)
        hprev = self.start.expand((b, -1))
        hiddens = []
        for i in range(t):
            hprev = self.cell(emb[:, i, :], hprev)
            hiddens.append(hprev)
        hidden = torch.stack(hiddens, 1)  # (B, T, H)
        logits = self.lm_head(hidden)[:, -1, :]
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


class BoW(nn.Module):
    def __init__(self, n_embd=8, n_hidden=16):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, n_embd)
        self.wpe = nn.Embedding(BLOCK, n_embd)
        self.register_buffer("bias", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, BLOCK, BLOCK))
        self.mlp = nn.Sequential(nn.Linear(n_embd, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_embd))
        self.lm_head = nn.Linear(n_embd, VOCAB)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long).unsqueeze(0)  # (1, T)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        att = torch.zeros((b, t, t), dtype=x.dtype)
        att = att.masked_fill(self.bias[:, :t, :t] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        x = x + att @ x  # (B, T, C)
        x = x + self.mlp(x)
        logits = self.lm_head(x)[:, -1, :]
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


MODELS = {"bigram": Bigram, "mlp": MLP, "rnn": RNN, "gru": lambda: RNN(cell_type="gru"), "bow": BoW}


def sgd_steps(model, batches, lr=0.1):
    losses = []
    for X, Y in batches:
        logits, loss = model(X, Y)
        for p in model.parameters():
            p.grad = None
        loss.backward()
        for i, p in enumerate(model.parameters()):
            if i % 2:
                p.data -= lr * p.grad
            else:
                p.data.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return losses


@torch.inference_mode()
def accuracy(model, X, Y):
    logits, _ = model(X)
    _, pred = logits.max(1)
    return (pred == Y).float().mean().item()


@torch.no_grad()
def generate(model, n, top_k=None, generator=None):
    idx = torch.zeros((2, BLOCK), dtype=torch.long)
    for _ in range(n):
        logits, _ = model(idx[:, -BLOCK:])
        if top_k is not None:
            v, _ = torch.topk(logits, top_k)
            logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        ix = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat((idx, ix), dim=1)
    return ["".join(ITOS[i] for i in row) for row in idx[:, BLOCK:].tolist()]


def random_batches(dataset, steps, batch_size=8, workers=2, seed=0):
    """The training loop's loader: sampling with replacement, worker processes, pinned memory."""
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=steps * batch_size, generator=g)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=True)
    return list(loader)
'''


def _run(imports: str) -> dict:
    module = types.ModuleType("names_program")
    sys.modules["names_program"] = module
    try:
        exec(compile(imports + PROGRAM, "<names program>", "exec"), module.__dict__)
    finally:
        del sys.modules["names_program"]
    return module.__dict__


MODEL_NAMES = ["bigram", "mlp", "rnn", "gru", "bow"]


def test_the_program_trains_every_model_on_tinygrad_lm_alone():
    ns = _run(TL_IMPORTS)
    dataset = ns["NamesDataset"](ns["WORDS"], ns["BLOCK"])
    batches = ns["random_batches"](dataset, steps=6)
    assert len(batches) == 6 and all(x.shape == (8, 3) and y.shape == (8,) for x, y in batches)
    assert all(x.dtype == ns["torch"].int64 for x, _ in batches)
    for name in MODEL_NAMES:
        model = ns["MODELS"][name]()
        first = ns["sgd_steps"](model, batches[:1] * 20, lr=0.5)
        assert first[-1] < first[0], f"{name}: 20 SGD steps on one batch did not lower its loss ({first})"
        acc = ns["accuracy"](model, dataset.X, dataset.Y)
        assert 0.0 <= acc <= 1.0
        names = ns["generate"](model, 5, top_k=3, generator=ns["torch"].Generator().manual_seed(1))
        assert len(names) == 2 and all(len(n) == 5 and set(n) <= set(ns["STOI"]) for n in names)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_program_matches_torch(name):
    ours_ns, theirs_ns = _run(TL_IMPORTS), _run(TORCH_IMPORTS)
    torch.manual_seed(0)
    theirs = theirs_ns["MODELS"][name]().double()
    ours = ours_ns["MODELS"][name]().double()
    assert repr(ours.load_state_dict(theirs.state_dict())) == "<All keys matched successfully>"
    assert repr(ours) == repr(theirs)

    ours_data = ours_ns["NamesDataset"](ours_ns["WORDS"], ours_ns["BLOCK"])
    theirs_data = theirs_ns["NamesDataset"](theirs_ns["WORDS"], theirs_ns["BLOCK"])
    assert len(ours_data) == len(theirs_data)
    np.testing.assert_array_equal(ours_data.X.numpy(), theirs_data.X.numpy())
    # the same fixed batches for both (each framework's random sampler draws its own order)
    order = np.random.default_rng(0).integers(0, len(ours_data), size=(8, 16))
    ours_batches = [ours_data[ours_ns["torch"].tensor(rows)] for rows in order]
    theirs_batches = [theirs_data[torch.tensor(rows)] for rows in order]

    ours_losses = ours_ns["sgd_steps"](ours, ours_batches)
    theirs_losses = theirs_ns["sgd_steps"](theirs, theirs_batches)
    np.testing.assert_allclose(ours_losses, theirs_losses, rtol=1e-10)
    for (key, ours_p), (_, theirs_p) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(ours_p.detach().numpy(), theirs_p.detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=key)
    assert ours_ns["accuracy"](ours, ours_data.X, ours_data.Y) == theirs_ns["accuracy"](theirs, theirs_data.X,
                                                                                         theirs_data.Y)
    assert ours_ns["generate"](ours, 6, top_k=1) == theirs_ns["generate"](theirs, 6, top_k=1)  # greedy
