"""The random draws of the data pipeline, from ``tinygrad_lm.random``.

``generator`` is a CPU ``tl.Generator``, or ``None`` for the default stream that
``tl.manual_seed`` seeds; library code (DistributedSampler) may also pass a NumPy
``Generator`` it made itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import random
from ...tensor import Tensor


def _engine(generator: Any, name: str) -> Any:
    """The NumPy generator that ``generator`` draws with."""
    if isinstance(generator, np.random.Generator):
        return generator
    return random.backend_generator(generator, "cpu", name)


def seed(generator: Any = None) -> int:
    """A fresh 63-bit seed drawn from ``generator`` (PyTorch's ``torch.empty((), dtype=torch.int64).random_()``)."""
    return int(_engine(generator, "DataLoader").integers(0, 2**63 - 1))


def fresh_generator(generator: Any = None) -> Any:
    """``generator`` itself, or (for ``None``) a new Generator seeded from the default stream.

    Drawing one seed up front, as PyTorch's samplers do, makes the default stream
    advance by the same amount whatever part of an epoch is consumed.
    """
    return random.Generator().manual_seed(seed()) if generator is None else generator


def randperm(n: int, generator: Any, name: str = "randperm") -> list[int]:
    """A random permutation of ``range(n)`` as Python ints."""
    return [int(i) for i in _engine(generator, name).permutation(n)]


def randint(high: int, size: int, generator: Any, name: str = "randint") -> list[int]:
    """``size`` integers drawn uniformly from ``range(high)``."""
    return [int(i) for i in _engine(generator, name).integers(0, high, size=size)]


def multinomial(weights: np.ndarray, num_samples: int, replacement: bool, generator: Any) -> list[int]:
    """``num_samples`` indices, index i drawn with probability ``w_i / sum(w)`` (``weights``: 1-D float64).

    The weights are checked here with the messages of PyTorch's WeightedRandomSampler;
    ``tl.multinomial`` draws (without replacement, zero weights come last, as in PyTorch).
    """
    if not np.all(np.isfinite(weights)):
        raise RuntimeError("invalid multinomial distribution (encountering probability entry = infinity or NaN)")
    if np.any(weights < 0):
        raise RuntimeError("invalid multinomial distribution (encountering probability entry < 0)")
    if not weights.sum() > 0:
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > len(weights):
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    drawn = random.multinomial(Tensor._wrap(weights, "cpu"), num_samples, replacement, generator=generator)
    return [int(i) for i in drawn.array]
