"""tl.save / tl.load take what PyTorch training scripts give torch.save, and give back the same structure."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import safetensors.numpy

import tinygrad_lm as tl
from tinygrad_lm import backend, nn, optim, serialization
from tinygrad_lm.serialization.tree import MAX_DEPTH

TENSOR_DTYPES = [tl.float32, tl.float64, tl.int64, tl.int32, tl.bool]


def _round_trip(obj, tmp_path, **load_kw):
    path = tmp_path / "ckpt.pt"
    tl.save(obj, path)
    return tl.load(path, **load_kw)


def _optimizer_state_dict():
    """What ``torch.optim.Adam(...).state_dict()`` looks like, built by hand: int keys, tuples, None, bools."""
    return {
        "state": {
            0: {"step": tl.tensor(3.0), "exp_avg": tl.tensor([0.1, -0.2]), "exp_avg_sq": tl.tensor([0.01, 0.04])},
            1: {"step": 3, "exp_avg": np.array([[1.5]], np.float32), "exp_avg_sq": np.array([[2.25]], np.float32)},
        },
        "param_groups": [
            {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "maximize": False,
             "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "max_grad_norm": float("inf"), "params": [0, 1]},
        ],
    }


def _assert_same(got, want, path="<root>"):
    """Equal values of the same types, recursively; Tensors and arrays compared element for element."""
    if isinstance(want, dict):  # (an OrderedDict, as state_dict() returns, comes back as a dict)
        assert type(got) is dict, f"{path}: {type(got).__name__}"
        assert list(got) == list(want) and [type(k) for k in got] == [type(k) for k in want], path
        for (k, g), w in zip(got.items(), want.values()):
            _assert_same(g, w, f"{path}.{k}")
        return
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{path}.{i}")
    elif isinstance(want, tl.Tensor):
        assert (got.dtype, got.shape, got.device, got.requires_grad) == (
            want.dtype, want.shape, want.device, want.requires_grad), path
        np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy(), err_msg=path)
    elif backend.is_backend_array(want):
        assert (got.dtype, got.shape, backend.device_of(got)) == (want.dtype, want.shape, backend.device_of(want))
        np.testing.assert_array_equal(backend.to_host(got), backend.to_host(want), err_msg=path)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), path
    else:
        assert got == want, path


def test_optimizer_state_dict_round_trip(tmp_path):
    sd = _optimizer_state_dict()
    got = _round_trip(sd, tmp_path)
    _assert_same(got, sd)
    assert got["param_groups"][0]["betas"] == (0.9, 0.999) and got["param_groups"][0]["foreach"] is None


def test_training_checkpoint_with_model_optimizer_epoch_and_args(tmp_path):
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(tl.randn(5, 3)).sum().backward()
    opt.step()
    args = {"lr": 0.01, "clip": None, "layers": [3, 4, 2], "name": "run-1", "resume": False,
            "patience": float("inf"), "target": float("-inf"), "loss": float("nan")}
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "args": args}
    got = _round_trip(ckpt, tmp_path)
    _assert_same(got, ckpt)

    clone = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    clone_opt = optim.Adam(clone.parameters(), lr=0.5)
    clone.load_state_dict(got["model"])
    clone_opt.load_state_dict(got["optimizer"])
    x = tl.randn(2, 3)
    np.testing.assert_array_equal(clone(x).detach().numpy(), model(x).detach().numpy())
    assert clone_opt.param_groups[0]["lr"] == 0.01


def test_state_dict_of_tensors_loads_into_a_model(tmp_path):
    tl.manual_seed(0)
    model = nn.Linear(4, 3)
    sd = {k: tl.tensor(v) for k, v in model.state_dict().items()}  # what a PyTorch state dict holds
    got = _round_trip(sd, tmp_path)
    assert all(isinstance(v, tl.Tensor) for v in got.values())
    other = nn.Linear(4, 3)
    other.load_state_dict(got)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("dtype", TENSOR_DTYPES, ids=str)
def test_tensor_round_trip_per_dtype_and_device(tmp_path, device, dtype):
    values = tl.tensor([[0, 1, 2], [3, 4, 5]], device=device).to(dtype)
    obj = {"t": values, "scalar_t": tl.tensor(7, device=device).to(dtype), "raw": values[1:].contiguous().array}
    got = _round_trip(obj, tmp_path)
    _assert_same(got, obj)
    assert got["t"].device == backend.canonical_device(device)


def test_parameters_and_requires_grad_come_back(tmp_path, device):
    p = nn.Parameter(tl.tensor([1.0, 2.0], device=device))
    frozen = nn.Parameter(tl.tensor([3.0], device=device), requires_grad=False)
    leaf = tl.tensor([4.0], device=device, requires_grad=True)
    got = _round_trip({"p": p, "frozen": frozen, "leaf": leaf, "plain": leaf.detach()}, tmp_path)
    assert isinstance(got["p"], nn.Parameter) and got["p"].requires_grad
    assert isinstance(got["frozen"], nn.Parameter) and not got["frozen"].requires_grad
    assert type(got["leaf"]) is tl.Tensor and got["leaf"].requires_grad and got["leaf"].is_leaf
    assert type(got["plain"]) is tl.Tensor and not got["plain"].requires_grad
    (got["leaf"] * 2).sum().backward()
    assert got["leaf"].grad.tolist() == [2.0]


def test_all_safetensors_dtypes_of_arrays(tmp_path):
    arrays = {str(d): np.arange(6).reshape(2, 3).astype(d) for d in
              ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64", "float16",
               "float32", "float64")}
    _assert_same(_round_trip(arrays, tmp_path), arrays)


def test_big_endian_arrays_are_stored_little_endian(tmp_path):
    obj = {"f": np.arange(5, dtype=">f4") / 3, "i": np.arange(-2, 3, dtype=">i8"), "s": np.dtype(">f8").type(2.5)}
    got = _round_trip(obj, tmp_path)
    for key in ("f", "i"):
        assert got[key].dtype == obj[key].dtype.newbyteorder("<") and got[key].dtype.byteorder in ("<", "=")
        np.testing.assert_array_equal(got[key], obj[key])
    assert got["s"] == 2.5


def test_one_array_under_two_names_is_stored_once_and_shared(tmp_path):
    t = tl.tensor([1.0, 2.0, 3.0])
    shared = np.arange(4.0)
    obj = {"a": t, "b": t, "data": t.data, "raw": t.array, "x": shared, "y": [shared]}
    path = tmp_path / "c.safetensors"
    tl.save(obj, path)
    assert sorted(safetensors.numpy.load_file(path)) == ["a", "x"]
    got = tl.load(path)
    assert got["a"].array is got["b"].array is got["data"].array is got["raw"]
    assert got["x"] is got["y"][0]
    got["raw"][0] = 10.0  # a write shows under every name, as with PyTorch's shared storage
    assert got["a"].tolist() == got["b"].tolist() == got["data"].tolist() == [10.0, 2.0, 3.0]
    view = t[1:]  # a different array viewing the same memory: stored on its own, values right
    got = _round_trip({"t": t, "view": view}, tmp_path)
    assert got["view"].tolist() == [2.0, 3.0]


def test_bytes_io_round_trip():
    buf = io.BytesIO()
    obj = {"w": tl.tensor([1.0, 2.0]), "step": 2}
    tl.save(obj, buf, metadata={"note": "in memory"})
    buf.seek(0)
    got, meta = tl.load(buf, with_metadata=True)
    _assert_same(got, obj)
    assert meta == {"note": "in memory"}
    buf.seek(0)
    assert serialization.load_metadata(buf) == {"note": "in memory"}
    with pytest.raises(ValueError, match=r"<BytesIO>.* is not a tinygrad_lm checkpoint"):
        tl.load(io.BytesIO(b"not a checkpoint"))


def test_metadata_round_trip_and_errors(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    meta = {"config.json": "sha256:" + "ab" * 32, "tokenizer.json": "sha256:" + "cd" * 32}
    tl.save({"step": 1}, path, metadata=meta)
    assert tl.load(path) == {"step": 1}
    assert tl.load(path, with_metadata=True) == ({"step": 1}, meta)
    assert serialization.load_metadata(path) == meta
    tl.save({"step": 1}, path)
    assert serialization.load_metadata(path) == {}
    with pytest.raises(TypeError, match="metadata keys and values must be strings.*'n'.*int"):
        tl.save({}, path, metadata={"n": 1})
    with pytest.raises(ValueError, match="'tinygrad_lm' is reserved"):
        tl.save({}, path, metadata={"tinygrad_lm": "x"})


def test_map_location_forms(tmp_path, device):
    path = tmp_path / "c.safetensors"
    tl.save({"t": tl.tensor([1.0, 2.0]), "a": np.arange(3), "lr": np.float32(0.5)}, path)
    target = backend.canonical_device(device)
    for where in (device, {"cpu": device}, {"CPU": device}):
        got = tl.load(path, map_location=where)
        assert got["t"].device == target and backend.device_of(got["a"]) == target, where
        assert type(got["lr"]) is np.float32 and got["lr"] == 0.5  # a number, on no device
        assert got["t"].tolist() == [1.0, 2.0] and backend.to_host(got["a"]).tolist() == [0, 1, 2]
    seen = []
    got = tl.load(path, map_location=lambda array, location: seen.append(location) or array * 2)
    assert seen == ["cpu", "cpu"] and got["t"].tolist() == [2.0, 4.0] and got["a"].tolist() == [0, 2, 4]
    assert tl.load(path, map_location=lambda array, location: None)["t"].device == "cpu"
    with pytest.raises(TypeError, match="map_location returned list for tensor 't'"):
        tl.load(path, map_location=lambda array, location: [1])
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tl.load(path, map_location="tpu")
    assert tl.load(path, weights_only=False)["t"].tolist() == [1.0, 2.0]  # never unpickles, either way


def test_tensor_saved_on_a_gpu_needs_map_location_where_there_is_none(tmp_path, monkeypatch):
    path = tmp_path / "gpu.safetensors"
    with monkeypatch.context() as m:  # a file as a CUDA machine writes it: its tensors say 'cuda:0'
        m.setattr(backend, "device_of", lambda array: "cuda:0")
        tl.save({"w": tl.tensor([1.0, 2.0])}, path)
    for where in ("cpu", {"cuda:0": "cpu"}, {"cuda": "cpu"}):
        got = tl.load(path, map_location=where)
        assert got["w"].device == "cpu" and got["w"].tolist() == [1.0, 2.0]
    if tl.cuda_is_available():
        assert tl.load(path)["w"].device == "cuda:0"
    else:
        with pytest.raises(RuntimeError, match=r"gpu.safetensors.*tensor 'w' was saved on cuda:0.*map_location='cpu'"):
            tl.load(path)


def test_unsaveable_objects_name_type_and_key_path(tmp_path):
    sd = _optimizer_state_dict()
    sd["state"][0]["fn"] = lambda: 0
    with pytest.raises(TypeError, match=r"cannot save function at 'state\.0\.fn'"):
        tl.save(sd, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"cannot save function at 'optimizer\.state\.0\.fn'"):
        tl.save({"optimizer": sd}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"cannot save object at 'a\.1\.b'"):
        tl.save({"a": [1, {"b": object()}]}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"cannot save complex at '<root>'"):
        tl.save(1j, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"dict keys must be strings or integers, got float 0\.5 at 'a'"):
        tl.save({"a": {0.5: 1}}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match=r"array at 'c' has dtype complex128"):
        tl.save({"c": np.ones(2, complex)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_self_reference_is_a_clear_value_error(tmp_path):
    d: dict = {"a": 1}
    d["me"] = d
    with pytest.raises(ValueError, match=r"contains itself: 'me' is '<root>' again"):
        tl.save(d, tmp_path / "x.pt")
    inner: list = []
    outer = {"model": {"layers": inner}}
    inner.append(outer["model"])
    with pytest.raises(ValueError, match=r"'model\.layers\.0' is 'model' again"):
        tl.save(outer, tmp_path / "x.pt")
    same = {"lr": 0.1}
    got = _round_trip({"a": same, "b": [same, same]}, tmp_path)  # shared but not cyclic: fine
    assert got == {"a": same, "b": [same, same]}


def _nested(levels: int):
    obj: object = tl.tensor([1.0])
    for _ in range(levels):
        obj = [obj]
    return obj


def test_nesting_depth_limit_on_save_and_load(tmp_path):
    got = _round_trip(_nested(MAX_DEPTH), tmp_path)
    for _ in range(MAX_DEPTH):
        got = got[0]
    assert got.tolist() == [1.0]
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
        tl.save(_nested(MAX_DEPTH + 1), tmp_path / "deep.pt")

    for levels, name in ((MAX_DEPTH + 5, "deeper.safetensors"), (100_000, "deepest.safetensors")):
        tree = '{"list": [' * (levels - 1) + '{"list": []}' + "]}" * (levels - 1)
        meta = '{"version": "1", "tree": ' + tree + "}"
        safetensors.numpy.save_file({}, tmp_path / name, metadata={"tinygrad_lm": meta})
        with pytest.raises(ValueError, match=rf"{name}.*nested (more than {MAX_DEPTH} levels deep|too deeply)"):
            tl.load(tmp_path / name)


def test_directory_is_a_clear_error(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path.name}' is a directory, not a checkpoint file"):
        tl.load(tmp_path)
    with pytest.raises(IsADirectoryError, match=rf"cannot write '.*{tmp_path.name}': it is a directory"):
        tl.save({}, tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        serialization.load_metadata(tmp_path)


def test_version_1_files_still_load(tmp_path):
    """A checkpoint as written before checksums existed (format "1"): arrays under dotted keys."""
    tree = {"dict": [["model", {"dict": [["w", {"array": "model.w"}]]}], ["step", 4],
                     ["best", {"float": "inf"}], ["lr", {"scalar": "lr"}]]}
    safetensors.numpy.save_file({"model.w": np.arange(3.0), "lr": np.array(0.5, np.float32)},
                                tmp_path / "old.safetensors",
                                metadata={"tinygrad_lm": json.dumps({"version": "1", "tree": tree})})
    got = tl.load(tmp_path / "old.safetensors")
    assert got["step"] == 4 and got["best"] == math.inf and got["lr"] == np.float32(0.5)
    assert isinstance(got["model"]["w"], np.ndarray) and got["model"]["w"].tolist() == [0.0, 1.0, 2.0]


def _from_torch(obj, torch):
    """The same structure with every torch tensor as a tl.Tensor (values, dtype and requires_grad kept)."""
    if isinstance(obj, torch.Tensor):
        return tl.tensor(obj.detach().numpy(), requires_grad=obj.requires_grad)
    if isinstance(obj, dict):
        return {k: _from_torch(v, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_torch(v, torch) for v in obj)
    return obj


def test_same_structure_back_as_torch_load(tmp_path):
    """A real torch.optim.Adam state dict and a training checkpoint: tl.load gives what torch.load gives."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
            "args": {"lr": 0.01, "clip": None, "inf": float("inf"), "shape": (3, 2), "tags": ["a", 1, 2.5, True]}}
    torch.save(ckpt, tmp_path / "torch.pt")
    reference = _from_torch(torch.load(tmp_path / "torch.pt", weights_only=True), torch)
    got = _round_trip(_from_torch(ckpt, torch), tmp_path)
    _assert_same(got, reference)
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99) and got["epoch"] == 3
    assert list(got["optimizer"]["state"]) == [0, 1] and isinstance(got["optimizer"]["state"][0]["step"], tl.Tensor)
