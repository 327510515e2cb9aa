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

import itertools
import math
from typing import Any, Sequence

from .. import creation
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _ntuple(name: str, arg: str, value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise TypeError(f"{name}: {arg} must be an int or a tuple of {n} ints, got {value!r}")


def _spatial_input(name: str, input: Tensor, nsp: int) -> tuple[Tensor, bool]:
    """The input as (N, C, *spatial), and whether it came unbatched (C, *spatial)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim == nsp + 1:
        return input.unsqueeze(0), True
    if input.ndim != nsp + 2:
        raise RuntimeError(
            f"{name}: expected {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input, got shape {input.shape}"
        )
    return input, False


def _windows(name: str, x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...]) -> Tensor:
    """(N, C, *kernel, *out) tensor of every window of x (N, C, *spatial).

    Each kernel offset (k_1..k_d) is one strided slice x[:, :, k_1 r_1 :: s_1, ...] of the output's size;
    stacking the prod(kernel) slices gives the windows (their backward is plain slice assignment, several
    times faster than the scatter-add an index-array gather needs).
    """
    out = []
    for size, k, s, r in zip(x.shape[2:], kernel, stride, dilation):
        n_out = (size - r * (k - 1) - 1) // s + 1
        if n_out <= 0:
            raise RuntimeError(
                f"{name}: the (padded) input of shape {x.shape} is smaller than the (dilated) kernel {kernel}"
            )
        out.append(n_out)
    parts = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(o * r, o * r + s * (n - 1) + 1, s) for o, r, s, n in zip(offsets, dilation, stride, out))
        parts.append(x[(slice(None), slice(None)) + index])  # (N, C, *out)
    stacked = creation.stack(parts, dim=2)  # (N, C, prod(kernel), *out)
    return stacked.reshape(x.shape[0], x.shape[1], *kernel, *out)  # (N, C, k_1..k_d, o_1..o_d)


def _conv_padding(name: str, padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
                  dilation: tuple[int, ...]) -> list[int]:
    """F.pad's list (last dim first) for ``padding``: ints, a tuple, 'valid' or 'same' (extra on the right)."""
    nsp = len(kernel)
    if padding == "valid":
        return [0] * (2 * nsp)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        pads = []
        for k, r in reversed(list(zip(kernel, dilation))):
            total = r * (k - 1)
            pads += [total // 2, total - total // 2]
        return pads
    if isinstance(padding, str):
        raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of 'valid', 'same'")
    per_dim = _ntuple(name, "padding", padding, nsp)
    if any(p < 0 for p in per_dim):
        raise RuntimeError(f"{name}: negative padding is not supported, got {padding!r}")
    return [p for q in reversed(per_dim) for p in (q, q)]


def _conv(name: str, nsp: int, input: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
          dilation: Any, groups: int) -> Tensor:
    x, unbatched = _spatial_input(name, input, nsp)
    if not isinstance(weight, Tensor) or weight.ndim != nsp + 2:
        raise RuntimeError(f"{name}: weight must be a {nsp + 2}-D tensor (out, in / groups, *kernel)")
    out_ch, in_per_group = weight.shape[0], weight.shape[1]
    kernel = tuple(weight.shape[2:])
    if groups <= 0 or x.shape[1] != in_per_group * groups or out_ch % groups:
        raise RuntimeError(
            f"{name}: input of shape {input.shape} (C={x.shape[1]}) does not fit weight {weight.shape} with "
            f"groups={groups} (expected C = weight.shape[1] * groups and out_channels divisible by groups)"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"{name}: input is {x.dtype} but weight is {weight.dtype}; convert one with .to(dtype)")
    stride_t = _ntuple(name, "stride", stride, nsp)
    dilation_t = _ntuple(name, "dilation", dilation, nsp)
    pads = _conv_padding(name, padding, kernel, stride_t, dilation_t)
    if any(pads):
        x = F.pad(x, pads)
    patches = _windows(name, x, kernel, stride_t, dilation_t)  # (N, C, *kernel, *out)
    n, c = x.shape[0], x.shape[1]
    out = patches.shape[2 + nsp :]
    k_size, l_size = math.prod(kernel), math.prod(out)
    # one large GEMM per group, over every sample's positions at once: (O/G, C/G K) @ (C/G K, N L)
    cols = patches.reshape(n, groups, (c // groups) * k_size, l_size)  # (N, G, C/G * K, L)
    cols = cols.permute(1, 2, 0, 3).reshape(groups, (c // groups) * k_size, n * l_size)  # (G, C/G * K, N * L)
    w = weight.reshape(groups, out_ch // groups, in_per_group * k_size)  # (G, O/G, C/G * K)
    y = (w @ cols).reshape(out_ch, n, *out).transpose(0, 1)  # (N, O, *out)
    if bias is not None:
        y = y + bias.reshape(out_ch, *([1] * nsp))
    return y.squeeze(0) if unbatched else y


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation of (N, C_in, L) input with weight (C_out, C_in / groups, k)."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation of (N, C_in, H, W) input with weight (C_out, C_in / groups, kH, kW)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _pool_args(name: str, nsp: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
               ceil_mode: bool) -> tuple[tuple[int, ...], ...]:
    if ceil_mode:
        raise NotImplementedError(f"{name}: ceil_mode=True is not supported")
    kernel = _ntuple(name, "kernel_size", kernel_size, nsp)
    stride_t = kernel if stride is None or stride == [] else _ntuple(name, "stride", stride, nsp)
    pad = _ntuple(name, "padding", padding, nsp)
    dil = _ntuple(name, "dilation", dilation, nsp)
    if any(p > k // 2 for p, k in zip(pad, kernel)):
        raise RuntimeError(f"{name}: pad should be at most half of effective kernel size, got padding={padding!r}")
    return kernel, stride_t, pad, dil


def _max_pool(name: str, nsp: int, input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
              ceil_mode: bool, return_indices: bool) -> Tensor:
    if return_indices:
        raise NotImplementedError(f"{name}: return_indices=True is not supported")
    x, unbatched = _spatial_input(name, input, nsp)
    kernel, stride_t, pad, dil = _pool_args(name, nsp, kernel_size, stride, padding, dilation, ceil_mode)
    if any(pad):
        x = F.pad(x, [p for q in reversed(pad) for p in (q, q)], value=float("-inf"))
    windows = _windows(name, x, kernel, stride_t, dil)  # (N, C, *kernel, *out)
    y = windows.amax(tuple(range(2, 2 + nsp)))  # (N, C, *out)
    return y.squeeze(0) if unbatched else y


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """The max of each window of (N, C, L) input."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """The max of each window of (N, C, H, W) input."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(name: str, nsp: int, input: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
              count_include_pad: bool, divisor_override: int | None) -> Tensor:
    x, unbatched = _spatial_input(name, input, nsp)
    kernel, stride_t, pad, dil = _pool_args(name, nsp, kernel_size, stride, padding, 1, ceil_mode)
    pads = [p for q in reversed(pad) for p in (q, q)]
    dims = tuple(range(2, 2 + nsp))
    total = _windows(name, F.pad(x, pads) if any(pads) else x, kernel, stride_t, dil).sum(dims)  # (N, C, *out)
    if divisor_override is not None:
        y = total / divisor_override
    elif count_include_pad or not any(pads):
        y = total / math.prod(kernel)
    else:  # divide by the number of real (unpadded) elements in each window
        ones = creation.ones((1, 1) + x.shape[2:], dtype=x.dtype, device=x.device)
        y = total / _windows(name, F.pad(ones, pads), kernel, stride_t, dil).sum(dims)
    return y.squeeze(0) if unbatched else y


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """The mean of each window of (N, C, L) input."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """The mean of each window of (N, C, H, W) input."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _averaging_matrix(like: Tensor, size: int, out: int) -> Tensor:
    """(out, size) matrix whose row i averages PyTorch's adaptive window [floor(i size/out), ceil((i+1) size/out))."""
    xp = like.xp
    rows = xp.zeros((out, size), dtype=like.dtype)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        rows[i, start:end] = 1.0 / (end - start)
    return Tensor._wrap(rows, like.device)


def _adaptive_avg_pool(name: str, nsp: int, input: Tensor, output_size: Any) -> Tensor:
    x, unbatched = _spatial_input(name, input, nsp)
    sizes = (output_size,) * nsp if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(sizes) != nsp:
        raise TypeError(f"{name}: output_size must be an int or a tuple of {nsp}, got {output_size!r}")
    y = x
    for d, out in enumerate(sizes):
        axis = 2 + d
        size = x.shape[axis]
        out = size if out is None else out
        if out <= 0:
            raise RuntimeError(f"{name}: output_size must be positive, got {output_size!r}")
        moved = y.transpose(axis, -1)  # the pooled dim last
        moved = moved @ _averaging_matrix(x, size, out).T  # (..., out)
        y = moved.transpose(axis, -1)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """Average (N, C, L) input over ``output_size`` windows of (almost) equal length."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average (N, C, H, W) input over an ``output_size`` grid of (almost) equal windows."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


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
