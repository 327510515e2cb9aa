"""The autograd engine: iterative backward, accumulation, retained and freed graphs, grad modes, gradcheck."""
from __future__ import annotations

import gc
import math
import re
import weakref

import numpy as np
import pytest
from helpers import host

import tinygrad_lm as tl
from tinygrad_lm.autograd import Function


def live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, tl.Tensor))


# ---------------------------------------------------------------------- backward
def test_backward_is_iterative_for_a_100k_op_chain(device):
    x = tl.tensor(1.0, device=device, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert x.grad.item() == 1.0
    assert y.item() == 100_001.0


def test_gradients_accumulate_across_backward_calls(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(host(x.grad), [2, 4, 6])
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [5, 7, 9])
    x.grad = None
    x.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1, 1, 1])


def test_gradient_of_a_reused_intermediate_adds_up(device):
    x = tl.tensor(2.0, device=device, requires_grad=True)
    h = x * x
    (h * h + h).backward()  # d/dx (x^4 + x^2) = 4x^3 + 2x
    assert x.grad.item() == pytest.approx(36.0)


def test_broadcast_gradient_is_reduced_to_the_leaf_shape(device):
    a = tl.ones(3, 1, device=device, requires_grad=True)
    b = tl.ones(4, device=device, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_array_equal(host(a.grad), np.full((3, 1), 4.0))
    np.testing.assert_array_equal(host(b.grad), np.full(4, 3.0))
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


def test_retain_graph_allows_a_second_backward(device):
    x = tl.tensor([1.0, -2.0], device=device, requires_grad=True)
    y = (x.tanh() * x).sum()
    y.backward(retain_graph=True)
    first = host(x.grad)
    y.backward()
    np.testing.assert_allclose(host(x.grad), 2 * first, rtol=1e-6)


def test_second_backward_without_retain_graph_raises(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_non_scalar_backward_needs_a_gradient(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2,\)"):
        y.backward()
    y.backward(gradient=tl.tensor([1.0, 10.0], device=device))
    np.testing.assert_array_equal(host(x.grad), [2.0, 20.0])


def test_backward_gradient_of_the_wrong_shape_raises(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"\(3,\).*\(2,\)"):
        y.backward(gradient=tl.ones(3, device=device))


def test_backward_of_a_tensor_without_grad_raises(device):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tl.ones(2, device=device).sum().backward()


def test_backward_on_a_leaf(device):
    x = tl.tensor(3.0, device=device, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_engine_rejects_a_gradient_of_the_wrong_dtype(device):
    class WrongDtype(Function):
        """d id(x) = dx, returned (wrongly) in float64"""

        def forward(self, x):
            return x * 1

        def backward(self, g):
            return g.astype("float64")

    x = tl.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="float64 gradient for a float32 input"):
        WrongDtype.apply(x).sum().backward()


def test_retain_grad_keeps_an_intermediate_gradient(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(host(h.grad), [6.0, 12.0])


# ---------------------------------------------------------------------- graph structure
def test_is_leaf_and_grad_fn(device):
    x = tl.ones(2, device=device, requires_grad=True)
    c = tl.ones(2, device=device)
    y = x * 2
    assert x.is_leaf and x.grad_fn is None
    assert c.is_leaf and not c.requires_grad
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    assert type(y.grad_fn).__name__ == "Mul"
    z = c * 2
    assert z.is_leaf and z.grad_fn is None and not z.requires_grad


def test_detach_cuts_the_graph(device):
    x = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = x * 2
    d = h.detach()
    assert d.is_leaf and not d.requires_grad and d.grad_fn is None
    np.testing.assert_array_equal(host(d), host(h))
    (h + d * 100).sum().backward()  # only the attached path reaches x
    np.testing.assert_array_equal(host(x.grad), [2.0, 2.0])


def test_no_grad_records_nothing_and_nests(device):
    x = tl.ones(2, device=device, requires_grad=True)
    assert tl.is_grad_enabled()
    with tl.no_grad():
        assert not tl.is_grad_enabled()
        y = x * 2
        with tl.enable_grad():
            assert tl.is_grad_enabled()
            z = x * 2
            with tl.no_grad():
                assert not tl.is_grad_enabled()
            assert tl.is_grad_enabled()
        assert not tl.is_grad_enabled()
    assert tl.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_grad_modes_as_decorators(device):
    x = tl.ones(2, device=device, requires_grad=True)

    @tl.no_grad()
    def infer(n):
        if n:
            infer(n - 1)  # a recursive call must not leave grad mode off
        return x * 2

    @tl.no_grad
    def bare():
        return tl.is_grad_enabled()

    @tl.enable_grad()
    def train_step():
        return x * 2

    assert not infer(3).requires_grad
    assert tl.is_grad_enabled()
    assert bare() is False and tl.is_grad_enabled()
    with tl.no_grad():
        assert train_step().requires_grad
        assert not tl.is_grad_enabled()


def test_grad_mode_restored_after_an_exception():
    with pytest.raises(ValueError):
        with tl.no_grad():
            raise ValueError("boom")
    assert tl.is_grad_enabled()


def test_comparisons_and_integer_tensors_never_require_grad(device):
    x = tl.tensor([1.0, -2.0], device=device, requires_grad=True)
    for out in (x > 0, x == x, x <= 1.0, x != 0):
        assert out.dtype == np.bool_ and not out.requires_grad and out.grad_fn is None
    i = tl.tensor([1, 2], device=device)
    assert i.dtype == np.int64 and not (i * 2).requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        i.requires_grad_()
    with pytest.raises(RuntimeError, match="floating point"):
        tl.tensor([1, 2], device=device, requires_grad=True)
    assert not x.argmax().requires_grad
    assert not x.long().requires_grad  # casting to an integer dtype leaves the graph


def test_requires_grad_cannot_be_switched_off_on_a_non_leaf(device):
    y = tl.ones(2, device=device, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


# ---------------------------------------------------------------------- memory
def test_graph_is_freed_after_backward(device):
    gc.collect()
    gc.disable()  # the graph has no reference cycles: reference counting alone must free it
    try:
        x = tl.randn(3, 4, device=device, requires_grad=True)
        h = x.tanh()
        w = tl.randn(4, 2, device=device)
        y = h @ w
        loss = y.sum()
        refs = [weakref.ref(t) for t in (h, y)]
        nodes = [weakref.ref(t.grad_fn) for t in (h, y, loss)]
        saved = weakref.ref(y.grad_fn.a)  # the array Matmul saved for dW: h's data
        del h, y
        # The graph keeps nodes and what their backward saved, not the intermediate tensors themselves
        assert all(r() is None for r in refs)
        assert all(n() is not None for n in nodes) and saved() is not None
        loss.backward()
        assert saved() is None, "backward must release what the nodes saved"
        assert nodes[2]() is not None  # the root stays with its output ...
        assert all(n() is None for n in nodes[:2])  # ... the rest of the graph is gone
        del loss
        assert nodes[2]() is None
        want = (1 - np.tanh(x.detach().numpy()) ** 2) * w.numpy().sum(axis=1)
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-5)
    finally:
        gc.enable()


def test_an_intermediate_nothing_saved_is_freed_before_backward(device):
    """The graph keeps edges to non-leaf inputs, not their data: only what an op saved stays alive."""
    gc.collect()
    gc.disable()
    try:
        x = tl.randn(6, device=device, dtype="float64", requires_grad=True)
        h = x + 1.0  # Add saves nothing
        y = h.gelu()  # GELU saves its derivative, not its input
        data = weakref.ref(h.array)
        del h
        assert data() is None
        y.sum().backward()
        xv = x.detach().numpy() + 1.0
        phi = np.exp(-xv * xv / 2) / np.sqrt(2 * np.pi)
        cdf = 0.5 * (1 + np.vectorize(math.erf)(xv / np.sqrt(2)))
        np.testing.assert_allclose(x.grad.numpy(), cdf + xv * phi, rtol=1e-12)
    finally:
        gc.enable()


def test_retained_graph_is_freed_when_the_output_goes(device):
    gc.collect()
    gc.disable()
    try:
        x = tl.randn(5, device=device, requires_grad=True)
        h = x.exp()
        loss = (h * h).sum()
        ref = weakref.ref(h.grad_fn)  # the Exp node, kept by the graph through Mul's edge to h
        del h
        loss.backward(retain_graph=True)
        assert ref() is not None
        del loss
        assert ref() is None
    finally:
        gc.enable()


def test_training_loop_does_not_grow_live_tensors(device):
    w = tl.randn(4, 3, device=device, requires_grad=True)
    b = tl.zeros(3, device=device, requires_grad=True)
    gc.collect()
    gc.disable()
    try:
        counts = []
        for _ in range(6):
            x = tl.randn(8, 4, device=device)
            loss = ((x @ w + b).tanh() ** 2).mean()
            loss.backward()
            with tl.no_grad():
                for p in (w, b):
                    p.array -= 0.1 * p.grad.array
                    p.grad = None
            del x, loss
            counts.append(live_tensors())
        assert counts[-1] == counts[1], f"live tensors grew: {counts}"
    finally:
        gc.enable()


# ---------------------------------------------------------------------- gradcheck
class BrokenSquare(Function):
    """d(x^2) = 2x dx; this backward returns 3x on purpose, for gradcheck to catch."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return g * 3 * self.x


class BrokenScale(Function):
    """d(a * s) = s da + a ds; the gradient for s is dropped on purpose."""

    def forward(self, a, s):
        self.a, self.s = a, s
        return a * s

    def backward(self, g):
        return g * self.s, g * 0


def test_gradcheck_accepts_a_correct_function(device):
    x = tl.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=tl.float64, device=device, requires_grad=True)
    assert tl.gradcheck(lambda t: (t.exp() * t).sum(1), [x]) is True
    assert tl.gradcheck(lambda t: t.tanh(), x) is True


def test_gradcheck_names_input_index_and_both_values(device):
    x = tl.tensor([0.5, -1.0, 2.0], dtype=tl.float64, device=device, requires_grad=True)
    with pytest.raises(tl.GradcheckError) as info:
        tl.gradcheck(lambda t: BrokenSquare.apply(t), [x])
    msg = str(info.value)
    match = re.search(r"input 0 .*index \((\d+),\).*analytic (\S+) vs numerical (\S+)", msg)
    assert match, msg
    k, analytic, numerical = int(match[1]), float(match[2]), float(match[3])
    assert analytic == pytest.approx(1.5 * numerical, rel=1e-4)  # 3x against the true 2x
    assert abs(numerical) > 0 and 0 <= k < 3
    assert tl.gradcheck(lambda t: BrokenSquare.apply(t), [x], raise_exception=False) is False


def test_gradcheck_names_the_wrong_input(device):
    a = tl.tensor([1.0, 2.0], dtype=tl.float64, device=device, requires_grad=True)
    s = tl.tensor(1.5, dtype=tl.float64, device=device, requires_grad=True)
    with pytest.raises(tl.GradcheckError, match=r"input 1 \(shape \(\)\)"):
        tl.gradcheck(lambda x, y: BrokenScale.apply(x, y), [a, s])
    s.requires_grad_(False)
    assert tl.gradcheck(lambda x, y: BrokenScale.apply(x, y), [a, s])  # the wrong part is not checked


def test_gradcheck_with_several_and_non_scalar_outputs(device):
    x = tl.tensor([[0.3, -1.2, 0.1], [2.0, 0.7, -0.4]], dtype=tl.float64, device=device, requires_grad=True)
    w = tl.tensor([0.5, -0.25, 1.0], dtype=tl.float64, device=device, requires_grad=True)
    assert tl.gradcheck(lambda a, b: (a * b, (a @ b).sin(), a.sum()), [x, w])
    assert tl.gradcheck(lambda a: a.split(1, dim=1), [x])
    with pytest.raises(tl.GradcheckError, match="input 0"):
        tl.gradcheck(lambda a, b: (a * b, BrokenSquare.apply(a)), [x, w])


def test_gradcheck_leaves_inputs_and_their_grads_alone(device):
    x = tl.tensor([0.5, -1.0], dtype=tl.float64, device=device, requires_grad=True)
    x.grad = tl.tensor([7.0, 8.0], dtype=tl.float64, device=device)
    data = x.array
    before = host(x)
    assert tl.gradcheck(lambda t: t * t, [x])
    assert x.array is data
    np.testing.assert_array_equal(host(x), before)
    np.testing.assert_array_equal(host(x.grad), [7.0, 8.0])


def test_gradcheck_rejects_float32_inputs(device):
    x = tl.ones(2, device=device, requires_grad=True)
    with pytest.raises(TypeError, match="float32"):
        tl.gradcheck(lambda t: t * 2, [x])


def test_gradcheck_needs_an_input_that_requires_grad(device):
    with pytest.raises(ValueError, match="requires_grad"):
        tl.gradcheck(lambda t: t * 2, [tl.ones(2, dtype=tl.float64, device=device)])


def test_backward_tells_an_op_whether_it_is_its_last_backward():
    """Function.last_backward is True only when the engine frees the node after it (retain_graph=False),
    so an op may then overwrite what its forward saved."""
    seen = []

    class Double(Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            seen.append(self.last_backward)
            return grad * 2

    x = tl.tensor(np.ones(3), requires_grad=True)
    y = Double.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert seen == [False, True]
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0, 4.0])
    assert Function.last_backward is False  # an op's backward called outside the engine may not reuse


def test_grad_mode_is_per_thread_as_in_pytorch():
    """Grad mode and inference mode belong to a thread: a new thread starts with grad on whatever the thread that
    started it had, and switching it in one thread leaves the others recording (a backward pass in one thread
    used to switch off recording in every other)."""
    import threading

    seen: dict[str, object] = {}

    def in_thread() -> None:
        x = tl.ones(2, requires_grad=True)
        seen["enabled"] = tl.is_grad_enabled()
        seen["records"] = (x * 2).requires_grad
        tl.set_grad_enabled(False)  # this thread only
        seen["off"] = (x * 2).requires_grad
        with tl.inference_mode():
            seen["inference"] = tl.is_inference_mode_enabled()

    with tl.no_grad():
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        assert not tl.is_grad_enabled()
    assert seen == {"enabled": True, "records": True, "off": False, "inference": True}
    assert tl.is_grad_enabled() and not tl.is_inference_mode_enabled()
    x = tl.ones(2, requires_grad=True)
    assert (x * 2).requires_grad
