'''A nanoGPT-style program written for PyTorch runs on tinygrad_lm with only its imports changed.

``PROGRAM`` below is plain PyTorch code (custom LayerNorm with an optional bias, causal self-attention
by hand with ``masked_fill`` + softmax or through ``F.scaled_dot_product_attention``, an MLP with GELU,
weight tying, ``model.apply(self._init_weights)`` with ``isinstance`` checks and ``torch.nn.init``,
parameter groups by ``p.dim() >= 2`` for AdamW, ``generate`` under ``@torch.no_grad()`` with
``torch.topk`` and ``torch.multinomial``). It is executed twice: as written, and with its
three import lines swapped for tinygrad_lm's. After loading PyTorch's state_dict, the two models
must agree in float64 on logits, loss, every parameter gradient, a few AdamW steps and greedy
(top_k=1) generation.
'''
from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

import tinygrad_lm as tl

try:
    import torch
except ImportError:  # the tinygrad_lm half of the program still runs
    torch = None

TORCH_IMPORTS = """import torch
import torch.nn as nn
from torch.nn import functional as F
"""
TL_IMPORTS = """import tinygrad_lm as torch
import tinygrad_lm.nn as nn
from tinygrad_lm.nn import functional as F
"""

PROGRAM = '''
import math
from dataclasses import dataclass


class LayerNorm(nn.Module):
    """LayerNorm but with an optional bias."""

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
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.flash = config.flash and hasattr(torch.nn.functional, "scaled_dot_product_attention")
        if not self.flash:
            self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                                 .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.flash:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True
            )
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


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
    block_size: int = 8
    vocab_size: int = 11
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 8
    dropout: float = 0.0
    bias: bool = True
    flash: bool = False


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
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
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=device)  # (t,)
        tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])  # only the last position
            loss = None
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        param_dict = {pn: p for pn, p in self.named_parameters()}
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        num_decay_params = sum(p.numel() for p in decay_params)
        num_nodecay_params = sum(p.numel() for p in nodecay_params)
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)
        return optimizer, (len(decay_params), num_decay_params, len(nodecay_params), num_nodecay_params)
'''


def _run(imports: str) -> dict:
    """Execute the program as a module of its own (dataclasses look their module up in sys.modules)."""
    module = types.ModuleType("gpt_program")
    sys.modules["gpt_program"] = module
    try:
        exec(compile(imports + PROGRAM, "<gpt program>", "exec"), module.__dict__)
    finally:
        del sys.modules["gpt_program"]
    return module.__dict__


def _build(flash: bool, bias: bool):
    ours_ns, theirs_ns = _run(TL_IMPORTS), _run(TORCH_IMPORTS)
    torch.manual_seed(0)
    theirs = theirs_ns["GPT"](theirs_ns["GPTConfig"](flash=flash, bias=bias)).double()
    ours = ours_ns["GPT"](ours_ns["GPTConfig"](flash=flash, bias=bias)).double()
    return ours, theirs


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("flash", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_program_matches_torch(flash, bias):
    ours, theirs = _build(flash, bias)
    # PyTorch's state_dict, tied weight under both names, loads unchanged (torch tensors, strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "lm_head.weight" in ours.state_dict() and "transformer.wte.weight" in ours.state_dict()
    assert repr(ours.load_state_dict(theirs.state_dict())) == "<All keys matched successfully>"
    assert ours.transformer.wte.weight is ours.lm_head.weight
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert ours.get_num_params() == theirs.get_num_params()  # the tied weight counts once
    assert ours.get_num_params(non_embedding=False) == theirs.get_num_params(non_embedding=False)

    rng = np.random.default_rng(0)
    idx = rng.integers(0, 11, size=(3, 7))
    targets = rng.integers(0, 11, size=(3, 7))
    targets[0, 2] = -1  # ignore_index=-1
    opt_ours, counts_ours = ours.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
    opt_theirs, counts_theirs = theirs.configure_optimizers(0.1, 1e-2, (0.9, 0.95))
    assert counts_ours == counts_theirs
    for step in range(3):
        logits, loss = ours(tl.tensor(idx), tl.tensor(targets))
        ref_logits, ref_loss = theirs(torch.tensor(idx), torch.tensor(targets))
        np.testing.assert_allclose(logits.detach().numpy(), ref_logits.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-10)
        opt_ours.zero_grad(set_to_none=True)
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        ref_loss.backward()
        ref_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(
                p.grad.numpy(), ref_params[name].grad.numpy(), rtol=1e-7, atol=1e-12,
                err_msg=f"step {step}: gradient of {name}",
            )
        opt_ours.step()
        opt_theirs.step()
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.detach().numpy(), dict(theirs.named_parameters())[name].detach().numpy(), rtol=1e-7, atol=1e-10,
            err_msg=f"after 3 AdamW steps: {name}",
        )
    logits, loss = ours(tl.tensor(idx))
    assert loss is None and logits.shape == (3, 1, 11)
    # generation with top_k=1 is greedy, so both frameworks must pick the same tokens (past block_size too)
    out = ours.generate(tl.tensor(idx[:, :3]), max_new_tokens=7, temperature=0.8, top_k=1)
    ref = theirs.generate(torch.tensor(idx[:, :3]), max_new_tokens=7, temperature=0.8, top_k=1)
    assert out.shape == (3, 10) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), ref.numpy())


def test_gpt_program_init_follows_the_program():
    tl.manual_seed(0)
    ours = _run(TL_IMPORTS)["GPT"](_run(TL_IMPORTS)["GPTConfig"](n_embd=64, n_head=4, n_layer=2, vocab_size=50))
    c_attn = ours.transformer.h[0].attn.c_attn
    assert abs(float(c_attn.weight.detach().numpy().std()) - 0.02) < 0.002  # _init_weights via apply
    assert np.all(c_attn.bias.detach().numpy() == 0)
    c_proj = ours.transformer.h[1].mlp.c_proj.weight.detach().numpy()
    assert abs(float(c_proj.std()) - 0.02 / math.sqrt(4)) < 0.0015  # the scaled residual init
    assert abs(float(ours.transformer.wpe.weight.detach().numpy().std()) - 0.02) < 0.003
    n_linear = sum(isinstance(m, tl.nn.Linear) for m in ours.modules())
    assert n_linear == 2 * 4 + 1
