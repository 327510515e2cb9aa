"""tl.save / tl.load: safetensors checkpoints, round trips, atomic writes and clear errors on bad files."""
from __future__ import annotations

import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest
import safetensors.numpy

import tinygrad_lm as tl
from tinygrad_lm import backend, generators, nn, optim, serialization


def _linear_sd(seed=0):
    tl.manual_seed(seed)
    return nn.Linear(4, 3)


def test_model_state_dict_round_trip_reproduces_outputs(tmp_path):
    model = _linear_sd(0)
    path = tmp_path / "model.safetensors"
    tl.save(model.state_dict(), path)
    loaded = tl.load(path)
    assert list(loaded) == ["weight", "bias"]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in loaded.values())

    other = _linear_sd(1)
    x = tl.randn(5, 4)
    assert not np.array_equal(other(x).detach().numpy(), model(x).detach().numpy())
    other.load_state_dict(loaded)
    np.testing.assert_array_equal(other(x).detach().numpy(), model(x).detach().numpy())


def test_nested_structure_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    obj = {
        "model": {"layer.0.weight": rng.standard_normal((2, 3)).astype(np.float32)},
        "step": 10,
        "lr": 3e-4,
        "name": "tiny",
        "flag": True,
        "nothing": None,
        "special": [float("inf"), float("-inf"), 1.5, -0.0],
        "pair": (1, "two", None),
        "by_index": {0: {"x": 1}, 7: [1, 2]},
        "big": 2**100 + 3,
        "empty": {},
        "empty_list": [],
        "scalar32": np.float32(1.25),
        "tensor": tl.tensor([[1.0, 2.0]]),
        "dtypes": {
            str(d): np.arange(6).reshape(2, 3).astype(d)
            for d in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")
        },
        "zero_d": np.array(3.5),
        "no_elements": np.zeros((0, 4), dtype=np.int64),
        "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
    }
    path = tmp_path / "ckpt.safetensors"
    tl.save(obj, path)
    got = tl.load(path)
    assert list(got) == list(obj)
    for key in ("step", "lr", "name", "flag", "nothing", "by_index", "big", "empty", "empty_list"):
        assert got[key] == obj[key] and type(got[key]) is type(obj[key]), key
    assert got["pair"] == (1, "two", None)
    assert got["special"][:3] == [math.inf, -math.inf, 1.5] and math.copysign(1, got["special"][3]) == -1
    assert isinstance(got["step"], int) and isinstance(got["lr"], float)
    assert isinstance(got["scalar32"], np.float32) and got["scalar32"] == np.float32(1.25)
    assert isinstance(got["tensor"], tl.Tensor) and got["tensor"].tolist() == [[1.0, 2.0]]  # as torch.load
    for name, array in obj["dtypes"].items():
        assert got["dtypes"][name].dtype == array.dtype
        np.testing.assert_array_equal(got["dtypes"][name], array)
    assert got["zero_d"].shape == () and got["zero_d"] == 3.5
    assert got["no_elements"].shape == (0, 4) and got["no_elements"].dtype == np.int64
    np.testing.assert_array_equal(got["strided"], obj["strided"])
    np.testing.assert_array_equal(got["model"]["layer.0.weight"], obj["model"]["layer.0.weight"])


def test_nan_round_trip(tmp_path):
    tl.save({"loss": float("nan")}, tmp_path / "c.safetensors")
    assert math.isnan(tl.load(tmp_path / "c.safetensors")["loss"])


def test_colliding_flat_keys_stay_apart(tmp_path):
    obj = {"a.b": np.ones(2), "a": {"b": np.zeros(3)}, "list": [np.array([1]), np.array([2])]}
    tl.save(obj, tmp_path / "c.safetensors")
    got = tl.load(tmp_path / "c.safetensors")
    assert got["a.b"].tolist() == [1.0, 1.0] and got["a"]["b"].tolist() == [0.0, 0.0, 0.0]
    assert [a.tolist() for a in got["list"]] == [[1], [2]]


def test_bare_array_and_list_round_trip(tmp_path):
    tl.save(np.arange(3), tmp_path / "a.safetensors")
    assert tl.load(tmp_path / "a.safetensors").tolist() == [0, 1, 2]
    tl.save([1, "x"], tmp_path / "b.safetensors")
    assert tl.load(tmp_path / "b.safetensors") == [1, "x"]


def test_unsaveable_objects_raise_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"cannot save function at 'fn'"):
        tl.save({"fn": lambda: 0}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"'bad'.*dtype object"):
        tl.save({"bad": np.array([object()])}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dict keys"):
        tl.save({(1, 2): 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="cannot save set"):
        tl.save({"s": {1, 2}}, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        ((model(tl.tensor(x)) - tl.tensor(y)) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize(
    "opt_cls, kw", [(optim.Adam, dict(lr=0.01, amsgrad=True)), (optim.SGD, dict(lr=0.1, momentum=0.9))]
)
def test_training_checkpoint_resumes_identically(tmp_path, opt_cls, kw):
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32))
               for _ in range(6)]
    model = _linear_sd(0)
    opt = opt_cls(model.parameters(), **kw)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2)
    _train(model, opt, batches[:3])
    sched.step()
    path = tmp_path / "ckpt.safetensors"
    tl.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "step": 3, "rng": generators.rng_state()}, path)
    expected_noise = tl.randn(3).numpy()
    _train(model, opt, batches[3:])

    ckpt = tl.load(path)
    assert ckpt["step"] == 3 and set(ckpt["optimizer"]["state"]) == {0, 1}
    resumed = _linear_sd(1)
    resumed_opt = opt_cls(resumed.parameters(), **kw)
    resumed_sched = optim.lr_scheduler.StepLR(resumed_opt, step_size=2)
    resumed.load_state_dict(ckpt["model"])
    resumed_opt.load_state_dict(ckpt["optimizer"])
    resumed_sched.load_state_dict(ckpt["scheduler"])
    generators.set_rng_state(ckpt["rng"])
    np.testing.assert_array_equal(tl.randn(3).numpy(), expected_noise)
    assert resumed_sched.last_epoch == 1 and resumed_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    _train(resumed, resumed_opt, batches[3:])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)


def test_save_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"v": 1}, path)
    tl.save({"v": 2}, path)
    assert tl.load(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_crash_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"weight": np.arange(4.0), "step": 1}, path)
    old_bytes = path.read_bytes()
    written = []
    real_write = os.write

    def half_write_then_crash(fd, data):
        written.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError("disk full")

    monkeypatch.setattr(serialization.atomic.os, "write", half_write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        tl.save({"weight": np.arange(100.0), "step": 2}, path)
    monkeypatch.undo()
    assert written
    if isinstance(written[0], str):
        assert os.path.dirname(written[0]) == str(tmp_path)  # the temp file was in the same directory
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert tl.load(path)["step"] == 1


def test_crash_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"step": 1}, path)
    old_bytes = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(serialization.atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        tl.save({"step": 2}, path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_missing_file_raises_file_not_found(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        tl.load(path)


def _foreign_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "random.bin": rng.bytes(4096),
        "empty.bin": b"",
        "text.txt": b"hello, this is a plain text file\n" * 20,
        "tiny.bin": b"\x01\x02\x03",
        "pickle.pkl": pickle.dumps({"weight": [1.0, 2.0]}),
        "json.json": json.dumps({"weight": [1, 2]}).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / "arrays.npz", weight=np.ones(3))
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as z:
        z.writestr("data.txt", "x" * 100)
    return sorted(list(files) + ["arrays.npz", "archive.zip"])


def test_foreign_files_raise_clear_value_error(tmp_path):
    for name in _foreign_files(tmp_path):
        with pytest.raises(ValueError, match=rf"{name}.* is not a tinygrad_lm checkpoint \(a safetensors file\)"):
            tl.load(tmp_path / name)


def test_truncated_checkpoint_raises_clear_value_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"model": _linear_sd().state_dict(), "step": 5}, path)
    data = path.read_bytes()
    for cut in (1, 8, 20, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut.safetensors.* is not a tinygrad_lm checkpoint"):
            tl.load(tmp_path / "cut.safetensors")


def test_corrupted_bytes_and_metadata_raise_clear_value_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"w": np.ones(3), "step": 5}, path)
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe\x00{"
    (tmp_path / "bad_header.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad_header.safetensors.* is not a tinygrad_lm checkpoint"):
        tl.load(tmp_path / "bad_header.safetensors")

    arrays = {"w": np.ones(3)}
    cases = {
        "not_json": "{not json",
        "no_tree": json.dumps({"version": "1"}),
        "missing_tensor": json.dumps({"version": "1", "tree": {"array": "nope"}}),
        "unknown_node": json.dumps({"version": "1", "tree": {"what": 1}}),
    }
    for name, meta in cases.items():
        safetensors.numpy.save_file(arrays, tmp_path / f"{name}.safetensors", metadata={"tinygrad_lm": meta})
        with pytest.raises(ValueError, match=f"{name}.safetensors.* corrupted tinygrad_lm checkpoint"):
            tl.load(tmp_path / f"{name}.safetensors")
    safetensors.numpy.save_file(arrays, tmp_path / "future.safetensors",
                                metadata={"tinygrad_lm": json.dumps({"version": "99", "tree": None})})
    with pytest.raises(ValueError, match="format version '99'"):
        tl.load(tmp_path / "future.safetensors")


def test_flat_state_dict_is_readable_by_safetensors_numpy(tmp_path):
    model = _linear_sd()
    tl.save(model.state_dict(), tmp_path / "m.safetensors")
    loaded = safetensors.numpy.load_file(tmp_path / "m.safetensors")
    assert set(loaded) == {"weight", "bias"}
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == np.float32


def test_plain_safetensors_file_loads_as_flat_dict(tmp_path):
    arrays = {"encoder.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([1, 2], np.int32)}
    safetensors.numpy.save_file(arrays, tmp_path / "plain.safetensors")
    got = tl.load(tmp_path / "plain.safetensors")
    assert set(got) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype


def test_flat_state_dict_is_readable_by_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = _linear_sd()
    tl.save(model.state_dict(), tmp_path / "m.safetensors")
    loaded = safetensors_torch.load_file(str(tmp_path / "m.safetensors"))
    reference = torch.nn.Linear(4, 3)
    reference.load_state_dict(loaded)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(reference(torch.tensor(x)).detach().numpy(), model(tl.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    safetensors_torch.save_file({k: v.detach() for k, v in reference.state_dict().items()},
                                str(tmp_path / "torch.safetensors"))
    back = tl.load(tmp_path / "torch.safetensors")
    np.testing.assert_array_equal(back["weight"], model.state_dict()["weight"])


def test_map_location(tmp_path, device):
    tl.save({"w": np.arange(3.0), "n": 1}, tmp_path / "c.safetensors")
    got = tl.load(tmp_path / "c.safetensors", map_location=device)
    assert backend.device_of(got["w"]) == backend.canonical_device(device) and got["n"] == 1
    assert backend.to_host(got["w"]).tolist() == [0.0, 1.0, 2.0]


def test_save_from_device_tensors(tmp_path, device):
    t = tl.tensor([[1.0, 2.0]], device=device)
    tl.save({"t": t, "raw": t.array}, tmp_path / "c.safetensors")
    got = tl.load(tmp_path / "c.safetensors")  # back on the device they were saved from, as torch.load
    assert isinstance(got["t"], tl.Tensor) and got["t"].dtype == tl.float32 and got["t"].device == t.device
    assert backend.is_backend_array(got["raw"]) and backend.device_of(got["raw"]) == t.device
    assert got["t"].array is got["raw"]  # one array saved once, shared again after loading
    assert got["t"].tolist() == got["raw"].tolist() == [[1.0, 2.0]]
    on_host = tl.load(tmp_path / "c.safetensors", map_location="cpu")
    assert on_host["t"].device == "cpu" and isinstance(on_host["raw"], np.ndarray)
