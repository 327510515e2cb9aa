"""Cutting a token stream into what language models train on.

- ``split_stream``: contiguous train / validation / test spans (no shuffling, so no
  text leaks between them through overlapping windows).
- ``lm_windows``: every window of ``block_size`` tokens as a Dataset of ``(x, y)``
  pairs, ``y`` being ``x`` shifted one token ahead; a shuffled ``DataLoader`` over it
  gives random-window mini-batches (the recipe of feed-forward and Transformer LMs).
- ``BPTTBatcher``: ``batch_size`` parallel contiguous streams read ``bptt`` steps at a
  time, so a recurrent model can carry its hidden state from one chunk to the next
  (truncated backpropagation through time).
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np

from .. import backend, generators
from ..tensor import Tensor
from .dataset import Dataset


def _as_ids(ids: Any) -> np.ndarray:
    if isinstance(ids, Tensor):
        ids = ids.numpy()
    array = np.asarray(backend.to_host(ids) if backend.is_backend_array(ids) else ids)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D stream of token ids, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"token ids must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def split_stream(ids: Any, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> tuple[np.ndarray, ...]:
    """Cut ``ids`` into consecutive spans of the given fractions (they must sum to 1).

    Span ``k`` is ``ids[round(F_{k-1} n) : round(F_k n)]`` where ``F_k`` is the running
    sum of the fractions, so the spans are disjoint, cover the stream, and depend only
    on ``len(ids)`` and ``fractions``. Returns int64 arrays (views when possible).
    """
    ids = _as_ids(ids)
    fracs = [float(f) for f in fractions]
    if not fracs or any(f < 0 for f in fracs):
        raise ValueError(f"fractions must be non-negative, got {tuple(fractions)}")
    if abs(sum(fracs) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {tuple(fractions)} (sum {sum(fracs)})")
    n = len(ids)
    bounds = [0]
    running = 0.0
    for f in fracs[:-1]:
        running += f
        bounds.append(min(n, int(math.floor(running * n + 0.5))))
    bounds.append(n)
    return tuple(ids[a:b] for a, b in zip(bounds[:-1], bounds[1:]))


class LMWindowDataset(Dataset):
    """All windows of a stream: example ``i`` is ``(x, y) = (ids[s:s+T], ids[s+1:s+T+1])``, ``s = i * stride``.

    ``y[t]`` is the token that follows ``x[:t+1]``: the target of next-token prediction
    at every position. ``get_batch`` gathers a whole batch with one fancy-index on the
    device the stream lives on.
    """

    def __init__(self, ids: Any, block_size: int, stride: int = 1, device: Any = None) -> None:
        if block_size < 1 or stride < 1:
            raise ValueError(f"block_size and stride must be positive, got {block_size} and {stride}")
        host = _as_ids(ids)
        if len(host) < block_size + 1:
            raise ValueError(f"a stream of {len(host)} tokens is too short for windows of block_size {block_size} + 1")
        self.block_size = block_size
        self.stride = stride
        self.device = backend.canonical_device(device)
        self.xp = backend.get_xp(self.device)
        self.ids = backend.to_device(host, self.device)
        self._n = (len(host) - block_size - 1) // stride + 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -self._n <= index < self._n:
            raise IndexError(f"window {index} is out of range for {self._n} windows")
        s = (index % self._n) * self.stride
        x = self.ids[s : s + self.block_size]  # (T,)
        y = self.ids[s + 1 : s + self.block_size + 1]  # (T,)
        return Tensor._wrap(x.copy(), self.device), Tensor._wrap(y.copy(), self.device)

    def get_batch(self, indices: Any) -> tuple[Tensor, Tensor]:
        xp = self.xp
        starts = backend.to_device(np.asarray(indices, dtype=np.int64) * self.stride, self.device)  # (B,)
        window = self.ids[starts[:, None] + xp.arange(self.block_size + 1)]  # (B, T+1)
        x = xp.ascontiguousarray(window[:, :-1])  # (B, T)
        y = xp.ascontiguousarray(window[:, 1:])  # (B, T)
        return Tensor._wrap(x, self.device), Tensor._wrap(y, self.device)


def lm_windows(ids: Any, block_size: int, stride: int = 1, device: Any = None) -> LMWindowDataset:
    """The Dataset of next-token windows of ``ids``; wrap it in ``DataLoader(..., shuffle=True, seed=...)``."""
    return LMWindowDataset(ids, block_size, stride=stride, device=device)


class BPTTBatcher:
    """Chunks of ``bptt`` steps from ``batch_size`` parallel streams, for recurrent LMs.

    The stream is cut into ``batch_size`` contiguous pieces of ``L = len(ids) // batch_size``
    tokens (the tail that does not fill a row is dropped), one per row of a ``(B, L)``
    array. Chunk ``k`` is ``x = data[:, i:i+T]``, ``y = data[:, i+1:i+1+T]`` with
    ``i = k * bptt`` and ``T = min(bptt, L - 1 - i)``, both ``(B, T)``. Row ``b`` of chunk
    ``k+1`` continues row ``b`` of chunk ``k``, so the hidden state at the end of one chunk
    (detached) is the right initial state for the next.

    Iterating yields the chunks from the current position to the end of the epoch; the
    position advances as each chunk is handed out, and ``state_dict()`` /
    ``load_state_dict()`` save and restore it so a resumed run continues at the same chunk.
    Iterating again after the last chunk starts the next epoch (position 0, ``epoch + 1``).
    """

    def __init__(self, ids: Any, batch_size: int, bptt: int, drop_last: bool = False, device: Any = None) -> None:
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"batch_size and bptt must be positive, got {batch_size} and {bptt}")
        host = _as_ids(ids)
        length = len(host) // batch_size
        if length < 2:
            raise ValueError(f"{len(host)} tokens are too few for {batch_size} streams of at least 2 tokens")
        self.batch_size = batch_size
        self.bptt = bptt
        self.drop_last = drop_last
        self.device = backend.canonical_device(device)
        self.data = backend.to_device(host[: batch_size * length].reshape(batch_size, length), self.device)  # (B, L)
        self.position = 0
        self.epoch = 0

    @property
    def stream_length(self) -> int:
        return self.data.shape[1]

    def __len__(self) -> int:
        steps = self.stream_length - 1
        return steps // self.bptt if self.drop_last else math.ceil(steps / self.bptt)

    def chunk(self, k: int) -> tuple[Tensor, Tensor]:
        """Chunk ``k`` as ``(x, y)``, each ``(B, T)`` int64."""
        if not 0 <= k < len(self):
            raise IndexError(f"chunk {k} is out of range for {len(self)} chunks")
        i = k * self.bptt
        t = min(self.bptt, self.stream_length - 1 - i)
        x = self.data[:, i : i + t]  # (B, T)
        y = self.data[:, i + 1 : i + 1 + t]  # (B, T)
        return Tensor._wrap(x.copy(), self.device), Tensor._wrap(y.copy(), self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.position >= len(self):
            self.position = 0
            self.epoch += 1
        while self.position < len(self):
            k = self.position
            self.position += 1
            yield self.chunk(k)

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position, epoch = int(state["position"]), int(state["epoch"])
        if not 0 <= position <= len(self):
            raise ValueError(f"position {position} is out of range for {len(self)} chunks")
        self.position, self.epoch = position, epoch


def sample_windows(ids: Any, batch_size: int, block_size: int, seed: int | None = None) -> tuple[Tensor, Tensor]:
    """One batch of ``batch_size`` windows at uniformly random offsets (with replacement), ``(B, T)`` each."""
    host = _as_ids(ids)
    if len(host) < block_size + 1:
        raise ValueError(f"a stream of {len(host)} tokens is too short for windows of block_size {block_size} + 1")
    rng = np.random.default_rng(seed) if seed is not None else generators.generator("cpu")
    starts = backend.to_host(rng.integers(0, len(host) - block_size, size=batch_size))
    window = host[starts[:, None] + np.arange(block_size + 1)]  # (B, T+1)
    return Tensor(np.ascontiguousarray(window[:, :-1])), Tensor(np.ascontiguousarray(window[:, 1:]))
