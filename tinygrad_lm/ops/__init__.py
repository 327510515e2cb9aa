"""Primitive differentiable ops, by family. Each is a ``Function`` on raw arrays."""
from .elementwise import (
    Abs,
    Add,
    Cast,
    Clamp,
    Cos,
    Div,
    Exp,
    Gelu,
    Log,
    Maximum,
    Minimum,
    Mul,
    Neg,
    Pow,
    Relu,
    Sigmoid,
    Sin,
    Sqrt,
    Sub,
    Tanh,
    Where,
)
from .matmul import Matmul
from .movement import (
    Cat,
    Clone,
    Expand,
    Gather,
    GetItem,
    MaskedFill,
    Permute,
    Reshape,
    Split,
    Stack,
    ToDevice,
    Tril,
    Triu,
)
from .reduce import LogSoftmax, LogSumExp, Max, Mean, Min, Softmax, Sum

__all__ = [
    "Abs", "Add", "Cast", "Cat", "Clamp", "Clone", "Cos", "Div", "Exp", "Expand", "Gather", "Gelu", "GetItem", "Log",
    "LogSoftmax", "LogSumExp", "MaskedFill", "Matmul", "Max", "Maximum", "Mean", "Min", "Minimum", "Mul", "Neg",
    "Permute", "Pow", "Relu", "Reshape", "Sigmoid", "Sin", "Softmax", "Split", "Sqrt", "Stack", "Sub", "Sum", "Tanh",
    "ToDevice", "Tril", "Triu", "Where",
]
