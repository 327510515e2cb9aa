"""Convolution and pooling over 1-D and 2-D signals, as PyTorch's ``Conv1d/2d``, ``MaxPool1d/2d``,
``AvgPool1d/2d`` and ``AdaptiveAvgPool1d/2d``, composed of existing ops.

Every window is gathered (im2col: one strided slice per kernel offset, stacked), then a convolution
is one batched matmul:

    patches[n, c, k_1..k_d, o_1..o_d] = x[n, c, o_1 s_1 + k_1 r_1, ..., o_d s_d + k_d r_d]   (stride s, dilation r)
    y[n, o, o_1..o_d] = sum_{c, k} W[o, c, k_1..k_d] patches[n, c, k_1..k_d, o_1..o_d] + b[o]

so the gradients of the slices and of the matmul come from the engine. Pooling takes
the max or the mean of the same windows; adaptive average pooling is a matmul with an averaging matrix.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .. import creation
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional import (
    _conv_padding,
    _max_pool,
    _ntuple,
    _pool_args,
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    max_pool1d,
    max_pool2d,
)
from .module import Module, Parameter


class _ConvNd(Module):
    _nsp = 1
    _PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name, n = type(self).__name__, self._nsp
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels and out_channels must be divisible by groups={groups}")
        if padding_mode not in self._PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {self._PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(name, "kernel_size", kernel_size, n)
        self.stride = _ntuple(name, "stride", stride, n)
        self.dilation = _ntuple(name, "dilation", dilation, n)
        if isinstance(padding, str):
            _conv_padding(name, padding, self.kernel_size, self.stride, self.dilation)  # validates
            self.padding: Any = padding
        else:
            self.padding = _ntuple(name, "padding", padding, n)
        self.padding_mode = padding_mode
        self.output_padding = (0,) * n
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(creation.zeros(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(creation.zeros(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, fan_in = in_channels / groups * K."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        conv = conv1d if self._nsp == 1 else conv2d
        if self.padding_mode == "zeros":
            return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        pads = _conv_padding(type(self).__name__, self.padding, self.kernel_size, self.stride, self.dilation)
        mode = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}[self.padding_mode]
        padded = F.pad(input, pads, mode=mode)
        return conv(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        n = self._nsp
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """y = W * x + b over (N, C_in, L): ``weight (out_channels, in_channels / groups, kernel_size)``, ``bias``."""

    _nsp = 1


class Conv2d(_ConvNd):
    """y = W * x + b over (N, C_in, H, W): ``weight (out_channels, in_channels / groups, kH, kW)``, ``bias``."""

    _nsp = 2


class _MaxPoolNd(Module):
    _nsp = 1

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        _pool_args(name, self._nsp, kernel_size, stride, padding, dilation, ceil_mode)  # validates
        if return_indices:
            raise NotImplementedError(f"{name}: return_indices=True is not supported")
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return _max_pool(type(self).__name__, self._nsp, input, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """The max of each window of (N, C, L) input."""

    _nsp = 1


class MaxPool2d(_MaxPoolNd):
    """The max of each window of (N, C, H, W) input."""

    _nsp = 2


class AvgPool1d(Module):
    """The mean of each window of (N, C, L) input."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        _pool_args("AvgPool1d", 1, kernel_size, stride, padding, 1, ceil_mode)  # validates
        self.kernel_size = _ntuple("AvgPool1d", "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _ntuple("AvgPool1d", "stride", stride, 1)
        self.padding = _ntuple("AvgPool1d", "padding", padding, 1)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """The mean of each window of (N, C, H, W) input."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        _pool_args("AvgPool2d", 2, kernel_size, stride, padding, 1, ceil_mode)  # validates
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(Module):
    """Average (N, C, L) input down to ``output_size`` positions."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return adaptive_avg_pool1d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(Module):
    """Average (N, C, H, W) input down to an ``output_size`` grid (``(1, 1)``: global average pooling)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "MaxPool1d",
    "MaxPool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "conv1d", "conv2d",
    "max_pool1d", "max_pool2d",
]
