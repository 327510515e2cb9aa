"""Layers and the Module system, with PyTorch's names and weight layouts."""
from . import functional, init, utils
from .attention import MultiheadAttention
from .layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Softmax, Tanh
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = [
    "GELU", "GRU", "LSTM", "RNN", "Dropout", "Embedding", "GRUCell", "Identity", "LSTMCell", "LayerNorm", "Linear",
    "Module", "ModuleDict", "ModuleList", "MultiheadAttention", "Parameter", "RNNCell", "ReLU", "Sequential",
    "Sigmoid", "Softmax", "Tanh", "functional", "init", "utils",
]
