"""The random draws of the data pipeline, behind one small interface.

``generator`` is ``None`` (draw from tinygrad_lm's global CPU generator, which
``tl.manual_seed`` re-seeds) or an object with NumPy's ``Generator`` API.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import backend


def _rng(generator: Any) -> Any:
    return backend.generator("cpu") if generator is None else generator


def seed(generator: Any = None) -> int:
    """A fresh 63-bit seed drawn from ``generator`` (PyTorch's ``torch.empty((), dtype=torch.int64).random_()``)."""
    return int(_rng(generator).integers(0, 2**63 - 1))


def fresh_generator(generator: Any = None) -> Any:
    """``generator`` itself, or (for ``None``) a new one seeded from the global generator.

    Drawing one seed up front, as PyTorch's samplers do, makes the global generator
    advance by the same amount whatever part of an epoch is consumed.
    """
    return np.random.default_rng(seed()) if generator is None else generator


def randperm(n: int, generator: Any) -> list[int]:
    """A random permutation of ``range(n)`` as Python ints."""
    return [int(i) for i in _rng(generator).permutation(n)]


def randint(high: int, size: int, generator: Any) -> list[int]:
    """``size`` integers drawn uniformly from ``range(high)``."""
    return [int(i) for i in _rng(generator).integers(0, high, size=size)]


def multinomial(weights: np.ndarray, num_samples: int, replacement: bool, generator: Any) -> list[int]:
    """``num_samples`` indices drawn with probability proportional to ``weights`` (1-D, float64).

    Without replacement this keeps the ``num_samples`` largest keys ``log(u_i) / w_i``,
    ``u_i ~ U(0, 1)`` (Efraimidis and Spirakis, 2006): the same law as drawing one index
    at a time and removing it. Zero weights have key ``-inf`` and come last, in random
    order, as in PyTorch, which also fills with them rather than raising.
    """
    if not np.all(np.isfinite(weights)):
        raise RuntimeError("invalid multinomial distribution (encountering probability entry = infinity or NaN)")
    if np.any(weights < 0):
        raise RuntimeError("invalid multinomial distribution (encountering probability entry < 0)")
    if not weights.sum() > 0:
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    rng = _rng(generator)
    n = len(weights)
    if replacement:
        return [int(i) for i in rng.choice(n, size=num_samples, replace=True, p=weights / weights.sum())]
    if num_samples > n:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(n)) / weights
    order = np.lexsort((rng.random(n), -keys))  # by key, largest first; ties (zero weights) at random
    return [int(i) for i in order[:num_samples]]
