"""PyTorch's function forms (``tl.f(x, ...)`` is ``x.f(...)``), ``out=``, and small Tensor API bits (issue 15)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import host

import tinygrad_lm as tl
from tinygrad_lm import functions

UNARY_NAMES = ["abs", "absolute", "neg", "negative", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt",
               "rsqrt", "reciprocal", "sin", "cos", "tan", "atan", "arctan", "sinh", "cosh", "tanh", "sigmoid",
               "relu", "erf", "floor", "ceil", "round", "trunc", "fix", "frac", "sign", "square", "isnan", "isinf",
               "isfinite", "logical_not", "sum", "mean", "prod", "norm", "var", "std", "amax", "amin", "argmax",
               "argmin", "all", "any", "count_nonzero", "median", "msort", "t", "clone", "detach", "nonzero",
               "flatten", "squeeze", "fliplr", "flipud", "trace", "diag", "argwhere"]


@pytest.mark.parametrize("name", UNARY_NAMES)
def test_function_form_is_the_method(device, name):
    x = tl.tensor([[0.5, 1.5], [2.0, 3.0]], device=device)
    ours = getattr(tl, name)(x)
    expected = getattr(x, name)()
    np.testing.assert_array_equal(host(ours), host(expected))


def test_every_function_form_exists_and_rejects_non_tensors():
    for name in functions._METHOD_FORMS:
        assert callable(getattr(tl, name)), name
    with pytest.raises(TypeError, match="exp\\(\\): argument 'input' must be Tensor, not list"):
        tl.exp([1.0])


def test_out_argument(device):
    x = tl.tensor([1.0, 4.0], device=device)
    out = tl.zeros(2, device=device)
    assert tl.sqrt(x, out=out) is out and host(out).tolist() == [1.0, 2.0] and out._version == 1
    tl.add(x, 1, out=out)
    assert host(out).tolist() == [2.0, 5.0]
    with pytest.raises(RuntimeError, match="out has shape \\(3,\\) but the result has shape \\(2,\\)"):
        tl.exp(x, out=tl.zeros(3, device=device))
    w = tl.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        tl.mul(w, 2, out=out)


def test_binary_and_matrix_function_forms(device):
    a = tl.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    b = tl.tensor([[0.5, -1.0], [2.0, 1.0]], device=device)
    assert host(tl.mm(a, b)).tolist() == host(a @ b).tolist()
    assert host(tl.bmm(a[None], b[None])).tolist() == [host(a @ b).tolist()]
    assert tl.dot(a[0], b[0]).item() == -1.5
    assert host(tl.outer(a[0], b[0])).tolist() == [[0.5, -1.0], [1.0, -2.0]]
    assert host(tl.pow(2, a)).tolist() == [[2.0, 4.0], [8.0, 16.0]] and tl.pow(a, 2).tolist() == [[1, 4], [9, 16]]
    assert host(tl.sub(a, b, alpha=2)).tolist() == [[0.0, 4.0], [-1.0, 2.0]]
    assert host(a.div(b, rounding_mode="floor")).tolist() == [[2.0, -2.0], [1.0, 4.0]]
    assert host(tl.divide(a, b, rounding_mode="trunc")).tolist() == [[2.0, -2.0], [1.0, 4.0]]
    assert tl.broadcast_shapes((2, 1), (3,)) == (2, 3)
    assert [t.shape for t in tl.broadcast_tensors(a[0], b[:, :1])] == [(2, 2), (2, 2)]
    assert tl.broadcast_to(a[0], (3, 2)).shape == (3, 2)
    with pytest.raises(RuntimeError, match="mm: expected two 2-D tensors"):
        tl.mm(a[0], b)


def test_small_tensor_api_bits(device):
    x = tl.ones(2, 3, device=device)
    assert x.type() == ("torch.FloatTensor" if device == "cpu" else "torch.cuda.FloatTensor")
    assert x.type(tl.float64).dtype == tl.float64 and x.half().dtype == tl.float16
    assert x.is_cuda == (device != "cpu") and x.get_device() == (-1 if device == "cpu" else 0)
    assert x.ndimension() == 2 and x.nelement() == 6 and x.element_size() == 4 and x.is_contiguous()
    assert x.new_zeros(4).dtype == tl.float32 and x.new_full((2,), 7).tolist() == [7.0, 7.0]
    assert x.new_tensor([1, 2]).dtype == tl.float32 and x.new_ones(1, 2).shape == (1, 2)
    assert x.sum(dtype=tl.float64).dtype == tl.float64 and tl.tensor([True, True]).sum().item() == 2
    assert x.to(copy=True) is not x and x.to(device) is x
