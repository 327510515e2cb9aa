"""Gradients laid out as their inputs (tinygrad_lm/fast/layouts.py), and the products that write into them.

The point of the module is fewer copies, but the checks here are of values and memory: every
gradient equals the reference path's, a layout is the input's, one array is shared only when the
inputs really fill it, and the split's backward hands on a view only when that view is exactly
the concatenation.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import ops
from tinygrad_lm.fast import blas, layouts


def qkv_views(B=2, T=5, C=8, heads=2, dtype=np.float64):
    """q, k and v as a Transformer block makes them: (B, heads, T, C/heads) views of one (B, T, 3C) array."""
    qkv = np.random.default_rng(0).standard_normal((B, T, 3 * C)).astype(dtype)
    views = [qkv[:, :, i * C:(i + 1) * C].reshape(B, T, heads, C // heads).transpose(0, 2, 1, 3) for i in range(3)]
    return qkv, views


def axis_order(x):
    """The axes from the outermost in memory to the innermost."""
    return tuple(np.argsort([-s for s in x.strides], kind="stable"))


# ------------------------------------------------------------------------------------------- empty_like_inputs


def test_views_that_fill_one_array_get_one_new_array_laid_out_the_same():
    qkv, views = qkv_views()
    outs = layouts.empty_like_inputs(views, [v.shape for v in views], np.float64)
    base = outs[0].base
    assert base is not None and base.shape == qkv.shape and base.flags.c_contiguous and not np.shares_memory(base, qkv)
    for out, view in zip(outs, views):
        assert out.base is base and out.strides == view.strides
        assert out.ctypes.data - base.ctypes.data == view.ctypes.data - qkv.ctypes.data


def test_other_inputs_get_their_own_layout_or_none():
    qkv, (q, k, v) = qkv_views()
    # two of the three do not fill the owner: each gets a new array in its own layout
    outs = layouts.empty_like_inputs([q, k], [q.shape, k.shape], np.float64)
    assert outs[0].base is None and outs[1].base is None
    assert axis_order(outs[0]) == axis_order(q) and not np.shares_memory(outs[0], outs[1])
    # the same view twice fills the owner's size but overlaps: no shared array
    half = qkv.reshape(-1)[: qkv.size // 2]
    outs = layouts.empty_like_inputs([half, half], [half.shape] * 2, np.float64)
    assert outs == [None, None]  # C-contiguous already: the usual gradient
    twice = [q, q, k]
    outs = layouts.empty_like_inputs(twice, [x.shape for x in twice], np.float64)
    assert all(o.base is None for o in outs)
    # a contiguous input, a broadcast one, another shape or dtype, an empty one: None
    c = np.zeros((3, 4))
    b = np.broadcast_to(np.zeros((1, 4)), (3, 4))
    for x, shape in ((c, (3, 4)), (b, (3, 4)), (q.T, (9,)), (np.zeros((0, 2)).T, (2, 0))):
        assert layouts.empty_like_inputs([x], [shape], np.float64) == [None]
    assert layouts.empty_like_inputs([q], [q.shape], np.float32) == [None]
    assert layouts.empty_like_inputs([q], [q.shape], np.float64)[0].shape == q.shape


@settings(max_examples=40)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4), axis=st.integers(0, 2),
       order=st.permutations([0, 1, 2]), seed=st.integers(0, 2**31 - 1))
def test_side_by_side_is_the_concatenation_or_nothing(sizes, axis, order, seed):
    """Pieces of one array split along an axis (in any memory layout) come back as a view equal to their
    concatenation; pieces of separate arrays, reordered or with a gap, do not."""
    rng = np.random.default_rng(seed)
    shape = [3, 2, 5]
    shape[axis] = sum(sizes)
    owner = rng.standard_normal([shape[i] for i in order])
    whole = owner.transpose(np.argsort(order))  # shape ``shape``, memory order ``order``
    bounds = np.cumsum([0] + sizes)
    lead = (slice(None),) * axis
    parts = [whole[lead + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:])]
    view = layouts.side_by_side(parts, axis)
    assert view is not None and np.shares_memory(view, owner)
    np.testing.assert_array_equal(view, np.concatenate(parts, axis=axis))
    copies = [p.copy() for p in parts]
    if len(parts) > 1:
        assert layouts.side_by_side(copies, axis) is None
        assert layouts.side_by_side(parts[::-1], axis) is None
        assert layouts.side_by_side([parts[0], parts[2]] if len(parts) > 2 else parts[:1] + copies[1:], axis) is None


def test_side_by_side_refuses_broadcasts_and_other_arrays():
    z = np.broadcast_to(np.zeros(1), (4,))
    assert layouts.side_by_side([z[:2], z[2:]], 0) is None
    memory = np.arange(8.0)
    touching = [memory[:4], np.frombuffer(memory.data, dtype=np.float64, offset=32)]  # adjacent, another owner
    assert touching[1].base is not memory and layouts.side_by_side(touching, 0) is None
    assert layouts.side_by_side([memory[:4], memory[4:]], 0) is not None
    a = np.zeros((2, 6))
    assert layouts.side_by_side([a[:, :3], a[:, 3:].astype(np.float32)], 1) is None
    assert layouts.side_by_side([a[:, :3], [[0.0] * 3] * 2], 1) is None


def test_split_backward_hands_on_adjacent_gradients_as_one_array():
    _, (q, k, v) = qkv_views()
    outs = layouts.empty_like_inputs([q, k, v], [q.shape] * 3, np.float64)
    for out, x in zip(outs, (q, k, v)):
        out[...] = x * 2
    grads = [o.transpose(0, 2, 1, 3).reshape(2, 5, 8) for o in outs]  # the transpose's and reshape's backward
    assert all(np.shares_memory(g, outs[0].base) for g in grads)  # views, not copies
    op = layouts.Split.__new__(layouts.Split)
    op.xp, op.axis, op.shapes = np, 2, [g.shape for g in grads]
    whole = op.backward(grads)
    assert whole.base is not None and np.shares_memory(whole, outs[0].base)
    np.testing.assert_array_equal(whole, np.concatenate(grads, axis=2))
    separate = op.backward([g.copy() for g in grads])
    np.testing.assert_array_equal(separate, whole)
    assert separate.base is None  # concatenated, as the reference does
    with_none = op.backward([grads[0], None, grads[2]])
    np.testing.assert_array_equal(with_none[..., 8:16], 0)
    np.testing.assert_array_equal(with_none[..., :8], grads[0])


# -------------------------------------------------------------------------------------------------- products


@settings(max_examples=30)
@given(m=st.integers(2, 6), n=st.integers(2, 6), k=st.integers(1, 5), batch=st.sampled_from([(), (3,), (2, 3)]),
       columns=st.booleans(), pool=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_matmul_into_any_out_layout(m, n, k, batch, columns, pool, seed, monkeypatch):
    """``blas.matmul(a, b, out=...)`` with out's matrices stored by rows or by columns, its batch axes in any
    order, on the pool's batched path or NumPy's: the product, written in place."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(batch + (m, k)), rng.standard_normal(batch + (k, n))
    if pool:
        monkeypatch.setattr(blas, "MIN_BATCHED_WORK", 1)
        monkeypatch.setattr(blas, "MIN_PRODUCT_WORK", 1)
    order = list(rng.permutation(len(batch) + 2))
    if columns != (order.index(len(batch)) > order.index(len(batch) + 1)):  # rows outside columns, or inside
        i, j = order.index(len(batch)), order.index(len(batch) + 1)
        order[i], order[j] = order[j], order[i]
    full = batch + (m, n)
    out = np.zeros([full[i] for i in order]).transpose(np.argsort(order))
    result = blas.matmul(a, b, out=out)
    assert result is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_like_keeps_the_layout_of_like():
    rng = np.random.default_rng(1)
    _, (q, k, _) = qkv_views()
    g = rng.standard_normal(q.shape[:-1] + (q.shape[-2],))  # (B, h, T, T)
    dq = blas.matmul_like(g, k, q)
    np.testing.assert_allclose(dq, g @ k, rtol=1e-12)
    assert axis_order(dq) == axis_order(q) and not np.shares_memory(dq, q)
    assert np.shares_memory(dq.transpose(0, 2, 1, 3).reshape(2, 5, 8), dq)
    plain = blas.matmul_like(g, k, np.broadcast_to(q[:1], q.shape))  # broadcast: a plain product
    assert plain.flags.c_contiguous
    np.testing.assert_allclose(plain, g @ k, rtol=1e-12)


def test_matmul_like_places_a_c_contiguous_piece_of_a_split_array():
    """A piece cut along the first axis is C-contiguous, yet its gradient still goes into the split array's
    gradient (the plain product is taken only for inputs that no split cut)."""
    rng = np.random.default_rng(2)
    qkv = rng.standard_normal((6, 4))
    layouts._remember_split(qkv)
    top, bottom = qkv[:3], qkv[3:]
    assert top.flags.c_contiguous
    g, w = rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    d_top, d_bottom = blas.matmul_like(g, w, top), blas.matmul_like(g, w, bottom)
    np.testing.assert_allclose(d_top, g @ w, rtol=1e-12)
    np.testing.assert_allclose(d_bottom, g @ w, rtol=1e-12)
    assert d_top.base is not None and d_top.base is d_bottom.base and d_top.base.shape == qkv.shape
    plain = blas.matmul_like(g, w, rng.standard_normal((3, 4)))  # no split: a product of its own
    assert plain.base is None and plain.flags.c_contiguous


# ------------------------------------------------------------------------------------- through the engine


def attention_block(x, w, heads, kind):
    """qkv = x w^T, split in three, viewed as heads, attended, merged: a Transformer block's attention."""
    B, T, C = x.shape
    q, k, v = (t.reshape(B, T, heads, C // heads).transpose(1, 2) for t in F.linear(x, w).split(C, dim=2))
    if kind == "sdpa":
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:  # written by hand
        att = (q @ k.transpose(-2, -1)) * (C // heads) ** -0.5
        att = att.masked_fill(tl.tril(tl.ones(T, T)) == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
    return y.transpose(1, 2).reshape(B, T, C)


@pytest.mark.parametrize("kind", ["sdpa", "manual"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_attention_gradients_equal_the_reference_path(kind, dtype):
    rng = np.random.default_rng(3)
    x, w, g = rng.standard_normal((3, 6, 8)), rng.standard_normal((24, 8)) * 0.3, rng.standard_normal((3, 6, 8))
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast):
            tx, tw = (tl.tensor(a.astype(dtype), requires_grad=True) for a in (x, w))
            y = attention_block(tx, tw, 2, kind)
            y.backward(tl.tensor(g.astype(dtype)))
            results.append([y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()])
    tol = 1e-12 if dtype == "float64" else 2e-5
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["sdpa", "manual"])
def test_attention_gradcheck_float64(kind):
    rng = np.random.default_rng(4)
    x = tl.tensor(rng.standard_normal((2, 4, 4)), requires_grad=True)
    w = tl.tensor(rng.standard_normal((12, 4)) * 0.5, requires_grad=True)
    assert tl.gradcheck(lambda a, b: attention_block(a, b, 2, kind), [x, w])


def test_the_split_is_registered_against_the_reference():
    assert tl.fast.registry()[ops.Split] is layouts.Split


# ------------------------------------------------------------------- gradients of a split array's pieces


def test_hand_written_attention_gets_its_gradients_in_one_array(monkeypatch):
    """dq and dk come from one product's backward and dv from another's: all three are placed in one gradient
    array laid out as the split qkv product, so the split's backward passes that array on."""
    joined = []

    def spy(parts, axis):
        joined.append(side_by_side(parts, axis))
        return joined[-1]

    side_by_side = layouts.side_by_side
    monkeypatch.setattr(layouts, "side_by_side", spy)
    rng = np.random.default_rng(5)
    x = tl.tensor(rng.standard_normal((2, 5, 8)), requires_grad=True)
    w = tl.tensor(rng.standard_normal((24, 8)) * 0.3, requires_grad=True)
    attention_block(x, w, 2, "manual").sum().backward()
    assert len(joined) == 1 and joined[0] is not None and joined[0].shape == (2, 5, 24)


def remembered(array):
    """Whether a split's record of ``array`` is there (a record of a dead array may sit under a reused id)."""
    rec = layouts._split_arrays.get(id(array))
    return rec is not None and rec.array() is array


def test_a_split_array_is_remembered_only_while_it_lives():
    qkv = np.zeros((4, 6))
    layouts._remember_split(qkv[:, :])
    assert remembered(qkv)
    layouts._remember_split(qkv[:2])  # a part of an array: not recorded again
    every_other = np.zeros((4, 12))[:, ::2]
    layouts._remember_split(every_other)  # not all of its array: its pieces' gradients are made as usual
    columns = np.zeros((4, 6), order="F")
    layouts._remember_split(columns)  # stored by columns
    assert not remembered(every_other.base) and not remembered(columns)
    transposed = np.zeros((6, 4)).T  # all of a C-contiguous array, in another order: its gradients take that order
    layouts._remember_split(transposed)
    assert remembered(transposed.base)
    rec = layouts._split_arrays[id(qkv)]
    del qkv
    assert rec.array() is None


def test_each_part_of_a_split_arrays_gradient_is_handed_out_once():
    qkv = np.arange(24.0).reshape(2, 12)
    layouts._remember_split(qkv)
    a, b = qkv[:, :6], qkv[:, 3:9]
    first = layouts.empty_like_inputs([a], [a.shape], np.float64)[0]
    assert first is not None and first.base.size == qkv.size and first.strides == a.strides
    assert layouts.empty_like_inputs([b], [b.shape], np.float64)[0] is None or not np.shares_memory(
        layouts.empty_like_inputs([b], [b.shape], np.float64)[0], first)  # overlaps a: not in the same array
    again = layouts.empty_like_inputs([a], [a.shape], np.float64)
    assert again[0] is None or again[0].base is not first.base  # a second time: an array of its own
    c = qkv[:, 9:]
    third = layouts.empty_like_inputs([c], [c.shape], np.float64)[0]
    assert third.base is first.base and not np.shares_memory(third, first)
    del first, again, third  # every gradient gone: a new gradient array, all of it free again
    assert layouts.empty_like_inputs([a], [a.shape], np.float64)[0] is not None


@settings(max_examples=40, deadline=None)
@given(uses=st.lists(st.sampled_from(["left", "right", "tanh", "twice", "none"]), min_size=3, max_size=3),
       chunks=st.booleans(), seed=st.integers(0, 2**16))
def test_gradients_of_split_pieces_equal_the_reference(uses, chunks, seed):
    """Pieces of one product used by products (as either factor), elementwise, twice or not at all: the placed
    gradients add up as the reference's do, whether they meet in one array or not."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 4))
    m, r = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    results = []
    for fast in (True, False):
        with tl.fast.enabled(fast):
            tx, tw = tl.tensor(x, requires_grad=True), tl.tensor(w, requires_grad=True)
            y = F.linear(tx, tw)
            pieces = y.chunk(3, dim=2) if chunks else y.split(4, dim=2)
            total = y.sum() * 0.0
            for p, use in zip(pieces, uses):
                heads = p.reshape(2, 3, 2, 2).transpose(1, 2)  # (2, 2, 3, 2) views, as attention's heads
                if use == "left":
                    total = total + (heads @ heads.transpose(-2, -1).detach()).sum()
                elif use == "right":
                    total = total + (tl.tensor(m[:3, :3]) @ heads).sum()
                elif use == "tanh":
                    total = total + heads.tanh().sum()
                elif use == "twice":
                    scores = heads @ heads.transpose(-2, -1)  # both of its gradients are heads'
                    total = total + (heads @ tl.tensor(m[:2, :2])).sum() + (scores * tl.tensor(r)).sum()
            total.backward()
            results.append((tx.grad.numpy(), tw.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
