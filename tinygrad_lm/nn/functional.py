"""Stateless layer functions and losses, as ``torch.nn.functional``.

The heavy ones (linear, embedding, layer_norm, dropout, the losses and
scaled_dot_product_attention) are one op each from :mod:`tinygrad_lm.ops`; this
module checks their arguments (shapes, dtypes, devices, index ranges) and names
the problem when they are wrong. It imports no other ``nn`` module.
"""
from __future__ import annotations

import itertools
import math
import numbers
import warnings
from typing import Any, Sequence

from .. import creation as _creation
from .. import ops as _ops
from ..ops.attention import ScaledDotProductAttention, ScaledDotProductAttentionWeights
from ..tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _check_tensor(name: str, arg: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {arg} must be a Tensor, got {type(value).__name__}")
    return value


def _check_float(name: str, arg: str, t: Tensor) -> None:
    if t.array.dtype.kind != "f":  # (the array's dtype: comparing DType objects costs microseconds per call)
        raise TypeError(f"{name}: {arg} must be a floating point tensor, got {t.dtype}")


def _check_device(name: str, a: Tensor, b: Tensor) -> None:
    if a.device != b.device:
        raise RuntimeError(f"{name}: expected all tensors on the same device, found {a.device} and {b.device}")


def _check_same_dtype(name: str, a: Tensor, b: Tensor, arg_a: str, arg_b: str) -> None:
    if a.array.dtype != b.array.dtype:
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
    x, w = input.array, weight.array  # (the checks read the arrays: a layer calls this at every step)
    if x.ndim == 0 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: input shape {input.shape} does not fit weight shape {weight.shape} "
            "(expected input (..., in_features) and weight (out_features, in_features))"
        )
    _check_same_dtype("linear", input, weight, "input", "weight")
    if bias is not None:
        if bias.array.shape != w.shape[:1]:
            raise ValueError(f"linear: bias shape {bias.shape} does not match weight shape {weight.shape}")
        _check_same_dtype("linear", input, bias, "input", "bias")
    return _ops.Linear.apply(input, weight, bias)


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
    return _ops.Embedding.apply(weight, ids, padding_idx=padding_idx)


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        raise TypeError(f"padding_idx must be an int or None, got {type(padding_idx).__name__} {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings={num_embeddings}")
    return padding_idx % num_embeddings


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0)."""
    return _written_back(input, _check_tensor("relu", "input", input).relu(), inplace)


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


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only)."""
    _check_tensor("dropout", "input", input)
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout: p must be a number between 0 and 1, got {type(p).__name__} {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    _check_float("dropout", "input", input)
    return _written_back(input, _ops.Dropout.apply(input, p=float(p)), inplace)


def _channel_dropout(name: str, input: Tensor, p: float, training: bool, inplace: bool, spatial: int) -> Tensor:
    """Zero whole channels: one Bernoulli(1 - p) draw per (sample, channel), broadcast over ``spatial`` dims."""
    _check_tensor(name, "input", input)
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(
            f"{name}: expected {spatial + 1}D (unbatched) or {spatial + 2}D (batched) input, got shape {input.shape}"
        )
    if not training or p == 0.0:
        return dropout(input, p, training)
    mask_shape = input.shape[: input.ndim - spatial] + (1,) * spatial  # (N, C, 1, ...)
    keep = dropout(_creation.ones(mask_shape, dtype=input.dtype, device=input.device), p, True)  # 0 or 1/(1-p)
    return _written_back(input, input * keep, inplace)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero entire channels of (N, C, L) or (C, L) input with probability ``p``; scale the rest by 1/(1-p)."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 1)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero entire channels of (N, C, H, W) or (C, H, W) input with probability ``p``; scale the rest by 1/(1-p)."""
    return _channel_dropout("dropout2d", input, p, training, inplace, 2)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero entire channels of (N, C, D, H, W) or (C, D, H, W) input with probability ``p``."""
    return _channel_dropout("dropout3d", input, p, training, inplace, 3)

def _normalized_shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape):  # (a module's own, the usual case)
        return shape
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
    x = input.array
    if len(shape) == 0 or x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
        raise ValueError(f"layer_norm: input shape {input.shape} does not end in normalized_shape {shape}")
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_tensor("layer_norm", arg, t)
            if t.array.shape != shape:
                raise ValueError(f"layer_norm: {arg} shape {t.shape} does not match normalized_shape {shape}")
            _check_same_dtype("layer_norm", input, t, "input", arg)
            _check_device("layer_norm", input, t)
    return _ops.LayerNorm.apply(input, weight, bias, ndim=len(shape), eps=float(eps))


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


_UNSIGNED: dict[Any, Any] = {}  # a signed integer dtype -> the unsigned one of its size (see _check_class_target)


def _check_class_target(name: str, input: Tensor, target: Tensor, c: int, ignore_index: int) -> None:
    if type(ignore_index) is not int and (isinstance(ignore_index, bool)
                                          or not isinstance(ignore_index, numbers.Integral)):
        raise TypeError(f"{name}: ignore_index must be an int, got {type(ignore_index).__name__} {ignore_index!r}")
    shape = input.array.shape
    expected = shape[:1] + shape[2:] if len(shape) >= 2 else ()
    if target.array.shape != expected:
        raise ValueError(
            f"{name}: target shape {target.shape} does not match input shape {input.shape} "
            f"(class-index targets must have shape {expected})"
        )
    data = target.array
    if data.size:
        # read as unsigned, negative targets are too large: one maximum says that all are in [0, c), the usual
        # case; only where some are not (ignore_index, say) does the full check run
        if data.dtype.kind == "i":
            unsigned = _UNSIGNED.get(data.dtype)
            if unsigned is None:
                unsigned = _UNSIGNED[data.dtype] = data.view(data.dtype.str.replace("i", "u")).dtype
            if data.view(unsigned).max() < c:
                return
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
    return _ops.NLLLoss.apply(input, target, weight=w, ignore_index=int(ignore_index), reduction=reduction)


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
        return _ops.SoftCrossEntropy.apply(
            input, target, weight=w, reduction=reduction, label_smoothing=float(label_smoothing)
        )
    target = _as_index_tensor(name, target, input)
    _check_class_target(name, input, target, c, ignore_index)
    return _ops.CrossEntropy.apply(
        input, target, weight=w, ignore_index=int(ignore_index), reduction=reduction,
        label_smoothing=float(label_smoothing),
    )



# ---------------------------------------------------------------------- activations composed of existing ops
def _written_back(input: Tensor, result: Tensor, inplace: bool) -> Tensor:
    """``inplace=True``: ``result`` becomes ``input``'s value, as PyTorch's in-place activations (autograd follows)."""
    return input.copy_(result) if inplace else result


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x sigmoid(x) (the swish); d/dx = s + x s (1 - s) with s = sigmoid(x)."""
    _check_tensor("silu", "input", input)
    return _written_back(input, input * input.sigmoid(), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold; d/dx = sigmoid(beta x).

    Written as logsumexp(0, beta x) / beta, which never overflows and is exact at x = 0.
    """
    _check_tensor("softplus", "input", input)
    _check_float("softplus", "input", input)
    z = input * beta
    smooth = _creation.stack([_creation.zeros_like(z), z], dim=-1).logsumexp(-1) / beta  # (...,)
    return _creation.where(z > threshold, input, smooth)


def logsigmoid(input: Tensor) -> Tensor:
    """log(1 / (1 + exp(-x))) = -softplus(-x), finite for large |x|; d/dx = 1 - sigmoid(x)."""
    _check_tensor("logsigmoid", "input", input)
    _check_float("logsigmoid", "input", input)
    return -softplus(-input)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x tanh(softplus(x))."""
    _check_tensor("mish", "input", input)
    return _written_back(input, input * softplus(input).tanh(), inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope x."""
    _check_tensor("leaky_relu", "input", input)
    return _written_back(input, _creation.where(input > 0, input, input * negative_slope), inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha (exp(x) - 1) (exp taken of min(x, 0), so large x never overflows)."""
    _check_tensor("elu", "input", input)
    _check_float("elu", "input", input)
    negative = (input.clamp(max=0.0).exp() - 1.0) * alpha
    return _written_back(input, _creation.where(input > 0, input, negative), inplace)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a sigmoid(b), where a and b are the two halves of ``input`` along ``dim``."""
    _check_tensor("glu", "input", input)
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    size = input.shape[dim]
    if size % 2:
        raise RuntimeError(f"glu: halving dimension must be even, but dimension {dim} is size {size}")
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> Tensor:
    """x / max(||x||_p, eps) along ``dim``."""
    _check_tensor("normalize", "input", input)
    _check_float("normalize", "input", input)
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported; use the returned tensor")
    # max(||x||_p, eps) = max(sum |x|^p, eps^p)^(1/p): clamping before the root keeps a zero vector's gradient finite
    if p == 2:
        norm = (input * input).sum(dim, keepdim=True).clamp(min=eps * eps).sqrt()
    else:
        norm = (input.abs() ** p).sum(dim, keepdim=True).clamp(min=eps**p) ** (1.0 / p)
    return input / norm


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """clamp(x, min_val, max_val); d/dx = 1 between the bounds, 0 outside."""
    _check_tensor("hardtanh", "input", input)
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return _written_back(input, input.clamp(min_val, max_val), inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return _written_back(input, hardtanh(input, 0.0, 6.0), inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6, a piecewise-linear sigmoid."""
    return _written_back(input, relu6(_check_tensor("hardsigmoid", "input", input) + 3.0) / 6.0, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x relu6(x + 3) / 6."""
    return _written_back(input, input * hardsigmoid(_check_tensor("hardswish", "input", input)), inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with Klambauer et al.'s constants (self-normalising)."""
    return _written_back(input, elu(input, _SELU_ALPHA) * _SELU_SCALE, inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha (exp(x / alpha) - 1)."""
    _check_tensor("celu", "input", input)
    if alpha == 0:
        raise ValueError("celu: alpha cannot be 0")
    negative = ((input.clamp(max=0.0) / alpha).exp() - 1.0) * alpha
    return _written_back(input, _creation.where(input > 0, input, negative), inplace)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|); d/dx = 1 / (1 + |x|)^2."""
    return input / (_check_tensor("softsign", "input", input).abs() + 1.0)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x); d/dx = tanh(x)^2."""
    return input - _check_tensor("tanhshrink", "input", input).tanh()


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else ``value``."""
    _check_tensor("threshold", "input", input)
    return _written_back(input, _creation.where(input > threshold, input, value), inplace)


def rms_norm(
    input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None, eps: float | None = None
) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the trailing ``normalized_shape`` dims (Zhang & Sennrich, 2019).

    ``eps=None`` uses the machine epsilon of the input's dtype, as PyTorch.
    """
    _check_tensor("rms_norm", "input", input)
    _check_float("rms_norm", "input", input)
    shape = _normalized_shape(normalized_shape)
    if len(shape) == 0 or input.ndim < len(shape) or input.shape[input.ndim - len(shape) :] != shape:
        raise ValueError(f"rms_norm: input shape {input.shape} does not end in normalized_shape {shape}")
    if weight is not None:
        _check_tensor("rms_norm", "weight", weight)
        if weight.shape != shape:
            raise ValueError(f"rms_norm: weight shape {weight.shape} does not match normalized_shape {shape}")
        _check_device("rms_norm", input, weight)
    if eps is None:
        eps = float(input.xp.finfo(input.dtype).eps)
    dims = tuple(range(-len(shape), 0))
    rms = ((input * input).mean(dims, keepdim=True) + eps).sqrt()  # (..., 1, ..., 1)
    out = input / rms
    return out if weight is None else out * weight


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 x2) / (max(||x1||, eps) max(||x2||, eps)) along ``dim`` (the inputs broadcast)."""
    _check_tensor("cosine_similarity", "x1", x1)
    _check_tensor("cosine_similarity", "x2", x2)
    if _broadcast_shape(x1.shape, x2.shape) is None:
        raise ValueError(f"cosine_similarity: x1 shape {x1.shape} and x2 shape {x2.shape} do not broadcast")
    n1 = (x1 * x1).sum(dim, keepdim=True).clamp(min=eps * eps).sqrt()  # max(||x1||, eps), finite gradient at 0
    n2 = (x2 * x2).sum(dim, keepdim=True).clamp(min=eps * eps).sqrt()
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p over the last dim."""
    _check_tensor("pairwise_distance", "x1", x1)
    _check_tensor("pairwise_distance", "x2", x2)
    d = x1 - x2 + eps
    if p == 2:
        return (d * d).sum(-1, keepdim=keepdim).sqrt()
    return (d.abs() ** p).sum(-1, keepdim=keepdim) ** (1.0 / p)

def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel (dim 1), statistics over every other dim.

    With ``training=True`` mean and var are the batch's (var biased), and the running statistics, when
    given, are updated in place: r = (1 - momentum) r + momentum s, with the unbiased variance (Ioffe &
    Szegedy, 2015). Otherwise ``running_mean`` and ``running_var`` are used.
    """
    name = "batch_norm"
    _check_tensor(name, "input", input)
    _check_float(name, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{name}: input must be (N, C, ...), got shape {input.shape}")
    c = input.shape[1]
    for arg, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None:
            _check_tensor(name, arg, t)
            if t.shape != (c,):
                raise RuntimeError(f"{name}: {arg} should contain {c} elements, got shape {t.shape}")
            _check_device(name, input, t)
            _check_same_dtype(name, input, t, "input", arg)
    shape = (1, c) + (1,) * (input.ndim - 2)  # broadcasts over (N, C, ...)
    if training:
        dims = (0,) + tuple(range(2, input.ndim))
        n = input.numel() // c if c else 0
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
        mean = input.mean(dims, keepdim=True)  # (1, C, 1, ...)
        var = input.var(dims, keepdim=True, correction=0)  # (1, C, 1, ...)
        if running_mean is not None:
            running_mean.array = (1 - momentum) * running_mean.array + momentum * mean.array.reshape(c)
        if running_var is not None:
            unbiased = var.array.reshape(c) * (n / (n - 1))
            running_var.array = (1 - momentum) * running_var.array + momentum * unbiased
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{name}: running_mean and running_var are required when training=False")
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out

def softmin(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """softmax(-x) along ``dim``."""
    _check_tensor("softmin", "input", input)
    if dim is None:
        dim = _implicit_dim("softmin", input.ndim)
    return softmax(-input, dim, dtype)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x where x > 0, else a x, with one learned slope a per channel (dim 1; dim 0 for 1-D input) or one shared."""
    _check_tensor("prelu", "input", input)
    _check_tensor("prelu", "weight", weight)
    _check_device("prelu", input, weight)
    if weight.ndim != 1:
        raise RuntimeError(f"prelu: weight must be 1-D (num_parameters,), got shape {weight.shape}")
    channel = 1 if input.ndim >= 2 else 0
    if weight.shape[0] != 1:
        if input.ndim == 0 or input.shape[channel] != weight.shape[0]:
            raise RuntimeError(
                f"prelu: weight has {weight.shape[0]} slopes but input of shape {input.shape} has "
                f"{input.shape[channel] if input.ndim else 0} channels in dim {channel}"
            )
        weight = weight.reshape(weight.shape[0], *([1] * (input.ndim - channel - 1)))  # (C, 1, ...)
    return _creation.where(input > 0, input, input * weight)


def group_norm(
    input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalise each of ``num_groups`` groups of channels of every sample (Wu & He, 2018), then a per-channel
    affine map: x (N, C, ...) -> (N, G, C/G * ...) -> (x - mean) / sqrt(var + eps) -> (N, C, ...) * weight + bias."""
    name = "group_norm"
    _check_tensor(name, "input", input)
    _check_float(name, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{name}: input must be (N, C, ...), got shape {input.shape}")
    n, c = input.shape[0], input.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise RuntimeError(
            f"{name}: expected the {c} channels of input {input.shape} to divide into {num_groups} groups"
        )
    shape = (1, c) + (1,) * (input.ndim - 2)
    x = input.reshape(n, num_groups, -1)  # (N, G, C/G * ...)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, correction=0)
    out = ((x - mean) / (var + eps).sqrt()).reshape(input.shape)  # (N, C, ...)
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_tensor(name, arg, t)
            if t.shape != (c,):
                raise RuntimeError(f"{name}: {arg} should have shape ({c},), got {t.shape}")
            _check_same_dtype(name, input, t, "input", arg)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last len(pad) // 2 dims: ``pad = (left_last, right_last, left_2nd_last, right_2nd_last, ...)``.

    ``'constant'`` fills with ``value`` (0 if None; negative sizes crop); ``'reflect'`` mirrors without
    repeating the edge, ``'replicate'`` repeats the edge, ``'circular'`` wraps around. Gradients flow
    back to every copied element (summed where one element is copied several times).
    """
    _check_tensor("pad", "input", input)
    if not isinstance(pad, (tuple, list)) or any(isinstance(n, bool) or not isinstance(n, numbers.Integral)
                                                  for n in pad):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: padding length must be even and at most 2 * input.ndim ({2 * input.ndim}), got {len(pad)}"
        )
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    if mode != "constant" and value is not None:
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in value argument")
    out = input
    for i in range(len(pad) // 2):
        d = input.ndim - 1 - i
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        out = _pad_constant(out, d, left, right, value) if mode == "constant" else _pad_index(out, d, left, right, mode)
    return out


def _pad_constant(x: Tensor, d: int, left: int, right: int, value: float | None) -> Tensor:
    n = x.shape[d]
    start, stop = max(-left, 0), n - max(-right, 0)
    if stop < start:
        raise RuntimeError(
            f"pad: the input size {n} of dim {d}, plus negative padding {left} and {right}, "
            "resulted in a negative output size"
        )
    x = x[(slice(None),) * d + (slice(start, stop),)]
    parts = []
    for size in (left, right):
        shape = x.shape[:d] + (max(size, 0),) + x.shape[d + 1 :]
        parts.append(_creation.full(shape, 0 if value is None else value, dtype=x.dtype, device=x.device))
    return _creation.cat([parts[0], x, parts[1]], dim=d)


def _pad_index(x: Tensor, d: int, left: int, right: int, mode: str) -> Tensor:
    """Pad dim ``d`` by picking source positions: reflect, replicate or wrap the indices -left .. n+right-1."""
    n = x.shape[d]
    if left < 0 or right < 0:
        raise ValueError(f"pad: mode {mode!r} needs non-negative padding, got ({left}, {right}) for dim {d}")
    if mode == "reflect" and (left >= n or right >= n):
        raise RuntimeError(
            f"pad: padding ({left}, {right}) should be less than the input size {n} of dim {d} for reflect padding"
        )
    if mode == "circular" and (left > n or right > n):
        raise ValueError(f"pad: padding ({left}, {right}) must be at most the input size {n} of dim {d} (circular)")
    if n == 0:
        raise RuntimeError(f"pad: mode {mode!r} cannot pad the empty dim {d}")
    xp = x.xp
    idx = xp.arange(-left, n + right)
    if mode == "replicate":
        idx = xp.clip(idx, 0, n - 1)
    elif mode == "circular":
        idx = idx % n
    else:  # reflect about the first and last elements: period 2(n - 1)
        period = max(2 * (n - 1), 1)
        idx = idx % period
        idx = xp.where(idx >= n, period - idx, idx)
    return x[(slice(None),) * d + (Tensor._wrap(idx.astype("int64"), x.device),)]


# ---------------------------------------------------------------------- losses composed of existing ops
def _deprecated_reduction_args(name: str, size_average: Any, reduce: Any) -> None:
    if size_average is not None or reduce is not None:
        raise NotImplementedError(f"{name}: size_average and reduce are deprecated in PyTorch; use reduction=")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_pair(name: str, input: Tensor, target: Any, same_shape: bool = False) -> Tensor:
    """Check a regression-style (input, target) pair; warn as PyTorch when they only broadcast."""
    _check_tensor(name, "input", input)
    _check_tensor(name, "target", target)
    _check_device(name, input, target)
    if same_shape and target.shape != input.shape:
        raise ValueError(
            f"{name}: using a target size ({target.shape}) that is different to the input size ({input.shape}) "
            "is not supported; please ensure they have the same size"
        )
    if _broadcast_shape(input.shape, target.shape) is None:
        raise ValueError(f"{name}: input shape {input.shape} and target shape {target.shape} do not broadcast")
    if target.shape != input.shape:
        warnings.warn(
            f"{name}: target size {target.shape} is different from input size {input.shape}; "
            "they are broadcast together, which is likely not what you want",
            UserWarning,
            stacklevel=3,
        )
    return target.to(dtype=input.dtype) if target.dtype != input.dtype else target


def l1_loss(
    input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None, reduction: str = "mean"
) -> Tensor:
    """|input - target|, reduced by ``reduction``."""
    _deprecated_reduction_args("l1_loss", size_average, reduce)
    _check_reduction("l1_loss", reduction)
    target = _check_pair("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target; beta = 0 is the L1 loss)."""
    _deprecated_reduction_args("smooth_l1_loss", size_average, reduce)
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    target = _check_pair("smooth_l1_loss", input, target)
    d = input - target
    if beta == 0:
        return _reduce(d.abs(), reduction)
    return _reduce(_creation.where(d.abs() < beta, d * d * (0.5 / beta), d.abs() - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (d = input - target)."""
    _check_reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got {delta}")
    target = _check_pair("huber_loss", input, target)
    d = input - target
    return _reduce(_creation.where(d.abs() < delta, d * d * 0.5, (d.abs() - 0.5 * delta) * delta), reduction)


def _check_weight(name: str, arg: str, weight: Tensor | None, input: Tensor) -> None:
    if weight is None:
        return
    _check_tensor(name, arg, weight)
    _check_device(name, input, weight)
    if _broadcast_shape(weight.shape, input.shape) != input.shape:
        raise ValueError(f"{name}: {arg} of shape {weight.shape} does not broadcast to the input shape {input.shape}")


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """-w (t log x + (1 - t) log(1 - x)) for probabilities x in [0, 1]; each log is clamped at -100 (PyTorch's)."""
    name = "binary_cross_entropy"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    _check_float(name, "input", _check_tensor(name, "input", input))
    target = _check_pair(name, input, target, same_shape=True)
    _check_weight(name, "weight", weight, input)
    data = input.array
    if data.size and bool(((data < 0) | (data > 1)).any()):
        raise RuntimeError(f"{name}: all elements of input should be between 0 and 1")
    loss = -(target * input.log().clamp(min=-100.0) + (1.0 - target) * (1.0 - input).log().clamp(min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """BCE of sigmoid(x), stably: (1 - t) x + (1 + (p - 1) t) softplus(-x), times ``weight`` (p = ``pos_weight``).

    d/dx = (1 - t) - (1 + (p - 1) t) sigmoid(-x); finite for logits of any size.
    """
    name = "binary_cross_entropy_with_logits"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    _check_float(name, "input", _check_tensor(name, "input", input))
    target = _check_pair(name, input, target, same_shape=True)
    _check_weight(name, "weight", weight, input)
    _check_weight(name, "pos_weight", pos_weight, input)
    log_weight: Any = 1.0 if pos_weight is None else (pos_weight - 1.0) * target + 1.0
    loss = (1.0 - target) * input + softplus(-input) * log_weight
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def margin_ranking_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """max(0, -y (x1 - x2) + margin) for labels y in {1, -1} (y = 1: x1 should rank higher)."""
    name = "margin_ranking_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    for arg, t in (("input1", input1), ("input2", input2), ("target", target)):
        _check_tensor(name, arg, t)
    if not (input1.ndim == input2.ndim == target.ndim):
        raise RuntimeError(
            f"{name}: all input tensors should have the same number of dims, got {input1.shape}, {input2.shape} "
            f"and {target.shape}"
        )
    return _reduce((-target * (input1 - input2) + margin).relu(), reduction)


def hinge_embedding_loss(
    input: Tensor, target: Tensor, margin: float = 1.0, size_average: Any = None, reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """x where y = 1, max(0, margin - x) where y = -1 (x is usually a distance)."""
    name = "hinge_embedding_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    target = _check_pair(name, input, target)
    zeros = _creation.zeros_like(input.detach())
    loss = _creation.where(target != 1, (margin - input).relu(), zeros) + _creation.where(target != -1, input, zeros)
    return _reduce(loss, reduction)


def soft_margin_loss(
    input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None, reduction: str = "mean"
) -> Tensor:
    """log(1 + exp(-y x)) for labels y in {1, -1} (a smooth hinge)."""
    name = "soft_margin_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    target = _check_pair(name, input, target, same_shape=True)
    return _reduce(softplus(-target * input), reduction)


def multilabel_soft_margin_loss(
    input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None, reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """-mean_c w_c (y_c log sigmoid(x_c) + (1 - y_c) log sigmoid(-x_c)) per sample, for (N, C) or (C,) input."""
    name = "multilabel_soft_margin_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    target = _check_pair(name, input, target, same_shape=True)
    _check_weight(name, "weight", weight, input)
    loss = -(target * logsigmoid(input) + (1.0 - target) * logsigmoid(-input))  # (N, C)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), reduction)  # (N,) before the reduction


def cosine_embedding_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1; cos over the last dim."""
    name = "cosine_embedding_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    for arg, t in (("input1", input1), ("input2", input2), ("target", target)):
        _check_tensor(name, arg, t)
    if input1.shape != input2.shape or input1.ndim not in (1, 2) or target.shape != input1.shape[:-1]:
        raise RuntimeError(
            f"{name}: expected input1 and input2 of one shape (N, D) or (D,) and target (N,) or (), got "
            f"{input1.shape}, {input2.shape} and {target.shape}"
        )
    eps = 1e-12  # PyTorch's, added to both squared norms
    dot = (input1 * input2).sum(-1)
    cos = dot / (((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps)).sqrt()
    zeros = _creation.zeros_like(cos.detach())
    loss = _creation.where(target == 1, 1.0 - cos, zeros) + _creation.where(target == -1, (cos - margin).relu(), zeros)
    return _reduce(loss, reduction)


def triplet_margin_loss(
    anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
    swap: bool = False, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
) -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0) with d the pairwise p-norm distance (``swap``: d(a, n) becomes
    min(d(a, n), d(p, n)), Balntas et al., 2016)."""
    name = "triplet_margin_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    for arg, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        _check_tensor(name, arg, t)
    if not (anchor.ndim == positive.ndim == negative.ndim) or anchor.ndim not in (1, 2):
        raise RuntimeError(
            f"{name}: anchor, positive and negative must all be (N, D) or (D,), got {anchor.shape}, "
            f"{positive.shape} and {negative.shape}"
        )
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = _creation.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).relu(), reduction)


def poisson_nll_loss(
    input: Tensor, target: Tensor, log_input: bool = True, full: bool = False, size_average: Any = None,
    eps: float = 1e-8, reduce: Any = None, reduction: str = "mean",
) -> Tensor:
    """exp(x) - t x (``log_input``: x is the log-rate) or x - t log(x + eps); ``full`` adds Stirling's
    t log t - t + 0.5 log(2 pi t) where t > 1."""
    name = "poisson_nll_loss"
    _deprecated_reduction_args(name, size_average, reduce)
    _check_reduction(name, reduction)
    target = _check_pair(name, input, target)
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        big = target > 1
        safe = _creation.where(big, target, 2.0)
        stirling = safe * safe.log() - safe + 0.5 * (safe * (2 * math.pi)).log()
        loss = loss + _creation.where(big, stirling, 0.0)
    return _reduce(loss, reduction)

def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """Pointwise KL divergence t (log t - x) for log-probabilities x (0 where t = 0), or exp(t) (t - x) with
    ``log_target``. ``'batchmean'`` divides the sum by the batch size (the true KL); ``'mean'`` by every element."""
    name = "kl_div"
    _deprecated_reduction_args(name, size_average, reduce)
    if reduction not in _REDUCTIONS + ("batchmean",):
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS + ('batchmean',)}, got {reduction!r}")
    target = _check_pair(name, input, target)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        safe = _creation.where(positive, target, 1.0)
        loss = _creation.where(positive, target * safe.log(), 0.0) - target * input
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size. "
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition.",
            UserWarning,
            stacklevel=2,
        )
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


_NEG_INF = float("-inf")


def _broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy's broadcast of two shapes, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> tuple[int, ...]:
    """Validate (..., L, E), (..., S, E), (..., S, Ev); return the shape of the scores (..., L, S)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, got {type(t).__name__}")
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(
            "scaled_dot_product_attention: query, key and value must be at least 2-D, got shapes "
            f"{query.shape}, {key.shape} and {value.shape}"
        )
    if not (query.dtype == key.dtype == value.dtype) or query.dtype.kind != "f":
        raise RuntimeError(
            "scaled_dot_product_attention: query, key and value must share one floating point dtype, got "
            f"{query.dtype}, {key.dtype} and {value.dtype}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(
            f"scaled_dot_product_attention: query {query.shape} and key {key.shape} must have the same "
            f"last dimension E ({query.shape[-1]} != {key.shape[-1]})"
        )
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: key {key.shape} and value {value.shape} must have the same "
            f"sequence length S ({key.shape[-2]} != {value.shape[-2]})"
        )
    batch = _broadcast_shapes(query.shape[:-2], key.shape[:-2])
    batch = None if batch is None else _broadcast_shapes(batch, value.shape[:-2])
    if batch is None:
        raise RuntimeError(
            f"scaled_dot_product_attention: the batch dimensions of query {query.shape}, key {key.shape} "
            f"and value {value.shape} do not broadcast"
        )
    return batch + (query.shape[-2], key.shape[-2])


def _dropout_keep(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """The inverted-dropout multiplier: 1/(1-p) with probability 1-p, else 0 (no gradient)."""
    if p >= 1.0:
        return _creation.zeros(shape, dtype=like.dtype, device=like.device)
    kept = _creation.rand(shape, dtype=like.dtype, device=like.device) >= p
    return kept.to(dtype=like.dtype) * (1.0 / (1.0 - p))


def _check_dropout(p: float, where: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q K^T * scale + M) V for query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).

    ``scale`` defaults to 1/sqrt(E). ``attn_mask`` broadcasts to (..., L, S) and is either
    boolean, where **True means "may attend"** (PyTorch's SDPA convention; the opposite of
    ``MultiheadAttention``'s), or floating point, added to the scores (and differentiated).
    ``is_causal=True`` lets query i see keys j <= i (a lower-triangular (L, S) mask aligned at
    the top-left, as PyTorch); giving it together with ``attn_mask`` raises ``RuntimeError``.
    A query row whose every key is masked out gets output 0 and zero gradients, as PyTorch on
    the CPU. With ``dropout_p > 0`` the attention weights are dropped (and the rest scaled by
    1/(1-p)) on every call, training or not, as PyTorch's functional form does.
    Runs as one fused op (:class:`ops.attention.ScaledDotProductAttention`).
    """
    mask, keep, scale = _attention_operands(query, key, value, attn_mask, dropout_p, is_causal, scale)
    return ScaledDotProductAttention.apply(query, key, value, mask, keep=keep, scale=scale)


def _attention_with_weights(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
                            dropout_p: float) -> tuple[Tensor, Tensor]:
    """(O, P'): :func:`scaled_dot_product_attention` and its weights (after dropout), (..., L, S), from one
    fused op (:class:`ops.attention.ScaledDotProductAttentionWeights`); ``MultiheadAttention``'s
    ``need_weights=True``."""
    mask, keep, scale = _attention_operands(query, key, value, attn_mask, dropout_p, False, None)
    out, weights = ScaledDotProductAttentionWeights.apply(query, key, value, mask, keep=keep, scale=scale)
    return out, weights


def _attention_operands(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None, dropout_p: float,
                        is_causal: bool, scale: float | None) -> tuple[Any, Any, float]:
    """The checked mask (an additive array or Tensor, or None), dropout keep-mask and scale of the attention op."""
    scores_shape = _check_qkv(query, key, value)
    dropout_p = _check_dropout(dropout_p, "scaled_dot_product_attention")
    L, S = scores_shape[-2], scores_shape[-1]
    xp = query.xp
    mask: Any = None
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError(
                "scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True"
            )
        allowed = xp.tri(L, S, dtype=bool)  # (L, S): key j visible to query i iff j <= i
        mask = xp.where(allowed, 0.0, _NEG_INF).astype(query.dtype)
    elif attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if _broadcast_shapes(attn_mask.shape, scores_shape) is None:
            raise RuntimeError(
                f"scaled_dot_product_attention: attn_mask of shape {attn_mask.shape} does not broadcast to the "
                f"attention scores' shape {scores_shape} (..., L, S)"
            )
        if attn_mask.dtype.kind == "b":
            if attn_mask.device != query.device:
                raise RuntimeError(
                    f"scaled_dot_product_attention: attn_mask is on {attn_mask.device} but query on {query.device}"
                )
            mask = xp.where(attn_mask.array, 0.0, _NEG_INF).astype(query.dtype)
        elif attn_mask.dtype.kind == "f":
            mask = attn_mask.to(dtype=query.dtype)
        else:
            raise RuntimeError(
                f"scaled_dot_product_attention: attn_mask must be bool or floating point, got {attn_mask.dtype}"
            )
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        raise TypeError(f"scaled_dot_product_attention: scale must be a number or None, got {type(scale).__name__}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    keep = None
    if dropout_p > 0.0:
        keep_shape = scores_shape  # (..., L, S), or larger if the mask broadcasts the batch further
        if mask is not None:
            keep_shape = _broadcast_shapes(scores_shape, tuple(mask.shape)) or scores_shape
        keep = _dropout_keep(keep_shape, dropout_p, query).array
    return mask, keep, scale


__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "batch_norm", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "celu", "conv1d", "conv2d", "cosine_embedding_loss", "cosine_similarity",
    "cross_entropy", "dropout", "dropout1d", "dropout2d", "dropout3d", "elu", "embedding", "gelu", "glu", "group_norm",
    "hardsigmoid", "hardswish", "hardtanh", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss", "layer_norm",
    "leaky_relu", "linear", "log_softmax", "logsigmoid", "margin_ranking_loss", "max_pool1d", "max_pool2d", "mish",
    "mse_loss", "multilabel_soft_margin_loss", "nll_loss", "normalize", "one_hot", "pad", "pairwise_distance",
    "poisson_nll_loss", "prelu", "relu", "relu6", "rms_norm", "scaled_dot_product_attention", "selu", "sigmoid",
    "silu", "smooth_l1_loss", "soft_margin_loss", "softmax", "softmin", "softplus", "softsign", "tanh", "tanhshrink",
    "threshold", "triplet_margin_loss",
]


# Convolution and pooling (their layers are in conv.py).


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
    stacked = _creation.stack(parts, dim=2)  # (N, C, prod(kernel), *out)
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
        x = pad(x, pads)
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
    padding_t = _ntuple(name, "padding", padding, nsp)
    dil = _ntuple(name, "dilation", dilation, nsp)
    if any(p > k // 2 for p, k in zip(padding_t, kernel)):
        raise RuntimeError(f"{name}: pad should be at most half of effective kernel size, got padding={padding!r}")
    return kernel, stride_t, padding_t, dil


def _max_pool(name: str, nsp: int, input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
              ceil_mode: bool, return_indices: bool) -> Tensor:
    if return_indices:
        raise NotImplementedError(f"{name}: return_indices=True is not supported")
    x, unbatched = _spatial_input(name, input, nsp)
    kernel, stride_t, padding_t, dil = _pool_args(name, nsp, kernel_size, stride, padding, dilation, ceil_mode)
    if any(padding_t):
        x = pad(x, [p for q in reversed(padding_t) for p in (q, q)], value=float("-inf"))
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
    kernel, stride_t, padding_t, dil = _pool_args(name, nsp, kernel_size, stride, padding, 1, ceil_mode)
    pads = [p for q in reversed(padding_t) for p in (q, q)]
    dims = tuple(range(2, 2 + nsp))
    total = _windows(name, pad(x, pads) if any(pads) else x, kernel, stride_t, dil).sum(dims)  # (N, C, *out)
    if divisor_override is not None:
        y = total / divisor_override
    elif count_include_pad or not any(pads):
        y = total / math.prod(kernel)
    else:  # divide by the number of real (unpadded) elements in each window
        ones = _creation.ones((1, 1) + x.shape[2:], dtype=x.dtype, device=x.device)
        y = total / _windows(name, pad(ones, pads), kernel, stride_t, dil).sum(dims)
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
