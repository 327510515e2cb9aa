"""The Tensor API outside the math: dtypes, devices, creation functions, conversions and error messages."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import host

import tinygrad_lm as tl

# ---------------------------------------------------------------------- dtype rules
F32, F64, I64 = np.dtype("float32"), np.dtype("float64"), np.dtype("int64")


def test_dtypes_of_new_tensors(device):
    assert tl.tensor(1.5, device=device).dtype == F32
    assert tl.tensor([1.0, 2], device=device).dtype == F32
    assert tl.tensor([[1, 2]], device=device).dtype == I64
    assert tl.tensor(3, device=device).dtype == I64
    assert tl.tensor([True, False], device=device).dtype == np.bool_
    for dt in ("float64", "float32", "float16", "int32", "int64", "uint8", "bool"):
        assert tl.tensor(np.zeros(2, dtype=dt), device=device).dtype == dt  # NumPy arrays keep their dtype
    assert tl.tensor(np.float64(2.0), device=device).dtype == F64
    assert tl.tensor([1, 2], dtype=tl.float64, device=device).dtype == F64
    assert tl.tensor(np.zeros(2), dtype="float32", device=device).dtype == F32


@pytest.mark.parametrize(
    "expr, dtype",
    [
        (lambda f, i: f + 2.5, F32),
        (lambda f, i: 2.5 * f, F32),
        (lambda f, i: f - 3, F32),
        (lambda f, i: f / 3, F32),
        (lambda f, i: f**2.0, F32),
        (lambda f, i: 2.0**f, F32),
        (lambda f, i: f + np.float64(2.5), F32),  # NumPy scalars count as Python numbers
        (lambda f, i: np.float64(2.5) * f, F32),
        (lambda f, i: f ** np.float64(2.0), F32),
        (lambda f, i: tl.where(i > 1, f, np.float64(0.5)), F32),
        (lambda f, i: tl.maximum(f, np.float64(0.5)), F32),
        (lambda f, i: i + np.int32(1), I64),
        (lambda f, i: f * np.array(2.0), F32),  # a 0-d array does not widen a dimensioned tensor
        (lambda f, i: f + i, F32),
        (lambda f, i: i + f, F32),
        (lambda f, i: f @ i.reshape(2, 1), F32),
        (lambda f, i: i / 2, F32),
        (lambda f, i: i / i, F32),
        (lambda f, i: 1 / i, F32),
        (lambda f, i: i + 0.5, F32),
        (lambda f, i: i * 2, I64),
        (lambda f, i: i - i, I64),
        (lambda f, i: i**2, I64),
        (lambda f, i: 2.0**i, F32),
        (lambda f, i: i.exp(), F32),
        (lambda f, i: i.mean(), F32),
        (lambda f, i: i.sum(), I64),
        (lambda f, i: f + f.double(), F64),
        (lambda f, i: f + tl.tensor(1.0, dtype=tl.float64, device=f.device), F32),
        (lambda f, i: i + i.to(tl.int32), I64),
        (lambda f, i: tl.where(i > 1, f, 0.0), F32),
        (lambda f, i: tl.where(i > 1, f, i), F32),
        (lambda f, i: tl.maximum(f, 0.0), F32),
        (lambda f, i: tl.cat([f, i]), F32),
        (lambda f, i: tl.cat([i, f, f.double()]), F64),
        (lambda f, i: tl.stack([i, i.to(tl.int32)]), I64),
        (lambda f, i: tl.stack([f, i], dim=-1), F32),
        (lambda f, i: f.clamp(0.5, 1.5), F32),
        (lambda f, i: f.masked_fill(i > 1, -1e9), F32),
        (lambda f, i: f.var(), F32),
        (lambda f, i: f.softmax(0), F32),
        (lambda f, i: f.gelu(), F32),
    ],
)
def test_result_dtypes_follow_pytorch(device, expr, dtype):
    f = tl.tensor([1.0, 2.0], device=device)
    i = tl.tensor([1, 2], device=device)
    assert expr(f, i).dtype == dtype


def test_cat_and_stack_name_the_shapes_that_do_not_join(device):
    a, b = tl.zeros(2, 3, device=device), tl.zeros(2, 4, device=device)
    assert tl.cat([a, b], dim=1).shape == (2, 7)
    assert tl.cat([a, b], dim=-1).shape == (2, 7)
    with pytest.raises(ValueError, match=r"cat: shapes \(2, 3\) and \(2, 4\) differ outside dim 0"):
        tl.cat([a, b])
    with pytest.raises(ValueError, match=r"cat: shapes \(2, 3\) and \(3,\) differ outside dim 0"):
        tl.cat([a, tl.zeros(3, device=device)])
    with pytest.raises(ValueError, match=r"stack: all tensors must have one shape, got \(2, 3\) and \(2, 4\)"):
        tl.stack([a, b])
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        tl.cat([a, a], dim=2)
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        tl.stack([a, a], dim=3)
    with pytest.raises(TypeError, match="dim must be an int, got float"):
        tl.cat([a, a], dim=1.0)
    assert tl.stack([a, a], dim=2).shape == (2, 3, 2)
    assert tl.stack([a, a], dim=-3).shape == (2, 2, 3)


def test_float32_gradients_stay_float32(device):
    x = tl.tensor([0.5, 1.5], device=device, requires_grad=True)
    y = ((x * 2.0 + 1) ** 2 / 3.0).exp().log().gelu().sum() + x.double().sum()
    y.backward()
    assert x.grad.dtype == F32


def test_set_default_dtype(device):
    tl.set_default_dtype(tl.float64)
    assert tl.get_default_dtype() == F64
    assert tl.tensor(1.5, device=device).dtype == F64
    assert tl.zeros(2, device=device).dtype == F64
    assert tl.randn(2, device=device).dtype == F64
    assert (tl.tensor([1, 2], device=device) / 2).dtype == F64
    tl.set_default_dtype("float32")
    assert tl.tensor(1.5, device=device).dtype == F32
    with pytest.raises(TypeError, match="int64"):
        tl.set_default_dtype("int64")


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda d: tl.tensor([1 + 2j], device=d), "complex128"),
        (lambda d: tl.tensor(np.zeros(2, dtype=np.complex64), device=d), "complex64"),
        (lambda d: tl.tensor([object()], device=d), "object"),
        (lambda d: tl.tensor(["a", "b"], device=d), "<U1"),
        (lambda d: tl.tensor(np.array(["ab"]), device=d), "<U2"),
        (lambda d: tl.zeros(2, dtype=complex, device=d), "complex128"),
        (lambda d: tl.tensor([1.0], dtype="complex64", device=d), "complex64"),
        (lambda d: tl.ones(2, device=d).to(np.complex128), "complex128"),
        (lambda d: tl.from_numpy(np.zeros(2, dtype=np.complex64)), "complex64"),
    ],
)
def test_unsupported_dtypes_raise_type_error(device, make, name):
    with pytest.raises(TypeError, match=name):
        make(device)


# ---------------------------------------------------------------------- error messages
def test_matmul_shape_mismatch_names_both_shapes(device):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        tl.ones(2, 3, device=device) @ tl.ones(4, 5, device=device)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        tl.ones(3, device=device) @ tl.ones(2, device=device)
    with pytest.raises(ValueError, match=r"\(2, 2, 3\).*\(3, 3, 1\)"):
        tl.ones(2, 2, 3, device=device) @ tl.ones(3, 3, 1, device=device)  # batch dims 2 and 3


def test_broadcast_mismatch_names_both_shapes(device):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        tl.ones(2, 3, device=device) + tl.ones(4, device=device)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2,\)"):
        tl.ones(2, 3, device=device) * tl.ones(2, device=device)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        _ = tl.ones(2, 3, device=device) < tl.ones(3, 2, device=device)


def test_bad_reshape_names_the_shapes(device):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        tl.ones(2, 3, device=device).reshape(4)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, -1\)"):
        tl.ones(2, 3, device=device).view(4, -1)


def test_join_mismatch_names_both_shapes(device):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        tl.cat([tl.ones(2, 3, device=device), tl.ones(2, 4, device=device)], dim=0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        tl.stack([tl.ones(2, 3, device=device), tl.ones(3, 2, device=device)])
    with pytest.raises(ValueError, match="non-empty"):
        tl.cat([])


def test_shape_argument_errors(device):
    t = tl.ones(2, 3, device=device)
    with pytest.raises(IndexError, match="out of range"):
        t.sum(2)
    with pytest.raises(ValueError, match="permutation"):
        t.permute(0, 0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 3\)"):
        t.expand(4, 3)
    with pytest.raises(IndexError, match="out of range"):
        t.gather(1, tl.tensor([[0, 3]], device=device))


def _fake_cuda(t: tl.Tensor) -> tl.Tensor:
    """Label a CPU tensor as living on "cuda:0".

    The device check runs before any array math, so the mixing error can be tested on a
    machine without a GPU by relabelling a CPU tensor; nothing ever computes on it.
    """
    t.device = "cuda:0"
    return t


def test_mixing_devices_raises_naming_both():
    a = tl.ones(2, 2)
    b = _fake_cuda(tl.ones(2, 2))
    mixes = [
        lambda: a + b,
        lambda: b * a,
        lambda: a @ b,
        lambda: tl.cat([a, b]),
        lambda: tl.stack([a, b]),
        lambda: tl.where(tl.ones(2, 2) > 0, a, b),
        lambda: tl.maximum(a, b),
        lambda: a < b,
        lambda: a.masked_fill(_fake_cuda(tl.ones(2, 2) > 0), 0.0),
        lambda: a.gather(0, _fake_cuda(tl.zeros(2, 2, dtype=tl.int64))),
        lambda: a[_fake_cuda(tl.tensor([0, 1]))],
    ]
    for mix in mixes:
        with pytest.raises(RuntimeError, match=r"(cpu.*cuda:0|cuda:0.*cpu)"):
            mix()


def test_cuda_is_available_is_a_bool():
    assert isinstance(tl.cuda_is_available(), bool)


@pytest.mark.skipif(tl.cuda_is_available(), reason="checks the error on machines without CUDA")
def test_asking_for_cuda_without_a_gpu_raises():
    for ask in (
        lambda: tl.zeros(2, device="cuda"),
        lambda: tl.tensor([1.0], device="cuda:0"),
        lambda: tl.ones(2).to("cuda"),
        lambda: tl.ones(2).cuda(),
        lambda: tl.set_default_device("cuda"),
    ):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            ask()
    assert tl.get_default_device() == "cpu"


def test_unknown_device_raises():
    with pytest.raises(ValueError, match="tpu"):
        tl.zeros(2, device="tpu")


# ---------------------------------------------------------------------- creation
def test_tensor_copies_and_from_numpy_shares():
    a = np.array([1.0, 2.0])
    t = tl.tensor(a)
    a[0] = 100.0
    assert t.tolist() == [1.0, 2.0]
    b = np.array([[1, 2], [3, 4]], dtype=np.int32)
    s = tl.from_numpy(b)
    assert s.dtype == np.int32 and s.device == "cpu" and s.shape == (2, 2)
    b[0, 0] = 7
    assert s[0, 0].item() == 7
    s.array[1, 1] = 9
    assert b[1, 1] == 9
    assert np.shares_memory(s.numpy(), b)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        tl.from_numpy([1.0, 2.0])


def test_tensor_from_tensor_copies(device):
    a = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tl.tensor(a)
    assert not b.requires_grad and b.is_leaf
    b[0] = 5.0
    assert a.tolist() == [1.0, 2.0]


def test_filled_creation(device):
    z = tl.zeros(2, 3, device=device)
    assert z.shape == (2, 3) and z.dtype == F32 and z.device.startswith(device) and not z.requires_grad
    assert tl.zeros((2, 3), device=device).shape == (2, 3)
    assert tl.zeros([4], device=device).shape == (4,)
    assert tl.zeros((), device=device).shape == ()
    o = tl.ones(3, dtype=tl.int64, device=device, requires_grad=False)
    assert o.dtype == I64 and o.tolist() == [1, 1, 1]
    assert tl.ones(2, device=device, requires_grad=True).requires_grad
    f = tl.full((2, 2), 1.5, device=device)
    assert f.dtype == F32 and f.tolist() == [[1.5, 1.5], [1.5, 1.5]]
    assert tl.full((2,), 7, device=device).dtype == I64
    assert tl.full(3, True, device=device).dtype == np.bool_
    base = tl.ones(2, 3, dtype=tl.float64, device=device)
    assert tl.zeros_like(base).dtype == F64 and tl.zeros_like(base).shape == (2, 3)
    assert host(tl.zeros_like(base)).sum() == 0
    assert tl.ones_like(base, dtype=tl.float32).dtype == F32
    assert host(tl.ones_like(base)).sum() == 6
    assert tl.zeros_like(base).device == base.device


def test_arange(device):
    a = tl.arange(5, device=device)
    assert a.dtype == I64 and a.tolist() == [0, 1, 2, 3, 4]
    assert tl.arange(2, 8, 3, device=device).tolist() == [2, 5]
    assert tl.arange(5, 0, -2, device=device).tolist() == [5, 3, 1]
    f = tl.arange(0.0, 1.0, 0.25, device=device)
    assert f.dtype == F32
    np.testing.assert_allclose(host(f), [0.0, 0.25, 0.5, 0.75])
    assert tl.arange(1, 2, 0.5, device=device).dtype == F32
    assert tl.arange(3, dtype=tl.float64, device=device).dtype == F64
    with pytest.raises(ValueError, match="step"):
        tl.arange(0, 3, 0)


def test_eye(device):
    np.testing.assert_array_equal(host(tl.eye(3, device=device)), np.eye(3))
    e = tl.eye(2, 3, device=device)
    assert e.shape == (2, 3) and e.dtype == F32


def test_random_shapes_dtypes_and_ranges(device):
    n = tl.randn(2, 3, device=device)
    assert n.shape == (2, 3) and n.dtype == F32
    assert tl.randn((4,), dtype=tl.float64, device=device).dtype == F64
    assert tl.randn(2, device=device, requires_grad=True).requires_grad
    r = tl.rand(1000, device=device)
    assert r.dtype == F32 and 0.0 <= host(r).min() and host(r).max() < 1.0
    i = tl.randint(3, 7, (50,), device=device)
    assert i.dtype == I64 and i.shape == (50,)
    assert 3 <= host(i).min() and host(i).max() <= 6
    j = tl.randint(4, (2, 2), device=device)
    assert j.shape == (2, 2) and 0 <= host(j).min() and host(j).max() <= 3
    big = host(tl.randn(20000, device=device))
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    with pytest.raises(ValueError, match="high"):
        tl.randint(5, 5, (2,))


def test_manual_seed_reproduces(device):
    tl.manual_seed(7)
    a = host(tl.randn(5, device=device)), host(tl.rand(3, device=device)), host(tl.randint(0, 100, (4,), device=device))
    tl.manual_seed(7)
    b = host(tl.randn(5, device=device)), host(tl.rand(3, device=device)), host(tl.randint(0, 100, (4,), device=device))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    tl.manual_seed(8)
    assert not np.array_equal(host(tl.randn(5, device=device)), a[0])


# ---------------------------------------------------------------------- attributes and conversion
def test_attributes(device):
    t = tl.zeros(2, 3, 4, device=device)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.ndim == 3 and t.dim() == 3
    assert t.dtype == F32
    assert t.device == ("cpu" if device == "cpu" else "cuda:0")
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and len(t) == 2
    assert tl.tensor(5.0).numel() == 1 and tl.tensor(5.0).shape == ()
    assert t.grad is None and t.grad_fn is None and t.is_leaf
    assert isinstance(t.array, np.ndarray if device == "cpu" else object)


def test_item_tolist_numpy(device):
    t = tl.tensor([[1.5, 2.0]], device=device)
    assert t[0, 1].item() == 2.0 and isinstance(t[0, 1].item(), float)
    assert tl.tensor(3, device=device).item() == 3 and isinstance(tl.tensor(3, device=device).item(), int)
    assert t.tolist() == [[1.5, 2.0]]
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        t.item()
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == F32 and a.tolist() == [[1.5, 2.0]]
    assert float(tl.tensor(2.5, device=device)) == 2.5 and int(tl.tensor(4, device=device)) == 4


def test_numpy_raises_when_requiring_grad(device):
    t = tl.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0]


def test_to_and_dtype_shortcuts(device):
    t = tl.tensor([1.7, -2.2], device=device)
    assert t.to(tl.float64).dtype == F64 and t.double().dtype == F64
    assert t.double().float().dtype == F32
    assert t.long().dtype == I64 and t.long().tolist() == [1, -2]
    assert t.to(device) is t and t.to(tl.float32) is t
    c = t.cpu()
    assert c.device == "cpu" and c.tolist() == t.tolist()
    assert t.to(device, tl.float64).dtype == F64
    assert t.to(dtype=tl.float64, device="cpu").device == "cpu"


def test_requires_grad_clone_contiguous(device):
    t = tl.ones(2, device=device)
    assert t.requires_grad_() is t and t.requires_grad
    assert t.requires_grad_(False) is t and not t.requires_grad
    assert t.contiguous() is t
    u = tl.tensor([1.0, 2.0], device=device, requires_grad=True)
    c = u.clone()
    assert c.requires_grad and not c.is_leaf and c.array is not u.array
    np.testing.assert_array_equal(host(c), host(u))


def test_max_min_with_dim_return_values_and_indices(device):
    x = tl.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], device=device)
    m = x.max(dim=1)
    assert m.values.tolist() == [5.0, 6.0] and m.indices.tolist() == [1, 2]
    values, indices = x.min(0)
    assert values.tolist() == [1.0, 2.0, 3.0] and indices.tolist() == [0, 1, 0]
    assert x.max(1, keepdim=True).values.shape == (2, 1) and x.max(1, keepdim=True).indices.shape == (2, 1)
    assert x.max().item() == 6.0 and x.min().item() == 1.0
    assert x.argmax(1).tolist() == [1, 2] and x.argmin(1).tolist() == [0, 1]
    with pytest.raises(RuntimeError, match="empty"):
        tl.zeros(0).max()


def test_setitem_and_iteration(device):
    t = tl.zeros(3, device=device)
    t[1] = 2.0
    t[tl.tensor([0, 2], device=device)] = tl.tensor([1.0, 3.0], device=device)
    assert t.tolist() == [1.0, 2.0, 3.0]
    assert [v.item() for v in t] == [1.0, 2.0, 3.0]
    w = tl.zeros(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w[0] = 1.0
    with tl.no_grad():
        w[0] = 1.0
    assert w.tolist() == [1.0, 0.0]
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(tl.ones(2, device=device))


def test_repr_looks_like_pytorch():
    assert repr(tl.tensor([1.0, 2.0], requires_grad=True)) == "tensor([1., 2.], requires_grad=True)"
    assert repr(tl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tl.tensor(3.0)) == "tensor(3.)"
    assert repr(tl.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(tl.tensor([True])) == "tensor([ True])"
    assert repr(tl.tensor([0.5], dtype=tl.float64)) == "tensor([0.5], dtype=float64)"
    assert repr(tl.tensor([1], dtype=tl.int32)) == "tensor([1], dtype=int32)"
    assert repr(tl.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert repr(tl.tensor([1.0, 2.0], requires_grad=True) * 2) == "tensor([2., 4.], grad_fn=<MulBackward>)"
    assert repr(tl.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"
    assert "dtype" not in repr(tl.randn(3))
    tl.set_default_dtype(tl.float64)
    assert repr(tl.tensor([0.5])) == "tensor([0.5])"
    assert repr(tl.tensor([0.5], dtype=tl.float32)) == "tensor([0.5], dtype=float32)"
