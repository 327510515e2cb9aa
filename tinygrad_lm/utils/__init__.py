"""Utilities as in ``torch.utils``: ``tinygrad_lm.utils.data`` is ``torch.utils.data``."""
from . import data

__all__ = ["data"]
