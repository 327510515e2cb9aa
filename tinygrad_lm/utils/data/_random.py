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
    """``num_samples`` indices drawn with probability proportional to ``weights`` (1-D, float64)."""
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise RuntimeError("weights must be finite and non-negative")
    nonzero = int(np.count_nonzero(weights))
    if nonzero == 0:
        raise RuntimeError("weights must have a positive sum")
    if not replacement and num_samples > nonzero:
        raise RuntimeError(
            f"cannot sample num_samples={num_samples} > {nonzero} indices of non-zero weight without replacement"
        )
    p = weights / weights.sum()
    return [int(i) for i in _rng(generator).choice(len(weights), size=num_samples, replace=replacement, p=p)]
