"""(being written: Linear is final, the rest are placeholders until the nn helper lands them)"""
import math

from .. import creation
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, with ``weight (out_features, in_features)`` and ``bias (out_features,)`` as PyTorch.

    Both are initialised from U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(creation.rand(out_features, in_features) * (2 * bound) - bound)
        self.bias = Parameter(creation.rand(out_features) * (2 * bound) - bound) if bias else None
        if not bias:
            self.register_parameter("bias", None)

    def forward(self, x):
        out = x @ self.weight.T  # (..., out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module): pass
class LayerNorm(Module): pass
class Dropout(Module): pass
class Tanh(Module): pass
class ReLU(Module): pass
class Sigmoid(Module): pass
class GELU(Module): pass
class Identity(Module): pass
class Softmax(Module): pass
