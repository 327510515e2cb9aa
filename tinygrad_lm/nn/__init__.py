"""Layers and the Module system, with PyTorch's names and weight layouts."""
from __future__ import annotations

import importlib
from typing import Any

from . import functional, init, utils
from .attention import MultiheadAttention
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Softmax, Tanh
from .module import Module, Parameter
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = [
    "GELU", "GRU", "LSTM", "RNN", "Dropout", "Embedding", "GRUCell", "Identity", "LSTMCell", "LayerNorm", "Linear",
    "Module", "ModuleDict", "ModuleList", "MultiheadAttention", "Parameter", "ParameterDict", "ParameterList",
    "RNNCell", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "functional", "init", "utils",
]


def __getattr__(name: str) -> Any:
    """``nn.parallel`` (DistributedDataParallel) is imported on first use, as it pulls in the distributed runtime."""
    if name == "parallel":
        return importlib.import_module(".parallel", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
