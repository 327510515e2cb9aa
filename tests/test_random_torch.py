"""tinygrad_lm.random against PyTorch: the same calls give the same shapes and dtypes, or the same kind of error.

The numbers differ (other bit generators), so only what a program can rely on is compared:
result shape, dtype, whether it requires grad, and the exception class (PyTorch's
NotImplementedError is a RuntimeError, so "RuntimeError" covers both).
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

import tinygrad_lm as tl
from tinygrad_lm import random as R

torch = pytest.importorskip("torch")

NAN, INF = float("nan"), float("inf")


# Each case: (id, our call, PyTorch's call). Tensors are made inside the calls, on the CPU.
CASES: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
    ("rand", lambda: R.rand(2, 3), lambda: torch.rand(2, 3)),
    ("rand tuple f64", lambda: R.rand((2, 3), dtype=tl.float64), lambda: torch.rand((2, 3), dtype=torch.float64)),
    ("rand f16", lambda: R.rand(4, dtype=tl.float16), lambda: torch.rand(4, dtype=torch.float16)),
    ("rand int dtype", lambda: R.rand(2, dtype=tl.int64), lambda: torch.rand(2, dtype=torch.int64)),
    ("rand negative", lambda: R.rand(-1), lambda: torch.rand(-1)),
    ("rand requires_grad", lambda: R.rand(2, requires_grad=True), lambda: torch.rand(2, requires_grad=True)),
    ("randn list", lambda: R.randn([2, 3]), lambda: torch.randn([2, 3])),
    ("randn int dtype", lambda: R.randn(2, dtype=tl.int32), lambda: torch.randn(2, dtype=torch.int32)),
    ("randint high size", lambda: R.randint(5, (2, 3)), lambda: torch.randint(5, (2, 3))),
    ("randint low high", lambda: R.randint(3, 10, size=(2,)), lambda: torch.randint(3, 10, size=(2,))),
    ("randint keywords", lambda: R.randint(high=10, size=(2,)), lambda: torch.randint(high=10, size=(2,))),
    ("randint float", lambda: R.randint(5, (2,), dtype=tl.float32),
     lambda: torch.randint(5, (2,), dtype=torch.float32)),
    ("randint empty range", lambda: R.randint(5, 5, (2,)), lambda: torch.randint(5, 5, (2,))),
    ("randint uint8 overflow", lambda: R.randint(300, (2,), dtype="uint8"),
     lambda: torch.randint(300, (2,), dtype=torch.uint8)),
    ("randint requires_grad", lambda: R.randint(5, (2,), requires_grad=True),
     lambda: torch.randint(5, (2,), requires_grad=True)),
    ("randperm", lambda: R.randperm(5), lambda: torch.randperm(5)),
    ("randperm float grad", lambda: R.randperm(3, dtype=tl.float32, requires_grad=True),
     lambda: torch.randperm(3, dtype=torch.float32, requires_grad=True)),
    ("randperm int grad", lambda: R.randperm(3, requires_grad=True), lambda: torch.randperm(3, requires_grad=True)),
    ("randperm negative", lambda: R.randperm(-1), lambda: torch.randperm(-1)),
    ("randperm half too big", lambda: R.randperm(3000, dtype=tl.float16),
     lambda: torch.randperm(3000, dtype=torch.float16)),
    ("randperm bool", lambda: R.randperm(3, dtype=tl.bool), lambda: torch.randperm(3, dtype=torch.bool)),
    ("rand_like", lambda: R.rand_like(tl.zeros(2, dtype=tl.float64)),
     lambda: torch.rand_like(torch.zeros(2, dtype=torch.float64))),
    ("randn_like int", lambda: R.randn_like(tl.zeros(2, dtype=tl.int64)),
     lambda: torch.randn_like(torch.zeros(2, dtype=torch.int64))),
    ("randint_like high", lambda: R.randint_like(tl.zeros(2), 5), lambda: torch.randint_like(torch.zeros(2), 5)),
    ("randint_like low high", lambda: R.randint_like(tl.zeros(2, 2), 2, 5),
     lambda: torch.randint_like(torch.zeros(2, 2), 2, 5)),
    ("normal tensor tensor", lambda: R.normal(tl.zeros(2), tl.ones(2)),
     lambda: torch.normal(torch.zeros(2), torch.ones(2))),
    ("normal broadcast", lambda: R.normal(tl.zeros(2, 1), tl.ones(3)),
     lambda: torch.normal(torch.zeros(2, 1), torch.ones(3))),
    ("normal mismatch", lambda: R.normal(tl.zeros(2), tl.ones(3)), lambda: torch.normal(torch.zeros(2), torch.ones(3))),
    ("normal promote", lambda: R.normal(tl.zeros(2, dtype=tl.float64), tl.ones(2)),
     lambda: torch.normal(torch.zeros(2, dtype=torch.float64), torch.ones(2))),
    ("normal grad", lambda: R.normal(tl.zeros(2, requires_grad=True), tl.ones(2)),
     lambda: torch.normal(torch.zeros(2, requires_grad=True), torch.ones(2))),
    ("normal tensor float", lambda: R.normal(tl.zeros(2), 1.0), lambda: torch.normal(torch.zeros(2), 1.0)),
    ("normal tensor default std", lambda: R.normal(tl.zeros(2)), lambda: torch.normal(torch.zeros(2))),
    ("normal float tensor", lambda: R.normal(0.0, tl.ones(2)), lambda: torch.normal(0.0, torch.ones(2))),
    ("normal floats size", lambda: R.normal(0.0, 1.0, (2, 3)), lambda: torch.normal(0.0, 1.0, (2, 3))),
    ("normal floats f64", lambda: R.normal(0.0, 1.0, size=(2,), dtype=tl.float64),
     lambda: torch.normal(0.0, 1.0, size=(2,), dtype=torch.float64)),
    ("normal negative std", lambda: R.normal(0.0, -1.0, (2,)), lambda: torch.normal(0.0, -1.0, (2,))),
    ("normal negative std tensor", lambda: R.normal(tl.zeros(2), -tl.ones(2)),
     lambda: torch.normal(torch.zeros(2), -torch.ones(2))),
    ("normal int mean", lambda: R.normal(tl.zeros(2, dtype=tl.int64), 1.0),
     lambda: torch.normal(torch.zeros(2, dtype=torch.int64), 1.0)),
    ("bernoulli", lambda: R.bernoulli(tl.full((3,), 0.5)), lambda: torch.bernoulli(torch.full((3,), 0.5))),
    ("bernoulli grad", lambda: R.bernoulli(tl.tensor([0.5], requires_grad=True)),
     lambda: torch.bernoulli(torch.tensor([0.5], requires_grad=True))),
    ("bernoulli p", lambda: R.bernoulli(tl.zeros(2, dtype=tl.float64), 0.3),
     lambda: torch.bernoulli(torch.zeros(2, dtype=torch.float64), 0.3)),
    ("bernoulli int p", lambda: R.bernoulli(tl.zeros(3, dtype=tl.int64), 0.3),
     lambda: torch.bernoulli(torch.zeros(3, dtype=torch.int64), 0.3)),
    ("bernoulli above 1", lambda: R.bernoulli(tl.tensor([1.5])), lambda: torch.bernoulli(torch.tensor([1.5]))),
    ("bernoulli nan", lambda: R.bernoulli(tl.tensor([NAN])), lambda: torch.bernoulli(torch.tensor([NAN]))),
    ("bernoulli bad p", lambda: R.bernoulli(tl.zeros(2), 1.3), lambda: torch.bernoulli(torch.zeros(2), 1.3)),
    ("bernoulli int", lambda: R.bernoulli(tl.tensor([1, 0])), lambda: torch.bernoulli(torch.tensor([1, 0]))),
    ("poisson", lambda: R.poisson(tl.ones(2, 2)), lambda: torch.poisson(torch.ones(2, 2))),
    ("poisson grad", lambda: R.poisson(tl.ones(2, requires_grad=True)),
     lambda: torch.poisson(torch.ones(2, requires_grad=True))),
    ("poisson negative", lambda: R.poisson(tl.tensor([-1.0])), lambda: torch.poisson(torch.tensor([-1.0]))),
    ("poisson nan", lambda: R.poisson(tl.tensor([NAN])), lambda: torch.poisson(torch.tensor([NAN]))),
    ("poisson int", lambda: R.poisson(tl.tensor([2])), lambda: torch.poisson(torch.tensor([2]))),
    ("multinomial 1-D", lambda: R.multinomial(tl.tensor([1.0, 2.0, 3.0]), 2),
     lambda: torch.multinomial(torch.tensor([1.0, 2.0, 3.0]), 2)),
    ("multinomial 2-D repl", lambda: R.multinomial(tl.ones(4, 3), 7, True),
     lambda: torch.multinomial(torch.ones(4, 3), 7, True)),
    ("multinomial zeros fill", lambda: R.multinomial(tl.tensor([1.0, 0.0, 0.0, 0.0]), 3),
     lambda: torch.multinomial(torch.tensor([1.0, 0.0, 0.0, 0.0]), 3)),
    ("multinomial empty batch", lambda: R.multinomial(tl.ones(0, 5), 2),
     lambda: torch.multinomial(torch.ones(0, 5), 2)),
    ("multinomial empty row", lambda: R.multinomial(tl.zeros(2, 0), 2, True),
     lambda: torch.multinomial(torch.zeros(2, 0), 2, True)),
    ("multinomial empty no repl", lambda: R.multinomial(tl.zeros(1, 0), 1),
     lambda: torch.multinomial(torch.zeros(1, 0), 1)),
    ("multinomial long", lambda: R.multinomial(tl.tensor([1, 2]), 1),
     lambda: torch.multinomial(torch.tensor([1, 2]), 1)),
    ("multinomial 0-d", lambda: R.multinomial(tl.tensor(1.0), 1), lambda: torch.multinomial(torch.tensor(1.0), 1)),
    ("multinomial 3-d", lambda: R.multinomial(tl.ones(2, 2, 2), 1), lambda: torch.multinomial(torch.ones(2, 2, 2), 1)),
    ("multinomial zero samples", lambda: R.multinomial(tl.ones(3), 0), lambda: torch.multinomial(torch.ones(3), 0)),
    ("multinomial too many", lambda: R.multinomial(tl.ones(3), 4), lambda: torch.multinomial(torch.ones(3), 4)),
    ("multinomial many repl", lambda: R.multinomial(tl.ones(3), 4, True),
     lambda: torch.multinomial(torch.ones(3), 4, True)),
    ("multinomial negative", lambda: R.multinomial(tl.tensor([1.0, -1.0]), 1),
     lambda: torch.multinomial(torch.tensor([1.0, -1.0]), 1)),
    ("multinomial nan", lambda: R.multinomial(tl.tensor([1.0, NAN]), 1),
     lambda: torch.multinomial(torch.tensor([1.0, NAN]), 1)),
    ("multinomial inf", lambda: R.multinomial(tl.tensor([1.0, INF]), 1),
     lambda: torch.multinomial(torch.tensor([1.0, INF]), 1)),
    ("multinomial all zero", lambda: R.multinomial(tl.tensor([0.0, 0.0]), 1),
     lambda: torch.multinomial(torch.tensor([0.0, 0.0]), 1)),
    ("multinomial zero row", lambda: R.multinomial(tl.tensor([[1.0, 1.0], [0.0, 0.0]]), 1, True),
     lambda: torch.multinomial(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 1, True)),
    ("multinomial half", lambda: R.multinomial(tl.ones(2, dtype=tl.float16), 1, True),
     lambda: torch.multinomial(torch.ones(2, dtype=torch.float16), 1, True)),
    ("multinomial grad input", lambda: R.multinomial(tl.ones(2, requires_grad=True), 1),
     lambda: torch.multinomial(torch.ones(2, requires_grad=True), 1)),
    ("multinomial float n", lambda: R.multinomial(tl.ones(3), 2.0), lambda: torch.multinomial(torch.ones(3), 2.0)),
    ("multinomial bool n", lambda: R.multinomial(tl.ones(3), True), lambda: torch.multinomial(torch.ones(3), True)),
    ("normal_", lambda: R.normal_(tl.zeros(3, dtype=tl.float64), 1.0, 2.0),
     lambda: torch.zeros(3, dtype=torch.float64).normal_(1.0, 2.0)),
    ("normal_ negative std", lambda: R.normal_(tl.zeros(3), 0, -1), lambda: torch.zeros(3).normal_(0, -1)),
    ("normal_ long", lambda: R.normal_(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.zeros(3, dtype=torch.int64).normal_()),
    ("normal_ leaf", lambda: R.normal_(tl.zeros(3, requires_grad=True)),
     lambda: torch.zeros(3, requires_grad=True).normal_()),
    ("normal_ non-leaf", lambda: R.normal_(tl.zeros(3, requires_grad=True) * 2),
     lambda: (torch.zeros(3, requires_grad=True) * 2).normal_()),
    ("uniform_", lambda: R.uniform_(tl.zeros(2, 2), -1, 1), lambda: torch.zeros(2, 2).uniform_(-1, 1)),
    ("uniform_ reversed", lambda: R.uniform_(tl.zeros(3), 1, 0), lambda: torch.zeros(3).uniform_(1, 0)),
    ("uniform_ long", lambda: R.uniform_(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.zeros(3, dtype=torch.int64).uniform_()),
    ("exponential_", lambda: R.exponential_(tl.zeros(3, dtype=tl.float16)),
     lambda: torch.zeros(3, dtype=torch.float16).exponential_()),
    ("exponential_ zero", lambda: R.exponential_(tl.zeros(3), 0), lambda: torch.zeros(3).exponential_(0)),
    ("exponential_ negative", lambda: R.exponential_(tl.zeros(3), -1), lambda: torch.zeros(3).exponential_(-1)),
    ("exponential_ long", lambda: R.exponential_(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.zeros(3, dtype=torch.int64).exponential_()),
    ("log_normal_", lambda: R.log_normal_(tl.zeros(3)), lambda: torch.zeros(3).log_normal_()),
    ("log_normal_ zero std", lambda: R.log_normal_(tl.zeros(3), 1, 0), lambda: torch.zeros(3).log_normal_(1, 0)),
    ("log_normal_ long", lambda: R.log_normal_(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.zeros(3, dtype=torch.int64).log_normal_()),
    ("cauchy_", lambda: R.cauchy_(tl.zeros(3, dtype=tl.float64)),
     lambda: torch.zeros(3, dtype=torch.float64).cauchy_()),
    ("cauchy_ negative sigma", lambda: R.cauchy_(tl.zeros(3), 0, -1), lambda: torch.zeros(3).cauchy_(0, -1)),
    ("cauchy_ long", lambda: R.cauchy_(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.zeros(3, dtype=torch.int64).cauchy_()),
    ("geometric_", lambda: R.geometric_(tl.zeros(3), 0.5), lambda: torch.zeros(3).geometric_(0.5)),
    ("geometric_ long", lambda: R.geometric_(tl.zeros(3, dtype=tl.int64), 0.5),
     lambda: torch.zeros(3, dtype=torch.int64).geometric_(0.5)),
    ("geometric_ p 1", lambda: R.geometric_(tl.zeros(3), 1), lambda: torch.zeros(3).geometric_(1)),
    ("geometric_ bool", lambda: R.geometric_(tl.zeros(3, dtype=tl.bool), 0.5),
     lambda: torch.zeros(3, dtype=torch.bool).geometric_(0.5)),
    ("bernoulli_", lambda: R.bernoulli_(tl.zeros(3)), lambda: torch.zeros(3).bernoulli_()),
    ("bernoulli_ long", lambda: R.bernoulli_(tl.zeros(3, dtype=tl.int64), 0.5),
     lambda: torch.zeros(3, dtype=torch.int64).bernoulli_(0.5)),
    ("bernoulli_ bool", lambda: R.bernoulli_(tl.zeros(3, dtype=tl.bool), 0.5),
     lambda: torch.zeros(3, dtype=torch.bool).bernoulli_(0.5)),
    ("bernoulli_ tensor p", lambda: R.bernoulli_(tl.zeros(3), tl.tensor(0.5)),
     lambda: torch.zeros(3).bernoulli_(torch.tensor(0.5))),
    ("bernoulli_ bad p", lambda: R.bernoulli_(tl.zeros(3), 1.5), lambda: torch.zeros(3).bernoulli_(1.5)),
    ("bernoulli_ bad tensor p", lambda: R.bernoulli_(tl.zeros(3), tl.tensor([1.5, 0.0, 0.0])),
     lambda: torch.zeros(3).bernoulli_(torch.tensor([1.5, 0.0, 0.0]))),
    ("bernoulli_ p shape", lambda: R.bernoulli_(tl.zeros(3), tl.tensor([0.5, 0.1])),
     lambda: torch.zeros(3).bernoulli_(torch.tensor([0.5, 0.1]))),
    ("random_", lambda: R.random_(tl.zeros(4)), lambda: torch.zeros(4).random_()),
    ("random_ to", lambda: R.random_(tl.zeros(4, dtype=tl.int64), 3),
     lambda: torch.zeros(4, dtype=torch.int64).random_(3)),
    ("random_ from to", lambda: R.random_(tl.zeros(4), 2, 5), lambda: torch.zeros(4).random_(2, 5)),
    ("random_ reversed", lambda: R.random_(tl.zeros(4), 5, 2), lambda: torch.zeros(4).random_(5, 2)),
    ("random_ uint8 overflow", lambda: R.random_(tl.zeros(4, dtype="uint8"), 0, 300),
     lambda: torch.zeros(4, dtype=torch.uint8).random_(0, 300)),
    ("random_ bool", lambda: R.random_(tl.zeros(4, dtype=tl.bool)), lambda: torch.zeros(4, dtype=torch.bool).random_()),
    ("random_ negative floats", lambda: R.random_(tl.zeros(4), -3, 3), lambda: torch.zeros(4).random_(-3, 3)),
    ("random_ keyword to", lambda: R.random_(tl.zeros(4), to=3), lambda: torch.zeros(4).random_(to=3)),
    ("manual_seed negative", lambda: R.manual_seed(-1).initial_seed(), lambda: torch.manual_seed(-1).initial_seed()),
    ("manual_seed overflow", lambda: R.manual_seed(2**64), lambda: torch.manual_seed(2**64)),
    ("generator default seed", lambda: R.Generator().initial_seed(), lambda: torch.Generator().initial_seed()),
    ("set_state list", lambda: R.Generator().set_state([1, 2]), lambda: torch.Generator().set_state([1, 2])),
    ("set_state long", lambda: R.Generator().set_state(tl.zeros(3, dtype=tl.int64)),
     lambda: torch.Generator().set_state(torch.zeros(3, dtype=torch.int64))),
    ("set_state short", lambda: R.Generator().set_state(tl.zeros(3, dtype="uint8")),
     lambda: torch.Generator().set_state(torch.zeros(3, dtype=torch.uint8))),
]


def _kind(err: BaseException) -> str:
    for cls in (TypeError, ValueError, RuntimeError):
        if isinstance(err, cls):
            return cls.__name__
    return type(err).__name__


def _summary(value: Any) -> Any:
    """What is compared of a result: shape, dtype name and requires_grad of a tensor; a plain value as it is."""
    if isinstance(value, tl.Tensor):
        return tuple(value.shape), tl.dtypes.check_dtype(value.dtype).name, bool(value.requires_grad)
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), str(value.dtype).replace("torch.", ""), bool(value.requires_grad)
    return value


def _run(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", _summary(call())
    except (TypeError, ValueError, RuntimeError) as err:
        return "raises", _kind(err)


@pytest.mark.parametrize("ours, theirs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_shapes_dtypes_and_errors_as_pytorch(ours, theirs):
    assert _run(ours) == _run(theirs)


def test_the_cases_cover_both_outcomes():
    outcomes = {_run(theirs)[0] for _, _, theirs in CASES}
    assert outcomes == {"ok", "raises"}
