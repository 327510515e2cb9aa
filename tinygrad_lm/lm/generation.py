"""Sampling text from a trained language model.

At every step the model gives logits z over the vocabulary for the next token;
we turn them into probabilities p = softmax(z / temperature) (keeping only the
``top_k`` largest when asked) and roll the weighted die: draw u ~ U(0, 1) and
take the first token whose cumulative probability exceeds u. ``greedy=True``
(or ``temperature=0``) takes the most probable token instead. Sampling runs on
the host with one generator, so a seed gives the same text on CPU and GPU.

Each new token costs O(1) model work: recurrent models carry their hidden
state, the Transformer reuses its cached keys and values (``model.step``).
A Transformer sees at most ``block_size`` tokens: once the text is longer, each
new token is predicted from the last ``block_size`` tokens (a sliding window,
re-read with ``model.prefill`` because learned positions do not shift).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, creation, generators
from ..autograd import no_grad
from ..tensor import Tensor


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")


def _check_logits(z: np.ndarray, where: str) -> None:
    """Every row of ``z (B, V)`` must give a distribution: no NaN, no +inf, not all -inf."""
    bad = np.isnan(z).any(axis=-1) | np.isposinf(z).any(axis=-1) | np.isneginf(z).all(axis=-1)  # (B,)
    if bad.any():
        row = int(bad.argmax())
        what = "NaN" if np.isnan(z[row]).any() else "+inf" if np.isposinf(z[row]).any() else "-inf everywhere"
        raise RuntimeError(f"{where}the logits of batch row {row} are {what}, so no token can be drawn "
                           "(are the model's weights or inputs finite?)")


def sample_from_logits(logits: Any, rng: np.random.Generator, temperature: float = 1.0,
                       top_k: int | None = None, greedy: bool = False) -> np.ndarray:
    """One token id per row of ``logits (B, V)`` as an int64 array ``(B,)``.

    p = softmax(z / temperature) over the ``top_k`` largest z (ties with the k-th are kept);
    ``greedy`` or ``temperature == 0`` returns argmax z.
    """
    _check_sampling(temperature, top_k)
    z = np.asarray(backend.to_host(logits) if backend.is_backend_array(logits) else logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"logits must have shape (B, V) with V >= 1, got {z.shape}")
    _check_logits(z, "sample_from_logits: ")
    if greedy or temperature == 0:
        return z.argmax(axis=-1).astype(np.int64)
    z = z / temperature
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]  # (B, 1)
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)  # (B, V), unnormalised; masked entries are exactly 0
    cdf = p.cumsum(axis=-1)  # (B, V)
    u = rng.random((z.shape[0], 1)) * cdf[:, -1:]  # (B, 1), uniform on [0, total)
    picked = (cdf <= u).sum(axis=-1)  # the first i with u < cdf_i
    last_possible = z.shape[1] - 1 - (p[:, ::-1] > 0).argmax(axis=-1)  # rounding must not pick a p = 0 token
    return np.minimum(picked, last_possible).astype(np.int64)


def generate(model: Any, idx: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             greedy: bool = False, seed: int | None = None) -> Tensor:
    """Continue the prompts ``idx (B, T)`` (or ``(T,)``) by ``max_new_tokens`` tokens: ``(B, T + max_new_tokens)``.

    ``seed`` makes the draw reproducible; without it tinygrad_lm's CPU generator is used (``tl.manual_seed``).
    The model runs in eval mode without a graph and is put back in the mode it was in.
    """
    _check_sampling(temperature, top_k)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    prompt = backend.to_host(idx.array) if isinstance(idx, Tensor) else np.asarray(idx)
    if prompt.dtype.kind not in "iu":
        raise TypeError(f"the prompt must hold integer token ids, got dtype {prompt.dtype}")
    if prompt.ndim == 1:
        prompt = prompt[None, :]  # (1, T)
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"the prompt must have shape (B, T) or (T,) with T >= 1, got {prompt.shape}")
    if prompt.shape[0] == 0:
        raise ValueError(f"the prompt batch is empty (shape {prompt.shape}); give at least one prompt")
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else "cpu"
    rng = np.random.default_rng(seed) if seed is not None else generators.generator("cpu")
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    B, T = prompt.shape
    tokens = np.empty((B, T + max_new_tokens), dtype=np.int64)  # (B, T + N)
    tokens[:, :T] = prompt
    was_training = model.training
    model.eval()
    try:
        with no_grad(), np.errstate(all="ignore"):  # non-finite logits are caught below, not warned about
            start = 0 if block_size is None else max(0, T - block_size)
            logits, state = model.prefill(creation.tensor(tokens[:, start:T], device=device))
            length = T - start
            for n in range(T, T + max_new_tokens):
                z = backend.to_host(logits.array)  # (B, V)
                _check_logits(z, f"generate: at step {n - T + 1} of {max_new_tokens} (token {n} of the text), ")
                tokens[:, n] = sample_from_logits(z, rng, temperature, top_k, greedy)
                if n + 1 == T + max_new_tokens:
                    break
                if block_size is not None and length == block_size:  # window full: slide it by one
                    logits, state = model.prefill(creation.tensor(tokens[:, n + 1 - block_size:n + 1], device=device))
                else:
                    logits, state = model.step(creation.tensor(tokens[:, n], device=device), state)
                    length += 1
    finally:
        model.train(was_training)
    return creation.tensor(tokens, device=device)
