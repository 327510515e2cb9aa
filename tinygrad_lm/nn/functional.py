"""Stateless layer functions and losses, as ``torch.nn.functional``.

The heavy ones (linear, embedding, layer_norm, dropout and the losses) are one
fused op each from :mod:`tinygrad_lm.ops.nn`; this module checks their
arguments (shapes, dtypes, devices, index ranges) and names the problem when
they are wrong.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Sequence

from ..ops import nn as _nn
from ..tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _check_tensor(name: str, arg: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {arg} must be a Tensor, got {type(value).__name__}")
    return value


def _check_float(name: str, arg: str, t: Tensor) -> None:
    if t.dtype.kind != "f":
        raise TypeError(f"{name}: {arg} must be a floating point tensor, got {t.dtype}")


def _check_device(name: str, a: Tensor, b: Tensor) -> None:
    if a.device != b.device:
        raise RuntimeError(f"{name}: expected all tensors on the same device, found {a.device} and {b.device}")


def _check_same_dtype(name: str, a: Tensor, b: Tensor, arg_a: str, arg_b: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: {arg_a} is {a.dtype} but {arg_b} is {b.dtype}; convert one with .to(dtype)")


def _check_reduction(name: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _as_index_tensor(name: str, value: Any, like: Tensor) -> Tensor:
    t = value if isinstance(value, Tensor) else Tensor(value, device=like.device)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer (int64) tensor of indices, got {t.dtype}")
    _check_device(name, like, t)
    return t


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b for x of shape (..., in_features), W (out_features, in_features), b (out_features,)."""
    _check_tensor("linear", "input", input)
    _check_tensor("linear", "weight", weight)
    if bias is not None:
        _check_tensor("linear", "bias", bias)
    if input.ndim == 0 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input shape {input.shape} does not fit weight shape {weight.shape} "
            "(expected input (..., in_features) and weight (out_features, in_features))"
        )
    _check_same_dtype("linear", input, weight, "input", "weight")
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias shape {bias.shape} does not match weight shape {weight.shape}")
        _check_same_dtype("linear", input, bias, "input", "bias")
    return _nn.Linear.apply(input, weight, bias)


def embedding(input: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by the integer ids in ``input``.

    The row ``padding_idx`` receives no gradient. Ids outside [0, num_embeddings) raise ``IndexError``.
    """
    _check_tensor("embedding", "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    if isinstance(input, Tensor) and input.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be an integer tensor (e.g. tl.int64), got {input.dtype}")
    ids = _as_index_tensor("embedding", input, weight)
    num = weight.shape[0]
    if ids.numel():
        data = ids.array
        bad = (data < 0) | (data >= num)
        if bool(bad.any()):
            raise IndexError(f"embedding: id {int(data[bad].ravel()[0])} is out of range for num_embeddings={num}")
    padding_idx = _padding_index(padding_idx, num)
    return _nn.Embedding.apply(weight, ids, padding_idx=padding_idx)


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        raise TypeError(f"padding_idx must be an int or None, got {type(padding_idx).__name__} {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings={num_embeddings}")
    return padding_idx % num_embeddings


def relu(input: Tensor) -> Tensor:
    """max(x, 0)."""
    return _check_tensor("relu", "input", input).relu()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x Phi(x) (``'none'``) or its tanh approximation (``'tanh'``)."""
    return _check_tensor("gelu", "input", input).gelu(approximate=approximate)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return _check_tensor("sigmoid", "input", input).sigmoid()


def tanh(input: Tensor) -> Tensor:
    return _check_tensor("tanh", "input", input).tanh()


def _implicit_dim(name: str, ndim: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """exp(x_i) / sum_j exp(x_j) along ``dim`` (``dtype`` casts the input first)."""
    _check_tensor("softmax", "input", input)
    if dtype is not None:
        input = input.to(dtype=dtype)
    return input.softmax(_implicit_dim("softmax", input.ndim) if dim is None else dim)


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """x_i - logsumexp(x) along ``dim``."""
    _check_tensor("log_softmax", "input", input)
    if dtype is not None:
        input = input.to(dtype=dtype)
    return input.log_softmax(_implicit_dim("log_softmax", input.ndim) if dim is None else dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only)."""
    _check_tensor("dropout", "input", input)
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout: p must be a number between 0 and 1, got {type(p).__name__} {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    _check_float("dropout", "input", input)
    return _nn.Dropout.apply(input, p=float(p))


def _normalized_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    if not isinstance(dims, (tuple, list)) or any(isinstance(n, bool) or not isinstance(n, numbers.Integral)
                                                  for n in dims):
        raise TypeError(f"normalized_shape must be an int or a tuple of ints, got {shape!r}")
    if any(n < 0 for n in dims):
        raise ValueError(f"normalized_shape must not have negative sizes, got {shape!r}")
    return tuple(int(n) for n in dims)


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing ``normalized_shape`` dims (biased var)."""
    _check_tensor("layer_norm", "input", input)
    shape = _normalized_shape(normalized_shape)
    _check_float("layer_norm", "input", input)
    if len(shape) == 0 or input.ndim < len(shape) or input.shape[input.ndim - len(shape) :] != shape:
        raise ValueError(f"layer_norm: input shape {input.shape} does not end in normalized_shape {shape}")
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_tensor("layer_norm", arg, t)
            if t.shape != shape:
                raise ValueError(f"layer_norm: {arg} shape {t.shape} does not match normalized_shape {shape}")
            _check_same_dtype("layer_norm", input, t, "input", arg)
            _check_device("layer_norm", input, t)
    return _nn.LayerNorm.apply(input, weight, bias, ndim=len(shape), eps=float(eps))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """(..., num_classes) int64 tensor with a 1 at each index of ``tensor`` (``-1``: max index + 1). No gradient."""
    _check_tensor("one_hot", "tensor", tensor)
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot is only applicable to index (integer) tensors, got {tensor.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}")
    xp, data = tensor.xp, tensor.array
    if num_classes == -1:
        if data.size == 0:
            raise ValueError("one_hot: can not infer the number of classes from an empty tensor; pass num_classes")
        num_classes = int(data.max()) + 1
    if data.size:
        if bool((data < 0).any()):
            raise ValueError(f"one_hot: class values must be non-negative, got {int(data.min())}")
        if bool((data >= num_classes).any()):
            raise ValueError(f"one_hot: class value {int(data.max())} is not smaller than num_classes={num_classes}")
    out = (data[..., None] == xp.arange(num_classes)).astype("int64")  # (..., num_classes)
    return Tensor._wrap(out, tensor.device)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """(input - target)^2, averaged (``'mean'``), summed (``'sum'``) or elementwise (``'none'``)."""
    _check_reduction("mse_loss", reduction)
    _check_tensor("mse_loss", "input", input)
    if isinstance(target, Tensor) and _broadcast_shape(input.shape, target.shape) is None:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} do not broadcast")
    if isinstance(target, Tensor) and target.shape != input.shape:
        warnings.warn(
            f"mse_loss: target size {target.shape} is different from input size {input.shape}; "
            "they are broadcast together, which is likely not what you want",
            UserWarning,
            stacklevel=2,
        )
    diff = input - target
    sq = diff * diff
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum()
    return sq


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy's broadcast of two shapes, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x, y = (a[-i] if i <= len(a) else 1), (b[-i] if i <= len(b) else 1)
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def _class_count(name: str, input: Tensor) -> int:
    if input.ndim == 0:
        raise ValueError(f"{name}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    return input.shape[1] if input.ndim >= 2 else input.shape[0]


def _class_weight(name: str, weight: Tensor | None, input: Tensor, c: int) -> Any:
    """The weight's raw array (in the input's dtype), after checking its shape and device."""
    if weight is None:
        return None
    _check_tensor(name, "weight", weight)
    if weight.shape != (c,):
        raise ValueError(f"{name}: weight must have shape ({c},), one entry per class, got {weight.shape}")
    _check_device(name, input, weight)
    return weight.array.astype(input.dtype, copy=False)


def _check_class_target(name: str, input: Tensor, target: Tensor, c: int, ignore_index: int) -> None:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{name}: ignore_index must be an int, got {type(ignore_index).__name__} {ignore_index!r}")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(
            f"{name}: target shape {target.shape} does not match input shape {input.shape} "
            f"(class-index targets must have shape {expected})"
        )
    data = target.array
    if data.size:
        bad = ((data < 0) | (data >= c)) & (data != ignore_index)
        if bool(bad.any()):
            raise IndexError(
                f"{name}: target {int(data[bad].ravel()[0])} is out of bounds for {c} classes "
                f"(valid targets are 0..{c - 1} and ignore_index={ignore_index})"
            )


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood from log-probabilities ``input`` (C,), (N, C) or (N, C, d1, ...).

    l_n = -w_{t_n} input[n, t_n] (0 where t_n == ignore_index); ``'mean'`` divides the sum
    by sum_n w_{t_n} over the non-ignored n, ``'sum'`` sums, ``'none'`` keeps shape (N, d1, ...).
    """
    name = "nll_loss"
    _check_reduction(name, reduction)
    _check_tensor(name, "input", input)
    _check_float(name, "input", input)
    c = _class_count(name, input)
    target = _as_index_tensor(name, target, input)
    _check_class_target(name, input, target, c, ignore_index)
    w = _class_weight(name, weight, input, c)
    return _nn.NLLLoss.apply(input, target, weight=w, ignore_index=int(ignore_index), reduction=reduction)


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Softmax cross-entropy between logits ``input`` and ``target``, as PyTorch's, as one fused op.

    ``input`` is (C,) (unbatched), (N, C) or (N, C, d1, ...); the class axis is dim 1 (dim 0 unbatched).
    ``target`` holds class indices of shape (), (N,) or (N, d1, ...) (an integer tensor), or class
    probabilities of the input's shape (a float tensor).

    Class indices, with p = softmax(x), eps = ``label_smoothing``, w = ``weight`` (all ones if None):

        l_n = (1 - eps) * (-w_{t_n} log p_{n,t_n}) + (eps / C) * sum_c (-w_c log p_{n,c}),
        l_n = 0 where t_n == ignore_index.

    ``'mean'`` divides sum_n l_n by sum_n w_{t_n} over the non-ignored n (both terms by the same
    normaliser, so a mean over only ignored targets is NaN); ``'sum'`` sums; ``'none'`` returns l.
    Class probabilities y (where ignore_index does not apply), with q = (1 - eps) y + eps / C:

        l_n = -sum_c w_c q_{n,c} log p_{n,c},   ``'mean'`` divides by the number of l_n.

    The gradient d l_n / d x_n = (sum_c w_c q_{n,c}) p_n - w q_n is computed in one pass from the
    log-sum-exp saved in forward, so logits of +-1e4 give finite losses and gradients.
    """
    name = "cross_entropy"
    _check_reduction(name, reduction)
    _check_tensor(name, "input", input)
    _check_float(name, "input", input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    c = _class_count(name, input)
    w = _class_weight(name, weight, input, c)
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError(
                f"{name}: probability target shape {target.shape} does not match input shape {input.shape}"
            )
        _check_device(name, input, target)
        target = target.to(dtype=input.dtype)
        return _nn.SoftCrossEntropy.apply(
            input, target, weight=w, reduction=reduction, label_smoothing=float(label_smoothing)
        )
    target = _as_index_tensor(name, target, input)
    _check_class_target(name, input, target, c, ignore_index)
    return _nn.CrossEntropy.apply(
        input, target, weight=w, ignore_index=int(ignore_index), reduction=reduction,
        label_smoothing=float(label_smoothing),
    )


__all__ = [
    "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "linear", "log_softmax", "mse_loss",
    "nll_loss", "one_hot", "relu", "scaled_dot_product_attention", "sigmoid", "softmax", "tanh",
]

# Defined with MultiheadAttention (attention.py imports the layers, which import this module).
from .attention import scaled_dot_product_attention  # noqa: E402
