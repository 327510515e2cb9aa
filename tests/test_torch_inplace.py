"""In-place ops, version counters and saved-tensor checks (issues 15 and 16), ``.grad`` assignment,
dtype and device objects, and the PyTorch namespaces."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import host

import tinygrad_lm as tl

VERSION_ERROR = "modified by an inplace operation"


# ---------------------------------------------------------------------- version counter
def test_every_in_place_op_bumps_the_version(device):
    x = tl.zeros(3, device=device)
    assert x._version == 0
    x.add_(1)
    x[0] = 5.0
    x.mul_(2).sub_(1, alpha=2).div_(2)
    x.fill_(1).zero_()
    x.copy_(tl.ones(3, device=device))
    x.clamp_(0, 0.5)
    x += 1
    assert x._version == 10
    x._bump_version()
    assert x._version == 11


def test_views_and_detach_share_the_counter_but_data_does_not(device):
    x = tl.zeros(2, 3, device=device)
    views = [x.detach(), x.view(6), x.reshape(3, 2), x.transpose(0, 1), x.permute(1, 0), x[0], x[:, 1:],
             x.unsqueeze(0), x.expand(4, 2, 3), x.T, x.narrow(1, 0, 2)]
    x.add_(1)
    assert all(v._version == 1 for v in views)
    views[0].add_(1)
    assert x._version == 2
    assert x.data._version == 0
    x.data.add_(1)  # PyTorch: .data is not tracked
    assert x._version == 2 and host(x)[0, 0] == 3.0


def test_modifying_a_saved_input_raises_at_backward(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device)
    w = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = (x * w).sum()
    x[0] = 100.0
    with pytest.raises(RuntimeError, match=VERSION_ERROR) as err:
        y.backward()
    assert "[tensor of shape (3,)] is at version 1; expected version 0 instead" in str(err.value)
    assert "Mul" in str(err.value)


def test_modifying_a_saved_parameter_under_no_grad_raises(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device)
    w = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = (x * w).sum()
    with tl.no_grad():
        w[0] = 7.0
    with pytest.raises(RuntimeError, match=VERSION_ERROR):
        y.backward()


def test_an_op_that_saved_nothing_does_not_care(device):
    x = tl.tensor([1.0, 2.0], device=device)
    w = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (x + w).sum()
    x.add_(1)
    y.backward()
    assert host(w.grad).tolist() == [1.0, 1.0]


def test_exp_saved_output_modified_in_place_raises(device):
    x = tl.tensor([0.5, 1.0], device=device, requires_grad=True)
    y = x.exp()
    with tl.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match=VERSION_ERROR) as err:
        y.sum().backward()
    assert "Exp" in str(err.value)


def test_modifying_through_a_view_of_a_saved_tensor_raises(device):
    x = tl.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    w = tl.ones(2, 2, device=device, requires_grad=True)
    y = (x * w).sum()
    x.detach()[1].fill_(0)
    with pytest.raises(RuntimeError, match=VERSION_ERROR):
        y.backward()


def test_optimizer_style_updates_change_the_parameter(device):
    p = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    p.grad = tl.tensor([1.0, 1.0], device=device)
    p.data.add_(p.grad, alpha=-0.5)
    assert host(p).tolist() == [0.5, 1.5]
    p.data -= 0.5 * p.grad
    assert host(p).tolist() == [0.0, 1.0]
    with tl.no_grad():
        p -= p.grad
        p.mul_(2)
    assert host(p).tolist() == [-2.0, 0.0]
    assert p.requires_grad and p.grad_fn is None


@pytest.mark.parametrize("op", [lambda p: p.add_(1), lambda p: p.mul_(2), lambda p: p.zero_(), lambda p: p.exp_(),
                                lambda p: p.__setitem__(0, 1.0), lambda p: p.masked_fill_(p > 0, 0.0)])
def test_in_place_on_a_leaf_that_requires_grad_raises(device, op):
    p = tl.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        op(p)


def test_in_place_on_a_non_leaf_records_the_graph(device):
    torch = pytest.importorskip("torch")
    x0 = np.array([-1.0, 0.5, 2.0])

    def run(lib, x):  # only changes PyTorch accepts: no op saved what a later one modifies
        h = x * 2
        h.add_(x, alpha=3)
        h.mul_(2)
        h[0] = h[1] * 5
        h.masked_fill_(h > 20, 0.0)
        h.sub_(x * x)
        h.relu_()
        return h

    t = tl.tensor(x0, device=device, requires_grad=True)
    r = torch.tensor(x0, requires_grad=True)
    out, ref = run(tl, t), run(torch, r)
    np.testing.assert_allclose(host(out), ref.detach().numpy())
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(host(t.grad), r.grad.numpy())


def test_in_place_through_a_reshape_while_recording_is_refused_clearly(device):
    x = tl.ones(2, 2, device=device, requires_grad=True)
    h = x * 2
    v = h.reshape(4)  # not an indexing view: it could not follow its base
    with pytest.raises(RuntimeError, match="shares memory with other tensors \\(a reshape or transpose"):
        v.mul_(3)
    d = h.detach()
    with pytest.raises(RuntimeError, match="detach\\(\\)ed copy"):
        h.add_(1)
    del v, d
    h.add_(1)  # nothing else sees the memory any more
    assert host(h).tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_in_place_on_indexing_views_while_recording_matches_torch(device):
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(0).standard_normal((3, 2))

    def run(x):
        y = x * 2
        y[0] += 1  # getitem, in-place add on the view, setitem
        v = y[1]
        v.mul_(3)  # changes y too
        w = y[:, 1]
        y.add_(x)  # changes w too
        z = w * 5
        y[2] = y[2].exp()
        return (y * y).sum() + z.sum() + v.sum()

    t, r = tl.tensor(x0, device=device, requires_grad=True), torch.tensor(x0, requires_grad=True)
    ours, theirs = run(t), run(r)
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-12)


def test_in_place_on_a_view_of_a_leaf_that_requires_grad_raises(device):
    p = tl.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        p[0].mul_(2)


def test_in_place_with_an_operand_that_requires_grad(device):
    w = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = tl.zeros(2, device=device)
    h.add_(w * w)
    assert h.requires_grad and h.grad_fn is not None
    h.sum().backward()
    assert host(w.grad).tolist() == [2.0, 4.0]


def test_in_place_dtype_rules(device):
    i = tl.tensor([1, 2], device=device)
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
        i.add_(0.5)
    with pytest.raises(RuntimeError, match="can't be cast"):
        i.div_(2)
    f = tl.zeros(2, device=device)
    f.add_(tl.tensor([1, 2], device=device))  # int into float is fine
    assert host(f).tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        f.add_(tl.ones(3, 2, device=device))


def test_setitem_with_masks_and_index_tensors(device):
    logits = tl.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], device=device)
    v = logits.topk(2).values
    logits[logits < v[:, [-1]]] = -float("inf")
    assert host(logits).tolist() == [[-np.inf, 5.0, 3.0], [4.0, -np.inf, 6.0]]
    x = tl.zeros(4, device=device)
    x[tl.tensor([0, 2], device=device)] = tl.tensor([1.0, 2.0], device=device)
    x[1:2] = 7.0
    assert host(x).tolist() == [1.0, 7.0, 2.0, 0.0]


# ---------------------------------------------------------------------- .grad assignment
def test_grad_assignment_is_validated(device):
    p = tl.zeros(2, 3, device=device, requires_grad=True)
    p.grad = tl.ones(2, 3, device=device)
    p.grad = None
    with pytest.raises(RuntimeError, match="assigned grad has data of a different size"):
        p.grad = tl.ones(3, 2, device=device)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different type"):
        p.grad = tl.ones(2, 3, dtype=tl.float64, device=device)
    with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None but got grad of type "
                                        "numpy.ndarray"):
        p.grad = np.ones((2, 3), dtype=np.float32)
    assert p.grad is None


def test_engine_writes_grad_without_the_setter(device):
    p = tl.ones(3, device=device, requires_grad=True)
    (p * 2).sum().backward()
    (p * 2).sum().backward()
    assert host(p.grad).tolist() == [4.0, 4.0, 4.0]


# ---------------------------------------------------------------------- dtypes and devices
def test_dtype_objects_compare_and_pass_to_numpy(device):
    x = tl.ones(2, device=device)
    assert x.dtype == tl.float32 and x.dtype == np.float32 and x.dtype == "float32" and x.dtype != tl.float64
    assert tl.float32.is_floating_point and not tl.int64.is_floating_point
    assert tl.float64.itemsize == 8 and tl.int32.itemsize == 4 and tl.bool.itemsize == 1
    assert np.zeros(2, dtype=x.dtype).dtype == np.float32
    assert x.array.astype(tl.float64).dtype == np.float64
    assert x.dtype.kind == "f" and x.dtype.name == "float32"
    assert hash(x.dtype) == hash(np.dtype("float32")) and {np.dtype("float32"): 1}[x.dtype] == 1
    assert tl.zeros(2, dtype=tl.float64, device=device).dtype == tl.float64
    assert x.to(tl.int64).dtype is tl.int64 and tl.long is tl.int64 and tl.double is tl.float64
    assert tl.get_default_dtype() is tl.float32
    assert tl.is_floating_point(x) and not tl.is_floating_point(x.long()) and tl.is_tensor(x) and tl.numel(x) == 2


def test_device_objects():
    d = tl.device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and d == "cuda:1" and repr(d) == "device(type='cuda', index=1)"
    assert tl.device("cuda", 0) == "cuda:0" and tl.device("cpu") == "cpu" and tl.device("cpu").index is None
    assert tl.ones(1).device == tl.device("cpu") and tl.ones(1).device.type == "cpu"
    assert tl.ones(1, device=tl.device("cpu")).device == "cpu"
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda"):
        tl.device("tpu")


def test_namespaces_and_globals():
    assert tl.nn.Linear and tl.optim.SGD and tl.utils.data.DataLoader and tl.autograd.Function
    assert isinstance(tl.cuda.is_available(), bool) and tl.cuda.device_count() >= 0
    tl.cuda.synchronize()
    tl.cuda.manual_seed(0)
    tl.cuda.manual_seed_all(0)
    tl.cuda.empty_cache()
    assert tl.return_types.max(1, 2).indices == 2


@pytest.mark.parametrize("form", ["with", "call", "bare", "off"])
def test_inference_mode_forms(form):
    x = tl.ones(2, requires_grad=True)
    if form == "with":
        with tl.inference_mode():
            y = x * 2
    elif form == "call":
        y = tl.inference_mode()(lambda t: t * 2)(x)
    elif form == "bare":
        @tl.inference_mode
        def f(t):
            assert tl.is_inference_mode_enabled()
            return t * 2
        y = f(x)
    else:
        with tl.inference_mode(mode=False):
            y = x * 2
    assert y.requires_grad == (form == "off")
    assert tl.is_grad_enabled() and not tl.is_inference_mode_enabled()


def test_unsupported_creation_arguments_are_named():
    with pytest.raises(TypeError, match="layout=sparse_coo"):
        tl.zeros(2, layout="sparse_coo")
    with pytest.raises(ValueError, match="memory_format=channels_last"):
        tl.empty_like(tl.ones(2), memory_format="channels_last")
    assert tl.ones(2, pin_memory=True).shape == (2,)  # accepted and ignored, as PyTorch on CPU


def test_creation_functions_match_torch():
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float32)
    pairs = [
        (tl.linspace(-1, 2, 7), torch.linspace(-1, 2, 7)),
        (tl.logspace(0, 3, 4, base=2.0), torch.logspace(0, 3, 4, base=2.0)),
        (tl.arange(0, 1, 0.1), torch.arange(0, 1, 0.1)),
        (tl.arange(1, 2.5, 0.5), torch.arange(1, 2.5, 0.5)),
        (tl.arange(5), torch.arange(5)),
        (tl.full((2,), 3), torch.full((2,), 3)),
        (tl.zeros(size=(2, 3)), torch.zeros(size=(2, 3))),
        (tl.empty(2, 3).shape, torch.empty(2, 3).shape),
        (tl.tensor([]), torch.tensor([])),
        (tl.tensor([[True]]), torch.tensor([[True]])),
        (tl.tril(tl.ones(3, 3), -1), torch.tril(torch.ones(3, 3), -1)),
        (tl.triu(tl.ones(2, 3), 1), torch.triu(torch.ones(2, 3), 1)),
    ]
    for ours, theirs in pairs:
        if isinstance(ours, tuple):
            assert ours == tuple(theirs)
            continue
        assert ours.shape == tuple(theirs.shape) and str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_allclose(host(ours), theirs.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="inhomogeneous"):
        tl.tensor([[1, 2], [3]])


def test_an_optimizer_update_through_array_is_seen_once_bumped(device):
    w = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (w * w).sum()
    w.array[0] = 5.0  # what an optimizer does in place, then it bumps the version
    w._bump_version()
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0 instead"):
        y.backward()


def test_changes_through_data_are_not_seen_as_in_pytorch(device):
    w = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (w * w).sum()
    w.data.mul_(3)
    y.backward()  # PyTorch too: .data is outside autograd, the gradient uses the changed values
    assert host(w.grad).tolist() == [6.0, 12.0]


def test_versions_in_the_message_count_every_change(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device)
    x.add_(1)
    w = tl.ones(3, device=device, requires_grad=True)
    y = (x * w).sum()
    x.mul_(2)
    with pytest.raises(RuntimeError, match="is at version 2; expected version 1 instead"):
        y.backward()


def test_saved_index_tensors_are_checked_too(device):
    x = tl.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    index = tl.tensor([[1], [0]], device=device)
    y = x.gather(1, index).sum()
    index[0, 0] = 0
    with pytest.raises(RuntimeError, match="Gather"):
        y.backward()


# ---------------------------------------------------------------------- autograd.grad, backward(inputs=)
def test_autograd_grad_matches_torch_and_leaves_grad_alone(device):
    torch = pytest.importorskip("torch")
    x0, w0 = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 0.25])
    x, w = tl.tensor(x0, device=device, requires_grad=True), tl.tensor(w0, device=device, requires_grad=True)
    X, W = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    h, H = x * w, X * W
    y, Y = (h.tanh() * x).sum(), (H.tanh() * X).sum()
    ours = tl.autograd.grad(y, [x, h], retain_graph=True)
    theirs = torch.autograd.grad(Y, [X, H], retain_graph=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(host(a), b.numpy(), rtol=1e-12)
    assert x.grad is None and w.grad is None
    y.backward(inputs=[w])
    Y.backward(inputs=[W])
    assert x.grad is None
    np.testing.assert_allclose(host(w.grad), W.grad.numpy(), rtol=1e-12)


def test_autograd_grad_errors_and_unused_inputs(device):
    x = tl.ones(2, device=device, requires_grad=True)
    other = tl.ones(2, device=device, requires_grad=True)
    y = (x * 2).sum()
    assert tl.autograd.grad(y, [x, other], retain_graph=True, allow_unused=True)[1] is None
    assert host(tl.autograd.grad(y, other, retain_graph=True, materialize_grads=True)[0]).tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        tl.autograd.grad(y, [other], retain_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tl.autograd.grad(y, [tl.ones(2, device=device)], retain_graph=True)
    with pytest.raises(NotImplementedError, match="create_graph=True is not supported"):
        tl.autograd.grad(y, [x], create_graph=True)


def test_filling_a_buffer_step_by_step_records_the_graph(device):
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(0).standard_normal((2, 3))

    def run(lib, x, dev):
        buf = lib.zeros(2, 4, dtype=lib.float64, device=dev)  # an RNN's outputs, written one step at a time
        h = x.sum(1)
        for t in range(4):
            h = (h * 0.5 + x[:, t % 3]).tanh()
            buf[:, t] = h
        return (buf * buf).sum()

    t, r = tl.tensor(x0, device=device, requires_grad=True), torch.tensor(x0, requires_grad=True)
    ours, theirs = run(tl, t, device), run(torch, r, "cpu")
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)
    np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-12)


def test_augmented_assignment_into_a_slice_of_a_non_leaf(device):
    x = tl.ones(3, 2, device=device, requires_grad=True)
    y = x * 2
    y[0] += 1
    y[1:] *= y[0]
    assert host(y).tolist() == [[3.0, 3.0], [6.0, 6.0], [6.0, 6.0]]
    y.sum().backward()
    assert host(x.grad).tolist() == [[10.0, 10.0], [6.0, 6.0], [6.0, 6.0]]


def test_a_view_made_under_no_grad_is_not_followed_and_says_so(device):
    w = tl.ones(2, device=device, requires_grad=True)
    h = tl.zeros(2, 2, device=device)
    with tl.no_grad():
        v = h[0]
        v += 1  # under no_grad: a plain write into h's memory
    assert host(h).tolist() == [[1.0, 1.0], [0.0, 0.0]]
    with pytest.raises(RuntimeError, match="a view made under no_grad"):
        h.add_(w)  # recording: h would be redirected, and v could not follow
