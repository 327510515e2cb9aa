"""The fast path's registry: every fast op is a same-named subclass of its reference op, and is tested against it."""
from __future__ import annotations

from pathlib import Path

import pytest

import tinygrad_lm as tl
from tinygrad_lm import autograd, fast, ops

TESTS = Path(__file__).resolve().parent


def test_every_fast_op_is_a_same_named_subclass_in_the_fast_package():
    registry = fast.registry()
    assert ops.LayerNorm in registry and ops.Softmax in registry  # the registry is filled on import
    for reference, impl in registry.items():
        assert issubclass(impl, reference)
        assert impl.__name__ == reference.__name__  # error messages name the op the user called
        assert impl.__module__.startswith("tinygrad_lm.fast.")
        assert reference.__module__.startswith("tinygrad_lm.ops.")


def test_every_fast_op_is_tested_against_its_reference():
    texts = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_fast_*.py")
                      if p.name != Path(__file__).name)
    untested = [impl.__module__ for impl in fast.registry().values() if impl.__module__.rpartition(".")[2] not in texts]
    assert not untested, f"no tests/test_fast_*.py file imports or names {untested}"


def test_register_refuses_a_class_that_does_not_build_on_the_registered_one():
    class Op(autograd.Function):
        def forward(self, x):
            return x

    class Unrelated(autograd.Function):
        pass

    with pytest.raises(TypeError, match="must subclass"):
        fast.register(Op)(Unrelated)
    first = fast.register(Op)(type("Op", (Op,), {}))
    try:
        with pytest.raises(TypeError, match="registered so far"):
            fast.register(Op)(type("Op", (Op,), {}))  # a second technique must build on the first
        assert fast.register(Op)(type("Op", (first,), {})) is not None
    finally:
        autograd._fast_registry.pop(Op, None)


def test_the_switch_selects_the_class_that_runs():
    x = tl.randn(3, 4, requires_grad=True)
    with tl.fast.enabled(False):
        assert type(x.softmax(-1).grad_fn) is ops.Softmax
    with tl.fast.enabled(True):
        assert type(x.softmax(-1).grad_fn) is fast.registry()[ops.Softmax]
    with pytest.raises(TypeError):
        tl.fast.set_enabled("off")
