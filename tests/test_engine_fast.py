"""The engine's fast paths: the several-output Split op, in-place gradient accumulation, owned leaf gradients.

Each fast path must give the values the plain composition gives (slices with ``__getitem__``,
``prev + gx``, ``g.copy()``) and must never write into an array someone else can see: the
aliasing traps below return shared, saved, viewed and broadcast gradients from custom ops.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import arrays, check_grad, host, shapes
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm import autograd
from tinygrad_lm.autograd import Function


def sliced(t: tl.Tensor, sizes: list[int], dim: int) -> list[tl.Tensor]:
    """The old composition of split: one ``__getitem__`` slice per piece."""
    lead = (slice(None),) * dim
    out, start = [], 0
    for s in sizes:
        out.append(t[lead + (slice(start, start + s),)])
        start += s
    return out


@st.composite
def split_case(draw):
    """A shape, a dim, random sizes along it (zeros allowed) and the subset of pieces that are used."""
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=5))
    dim = draw(st.integers(0, len(shape) - 1))
    n = shape[dim]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    used = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    if not any(used):
        used[draw(st.integers(0, len(sizes) - 1))] = True
    return shape, dim, sizes, used


# ---------------------------------------------------------------------- Split
@settings(max_examples=30)
@given(case=split_case(), data=st.data())
def test_split_gradcheck_with_random_sizes_and_unused_pieces(device, case, data):
    shape, dim, sizes, used = case
    x = data.draw(arrays(shape))

    def fn(t: tl.Tensor) -> tuple[tl.Tensor, ...]:
        pieces = t.split(sizes, dim=dim)
        assert len(pieces) == len(sizes)
        return tuple(p * (k + 1.0) for k, (p, u) in enumerate(zip(pieces, used)) if u)

    check_grad(fn, x, device=device)


@settings(max_examples=30)
@given(case=split_case(), data=st.data())
def test_split_matches_the_sliced_composition_and_numpy(device, case, data):
    shape, dim, sizes, used = case
    x_np = data.draw(arrays(shape))
    ws = [np.random.default_rng(k).standard_normal(x_np[sliced_index(dim, sizes, k)].shape) for k in range(len(sizes))]
    grads = []
    for split in (lambda t: t.split(sizes, dim=dim), lambda t: sliced(t, sizes, dim)):
        x = tl.tensor(x_np, device=device, requires_grad=True)
        pieces = split(x)
        for k, p in enumerate(pieces):
            np.testing.assert_array_equal(host(p), x_np[sliced_index(dim, sizes, k)])
        loss = sum((p * tl.tensor(w, device=device)).sum() for p, w, u in zip(pieces, ws, used) if u)
        loss.backward()
        grads.append(host(x.grad))
    expected = np.zeros_like(x_np)
    for k, (w, u) in enumerate(zip(ws, used)):
        if u:
            expected[sliced_index(dim, sizes, k)] = w
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], expected)


def sliced_index(dim: int, sizes: list[int], k: int) -> tuple[slice, ...]:
    start = sum(sizes[:k])
    return (slice(None),) * dim + (slice(start, start + sizes[k]),)


def test_split_is_one_node_whose_pieces_are_views(device):
    x = tl.arange(24, device=device).reshape(2, 12).float().requires_grad_()
    q, k, v = x.split(4, dim=1)
    assert q.grad_fn is k.grad_fn is v.grad_fn
    assert [t._output_nr for t in (q, k, v)] == [0, 1, 2]
    assert all(t.array.base is not None for t in (q, k, v))  # views of x, not copies
    np.testing.assert_array_equal(host(k), host(x)[:, 4:8])


def test_chunk_sizes_follow_pytorch(device):
    x = tl.zeros(6, 5, device=device)
    assert [p.shape for p in x.chunk(4)] == [(2, 5), (2, 5), (2, 5)]  # ceil(6 / 4) = 2 per piece
    assert [p.shape for p in x.chunk(3, dim=1)] == [(6, 2), (6, 2), (6, 1)]
    assert [p.shape for p in x.chunk(7, dim=-1)] == [(6, 1)] * 5
    assert [p.shape for p in x.split([0, 5, 0], dim=1)] == [(6, 0), (6, 5), (6, 0)]


def test_chunk_matches_torch():
    torch = pytest.importorskip("torch")
    x_np = np.random.default_rng(0).standard_normal((7, 3))
    w = np.random.default_rng(1).standard_normal((7, 3))
    for chunks in (1, 2, 3, 4, 7, 9):
        x = tl.tensor(x_np, requires_grad=True)
        xt = torch.tensor(x_np, requires_grad=True)
        ours, theirs = x.chunk(chunks), xt.chunk(chunks)
        assert [p.shape for p in ours] == [tuple(p.shape) for p in theirs]
        (ours[-1] * tl.tensor(w[-ours[-1].shape[0]:])).sum().backward()
        (theirs[-1] * torch.tensor(w[-theirs[-1].shape[0]:])).sum().backward()
        np.testing.assert_array_equal(host(x.grad), xt.grad.numpy())


def test_split_piece_used_twice_and_as_the_root(device):
    x = tl.tensor(np.arange(6.0), device=device, requires_grad=True)
    a, b = x.split(3)
    (a * a + a).sum().backward()  # two gradients reach the same output of the split
    np.testing.assert_array_equal(host(x.grad), [1.0, 3.0, 5.0, 0.0, 0.0, 0.0])
    x.grad = None
    a, b = x.split(3)
    gradient = np.array([1.0, 2.0, 3.0])
    b.backward(gradient)  # the root is an output of a several-output node
    np.testing.assert_array_equal(host(x.grad), [0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(gradient, [1.0, 2.0, 3.0])


def test_split_of_a_split_and_of_a_non_leaf(device):
    x = tl.tensor(np.arange(8.0).reshape(2, 4), device=device, requires_grad=True)
    h = x * 2.0
    left, right = h.split(2, dim=1)
    r0, r1 = right.split(1, dim=0)
    (left.sum() * 3.0 + (r1 * r1).sum()).backward()
    expected = np.zeros((2, 4))
    expected[:, :2] = 6.0
    expected[1, 2:] = 2 * (2 * np.arange(8.0).reshape(2, 4)[1, 2:]) * 2
    np.testing.assert_array_equal(host(x.grad), expected)


def test_split_retain_graph_double_backward(device):
    x = tl.tensor(np.linspace(-1, 1, 12).reshape(3, 4), device=device, requires_grad=True)
    q, k, v = x.split([1, 2, 1], dim=1)
    loss = (q * k[:, :1]).sum() + (v.tanh()).sum()
    loss.backward(retain_graph=True)
    first = host(x.grad).copy()
    loss.backward()
    np.testing.assert_allclose(host(x.grad), 2 * first, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_split_retain_grad_keeps_each_piece_gradient(device):
    x = tl.tensor(np.arange(6.0), device=device, requires_grad=True)
    a, b, c = x.split(2)
    a.retain_grad()
    c.retain_grad()
    (a * 2.0 + c * 3.0).sum().backward()
    np.testing.assert_array_equal(host(a.grad), [2.0, 2.0])
    np.testing.assert_array_equal(host(c.grad), [3.0, 3.0])
    assert b.grad is None


def test_split_without_grad_and_of_integers(device):
    x = tl.tensor(np.arange(6), device=device)
    pieces = x.split([2, 4])
    assert [p.tolist() for p in pieces] == [[0, 1], [2, 3, 4, 5]]
    assert all(p.grad_fn is None and not p.requires_grad for p in pieces)
    y = tl.ones(4, device=device, requires_grad=True)
    with tl.no_grad():
        assert all(p.grad_fn is None for p in y.split(2))


def test_split_bad_sizes_name_the_problem(device):
    x = tl.zeros(2, 5, device=device)
    with pytest.raises(ValueError, match="do not add up to 5"):
        x.split([2, 2], dim=1)
    with pytest.raises(ValueError, match="split_size must be positive"):
        x.split(0)
    with pytest.raises(IndexError, match="out of range"):
        x.split(1, dim=2)


def test_split_in_anomaly_mode_names_the_op(device):
    x = tl.tensor([1.0, float("nan")], device=device, requires_grad=True)
    with tl.detect_anomaly(), pytest.raises(autograd.AnomalyError, match="Split.forward"):
        x.split(1)


# ---------------------------------------------------------------------- in-place accumulation, aliasing traps
class ReturnsSaved(Function):
    """y = 2 x; dy = 2 dx, with the 2 kept on the node as an array that backward returns itself (for g = 1)"""

    def forward(self, x, view: bool = False):
        self.slope = self.xp.full(x.shape, 2.0, dtype=x.dtype)
        self.view = view
        return x * 2.0

    def backward(self, g):
        d = self.slope.reshape(-1).reshape(self.slope.shape) if self.view else self.slope
        return d  # correct only for g == 1; the tests use sum() as the loss


class ReturnsBroadcast(Function):
    """y = 3 x; dy = 3 dx, returned as a read-only broadcast view of one 3 (for g = 1)"""

    def forward(self, x):
        self.shape = x.shape
        return x * 3.0

    def backward(self, g):
        return self.xp.broadcast_to(self.xp.asarray(3.0, dtype=g.dtype), self.shape)


class KeepsViewOfGrad(Function):
    """y = 5 x; dy = 5 dx, a fresh array of which the node keeps a view"""

    def forward(self, x):
        return x * 5.0

    def backward(self, g):
        out = g * 5.0
        self.peek = out.reshape(-1)[:1]
        self.peek_value = float(self.peek[0])
        return out


class Fresh(Function):
    """y = 7 x; dy = 7 dx, a fresh array whose id (not a reference) is remembered"""

    ids: list[int] = []

    def forward(self, x):
        return x * 7.0

    def backward(self, g):
        out = g * 7.0
        Fresh.ids.append(id(out))
        return out


class Probe(Function):
    """y = x; dy = dx, recording the id of the gradient that arrives"""

    seen: list[int] = []

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        Probe.seen.append(id(g))
        return g


def test_refcount_check_is_active_on_cpython():
    import sys

    assert autograd._REFCOUNT_EXACT == (sys.implementation.name == "cpython")


def test_same_tensor_used_twice_and_root_gradient_untouched(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    h = x.exp()
    gradient = np.array([1.0, 10.0, 100.0])
    (h + h).backward(gradient)  # Add hands the same array back for both inputs
    np.testing.assert_allclose(host(x.grad), 2 * gradient * np.exp([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(gradient, [1.0, 10.0, 100.0])
    x.grad = None
    h = x * 1.0
    (h.clone() + h + h * h).backward(gradient)  # Clone passes the shared array on unchanged
    np.testing.assert_allclose(host(x.grad), gradient * (2 + 2 * np.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(gradient, [1.0, 10.0, 100.0])


def test_shared_gradient_of_an_add_is_not_written_into(device):
    w = tl.tensor([1.0, 1.0], device=device, requires_grad=True)
    x = tl.tensor([2.0, 3.0], device=device, requires_grad=True)
    h = x * 1.0
    z = h + w  # (g, g): w's gradient is the same array as h's first contribution
    (z.sum() + (h * 4.0).sum()).backward()
    np.testing.assert_array_equal(host(w.grad), [1.0, 1.0])
    np.testing.assert_array_equal(host(x.grad), [5.0, 5.0])


@pytest.mark.parametrize("view", [False, True])
def test_gradient_that_is_a_saved_array_or_its_view_is_never_written(device, view):
    x = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    h = x * 1.0
    y = ReturnsSaved.apply(h, view=view)
    node = y.grad_fn
    for loss, total in ((y.sum() + h.sum(), 3.0), (y.sum() + (h * 3.0).sum() + h.sum(), 6.0)):
        x.grad = None
        loss.backward(retain_graph=True)
        np.testing.assert_array_equal(host(x.grad), [total] * 3)
        np.testing.assert_array_equal(tl.backend.to_host(node.slope), [2.0, 2.0, 2.0])
        loss.backward(retain_graph=True)
        np.testing.assert_array_equal(host(x.grad), [2 * total] * 3)
        np.testing.assert_array_equal(tl.backend.to_host(node.slope), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("view", [False, True])
def test_leaf_gradient_never_aliases_a_saved_array(device, view):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = ReturnsSaved.apply(x, view=view)
    node = y.grad_fn
    y.sum().backward(retain_graph=True)
    y.sum().backward(retain_graph=True)  # accumulates into x.grad in place: the saved slope must not change
    np.testing.assert_array_equal(host(x.grad), [4.0, 4.0])
    np.testing.assert_array_equal(tl.backend.to_host(node.slope), [2.0, 2.0])


def test_broadcast_gradient_view_is_accumulated_safely(device):
    x = tl.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    h = x * 1.0
    (ReturnsBroadcast.apply(h).sum() + (h * 2.0).sum() + ReturnsBroadcast.apply(h).sum()).backward()
    np.testing.assert_array_equal(host(x.grad), np.full((2, 2), 8.0))
    x.grad = None
    ReturnsBroadcast.apply(x).sum().backward()  # a read-only view reaching a leaf is copied
    np.testing.assert_array_equal(host(x.grad), np.full((2, 2), 3.0))
    x.grad.array += 1.0


def test_one_element_broadcast_gradient_is_never_written(device):
    x = tl.tensor([[1.0]], device=device, requires_grad=True)  # a (1, 1) broadcast is C-contiguous yet read-only
    h = x * 1.0
    (ReturnsBroadcast.apply(h).sum() + h.sum() + ReturnsBroadcast.apply(h).sum()).backward()
    np.testing.assert_array_equal(host(x.grad), [[7.0]])
    x.grad = None
    ReturnsBroadcast.apply(x).sum().backward()
    ReturnsBroadcast.apply(x).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[6.0]])


def test_op_keeping_a_view_of_its_returned_gradient_sees_it_unchanged(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = x * 1.0
    y = KeepsViewOfGrad.apply(h)
    node = y.grad_fn
    (y.sum() + (h * 2.0).sum()).backward(retain_graph=True)
    assert float(node.peek[0]) == node.peek_value == 5.0
    np.testing.assert_array_equal(host(x.grad), [7.0, 7.0])


def test_private_gradients_are_added_in_place_and_handed_to_leaves(device):
    Fresh.ids.clear()
    Probe.seen.clear()
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = Probe.apply(x)
    (Fresh.apply(h).sum() + Fresh.apply(h).sum()).backward()
    np.testing.assert_array_equal(host(x.grad), [14.0, 14.0])
    assert Probe.seen[0] in Fresh.ids  # the sum was made in one of the two fresh arrays, no third one
    assert id(x.grad.array) == Probe.seen[0]  # handed on unchanged by Probe, still private: no copy
    Fresh.ids.clear()
    w = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    Fresh.apply(w).sum().backward()
    assert id(w.grad.array) == Fresh.ids[0]  # a private gradient becomes .grad without a copy


def test_leaf_grad_accumulates_across_backward_calls_in_place(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    (x * x).sum().backward()
    first = x.grad
    np.testing.assert_array_equal(host(first), [2.0, 4.0])
    (x * x * x).sum().backward()
    assert x.grad is first  # PyTorch accumulates into the same .grad tensor
    np.testing.assert_array_equal(host(x.grad), [5.0, 16.0])


def test_leaf_grad_is_a_copy_of_a_gradient_the_caller_owns(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    gradient = tl.tensor([3.0, 4.0], device=device)
    x.clone().backward(gradient)  # Clone hands the caller's array straight on
    gradient.array[...] = 0.0
    np.testing.assert_array_equal(host(x.grad), [3.0, 4.0])
    y = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    own = tl.tensor([5.0, 6.0], device=device)
    y.backward(own)
    own.array[...] = 0.0
    np.testing.assert_array_equal(host(y.grad), [5.0, 6.0])


def test_residual_stream_matches_out_of_place_sums(device):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, 3, 4))
    ws = [rng.standard_normal((4, 4)) for _ in range(3)]

    def grads(accumulate_in_place: bool) -> list[np.ndarray]:
        x = tl.tensor(x_np, device=device, requires_grad=True)
        params = [tl.tensor(w, device=device, requires_grad=True) for w in ws]
        h = x
        for w in params:
            h = h + (h @ w).tanh()  # (B, T, C), two gradients meet at every h
        saved, autograd._REFCOUNT_EXACT = autograd._REFCOUNT_EXACT, accumulate_in_place
        try:
            (h * h).sum().backward()
        finally:
            autograd._REFCOUNT_EXACT = saved
        return [host(x.grad)] + [host(p.grad) for p in params]

    for fast, slow in zip(grads(True), grads(False)):
        np.testing.assert_array_equal(fast, slow)


def test_attention_block_gradients_match_the_sliced_composition(device):
    rng = np.random.default_rng(1)
    B, T, C, H = 2, 5, 8, 2
    x_np = rng.standard_normal((B, T, C)).astype(np.float32)
    w_np = (rng.standard_normal((3 * C, C)) * 0.3).astype(np.float32)

    def grads(use_split: bool) -> list[np.ndarray]:
        x = tl.tensor(x_np, device=device, requires_grad=True)
        w = tl.tensor(w_np, device=device, requires_grad=True)
        qkv = x @ w.T  # (B, T, 3C)
        q, k, v = qkv.split(C, dim=2) if use_split else sliced(qkv, [C, C, C], 2)
        q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hs)
        y = ((q @ k.transpose(-2, -1)) * (C // H) ** -0.5).softmax(-1) @ v  # (B, H, T, hs)
        out = x + y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        (out * out).mean().backward(retain_graph=True)
        first = [host(x.grad).copy(), host(w.grad).copy()]
        (out * out).mean().backward()
        np.testing.assert_array_equal(host(w.grad), 2 * first[1])
        return first

    for fast, slow in zip(grads(True), grads(False)):
        np.testing.assert_array_equal(fast, slow)
        assert fast.dtype == np.float32
