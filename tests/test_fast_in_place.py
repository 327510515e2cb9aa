"""Backward passes that write into the gradient the engine hands over (tinygrad_lm.fast.in_place, and
masked_fill's in fused_masked_fill), and what the engine tells a node (``Function.owns_grad``).

The checks are that a gradient is overwritten only when nothing else can see it (no hook, no
``retain_grad``, not the gradient passed to ``backward``), that the results are the reference's bits,
and that the in-place pass really runs where it may (the reference backward is then not called).
"""
from __future__ import annotations

import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import autograd, ops
from tinygrad_lm.fast import in_place


class Probe(autograd.Function):
    """The identity, recording whether each backward was handed a gradient it owns."""

    seen: list[bool] = []

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        Probe.seen.append(self.owns_grad)
        return g.copy()


def probe_owns(after, hook=None, retain=False, times=1):
    """Whether Probe owned its gradient, with ``after`` applied to its output before the sum."""
    Probe.seen = []
    x = tl.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = Probe.apply(x)
    if hook is not None:
        y.register_hook(hook)
    if retain:
        y.retain_grad()
    out = after(y).sum()
    for i in range(times):
        out.backward(retain_graph=i < times - 1)
    return Probe.seen, y


def test_a_node_owns_a_gradient_that_the_op_after_it_made():
    assert probe_owns(lambda y: y.tanh())[0] == [True]
    assert probe_owns(lambda y: y * tl.tensor(np.full((2, 3), 3.0)))[0] == [True]


def test_a_node_does_not_own_the_gradient_given_to_backward_or_one_shared_with_others():
    Probe.seen = []
    x = tl.tensor(np.ones(3), requires_grad=True)
    y = Probe.apply(x)
    y.backward(tl.tensor(np.ones(3)))  # the caller holds that gradient
    assert Probe.seen == [False]
    assert probe_owns(lambda y: y)[0] == [False]  # the sum's backward broadcasts one value: a read-only view
    assert probe_owns(lambda y: y + y)[0] == [True]  # the engine added the two gradients into a new array


def test_hooks_and_retain_grad_take_ownership_away_and_keep_their_values():
    seen, _ = probe_owns(lambda y: y.tanh(), hook=lambda g: None)
    assert seen == [False]
    seen, y = probe_owns(lambda y: y.tanh() * 2.0, retain=True)
    assert seen == [False]
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(y.grad.numpy(), 2.0 * (1 - np.tanh(x) ** 2), rtol=1e-13)  # (the compiled tanh)


def test_a_node_kept_for_another_backward_is_told_again_each_time():
    Probe.seen = []
    x = tl.tensor(np.ones(3), requires_grad=True)
    y = Probe.apply(x)
    out = y.tanh().sum()
    out.backward(retain_graph=True)
    y.register_hook(lambda g: None)  # from now on a hook sees the gradient first
    out.backward()
    assert Probe.seen == [True, False]


def chain(t, number, op, side, mask, retain):
    """``t`` scaled by ``number`` (``op``: * or /, the number on ``side``), masked, then weighted by a constant;
    and the masked tensor, whose gradient is kept when ``retain``."""
    if op == "mul":
        s = t * number if side == "right" else number * t
    else:
        s = t / number
    masked = s.masked_fill(tl.tensor(mask), 0.0)
    if retain:
        masked.retain_grad()
    weights = np.linspace(-1.0, 2.0, t.numel()).reshape(t.shape).astype(str(t.dtype))
    return (masked * tl.tensor(weights)).sum(), masked


@settings(max_examples=40)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), number=st.sampled_from([3, -0.125, 2.5, 1e-3]),
       op=st.sampled_from(["mul", "div"]), side=st.sampled_from(["left", "right"]),
       dtype=st.sampled_from(["float32", "float64"]), retain=st.booleans(), seed=st.integers(0, 2**16))
def test_in_place_backward_gives_the_reference_bits(shape, number, op, side, dtype, retain, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    mask = rng.random(shape[-1:]) < 0.3
    grads = []
    for fast in (True, False):
        with tl.fast.enabled(fast):
            t = tl.tensor(x, requires_grad=True)
            mid = t * 1.5
            if retain:  # a gradient kept as .grad must not be changed by a later in-place pass
                mid.retain_grad()
            loss, masked = chain(mid, number, op, side, mask, retain)
            loss.backward()
            grads.append([t.grad.numpy()] + ([mid.grad.numpy(), masked.grad.numpy()] if retain else []))
    for fast, reference in zip(*grads):
        np.testing.assert_array_equal(fast, reference)


@pytest.mark.parametrize("op", ["mul", "div"])
def test_the_pass_runs_in_place_only_when_the_gradient_is_owned(op, monkeypatch):
    reference = ops.Mul.backward if op == "mul" else ops.Div.backward
    calls = []

    def counted(self, g):
        calls.append(type(self).__name__)
        return reference(self, g)

    monkeypatch.setattr(ops.Mul if op == "mul" else ops.Div, "backward", counted)
    x = tl.tensor(np.ones((3, 4)), requires_grad=True)
    expected = 0.5 * (1 - np.tanh(0.5) ** 2)

    def scaled():
        return x * 0.5 if op == "mul" else x / 2.0

    scaled().tanh().sum().backward()  # tanh's backward makes a new gradient: owned, scaled in place
    assert not calls
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-13)
    x.grad = None
    y = scaled()
    y.register_hook(lambda g: None)  # a hook sees the gradient: the reference runs
    y.tanh().sum().backward()
    assert calls == [op.capitalize()]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-13)


def test_a_product_by_a_number_does_not_keep_the_other_factor():
    """``(q @ k^T) * scale``: the scores before scaling are not needed for any gradient, so they are freed."""
    for fast in (True, False):
        with tl.fast.enabled(fast):
            a = tl.tensor(np.ones((4, 4)), requires_grad=True)
            s = a @ a
            freed = weakref.ref(s.array)
            y = s * 0.5
            z = (a @ a) / 4.0
            del s
            assert freed() is None
            (y + z).sum().backward()
            np.testing.assert_array_equal(a.grad.numpy(), 8.0 * 0.75)


def test_the_ops_are_registered():
    assert tl.fast.registry()[ops.Mul] is in_place.Mul and tl.fast.registry()[ops.Div] is in_place.Div


IN_PLACE = {  # each op whose backward may write over its gradient, applied to a (..., 3) tensor
    "mul": lambda t: t * 2.0,
    "div": lambda t: t / 2.0,
    "masked_fill": lambda t: t.masked_fill(tl.tensor(np.array([True, False, True])), 0.0),
    "softmax": lambda t: t.softmax(-1),
    "tanh": lambda t: t.tanh(),
    "sigmoid": lambda t: t.sigmoid(),
    "gelu": lambda t: tl.nn.functional.gelu(t),
}


@pytest.mark.parametrize("op", sorted(IN_PLACE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_op_writes_over_an_owned_gradient_with_the_bits_of_a_new_one(op, dtype, monkeypatch):
    if op in ("masked_fill", "softmax", "tanh", "sigmoid", "gelu"):
        from tinygrad_lm.fast import compiler

        if not compiler.numba_available():
            pytest.skip("the compiled kernels need Numba")
    cls = type(IN_PLACE[op](tl.tensor(np.ones((1, 3)), requires_grad=True)).grad_fn)
    wrote_over = []
    backward = cls.backward

    nodes = []

    def spy(self, g):
        dx = backward(self, g)
        if any(self is node for node in nodes):  # (not the weighting's product)
            wrote_over.append((dx[0] if isinstance(dx, tuple) else dx) is g)
        return dx

    monkeypatch.setattr(cls, "backward", spy)
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((4, 5, 3)).astype(dtype), rng.standard_normal((4, 5, 3)).astype(dtype)
    grads = []
    for hooked in (False, True):
        t = tl.tensor(x, requires_grad=True)
        y = IN_PLACE[op](t)
        nodes.append(y.grad_fn)
        if hooked:
            y.register_hook(lambda g: None)
        (y * tl.tensor(w)).sum().backward()
        grads.append(t.grad.numpy())
    assert wrote_over == [True, False]
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("op", sorted(IN_PLACE))
def test_a_gradient_given_to_backward_or_kept_by_a_hook_is_left_as_it_was(op):
    apply = IN_PLACE[op]
    given_grad = tl.tensor(np.array([[1.0, 2.0, 3.0]] * 2))
    x = tl.tensor(np.ones((2, 3)), requires_grad=True)
    apply(x * 1.0).backward(given_grad)
    np.testing.assert_array_equal(given_grad.numpy(), [[1.0, 2.0, 3.0]] * 2)
    kept = []
    y = apply(x * 1.0)
    y.register_hook(kept.append)
    (y * tl.tensor(np.full((2, 3), 3.0))).sum().backward()
    np.testing.assert_array_equal(kept[0].numpy(), 3.0)


@pytest.mark.parametrize("pieces", [False, True])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_in_place_gives_the_bits_of_a_new_array(pieces, log, monkeypatch, request):
    """The softmax's backward over an owned gradient (on one thread, or in pieces on the pool) writes over it,
    with the bits of the backward into a new array (a hook on the output takes the ownership away)."""
    from tinygrad_lm.fast import compiler, workers

    if not compiler.numba_available():
        pytest.skip("the compiled softmax needs Numba")
    kernels = []
    compiled = compiler.compiled
    monkeypatch.setattr(compiler, "compiled",
                        lambda kernel, *arrays: kernels.append(kernel.__name__) or compiled(kernel, *arrays))
    if pieces:
        request.getfixturevalue("blas_pool_threads")(2)
        monkeypatch.setattr(workers, "MIN_ELEMENTS_PER_PART", 1)
        variants = []
        run_pieces = workers.run_pieces
        monkeypatch.setattr(workers, "run_pieces", lambda kernel, parts, count, *words: variants.append(words[3])
                            or run_pieces(kernel, parts, count, *words))
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((6, 5, 7)).astype(np.float32), rng.standard_normal((6, 5, 7)).astype(np.float32)
    results = []
    for hooked in (False, True):
        t = tl.tensor(x, requires_grad=True)
        y = t.log_softmax(-1) if log else t.softmax(-1)
        if hooked:
            y.register_hook(lambda g: None)
        (y * tl.tensor(w)).sum().backward()
        results.append(t.grad.numpy())
    np.testing.assert_array_equal(results[0], results[1])
    assert "_softmax_rows_back_in_place_kernel" in kernels and "_softmax_rows_back_kernel" in kernels
    if pieces:
        assert variants == [0, 2, 0, 1]  # forward, backward in place; forward, backward into a new array
    with tl.fast.enabled(False):
        t = tl.tensor(x, requires_grad=True)
        ((t.log_softmax(-1) if log else t.softmax(-1)) * tl.tensor(w)).sum().backward()
    np.testing.assert_allclose(results[0], t.grad.numpy(), rtol=1e-5, atol=1e-6)
