"""Fuzzing the public API with bad input: every call gives the right answer or a clear error.

The contract checked here, for ops, layers, losses, optimizers and tokenizers: a call either
returns what a plain NumPy computation says it should, or raises one of the documented
exception types (TypeError, ValueError, IndexError, RuntimeError) whose message names the
problem -- the shapes, dtypes or devices involved, the argument, or the offending value.
Never an AttributeError/KeyError/ZeroDivisionError or a NumPy error from deep inside, and
never a silently wrong result (a negative index that wraps, an int tensor taken for floats).

Two kinds of tests:

* ``BAD_CALLS``, a table of (call, expected exception type, words the message must contain),
  one row per kind of bad input and API area; each row runs on every backend.
* Hypothesis properties that draw shapes, indices and hyperparameters from ranges that mix
  valid and invalid values: valid draws are checked against NumPy, invalid ones must raise
  naming the offending value. NaN/Inf inputs must flow through ops as they do in NumPy.

Mixed devices are tested without a GPU by relabelling a tensor (``.device = "cuda:0"``): every
device check runs before any array math, so nothing ever computes on the relabelled tensor.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim
from tinygrad_lm.autograd import AnomalyError
from tinygrad_lm.data.tokenizers import CharTokenizer, WordTokenizer

DOCUMENTED = (TypeError, ValueError, IndexError, RuntimeError)
# Starts of messages that come straight from NumPy or Python, with none of our context in front.
_BARE_STARTS = (
    "operands could not be broadcast", "could not broadcast", "negative dimensions", "invalid literal",
    "unsupported operand", "'", "only integers, slices", "index ", "setting an array element",
)


def expect_error(call: Callable[[], Any], exc: type[BaseException], *words: Any) -> BaseException:
    """Run ``call``; it must raise ``exc`` (one of ours, from builtins) whose message contains every word."""
    try:
        result = call()
    except Exception as err:  # noqa: BLE001 - any other type is exactly what this check reports
        msg = str(err)
        assert isinstance(err, DOCUMENTED), f"undocumented {type(err).__name__} leaked: {msg}"
        assert isinstance(err, exc), f"expected {exc.__name__}, got {type(err).__name__}: {msg}"
        assert type(err).__module__ == "builtins" or isinstance(err, AnomalyError), (
            f"a library-internal {type(err).__module__}.{type(err).__name__} leaked: {msg}"
        )
        assert not msg.startswith(_BARE_STARTS), f"a bare message without our context: {msg}"
        for w in words:
            assert _mentions(msg, w), f"the message does not mention {w!r}: {msg}"
        return err
    raise AssertionError(f"expected {exc.__name__}, but the call returned {type(result).__name__}")


def _mentions(msg: str, word: Any) -> bool:
    w = str(word)
    return w in msg or w.replace(" ", "") in msg.replace(" ", "")


def other(dev: str) -> str:
    return "cuda:0" if dev == "cpu" else "cpu"


def moved(t: tl.Tensor) -> tl.Tensor:
    """Label ``t`` as living on the other device (see the module docstring)."""
    t.device = other(t.device)
    return t


def ones(d: str, *shape: int, dtype: Any = None) -> tl.Tensor:
    return tl.ones(*shape, dtype=dtype, device=d)


def ids(d: str, values: Any) -> tl.Tensor:
    return tl.tensor(values, dtype=tl.int64, device=d)


def param(d: str, *shape: int) -> nn.Parameter:
    return nn.Parameter(tl.ones(*shape, device=d))


def mha(d: str, x: tl.Tensor, **kw: Any) -> Any:
    return nn.MultiheadAttention(4, 2).to(d)(x, x, x, **kw)


def _setitem(t: tl.Tensor, index: Any, value: Any) -> None:
    t[index] = value


def _row(name: str, call: Callable[[str], Any], exc: type[BaseException], *words: Any) -> Any:
    return pytest.param(call, exc, words, id=name)


def _on_pair(f: Callable[..., Any]) -> Callable[[str], Any]:
    return lambda d: f(ones(d, 2, 3), ones(d, 4, 5))


def _on_2x3(f: Callable[..., Any]) -> Callable[[str], Any]:
    return lambda d: f(ones(d, 2, 3))


def _on_list(f: Callable[..., Any]) -> Callable[[str], Any]:
    return lambda d: f([1.0, 2.0])


def _method_of_empty(name: str) -> Callable[[str], Any]:
    return lambda d: getattr(ones(d, 0), name)()


def _dropout_with(p: float) -> Callable[[str], Any]:
    return lambda d: F.dropout(ones(d, 2), p)


def _negative_lr(opt: Any) -> Callable[[str], Any]:
    return lambda d: opt([param(d, 2)], lr=-1.0)


# (id, call on device d, exception type, words the message must contain); {d} / {o} mean the devices.
BAD_CALLS = [
    # ---------------------------------------------------------------- shapes
    *(
        _row(f"{name}-shapes", _on_pair(f), ValueError, (2, 3), (4, 5))
        for name, f in [
            ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
            ("div", lambda a, b: a / b), ("pow", lambda a, b: a**b), ("maximum", tl.maximum),
            ("minimum", tl.minimum), ("less", lambda a, b: a < b), ("eq", lambda a, b: a == b),
            ("matmul", lambda a, b: a @ b), ("cat", lambda a, b: tl.cat([a, b])),
            ("stack", lambda a, b: tl.stack([a, b])), ("where", lambda a, b: tl.where(a > 0, a, b)),
            ("linear", lambda a, b: F.linear(a, b)), ("mse_loss", F.mse_loss),
        ]
    ),
    _row("matmul-0d", lambda d: ones(d, 2, 3) @ tl.tensor(1.0, device=d), ValueError, (2, 3), "()"),
    _row("masked_fill-mask", lambda d: ones(d, 2, 3).masked_fill(ones(d, 4) > 0, 0.0), ValueError, (4,), (2, 3)),
    _row("reshape", lambda d: ones(d, 2, 3).reshape(4), ValueError, (2, 3), (4,)),
    _row("expand", lambda d: ones(d, 2, 3).expand(3, 3), ValueError, (2, 3), (3, 3)),
    _row("linear-bias", lambda d: F.linear(ones(d, 2, 3), ones(d, 4, 3), ones(d, 5)), ValueError, (5,), (4, 3)),
    _row("Linear-in", lambda d: nn.Linear(3, 4).to(d)(ones(d, 2, 5)), ValueError, (2, 5), (4, 3)),
    _row("layer_norm", lambda d: F.layer_norm(ones(d, 2, 3), (4,)), ValueError, (2, 3), (4,)),
    _row("layer_norm-weight", lambda d: F.layer_norm(ones(d, 2, 3), 3, ones(d, 4)), ValueError, "weight", (4,)),
    _row("LayerNorm", lambda d: nn.LayerNorm(4).to(d)(ones(d, 2, 3)), ValueError, (2, 3), (4,)),
    _row("cross_entropy-target", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1, 2])), ValueError,
         (3,), (2, 3)),
    _row("cross_entropy-3d-target", lambda d: F.cross_entropy(ones(d, 2, 3, 4), ids(d, [[0] * 5] * 2)), ValueError,
         (2, 5), (2, 3, 4)),
    _row("cross_entropy-probs", lambda d: F.cross_entropy(ones(d, 2, 3), ones(d, 2)), ValueError, (2,), (2, 3)),
    _row("cross_entropy-weight", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]), weight=ones(d, 4)),
         ValueError, "weight", (4,)),
    _row("nll_loss-target", lambda d: F.nll_loss(ones(d, 2, 3), ids(d, [0])), ValueError, (1,), (2, 3)),
    _row("sdpa-E", lambda d: F.scaled_dot_product_attention(ones(d, 2, 3), ones(d, 2, 4), ones(d, 2, 3)),
         RuntimeError, (2, 3), (2, 4)),
    _row("sdpa-S", lambda d: F.scaled_dot_product_attention(ones(d, 2, 3), ones(d, 2, 3), ones(d, 4, 3)),
         RuntimeError, (2, 3), (4, 3)),
    _row("sdpa-mask", lambda d: F.scaled_dot_product_attention(ones(d, 2, 3), ones(d, 2, 3), ones(d, 2, 3),
                                                               attn_mask=ones(d, 3, 3) > 0), RuntimeError,
         (3, 3), (2, 2)),
    _row("RNN-input_size", lambda d: nn.RNN(2, 3).to(d)(ones(d, 4, 1, 5)), RuntimeError, "input_size", 5),
    _row("RNN-1d", lambda d: nn.RNN(2, 3).to(d)(ones(d, 2)), RuntimeError, "1D", (2,)),
    _row("RNN-h0", lambda d: nn.RNN(2, 3).to(d)(ones(d, 4, 1, 2), ones(d, 1, 2, 3)), RuntimeError,
         (1, 1, 3), (1, 2, 3)),
    _row("LSTM-c0", lambda d: nn.LSTM(2, 3).to(d)(ones(d, 4, 1, 2), (ones(d, 1, 1, 3), ones(d, 1, 2, 3))),
         RuntimeError, "c0", (1, 2, 3)),
    _row("GRU-input_size", lambda d: nn.GRU(2, 3).to(d)(ones(d, 4, 1, 5)), RuntimeError, "input_size", 5),
    _row("LSTMCell-input_size", lambda d: nn.LSTMCell(2, 3).to(d)(ones(d, 1, 5)), RuntimeError, "input_size", 5),
    _row("GRUCell-hx", lambda d: nn.GRUCell(2, 3).to(d)(ones(d, 1, 2), ones(d, 2, 3)), RuntimeError,
         (2, 3), (1, 3)),
    _row("MHA-embed_dim", lambda d: mha(d, ones(d, 3, 1, 5)), ValueError, 4, (3, 1, 5)),
    _row("MHA-attn_mask", lambda d: mha(d, ones(d, 3, 1, 4), attn_mask=ones(d, 2, 2) > 0), RuntimeError,
         (2, 2), (3, 3)),
    _row("MHA-key_padding_mask", lambda d: mha(d, ones(d, 3, 1, 4), key_padding_mask=ones(d, 2, 2) > 0),
         ValueError, "key_padding_mask", (2, 2)),
    _row("gather-ndim", lambda d: ones(d, 2, 3).gather(1, ids(d, [0])), ValueError, (2, 3)),
    _row("backward-gradient", lambda d: (ones(d, 2) * tl.ones(2, device=d, requires_grad=True)).backward(
        ones(d, 3)), RuntimeError, (3,), (2,)),
    _row("backward-nonscalar", lambda d: (tl.ones(2, device=d, requires_grad=True) * 2).backward(), RuntimeError,
         (2,)),
    _row("setitem", lambda d: _setitem(ones(d, 2, 3), 0, ones(d, 4)), ValueError, (2, 3), (4,)),
    _row("getitem-bool-mask", lambda d: ones(d, 2, 3)[ones(d, 5) > 0], IndexError, (2, 3)),
    _row("getitem-too-many", lambda d: ones(d, 2, 3)[0, 0, 0], IndexError, (2, 3), "too many"),
    _row("split-sizes", lambda d: ones(d, 2, 3).split([1, 3]), ValueError, [1, 3], (2, 3)),
    # ---------------------------------------------------------------- dtypes
    _row("Linear-int", lambda d: nn.Linear(3, 4).to(d)(ones(d, 2, 3, dtype=tl.int64)), TypeError, "int64",
         "float32"),
    _row("Linear-float64", lambda d: nn.Linear(3, 4).to(d)(ones(d, 2, 3, dtype=tl.float64)), TypeError, "float64",
         "float32"),
    _row("Linear-bool", lambda d: nn.Linear(3, 4).to(d)(ones(d, 2, 3) > 0), TypeError, "bool"),
    _row("LayerNorm-int", lambda d: nn.LayerNorm(3).to(d)(ones(d, 2, 3, dtype=tl.int64)), TypeError, "int64"),
    _row("RNN-int", lambda d: nn.RNN(2, 3).to(d)(ones(d, 4, 1, 2, dtype=tl.int64)), TypeError, "int64",
         "float32"),
    _row("LSTM-int", lambda d: nn.LSTM(2, 3).to(d)(ones(d, 4, 1, 2, dtype=tl.int64)), TypeError, "int64"),
    _row("GRU-float64", lambda d: nn.GRU(2, 3).to(d)(ones(d, 4, 1, 2, dtype=tl.float64)), TypeError, "float64"),
    _row("RNNCell-bool", lambda d: nn.RNNCell(2, 3).to(d)(ones(d, 1, 2) > 0), TypeError, "bool"),
    _row("LSTM-h0-int", lambda d: nn.LSTM(2, 3).to(d)(ones(d, 4, 1, 2), (ones(d, 1, 1, 3, dtype=tl.int64),
                                                                       ones(d, 1, 1, 3))), TypeError, "h0", "int64"),
    _row("MHA-int", lambda d: mha(d, ones(d, 3, 1, 4, dtype=tl.int64)), TypeError, "query", "int64"),
    _row("MHA-int-mask", lambda d: mha(d, ones(d, 3, 1, 4), attn_mask=ones(d, 3, 3, dtype=tl.int64)), TypeError,
         "attn_mask", "int64"),
    _row("sdpa-int", lambda d: F.scaled_dot_product_attention(*(ones(d, 2, 3, dtype=tl.int64),) * 3),
         RuntimeError, "int64"),
    _row("sdpa-int-mask", lambda d: F.scaled_dot_product_attention(
        ones(d, 2, 3), ones(d, 2, 3), ones(d, 2, 3), attn_mask=ones(d, 2, 2, dtype=tl.int64)), RuntimeError,
         "attn_mask", "int64"),
    _row("cross_entropy-int-logits", lambda d: F.cross_entropy(ones(d, 2, 3, dtype=tl.int64), ids(d, [0, 1])),
         TypeError, "input", "int64"),
    _row("cross_entropy-bool-target", lambda d: F.cross_entropy(ones(d, 2, 3), ones(d, 2) > 0), TypeError,
         "bool"),
    _row("nll_loss-float-target", lambda d: F.nll_loss(ones(d, 2, 3), ones(d, 2)), TypeError, "float32"),
    _row("nll_loss-int-input", lambda d: F.nll_loss(ones(d, 2, 3, dtype=tl.int64), ids(d, [0, 1])), TypeError,
         "int64"),
    _row("embedding-float-ids", lambda d: F.embedding(ones(d, 2), ones(d, 3, 2)), TypeError, "float32"),
    _row("embedding-bool-ids", lambda d: F.embedding(ones(d, 2) > 0, ones(d, 3, 2)), TypeError, "bool"),
    _row("embedding-numpy-float-ids", lambda d: F.embedding(np.array([0.5]), ones(d, 3, 2)), TypeError, "float64"),
    _row("Embedding-float-ids", lambda d: nn.Embedding(3, 2).to(d)(ones(d, 2)), TypeError, "float32"),
    _row("one_hot-float", lambda d: F.one_hot(ones(d, 2), 3), TypeError, "float32"),
    _row("one_hot-bool", lambda d: F.one_hot(ones(d, 2) > 0, 3), TypeError, "bool"),
    _row("gather-float-index", lambda d: ones(d, 2, 3).gather(1, ones(d, 2, 1)), TypeError, "float32"),
    _row("index-float-tensor", lambda d: ones(d, 2, 3)[ones(d, 1)], IndexError, "float32"),
    _row("masked_fill-float-mask", lambda d: ones(d, 2, 3).masked_fill(ones(d, 2, 3), 0.0), TypeError, "float32"),
    _row("where-float-cond", lambda d: tl.where(ones(d, 2), ones(d, 2), ones(d, 2)), TypeError, "float32"),
    _row("dropout-int", lambda d: F.dropout(ones(d, 2, dtype=tl.int64), 0.5), TypeError, "int64"),
    _row("requires_grad-int", lambda d: tl.tensor([1], device=d, requires_grad=True), RuntimeError, "int64"),
    _row("tensor-complex", lambda d: tl.tensor([1j], device=d), TypeError, "complex128"),
    _row("tensor-dtype", lambda d: tl.tensor([1.0], dtype="foo", device=d), TypeError, "foo"),
    _row("optimizer-int-param", lambda d: optim.SGD([ones(d, 2, dtype=tl.int64)], lr=0.1), ValueError, "int64"),
    # ---------------------------------------------------------------- devices (RuntimeError naming both)
    *(
        _row(f"device-{name}", call, RuntimeError, "{d}", "{o}")
        for name, call in [
            ("add", lambda d: ones(d, 2) + moved(ones(d, 2))),
            ("mul", lambda d: moved(ones(d, 2)) * ones(d, 2)),
            ("matmul", lambda d: ones(d, 2, 2) @ moved(ones(d, 2, 2))),
            ("maximum", lambda d: tl.maximum(ones(d, 2), moved(ones(d, 2)))),
            ("less", lambda d: ones(d, 2) < moved(ones(d, 2))),
            ("where", lambda d: tl.where(moved(ones(d, 2) > 0), ones(d, 2), ones(d, 2))),
            ("cat", lambda d: tl.cat([ones(d, 2), moved(ones(d, 2))])),
            ("stack", lambda d: tl.stack([ones(d, 2), moved(ones(d, 2))])),
            ("masked_fill", lambda d: ones(d, 2).masked_fill(moved(ones(d, 2) > 0), 0.0)),
            ("gather", lambda d: ones(d, 2, 2).gather(0, moved(ids(d, [[0, 1]])))),
            ("index", lambda d: ones(d, 2, 2)[moved(ids(d, [0]))]),
            ("setitem", lambda d: _setitem(ones(d, 2), 0, moved(ones(d, 1)))),
            ("linear", lambda d: F.linear(ones(d, 2, 3), moved(ones(d, 4, 3)))),
            ("embedding", lambda d: F.embedding(moved(ids(d, [0])), ones(d, 3, 2))),
            ("cross_entropy-target", lambda d: F.cross_entropy(ones(d, 2, 3), moved(ids(d, [0, 1])))),
            ("cross_entropy-weight",
             lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]), weight=moved(ones(d, 3)))),
            ("nll_loss", lambda d: F.nll_loss(ones(d, 2, 3), moved(ids(d, [0, 1])))),
            ("layer_norm", lambda d: F.layer_norm(ones(d, 2, 3), 3, moved(ones(d, 3)))),
            ("sdpa", lambda d: F.scaled_dot_product_attention(ones(d, 2, 3), moved(ones(d, 2, 3)), ones(d, 2, 3))),
            ("sdpa-mask", lambda d: F.scaled_dot_product_attention(ones(d, 2, 3), ones(d, 2, 3), ones(d, 2, 3),
                                                                   attn_mask=moved(ones(d, 2, 2) > 0))),
            ("Linear", lambda d: nn.Linear(3, 4).to(d)(moved(ones(d, 2, 3)))),
            ("Embedding", lambda d: nn.Embedding(3, 2).to(d)(moved(ids(d, [0])))),
            ("LayerNorm", lambda d: nn.LayerNorm(3).to(d)(moved(ones(d, 2, 3)))),
            ("RNN-input", lambda d: nn.RNN(2, 3).to(d)(moved(ones(d, 4, 1, 2)))),
            ("RNN-h0", lambda d: nn.RNN(2, 3).to(d)(ones(d, 4, 1, 2), moved(ones(d, 1, 1, 3)))),
            ("LSTM-c0", lambda d: nn.LSTM(2, 3).to(d)(ones(d, 4, 1, 2), (ones(d, 1, 1, 3), moved(ones(d, 1, 1, 3))))),
            ("GRUCell", lambda d: nn.GRUCell(2, 3).to(d)(moved(ones(d, 1, 2)))),
            ("MHA", lambda d: mha(d, moved(ones(d, 3, 1, 4)))),
        ]
    ),
    # ---------------------------------------------------------------- indices and classes out of range
    _row("embedding-id-too-big", lambda d: F.embedding(ids(d, [0, 3]), ones(d, 3, 2)), IndexError, 3,
         "num_embeddings=3"),
    _row("embedding-id-negative", lambda d: F.embedding(ids(d, [-1]), ones(d, 3, 2)), IndexError, -1,
         "num_embeddings=3"),
    _row("Embedding-id-too-big", lambda d: nn.Embedding(3, 2).to(d)(ids(d, [[1, 7]])), IndexError, 7),
    _row("Embedding-id-negative", lambda d: nn.Embedding(3, 2).to(d)(ids(d, [-2])), IndexError, -2),
    _row("Embedding-padding_idx", lambda d: nn.Embedding(3, 2, padding_idx=5), ValueError, 5, "num_embeddings=3"),
    _row("one_hot-too-big", lambda d: F.one_hot(ids(d, [5]), 3), ValueError, 5, "num_classes=3"),
    _row("one_hot-negative", lambda d: F.one_hot(ids(d, [-1]), 3), ValueError, -1),
    _row("one_hot-num_classes-0", lambda d: F.one_hot(ids(d, [0]), 0), ValueError, "num_classes=0"),
    _row("cross_entropy-class-too-big", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 3])), IndexError, 3,
         "3 classes"),
    _row("cross_entropy-class-negative", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [-1, 0])), IndexError,
         -1, "3 classes"),
    _row("cross_entropy-3d-class", lambda d: F.cross_entropy(ones(d, 1, 3, 2), ids(d, [[0, 4]])), IndexError, 4),
    _row("nll_loss-class-too-big", lambda d: F.nll_loss(ones(d, 2, 3), ids(d, [0, 9])), IndexError, 9),
    _row("nll_loss-class-negative", lambda d: F.nll_loss(ones(d, 2, 3), ids(d, [-5, 0])), IndexError, -5),
    _row("gather-too-big", lambda d: ones(d, 2, 3).gather(1, ids(d, [[3]])), IndexError, 3, "size 3"),
    _row("gather-negative", lambda d: ones(d, 2, 3).gather(1, ids(d, [[-1]])), IndexError, -1, "size 3"),
    _row("getitem-int", lambda d: ones(d, 2, 3)[5], IndexError, 5, (2, 3)),
    _row("getitem-negative-int", lambda d: ones(d, 2, 3)[-5], IndexError, -5),
    _row("getitem-tensor", lambda d: ones(d, 2, 3)[ids(d, [0, 7])], IndexError, 7),
    _row("setitem-index", lambda d: _setitem(ones(d, 2, 3), 5, 1.0), IndexError, 5, (2, 3)),
    _row("decode-too-big", lambda d: CharTokenizer("abc").decode([1, 7]), ValueError, 7, 4),
    _row("decode-negative", lambda d: WordTokenizer("a b").decode([-1]), ValueError, -1),
    # ---------------------------------------------------------------- empty tensors
    *(
        _row(f"empty-{name}", _method_of_empty(name), RuntimeError, "empty", (0,))
        for name in ("max", "min", "argmax", "argmin")
    ),
    _row("empty-one_hot", lambda d: F.one_hot(ids(d, np.zeros(0, np.int64)), -1), ValueError, "num_classes"),
    _row("empty-RNN", lambda d: nn.RNN(2, 3).to(d)(ones(d, 0, 1, 2)), RuntimeError, "empty", (0, 1, 2)),
    _row("empty-cat", lambda d: tl.cat([]), ValueError, "non-empty"),
    _row("empty-optimizer", lambda d: optim.Adam([]), ValueError, "empty"),
    _row("empty-item", lambda d: ones(d, 0).item(), ValueError, (0,)),
    # ---------------------------------------------------------------- wrong argument types
    _row("add-str", lambda d: ones(d, 2) + "x", TypeError, "str"),
    _row("add-None", lambda d: ones(d, 2) + None, TypeError, "NoneType"),
    _row("tensor-str", lambda d: tl.tensor("abc", device=d), TypeError, "str"),
    _row("tensor-None", lambda d: tl.tensor(None, device=d), TypeError, "NoneType"),
    _row("tensor-ragged", lambda d: tl.tensor([[1, 2], [3]], device=d), ValueError, "list"),  # PyTorch's type
    _row("sum-dim-str", lambda d: ones(d, 2, 3).sum("x"), TypeError, "dim", "str"),
    _row("sum-dim-float", lambda d: ones(d, 2, 3).sum(1.0), TypeError, "dim", "float"),
    _row("sum-dim-bool", lambda d: ones(d, 2, 3).sum(True), TypeError, "dim", "bool"),
    _row("softmax-dim-None", lambda d: ones(d, 2, 3).softmax(None), TypeError, "dim"),
    _row("reshape-str", lambda d: ones(d, 2, 3).reshape("a"), TypeError, "shape"),
    _row("zeros-str", lambda d: tl.zeros("a", device=d), TypeError, "shape"),
    _row("zeros-float", lambda d: tl.zeros(2.5, device=d), TypeError, "2.5"),
    _row("zeros-bool", lambda d: tl.zeros(True, device=d), TypeError, "True"),
    _row("randint-size-int", lambda d: tl.randint(0, 5, 3, device=d), TypeError, "size"),
    _row("arange-str", lambda d: tl.arange("a", device=d), TypeError, "arange", "'a'"),
    _row("split-float", lambda d: ones(d, 4).split(1.5), TypeError, "float"),
    _row("clamp-str", lambda d: ones(d, 2).clamp("x"), TypeError, "str"),
    _row("masked_fill-str", lambda d: ones(d, 2).masked_fill(ones(d, 2) > 0, "x"), TypeError, "str"),
    _row("where-str", lambda d: tl.where(ones(d, 2) > 0, ones(d, 2), "x"), TypeError, "str"),
    _row("linear-list-input", lambda d: F.linear([1.0, 2.0, 3.0], ones(d, 4, 3)), TypeError, "input", "list"),
    _row("linear-list-weight", lambda d: F.linear(ones(d, 2, 3), [[1.0, 2.0, 3.0]]), TypeError, "weight", "list"),
    _row("linear-list-bias", lambda d: F.linear(ones(d, 2, 3), ones(d, 4, 3), [1.0] * 4), TypeError, "bias"),
    _row("Linear-None", lambda d: nn.Linear(3, 4).to(d)(None), TypeError, "NoneType"),
    _row("Linear-numpy", lambda d: nn.Linear(3, 4).to(d)(np.ones(3)), TypeError, "ndarray"),
    *(
        _row(f"{name}-list", _on_list(f), TypeError, "input", "list")
        for name, f in [
            ("relu", F.relu), ("gelu", F.gelu), ("sigmoid", F.sigmoid), ("tanh", F.tanh),
            ("softmax", lambda x: F.softmax(x, 0)), ("log_softmax", lambda x: F.log_softmax(x, 0)),
            ("dropout", F.dropout), ("layer_norm", lambda x: F.layer_norm(x, 2)),
            ("cross_entropy", lambda x: F.cross_entropy(x, tl.tensor([0]))),
        ]
    ),
    _row("sdpa-list", lambda d: F.scaled_dot_product_attention([[1.0]], ones(d, 1, 1), ones(d, 1, 1)), TypeError,
         "query", "list"),
    _row("RNN-list", lambda d: nn.RNN(2, 3).to(d)([[1.0, 2.0]]), TypeError, "input", "list"),
    _row("LSTM-hx-tensor", lambda d: nn.LSTM(2, 3).to(d)(ones(d, 4, 1, 2), ones(d, 1, 1, 3)), TypeError, "hx"),
    _row("LSTMCell-hx-tensor", lambda d: nn.LSTMCell(2, 3).to(d)(ones(d, 1, 2), ones(d, 1, 3)), TypeError, "hx"),
    _row("MHA-list", lambda d: nn.MultiheadAttention(4, 2)([[1.0] * 4], [[1.0] * 4], [[1.0] * 4]), TypeError,
         "query", "list"),
    _row("one_hot-list", lambda d: F.one_hot([0, 1], 3), TypeError, "list"),
    _row("one_hot-num_classes-str", lambda d: F.one_hot(ids(d, [0]), "3"), TypeError, "num_classes"),
    _row("cross_entropy-weight-list", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]), weight=[1.0] * 3),
         TypeError, "weight", "list"),
    _row("cross_entropy-ignore_index-str", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]),
                                                                     ignore_index="x"), TypeError, "ignore_index"),
    _row("dropout-p-str", lambda d: F.dropout(ones(d, 2), "x"), TypeError, "p", "'x'"),
    _row("layer_norm-shape-str", lambda d: F.layer_norm(ones(d, 2, 3), "3"), TypeError, "normalized_shape"),
    _row("layer_norm-weight-list", lambda d: F.layer_norm(ones(d, 2, 3), 3, [1.0] * 3), TypeError, "weight"),
    _row("LayerNorm-str", lambda d: nn.LayerNorm("a"), TypeError, "normalized_shape"),
    _row("Embedding-padding_idx-str", lambda d: nn.Embedding(3, 2, padding_idx="a"), TypeError, "padding_idx"),
    _row("Embedding-from_pretrained-list", lambda d: nn.Embedding.from_pretrained([[1.0]]), TypeError, "list"),
    _row("sdpa-scale-str", lambda d: F.scaled_dot_product_attention(*(ones(d, 2, 3),) * 3, scale="x"), TypeError,
         "scale"),
    _row("clip_grad_norm-max_norm-str", lambda d: nn.utils.clip_grad_norm_([param(d, 2)], "x"), TypeError,
         "max_norm"),
    _row("clip_grad_norm-norm_type", lambda d: nn.utils.clip_grad_norm_([param(d, 2)], 1.0, norm_type="foo"),
         ValueError, "norm_type", "'foo'"),
    _row("SGD-lr-str", lambda d: optim.SGD([param(d, 2)], lr="x"), TypeError, "lr", "'x'"),
    _row("SGD-lr-None", lambda d: optim.SGD([param(d, 2)], lr=None), TypeError, "lr", "None"),
    _row("SGD-dampening-str", lambda d: optim.SGD([param(d, 2)], lr=0.1, dampening="x"), TypeError, "dampening"),
    _row("SGD-params-None", lambda d: optim.SGD(None, lr=0.1), TypeError, "NoneType"),
    _row("SGD-params-ints", lambda d: optim.SGD([1, 2], lr=0.1), TypeError, "int"),
    _row("SGD-params-tensor", lambda d: optim.SGD(param(d, 2), lr=0.1), TypeError, "Tensor"),
    _row("Adam-betas-float", lambda d: optim.Adam([param(d, 2)], betas=0.9), TypeError, "betas", "0.9"),
    _row("Adam-betas-str", lambda d: optim.Adam([param(d, 2)], betas=("a", "b")), TypeError, "betas"),
    _row("AdamW-eps-str", lambda d: optim.AdamW([param(d, 2)], eps="tiny"), TypeError, "eps"),
    _row("encode-int", lambda d: CharTokenizer("abc").encode(5), TypeError, "str", "int"),
    _row("encode-None", lambda d: CharTokenizer("abc").encode(None), TypeError, "str", "NoneType"),
    _row("encode-bytes", lambda d: CharTokenizer("abc").encode(b"ab"), TypeError, "str", "bytes"),
    _row("word-encode-list", lambda d: WordTokenizer("a b").encode(["a"]), TypeError, "str", "list"),
    _row("fit-int", lambda d: CharTokenizer(5), TypeError, "str", "int"),
    _row("word-fit-None", lambda d: WordTokenizer().fit(None), TypeError, "str", "NoneType"),
    _row("decode-str", lambda d: CharTokenizer("abc").decode("ab"), TypeError, "str"),
    _row("decode-None", lambda d: CharTokenizer("abc").decode(None), TypeError, "NoneType"),
    _row("decode-float", lambda d: CharTokenizer("abc").decode([1.5]), TypeError, "1.5"),
    _row("decode-nested", lambda d: WordTokenizer("a b").decode([[1, 2]]), TypeError, "[1, 2]"),
    _row("word-min_freq-str", lambda d: WordTokenizer(min_freq="a"), TypeError, "min_freq"),
    # ---------------------------------------------------------------- wrong argument values
    *(
        _row(f"dim-{name}", _on_2x3(f), IndexError, "dim", 5)
        for name, f in [
            ("sum", lambda t: t.sum(5)), ("mean", lambda t: t.mean(-5)), ("max", lambda t: t.max(5)),
            ("softmax", lambda t: t.softmax(5)), ("log_softmax", lambda t: t.log_softmax(-5)),
            ("logsumexp", lambda t: t.logsumexp(5)), ("argmax", lambda t: t.argmax(5)),
            ("transpose", lambda t: t.transpose(0, 5)), ("unsqueeze", lambda t: t.unsqueeze(5)),
            ("squeeze", lambda t: t.squeeze(5)), ("flatten", lambda t: t.flatten(5)),
            ("cat", lambda t: tl.cat([t, t], dim=5)), ("stack", lambda t: tl.stack([t, t], dim=5)),
            ("gather", lambda t: t.gather(5, tl.zeros(2, 3, dtype=tl.int64, device=t.device))),
            ("chunk", lambda t: t.chunk(2, dim=5)), ("split", lambda t: t.split(1, dim=-5)),
        ]
    ),
    _row("permute-repeat", lambda d: ones(d, 2, 3).permute(0, 0), ValueError, "permutation", (0, 0)),
    _row("reshape-minus-2", lambda d: ones(d, 2, 3).reshape(-2, 3), ValueError, -2),
    _row("reshape-two-minus-1", lambda d: ones(d, 2, 3).reshape(-1, -1), ValueError, (-1, -1)),
    _row("reshape-0d-two-minus-1", lambda d: tl.tensor(1.0, device=d).reshape(-1, -1), ValueError, (-1, -1)),
    _row("reshape-two-negatives", lambda d: ones(d, 6).reshape(-2, -3), ValueError, (-2, -3)),
    _row("expand-negative", lambda d: ones(d, 2, 3).expand(-2, 3), ValueError, -2),
    *(
        _row(f"negative-size-{name}", f, ValueError, name, -1)
        for name, f in [
            ("zeros", lambda d: tl.zeros(-1, 2, device=d)), ("ones", lambda d: tl.ones(3, -1, device=d)),
            ("full", lambda d: tl.full((-1,), 1.0, device=d)), ("randn", lambda d: tl.randn(-1, device=d)),
            ("rand", lambda d: tl.rand(2, -1, device=d)), ("randint", lambda d: tl.randint(0, 5, (-1,), device=d)),
            ("eye", lambda d: tl.eye(-1, device=d)),
        ]
    ),
    _row("Linear-negative", lambda d: nn.Linear(-1, 3), ValueError, -1),
    _row("Embedding-negative", lambda d: nn.Embedding(3, -2), ValueError, -2),
    _row("LayerNorm-negative", lambda d: nn.LayerNorm(-1), ValueError, "normalized_shape", -1),
    _row("split-zero", lambda d: ones(d, 4).split(0), ValueError, 0),
    _row("split-negative-sizes", lambda d: ones(d, 2).split([3, -1]), ValueError, -1),
    _row("chunk-zero", lambda d: ones(d, 4).chunk(0), ValueError, "chunks", 0),
    _row("clamp-nothing", lambda d: ones(d, 2).clamp(), ValueError, "min", "max"),
    _row("randint-empty-range", lambda d: tl.randint(5, 5, (2,), device=d), ValueError, "high", 5),
    _row("arange-step-0", lambda d: tl.arange(0, 5, 0, device=d), ValueError, "step"),
    _row("device-name", lambda d: tl.tensor([1.0], device="tpu"), ValueError, "'tpu'"),
    _row("gelu-approximate", lambda d: ones(d, 2).gelu("foo"), ValueError, "approximate", "'foo'"),
    _row("GELU-approximate", lambda d: nn.GELU("foo"), ValueError, "approximate", "'foo'"),
    *(
        _row(f"dropout-p-{p}", _dropout_with(p), ValueError, "probability", p)
        for p in (1.5, -0.1, float("nan"))
    ),
    _row("Dropout-p", lambda d: nn.Dropout(2), ValueError, "probability", 2),
    _row("sdpa-dropout_p", lambda d: F.scaled_dot_product_attention(*(ones(d, 2, 3),) * 3, dropout_p=2),
         ValueError, "dropout", 2),
    _row("sdpa-causal-and-mask", lambda d: F.scaled_dot_product_attention(
        *(ones(d, 2, 3),) * 3, attn_mask=ones(d, 2, 2) > 0, is_causal=True), RuntimeError, "is_causal"),
    _row("MHA-dropout", lambda d: nn.MultiheadAttention(4, 2, dropout=2), ValueError, "dropout", 2),
    _row("MHA-num_heads", lambda d: nn.MultiheadAttention(5, 2), ValueError, "num_heads", 5, 2),
    _row("MHA-negative", lambda d: nn.MultiheadAttention(-4, 2), ValueError, -4),
    _row("MHA-causal-without-mask", lambda d: mha(d, ones(d, 3, 1, 4), is_causal=True), RuntimeError, "is_causal"),
    _row("RNN-nonlinearity", lambda d: nn.RNN(2, 3, nonlinearity="foo"), ValueError, "nonlinearity", "'foo'"),
    _row("RNNCell-nonlinearity", lambda d: nn.RNNCell(2, 3, nonlinearity="foo"), ValueError, "'foo'"),
    _row("RNN-num_layers", lambda d: nn.RNN(2, 3, num_layers=0), ValueError, "num_layers", 0),
    _row("LSTM-input_size", lambda d: nn.LSTM(-2, 3), ValueError, "input_size", -2),
    _row("GRU-dropout", lambda d: nn.GRU(2, 3, dropout=2), ValueError, "dropout", 2),
    _row("cross_entropy-reduction", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]), reduction="avg"),
         ValueError, "reduction", "'avg'"),
    _row("nll_loss-reduction", lambda d: F.nll_loss(ones(d, 2, 3), ids(d, [0, 1]), reduction="x"), ValueError,
         "reduction", "'x'"),
    _row("mse_loss-reduction", lambda d: F.mse_loss(ones(d, 2), ones(d, 2), reduction="avg"), ValueError,
         "reduction", "'avg'"),
    _row("cross_entropy-label_smoothing", lambda d: F.cross_entropy(ones(d, 2, 3), ids(d, [0, 1]),
                                                                    label_smoothing=2.0), ValueError,
         "label_smoothing", 2.0),
    _row("cross_entropy-0d", lambda d: F.cross_entropy(tl.tensor(1.0, device=d), ids(d, 0)), ValueError, "0-d"),
    *(
        _row(f"{opt.__name__}-lr-negative", _negative_lr(opt), ValueError,
             "learning rate", -1.0)
        for opt in (optim.SGD, optim.Adam, optim.AdamW)
    ),
    _row("SGD-lr-nan", lambda d: optim.SGD([param(d, 2)], lr=float("nan")), ValueError, "learning rate", "nan"),
    _row("SGD-momentum", lambda d: optim.SGD([param(d, 2)], lr=0.1, momentum=-0.5), ValueError, "momentum", -0.5),
    _row("SGD-weight_decay", lambda d: optim.SGD([param(d, 2)], lr=0.1, weight_decay=-1), ValueError,
         "weight_decay", -1),
    _row("SGD-nesterov", lambda d: optim.SGD([param(d, 2)], lr=0.1, nesterov=True), ValueError, "Nesterov"),
    _row("Adam-beta1", lambda d: optim.Adam([param(d, 2)], betas=(1.0, 0.9)), ValueError, "beta", 1.0),
    _row("Adam-beta2", lambda d: optim.Adam([param(d, 2)], betas=(0.9, -0.1)), ValueError, "beta", -0.1),
    _row("Adam-betas-3", lambda d: optim.Adam([param(d, 2)], betas=(0.9, 0.9, 0.9)), ValueError, "betas"),
    _row("Adam-eps", lambda d: optim.Adam([param(d, 2)], eps=-1e-8), ValueError, "epsilon", -1e-08),
    _row("AdamW-group-lr", lambda d: optim.AdamW([{"params": [param(d, 2)], "lr": -3.0}]), ValueError,
         "learning rate", -3.0),
    _row("clip_grad_norm-negative", lambda d: nn.utils.clip_grad_norm_([param(d, 2)], -1.0), ValueError,
         "max_norm", -1.0),
    _row("WordTokenizer-min_freq", lambda d: WordTokenizer(min_freq=0), ValueError, "min_freq", 0),
    _row("backward-no-grad", lambda d: ones(d, 2).sum().backward(), RuntimeError, "grad"),
]


@pytest.mark.parametrize("call, exc, words", BAD_CALLS)
def test_bad_call_gives_a_clear_error(device, call, exc, words):
    here = "cuda:0" if device == "cuda" else device
    words = tuple(w.format(d=here, o=other(here)) if isinstance(w, str) and "{" in w else w for w in words)
    expect_error(lambda: call(device), exc, *words)


# ---------------------------------------------------------------------- Hypothesis: shapes
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)


def _values(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, size=shape).astype(np.float32)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        return None


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: a**b, np.power),
    "maximum": (tl.maximum, np.maximum),
    "where": (lambda a, b: tl.where(a > 1.0, a, b), lambda a, b: np.where(a > 1.0, a, b)),
}


@given(a=small_shapes, b=small_shapes, op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_ops_broadcast_like_numpy_or_name_both_shapes(device, a, b, op, seed):
    ours, ref = BINARY[op]
    x, y = _values(a, seed), _values(b, seed + 1)
    call = lambda: ours(tl.tensor(x, device=device), tl.tensor(y, device=device))  # noqa: E731
    if _broadcast(a, b) is None:
        expect_error(call, ValueError, a, b)
    else:
        np.testing.assert_allclose(call().numpy(), ref(x, y), rtol=1e-6)


@given(a=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
       b=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), seed=st.integers(0, 2**16))
def test_matmul_like_numpy_or_names_both_shapes(device, a, b, seed):
    x, y = _values(a, seed), _values(b, seed + 1)
    try:
        expected = np.matmul(x, y)
    except ValueError:
        expected = None
    call = lambda: tl.tensor(x, device=device) @ tl.tensor(y, device=device)  # noqa: E731
    if expected is None:
        expect_error(call, ValueError, a, b)
    else:
        np.testing.assert_allclose(call().numpy(), expected, rtol=1e-5)


@given(shape=small_shapes, target=st.lists(st.integers(-2, 6), min_size=0, max_size=3), seed=st.integers(0, 99))
def test_reshape_like_numpy_or_names_both_shapes(device, shape, target, seed):
    """PyTorch's rule, stricter than NumPy's (which reads any negative size as "infer"): one -1 at most."""
    x = _values(shape, seed)
    known = math.prod(n for n in target if n != -1)
    if min(target, default=0) < -1 or target.count(-1) > 1:
        valid = False
    elif -1 in target:
        valid = known > 0 and x.size % known == 0
    else:
        valid = known == x.size
    call = lambda: tl.tensor(x, device=device).reshape(*target)  # noqa: E731
    if not valid:
        expect_error(call, ValueError, shape, tuple(target))
    else:
        np.testing.assert_array_equal(call().numpy(), x.reshape(target))


REDUCTIONS = {
    "sum": (lambda t, d: t.sum(d), lambda x, d: x.sum(d)),
    "mean": (lambda t, d: t.mean(d), lambda x, d: x.mean(d)),
    "max": (lambda t, d: t.max(d).values, lambda x, d: x.max(d)),
    "argmin": (lambda t, d: t.argmin(d), lambda x, d: x.argmin(d)),
    "softmax": (lambda t, d: t.softmax(d), lambda x, d: np.exp(x) / np.exp(x).sum(d, keepdims=True)),
    "logsumexp": (lambda t, d: t.logsumexp(d), lambda x, d: np.log(np.exp(x).sum(d))),
}


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), dim=st.integers(-5, 4),
       op=st.sampled_from(sorted(REDUCTIONS)), seed=st.integers(0, 99))
def test_reductions_take_valid_dims_and_name_bad_ones(device, shape, dim, op, seed):
    ours, ref = REDUCTIONS[op]
    x = _values(shape, seed)
    call = lambda: ours(tl.tensor(x, device=device), dim)  # noqa: E731
    if -len(shape) <= dim < len(shape):
        np.testing.assert_allclose(call().numpy(), ref(x, dim), rtol=1e-5)
    else:
        expect_error(call, IndexError, "dim", dim)


# ---------------------------------------------------------------------- Hypothesis: indices and classes
@given(num=st.integers(1, 6), dim=st.integers(1, 3), data=st.data())
def test_embedding_ids_pick_rows_or_name_the_bad_id(device, num, dim, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    index = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, num + 2)))
    weight = np.arange(num * dim, dtype=np.float32).reshape(num, dim)
    layer = nn.Embedding(num, dim).to(device)
    with tl.no_grad():
        layer.weight.array[...] = tl.tensor(weight, device=device).array
    calls = [lambda: F.embedding(tl.tensor(index, device=device), tl.tensor(weight, device=device)),
             lambda: layer(tl.tensor(index, device=device))]
    bad = index[(index < 0) | (index >= num)]
    for call in calls:
        if bad.size:
            expect_error(call, IndexError, int(bad[0]), f"num_embeddings={num}")
        else:
            np.testing.assert_array_equal(call().detach().numpy(), weight[index])


def _cross_entropy_ref(x: np.ndarray, t: np.ndarray, ignore: int) -> float:
    valid = t != ignore
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    picked = x[np.arange(len(t)), np.where(valid, t, 0)]
    with np.errstate(invalid="ignore"):
        return float(np.where(valid, lse - picked, 0.0).sum() / valid.sum())


@given(n=st.integers(1, 4), c=st.integers(1, 5), ignore=st.sampled_from([-100, 0, 2]), data=st.data())
def test_class_indices_give_the_loss_or_name_the_bad_target(device, n, c, ignore, data):
    target = np.asarray(data.draw(st.lists(st.integers(-3, c + 2), min_size=n, max_size=n)), dtype=np.int64)
    x = np.random.default_rng(n * 10 + c).normal(size=(n, c))
    xt, tt = tl.tensor(x, device=device), tl.tensor(target, device=device)
    bad = target[((target < 0) | (target >= c)) & (target != ignore)]
    for call in (lambda: F.cross_entropy(xt, tt, ignore_index=ignore),
                 lambda: F.nll_loss(xt.log_softmax(1), tt, ignore_index=ignore)):
        if bad.size:
            expect_error(call, IndexError, int(bad[0]), f"{c} classes")
        else:
            np.testing.assert_allclose(call().item(), _cross_entropy_ref(x, target, ignore), rtol=1e-9,
                                       equal_nan=True)


@given(num_classes=st.integers(-3, 5), data=st.data())
def test_one_hot_or_names_the_bad_class(device, num_classes, data):
    values = np.asarray(data.draw(st.lists(st.integers(-2, 6), min_size=1, max_size=5)), dtype=np.int64)
    call = lambda: F.one_hot(tl.tensor(values, device=device), num_classes)  # noqa: E731
    if values.min() < 0:
        expect_error(call, ValueError, int(values.min()))
    elif num_classes != -1 and values.max() >= num_classes:
        expect_error(call, ValueError, f"num_classes={num_classes}")
    else:
        k = values.max() + 1 if num_classes == -1 else num_classes
        np.testing.assert_array_equal(call().numpy(), np.eye(k, dtype=np.int64)[values])


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), data=st.data())
def test_gather_index_in_range_or_named(device, shape, data):
    d = data.draw(st.integers(0, len(shape) - 1))
    n = shape[d]
    index_shape = tuple(data.draw(st.integers(1, 3)) if i == d else s for i, s in enumerate(shape))
    index = data.draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-3, n + 2)))
    x = _values(shape, 7)
    call = lambda: tl.tensor(x, device=device).gather(d, tl.tensor(index, device=device))  # noqa: E731
    bad = index[(index < 0) | (index >= n)]
    if bad.size:
        expect_error(call, IndexError, int(bad[0]), f"size {n}")  # negative ids never wrap around
    else:
        np.testing.assert_array_equal(call().numpy(), np.take_along_axis(x, index, axis=d))


# ---------------------------------------------------------------------- Hypothesis: layer sizes
@given(in_features=st.integers(1, 4), got=st.integers(1, 4), out=st.integers(1, 3), lead=st.integers(1, 3))
def test_linear_input_size_checked(device, in_features, got, out, lead):
    layer = nn.Linear(in_features, out).to(device)
    x = _values((lead, got), 3)
    call = lambda: layer(tl.tensor(x, device=device))  # noqa: E731
    if got != in_features:
        expect_error(call, ValueError, (lead, got), (out, in_features))
    else:
        w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        np.testing.assert_allclose(call().detach().numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)


@given(size=st.integers(1, 4), got=st.integers(1, 4), kind=st.sampled_from(["RNN", "LSTM", "GRU"]))
@settings(max_examples=12)
def test_recurrent_input_size_checked(device, size, got, kind):
    layer = getattr(nn, kind)(size, 2).to(device)
    call = lambda: layer(tl.tensor(_values((3, 1, got), 1), device=device))  # noqa: E731
    if got != size:
        expect_error(call, RuntimeError, "input_size", got)
    else:
        out = call()[0]
        assert out.shape == (3, 1, 2) and np.isfinite(out.detach().numpy()).all()


@given(embed_dim=st.integers(-1, 8), num_heads=st.integers(-1, 4))
def test_multihead_attention_heads_must_divide_embed_dim(embed_dim, num_heads):
    call = lambda: nn.MultiheadAttention(embed_dim, num_heads)  # noqa: E731
    if embed_dim <= 0 or num_heads <= 0:
        expect_error(call, ValueError, embed_dim, num_heads)
    elif embed_dim % num_heads:
        expect_error(call, ValueError, "num_heads", embed_dim, num_heads)
    else:
        assert call().head_dim == embed_dim // num_heads


# ---------------------------------------------------------------------- Hypothesis: hyperparameter values
@given(p=st.one_of(st.floats(-1.0, 2.0), st.just(float("nan")), st.just(1.0), st.just(0.0)))
def test_dropout_probability_range(device, p):
    x = _values((4, 5), 0)
    call = lambda: F.dropout(tl.tensor(x, device=device), p, training=True)  # noqa: E731
    if not 0.0 <= p <= 1.0:
        expect_error(call, ValueError, "probability", p)
        return
    out = call().numpy()
    kept = out != 0
    if p == 1.0:
        assert not kept.any()
    else:
        np.testing.assert_allclose(out[kept], (x / (1.0 - p))[kept], rtol=1e-5)


@given(lr=st.floats(-1.0, 1.0), beta1=st.floats(-0.5, 1.5), beta2=st.floats(-0.5, 1.5), eps=st.floats(-1e-3, 1e-3))
def test_adam_hyperparameters_are_validated_and_the_first_step_is_right(device, lr, beta1, beta2, eps):
    p = nn.Parameter(tl.tensor([1.0, -2.0, 3.0], device=device))
    call = lambda: optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)  # noqa: E731
    bad = [(v, name) for v, name in ((lr, "learning rate"), (eps, "epsilon")) if v < 0]
    bad += [(b, "beta") for b in (beta1, beta2) if not 0.0 <= b < 1.0]
    if bad:
        err = expect_error(call, ValueError)
        assert any(name in str(err) and _mentions(str(err), v) for v, name in bad), str(err)
        return
    opt = call()
    g = np.array([0.5, -0.25, 2.0], dtype=np.float32)
    p.grad = tl.tensor(g, device=device)
    opt.step()
    # the first Adam step moves every weight by lr * g / (|g| + eps) (bias-corrected moments are g and g^2)
    np.testing.assert_allclose(p.detach().numpy(), np.array([1.0, -2.0, 3.0]) - lr * g / (np.abs(g) + eps),
                               rtol=1e-5, atol=1e-6)


@given(lr=st.floats(-1.0, 1.0), momentum=st.floats(-1.0, 1.0), weight_decay=st.floats(-1.0, 1.0))
def test_sgd_hyperparameters_are_validated(device, lr, momentum, weight_decay):
    p = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    call = lambda: optim.SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay)  # noqa: E731
    bad = [(v, name) for v, name in ((lr, "learning rate"), (momentum, "momentum"), (weight_decay, "weight_decay"))
           if v < 0]
    if bad:
        err = expect_error(call, ValueError)
        assert any(name in str(err) and _mentions(str(err), v) for v, name in bad), str(err)
        return
    opt = call()
    p.grad = tl.tensor([0.5, -1.0], device=device)
    opt.step()
    expected = np.array([1.0, 2.0]) - lr * (np.array([0.5, -1.0]) + weight_decay * np.array([1.0, 2.0]))
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- Hypothesis: tokenizers
@given(text=st.text(alphabet="abcxyz \n", min_size=1, max_size=12), data=st.data())
def test_tokenizer_decode_checks_ids(text, data):
    tok = CharTokenizer(text)
    n = tok.vocab_size
    token_ids = data.draw(st.lists(st.integers(-3, n + 2), max_size=6))
    bad = [i for i in token_ids if not 0 <= i < n]
    for as_array in (False, True):
        arg = np.asarray(token_ids, dtype=np.int64) if as_array else token_ids
        if bad:
            expect_error(lambda arg=arg: tok.decode(arg), ValueError, bad[0], n)
        else:
            assert tok.decode(arg) == "".join(tok.itos[i] for i in token_ids)


not_text = st.one_of(st.integers(), st.none(), st.binary(max_size=3), st.lists(st.text(max_size=2), max_size=2),
                     st.floats(allow_nan=False))


@given(value=not_text)
def test_tokenizers_encode_only_text(value):
    for tok in (CharTokenizer("abc"), WordTokenizer("a b c")):
        expect_error(lambda tok=tok: tok.encode(value), TypeError, "str", type(value).__name__)


# ---------------------------------------------------------------------- empty tensors
def test_empty_tensors_give_empty_results_like_numpy(device):
    e = tl.zeros(0, 3, device=device)
    assert e.sum().item() == 0.0
    assert e.sum(0).shape == (3,) and e.sum(1).shape == (0,)
    assert (e @ tl.ones(3, 2, device=device)).shape == (0, 2)
    assert e.softmax(-1).shape == (0, 3)
    assert tl.cat([e, tl.ones(1, 3, device=device)]).shape == (1, 3)
    assert nn.Linear(3, 4).to(device)(e).shape == (0, 4)
    assert nn.LayerNorm(3).to(device)(e).shape == (0, 3)
    assert nn.Embedding(5, 2).to(device)(tl.zeros(0, dtype=tl.int64, device=device)).shape == (0, 2)
    assert F.one_hot(tl.zeros(0, dtype=tl.int64, device=device), 4).shape == (0, 4)
    empty_ids = tl.zeros(0, dtype=tl.int64, device=device)
    assert F.cross_entropy(e, empty_ids, reduction="sum").item() == 0.0
    assert F.cross_entropy(e, empty_ids, reduction="none").shape == (0,)
    with np.errstate(invalid="ignore"):
        assert math.isnan(F.cross_entropy(e, empty_ids).item())  # 0/0, as PyTorch


# ---------------------------------------------------------------------- NaN and Inf flow through, as in NumPy
special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.5, 2.0, 1e30])
UNARY = {
    "exp": (tl.Tensor.exp, np.exp), "log": (tl.Tensor.log, np.log), "sqrt": (tl.Tensor.sqrt, np.sqrt),
    "abs": (tl.Tensor.abs, np.abs), "tanh": (tl.Tensor.tanh, np.tanh), "neg": (tl.Tensor.neg, np.negative),
    "sigmoid": (tl.Tensor.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "relu": (tl.Tensor.relu, lambda x: np.maximum(x, 0)),
    "sin": (tl.Tensor.sin, np.sin), "cos": (tl.Tensor.cos, np.cos), "square": (tl.Tensor.square, np.square),
    "clamp": (lambda t: t.clamp(-1.0, 1.0), lambda x: np.clip(x, -1.0, 1.0)),
    "sum": (lambda t: t.sum(-1), lambda x: x.sum(-1)), "mean": (lambda t: t.mean(-1), lambda x: x.mean(-1)),
    "max": (lambda t: t.max(-1).values, lambda x: x.max(-1)), "min": (lambda t: t.min(-1).values, lambda x: x.min(-1)),
    "matmul": (lambda t: t @ t.mT, lambda x: x @ x.T),
    "scale": (lambda t: t * 2.0 - 1.0, lambda x: x * 2.0 - 1.0),
    "pow": (lambda t: t**2, lambda x: x**2),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 4)), elements=special),
       op=st.sampled_from(sorted(UNARY)))
def test_nan_and_inf_propagate_as_in_numpy(device, x, op):
    ours, ref = UNARY[op]
    t = tl.tensor(x, device=device, requires_grad=True)
    out = ours(t)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(out.detach().numpy(), ref(x), rtol=1e-12, equal_nan=True)
    out.sum().backward()  # no exception, whatever the values
    assert t.grad.shape == x.shape


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 4)),
                    elements=st.one_of(special, st.floats(-3, 3))))
def test_nan_and_inf_stay_in_their_rows_of_fused_ops(device, x):
    """softmax, log_softmax, logsumexp, layer_norm, cross_entropy: no exception; a NaN or +Inf shows in its row only.

    The reference is the max-shifted formula every one of them documents, with the shift taken
    over the finite entries (so a -Inf logit is an impossible class, not a NaN).
    """
    t = tl.tensor(x, device=device, requires_grad=True)
    target = tl.zeros(x.shape[0], dtype=tl.int64, device=device)
    outs = {
        "softmax": t.softmax(1), "log_softmax": t.log_softmax(1), "logsumexp": t.logsumexp(1, keepdim=True),
        "layer_norm": F.layer_norm(t, (x.shape[1],)), "cross_entropy": F.cross_entropy(t, target, reduction="none"),
    }
    has_nan, has_pos_inf = np.isnan(x).any(1), np.isposinf(x).any(1)
    with np.errstate(all="ignore"):
        m = np.where(np.isfinite(x), x, -np.inf).max(1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.exp(x - m)
        log_s = np.log(e.sum(1, keepdims=True))
        # layer_norm is shift-invariant: a finite row is shifted by its first entry first, so that the
        # reference's own mean is exact for a constant row of any size (1e30 * 3 / 3 is not 1e30)
        y = x - np.where(np.isfinite(x).all(1, keepdims=True), x[:, :1], 0.0)
        mu = y.mean(1, keepdims=True)
        expected = {
            "softmax": e / e.sum(1, keepdims=True), "log_softmax": (x - m) - log_s, "logsumexp": log_s + m,
            "layer_norm": (y - mu) / np.sqrt(((y - mu) ** 2).mean(1, keepdims=True) + 1e-5),
            "cross_entropy": (log_s - (x[:, :1] - m))[:, 0],
        }
    plain = ~has_nan & ~has_pos_inf  # finite rows, and rows whose only non-finite values are -Inf
    for name, out in outs.items():
        got = out.detach().numpy().reshape(x.shape[0], -1)
        ref = expected[name].reshape(x.shape[0], -1)
        np.testing.assert_allclose(got[plain], ref[plain], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
        assert np.isnan(got[has_nan]).any(1).all(), f"{name} hid a NaN input: {got}"
        assert not np.isfinite(got[has_pos_inf & ~has_nan]).all(1).any(), f"{name} hid an Inf input: {got}"
        out.sum().backward()  # no exception, whatever the values
    finite = np.isfinite(x).all(1)
    assert np.isfinite(t.grad.numpy()[finite]).all()  # a bad row never poisons the gradient of another


ANOMALY_OP = {
    "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "tanh": "Tanh", "neg": "Neg", "sigmoid": "Sigmoid",
    "relu": "Relu", "sin": "Sin", "cos": "Cos", "square": "Mul", "clamp": "Clamp", "sum": "Sum", "mean": "Mean",
    "max": ("Max", "Gather"), "min": ("Min", "Gather"), "pow": "Pow",  # max(dim) may pick its values by a gather
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 4)),
                    elements=st.one_of(special, st.floats(-3, 3))),
       op=st.sampled_from(sorted(ANOMALY_OP)))
def test_anomaly_mode_flags_exactly_the_non_finite_results(device, x, op):
    """Under detect_anomaly() an op raises, naming itself, exactly when NumPy's result has a NaN or Inf."""
    ours, ref = UNARY[op]
    t = tl.tensor(x, device=device)
    with np.errstate(all="ignore"):
        finite = bool(np.isfinite(ref(x)).all())
    with tl.detect_anomaly():
        if finite:
            np.testing.assert_allclose(ours(t).numpy(), ref(x), rtol=1e-12)
        else:
            names = ANOMALY_OP[op] if isinstance(ANOMALY_OP[op], tuple) else (ANOMALY_OP[op],)
            err = expect_error(lambda: ours(t), AnomalyError, ".forward produced NaN or Inf")
            assert any(f"{name}.forward produced" in str(err) for name in names), str(err)
            assert __file__ in str(err)  # where the op was created: this test's frame
