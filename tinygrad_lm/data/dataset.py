"""Datasets and the DataLoader: one implementation, in ``tinygrad_lm.utils.data`` (PyTorch's
``torch.utils.data``), re-exported here next to the LM-specific data (corpora, tokenizers,
BPTT batching) so that ``from tinygrad_lm.data import DataLoader`` keeps working.
"""
from ..utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)

__all__ = [
    "ConcatDataset", "DataLoader", "Dataset", "IterableDataset", "Subset", "TensorDataset", "default_collate",
    "random_split",
]
