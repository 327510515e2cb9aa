"""PyTorch's function forms: ``tl.exp(x)``, ``tl.max(x, 1)``, ``tl.clamp(x, 0, 1, out=y)``.

Each is a thin wrapper over the Tensor method of the same name (``tl.f(x, ...)`` is
``x.f(...)``), made by :func:`_method_form`, with PyTorch's optional ``out=``: the result
is copied into ``out`` (which must have the result's shape, as PyTorch warns about others).
The few that are not plain method calls (``pow`` with a number base, ``numel``, ``is_tensor``,
``mm``) are written out below.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable, Sequence

from . import autograd, backend, dtypes, printing
from . import ops as _ops
from .tensor import Tensor

# Tensor methods whose function form takes the tensor first: tl.name(input, *args, **kwargs).
_METHOD_FORMS = (
    # pointwise math
    "abs", "absolute", "neg", "negative", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt",
    "reciprocal", "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "sigmoid", "relu", "erf", "floor", "ceil", "round", "trunc", "fix", "frac", "sign", "square",
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "atan2", "arctan2", "fmod",
    "remainder", "floor_divide", "lerp", "addcmul", "addcdiv", "clamp", "clip", "clamp_min", "clamp_max",
    # comparisons and logic
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "less", "greater_equal", "less_equal", "not_equal", "equal",
    "isclose", "allclose", "isnan", "isinf", "isfinite", "isposinf", "isneginf", "logical_and", "logical_or",
    "logical_not", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    # reductions
    "sum", "mean", "nansum", "nanmean", "prod", "cumsum", "cumprod", "logcumsumexp", "norm", "var", "std",
    "var_mean", "std_mean", "max", "min", "amax", "amin", "aminmax", "argmax", "argmin", "sort", "argsort",
    "msort", "topk", "kthvalue", "median", "mode", "all", "any", "count_nonzero", "logsumexp", "softmax",
    "log_softmax",
    # shape, indexing, joining
    "reshape", "transpose", "swapaxes", "swapdims", "permute", "squeeze", "unsqueeze", "flatten", "unflatten",
    "narrow", "select", "movedim", "moveaxis", "flip", "fliplr", "flipud", "roll", "tile", "repeat_interleave",
    "unbind", "split", "chunk", "gather", "index_select", "take_along_dim", "masked_select", "masked_fill",
    "scatter", "scatter_add", "index_add", "nonzero", "argwhere", "diag", "diagonal", "trace", "t", "tril", "triu",
    "matmul", "clone", "detach",
    # more math, products, shapes and predicates
    "asinh", "acosh", "atanh", "arcsinh", "arccosh", "arctanh", "deg2rad", "rad2deg", "sgn", "signbit", "positive",
    "erfc", "logit", "xlogy", "hypot", "logaddexp", "logaddexp2", "copysign", "heaviside", "nan_to_num", "sinc",
    "float_power", "fmax", "fmin", "ldexp", "gcd", "lcm", "nextafter", "frexp", "mv", "addmm", "addmv", "addbmm",
    "baddbmm", "addr", "ger", "inner", "vdot", "ravel", "tensor_split", "hsplit", "vsplit", "dsplit",
    "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "rot90", "diff", "cummax",
    "cummin", "index_fill", "index_copy", "index_put", "masked_scatter", "take", "dist", "unique", "bincount",
    "is_nonzero", "is_same_size", "is_signed", "is_complex", "is_conj", "is_neg", "is_inference", "isreal", "conj",
    "conj_physical", "resolve_conj", "resolve_neg", "real", "adjoint", "get_device", "detach_", "nanmean",
    "unflatten", "narrow", "swapaxes", "swapdims", "moveaxis", "movedim", "logcumsumexp", "quantile", "nanquantile",
)
# In-place forms PyTorch also offers as functions: tl.relu_(x) is x.relu_().
_IN_PLACE_FORMS = (
    "abs_", "absolute_", "acos_", "acosh_", "arccos_", "arccosh_", "arcsin_", "arcsinh_", "arctan_", "arctanh_",
    "asin_", "asinh_", "atan_", "atanh_", "ceil_", "clamp_", "clamp_max_", "clamp_min_", "clip_", "cos_", "cosh_",
    "deg2rad_", "erf_", "erfc_", "exp2_", "exp_", "expm1_", "fill_", "fix_", "floor_", "frac_", "gcd_", "index_put_",
    "lcm_", "ldexp_", "log10_", "log1p_", "log2_", "log_", "logit_", "nan_to_num_", "neg_", "negative_",
    "rad2deg_", "reciprocal_", "relu_", "round_", "rsqrt_", "sigmoid_", "sin_", "sinc_", "sinh_", "sqrt_",
    "square_", "tan_", "tanh_", "trunc_", "xlogy_", "zero_",
)


def _tensor_arg(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(value).__name__}")
    return value


def _into(name: str, out: Any, result: Any) -> Tensor:
    """``result`` copied into ``out`` (PyTorch's ``out=``): same shape and device, values cast to out's dtype."""
    if not isinstance(result, Tensor):
        raise TypeError(f"{name}(): out= is supported for single-tensor results only")
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if out.shape != result.shape:
        raise RuntimeError(f"{name}(): out has shape {out.shape} but the result has shape {result.shape}")
    if autograd.is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic differentiation, "
                           "but one of the arguments requires grad")
    return out.copy_(result)


def _method_form(name: str) -> Callable[..., Any]:
    method = getattr(Tensor, name)

    def function(input: Any, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        result = method(_tensor_arg(name, input), *args, **kwargs)
        return result if out is None else _into(name, out, result)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``tl.{name}(input, ...)`` is ``input.{name}(...)``."
    return function


for _name in _METHOD_FORMS + _IN_PLACE_FORMS:
    globals()[_name] = _method_form(_name)


def pow(input: Any, exponent: Any, *, out: Any = None) -> Tensor:  # noqa: A001 - PyTorch's name
    """``input ** exponent``; ``input`` may be a number when ``exponent`` is a tensor."""
    if isinstance(input, Tensor):
        result = input**exponent
    elif isinstance(exponent, Tensor):
        result = exponent.__rpow__(input)
    else:
        raise TypeError("pow(): one of input and exponent must be a Tensor")
    return result if out is None else _into("pow", out, result)


def mm(input: Tensor, mat2: Tensor, *, out: Any = None) -> Tensor:
    """The product of two matrices (2-D only; ``matmul`` broadcasts)."""
    if _tensor_arg("mm", input).ndim != 2 or _tensor_arg("mm", mat2).ndim != 2:
        raise RuntimeError(f"mm: expected two 2-D tensors, got shapes {input.shape} and {mat2.shape}")
    result = input @ mat2
    return result if out is None else _into("mm", out, result)


def bmm(input: Tensor, mat2: Tensor, *, out: Any = None) -> Tensor:
    """Batched matrix products of two 3-D tensors with the same batch size."""
    if _tensor_arg("bmm", input).ndim != 3 or _tensor_arg("bmm", mat2).ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: expected two 3-D tensors with one batch size, got {input.shape} and {mat2.shape}")
    result = input @ mat2
    return result if out is None else _into("bmm", out, result)


def dot(input: Tensor, other: Tensor) -> Tensor:
    if _tensor_arg("dot", input).ndim != 1 or _tensor_arg("dot", other).ndim != 1:
        raise RuntimeError(f"dot: 1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return input @ other


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    return _tensor_arg("outer", input).reshape(-1, 1) * _tensor_arg("outer", vec2).reshape(1, -1)


def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    result: tuple[int, ...] = ()
    for shape in shapes:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = builtins.max(len(result), len(shape))  # (this module's max and any are PyTorch's: see _METHOD_FORMS)
        a, b = (1,) * (n - len(result)) + result, (1,) * (n - len(shape)) + shape
        if builtins.any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
            raise RuntimeError(f"broadcast_shapes: shapes {result} and {shape} do not broadcast")
        result = tuple(y if x == 1 else x for x, y in zip(a, b))
    return result


def broadcast_to(input: Tensor, size: Sequence[int]) -> Tensor:
    return _tensor_arg("broadcast_to", input).expand(*size)


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    shape = broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t if t.shape == shape else t.expand(*shape) for t in tensors)


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation, as ``torch.einsum`` (``'bij,bjk->bik'``, ``'...ij,...jk'``); differentiable in every operand.

    A letter repeated within one operand (a diagonal, ``'ii->i'``) is not supported.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, t in enumerate(operands):
        _tensor_arg(f"einsum (operand {i})", t)
    spec = equation.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(operands):
        raise ValueError(f"einsum: {equation!r} names {len(ins)} operands, got {len(operands)}")
    letters = set("".join(ins).replace(".", ""))
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in letters]
    dots = []  # how many dims each operand's ellipsis stands for
    for sub, t in zip(ins, operands):
        n = t.ndim - len(sub.replace("...", "")) if "..." in sub else 0
        if n < 0:
            raise ValueError(f"einsum: operand {sub!r} has more letters than its {t.ndim} dims")
        dots.append(n)
    widest = builtins.max(dots, default=0)
    batch = "".join(spare[:widest])  # the ellipsis dims, aligned on the right as NumPy broadcasts them
    expanded = []
    for sub, t, n in zip(ins, operands, dots):
        sub = sub.replace("...", batch[widest - n:])
        if len(sub) != t.ndim:
            raise ValueError(f"einsum: subscripts {sub!r} do not match an operand of shape {t.shape}")
        if len(set(sub)) != len(sub):
            raise NotImplementedError(f"einsum: a letter repeated within one operand ({sub!r}) is not supported")
        expanded.append(sub)
    if arrow:
        out = rhs.replace("...", batch)
    else:
        counts = "".join(expanded)
        out = batch + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in batch))
    dtype = operands[0].dtype
    operands = tuple(t if t.dtype == dtype else t.to(dtype) for t in operands)
    return _ops.Einsum.apply(*operands, subscripts=(tuple(expanded), out))


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """``data`` as a tensor, sharing memory when it already is one (or a NumPy array) of that dtype and device."""
    from .creation import tensor

    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (dtype is not None or device is not None) else data
    if backend.is_backend_array(data):
        shared = Tensor(data)  # keeps the array (and its memory) when dtype and device already fit
        return shared.to(device=device, dtype=dtype) if (dtype is not None or device is not None) else shared
    return tensor(data, dtype=dtype, device=device)


def _stack_args(name: str, tensors: Sequence[Tensor]) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{name}: expected a non-empty list of Tensors")
    return [_tensor_arg(name, t) for t in tensors]


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    from .creation import cat

    ts = [t.reshape(-1) if t.ndim == 0 else t for t in _stack_args("hstack", tensors)]
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    from .creation import cat

    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in _stack_args("vstack", tensors)], 0)


row_stack = vstack


def dstack(tensors: Sequence[Tensor]) -> Tensor:
    from .creation import cat

    ts = _stack_args("dstack", tensors)
    return cat([t.reshape(1, -1, 1) if t.ndim < 2 else (t.unsqueeze(-1) if t.ndim == 2 else t) for t in ts], 2)


def column_stack(tensors: Sequence[Tensor]) -> Tensor:
    from .creation import cat

    return cat([t.reshape(-1, 1) if t.ndim < 2 else t for t in _stack_args("column_stack", tensors)], 1)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple[Tensor, ...]:
    """Coordinate grids from 1-D tensors (``indexing='ij'``, or ``'xy'`` to swap the first two dims)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [_tensor_arg("meshgrid", t).reshape(-1) for t in tensors]
    if indexing == "xy" and len(ts) >= 2:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t.shape[0] for t in ts)
    grids = [t.reshape([-1 if i == j else 1 for j in range(len(ts))]).expand(*shape) for i, t in enumerate(ts)]
    if indexing == "xy" and len(grids) >= 2:  # made for (y, x, ...): hand them back in the order given
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


def cartesian_prod(*tensors: Tensor) -> Tensor:
    from .creation import stack

    if len(tensors) == 1:
        return _tensor_arg("cartesian_prod", tensors[0])
    return stack([g.reshape(-1) for g in meshgrid(*tensors, indexing="ij")], 1)


def _triangle_indices(name: str, row: int, col: int, offset: int, upper: bool, dtype: Any, device: Any) -> Tensor:
    from .creation import tensor

    rows, cols = [], []
    for i in range(row):
        for j in range(col):
            if (j - i >= offset) if upper else (j - i <= offset):
                rows.append(i)
                cols.append(j)
    return tensor([rows, cols], dtype=dtype or "int64", device=device).reshape(2, -1)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype: Any = None, device: Any = None) -> Tensor:
    """The (2, n) row and column indices of the lower triangle (diagonal ``offset`` included)."""
    return _triangle_indices("tril_indices", row, col, offset, False, dtype, device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype: Any = None, device: Any = None) -> Tensor:
    return _triangle_indices("triu_indices", row, col, offset, True, dtype, device)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0) -> Tensor:
    """Distances between every row of ``x1`` (..., P, M) and of ``x2`` (..., R, M): (..., P, R)."""
    if _tensor_arg("cdist", x1).ndim < 2 or _tensor_arg("cdist", x2).ndim < 2 or x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"cdist: expected (..., P, M) and (..., R, M), got {x1.shape} and {x2.shape}")
    return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).norm(p, -1)


def diagflat(input: Tensor, offset: int = 0) -> Tensor:
    return _tensor_arg("diagflat", input).reshape(-1).diag(offset)


def numel(input: Tensor) -> int:
    return _tensor_arg("numel", input).numel()


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    return _tensor_arg("is_floating_point", input).is_floating_point()


def get_default_dtype() -> dtypes.DType:
    """The dtype Python floats become (``tl.float32`` unless ``set_default_dtype`` changed it)."""
    return dtypes.as_dtype(dtypes.get_default_dtype())


def set_printoptions(precision: int | None = None, threshold: int | None = None, edgeitems: int | None = None,
                     linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """How tensors print (PyTorch's options; ``profile`` is 'default', 'short' or 'full')."""
    printing.set_print_options(precision=precision, threshold=threshold, edgeitems=edgeitems, linewidth=linewidth,
                              profile=profile, sci_mode=sci_mode)


__all__ = [*_METHOD_FORMS, *_IN_PLACE_FORMS, "as_tensor", "bmm", "broadcast_shapes", "broadcast_tensors",
           "broadcast_to", "cartesian_prod", "cdist", "column_stack", "diagflat", "dot", "dstack", "einsum",
           "get_default_dtype", "hstack", "is_floating_point", "is_tensor", "meshgrid", "mm", "numel", "outer", "pow",
           "row_stack", "set_printoptions", "tril_indices", "triu_indices", "vstack"]
