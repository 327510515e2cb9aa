"""Nothing silently wrong: checksums, non-finite weights, file modes, SIGKILL mid-save, stale temp files, full disks."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import tinygrad_lm as tl
from tinygrad_lm import nn, serialization
from tinygrad_lm.serialization import atomic

ROOT = Path(__file__).resolve().parents[1]
TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{8}-[0-9]+-[0-9a-f]{16}")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and signals")


def _data_section(data: bytes) -> tuple[dict, int]:
    """The safetensors header (tensor name -> dtype, shape, offsets) and where the tensor bytes start."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), 8 + size


def test_flipped_exponent_bit_is_detected(tmp_path):
    model = nn.Linear(4, 3)
    path = tmp_path / "ckpt.safetensors"
    tl.save({"model": model.state_dict(), "step": 5}, path)
    data = bytearray(path.read_bytes())
    header, start = _data_section(bytes(data))
    begin, _ = header["model.weight"]["data_offsets"]
    element = 5
    byte = start + begin + 4 * element + 2  # float32, little-endian: bit 7 of byte 2 is the exponent's lowest bit
    data[byte] ^= 0x80
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))

    weight = model.state_dict()["weight"].reshape(-1)[element]
    silently = safetensors.numpy.load_file(bad)["model.weight"].reshape(-1)[element]
    assert np.isfinite(silently) and silently in (weight * 2, weight / 2)  # a plain loader takes it, wrong
    with pytest.raises(ValueError, match=r"flipped.safetensors' is corrupted: the bytes of tensor 'model.weight' "
                                         r"do not match their sha256 checksum"):
        tl.load(bad)


def test_edited_metadata_and_swapped_dtype_are_detected(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tl.save({"w": np.arange(4, dtype=np.float32), "step": 5}, path, metadata={"config": "sha256:00"})
    arrays = safetensors.numpy.load_file(path)
    with safetensors.safe_open(path, framework="numpy") as f:
        metadata = f.metadata()
    edited = {**metadata, "tinygrad_lm": metadata["tinygrad_lm"].replace('["step", 5]', '["step", 6]')}
    assert edited != metadata
    safetensors.numpy.save_file(arrays, tmp_path / "edited.safetensors", metadata=edited)
    safetensors.numpy.save_file(arrays, tmp_path / "meta.safetensors", metadata={**metadata, "config": "sha256:01"})
    for name in ("edited.safetensors", "meta.safetensors"):
        with pytest.raises(ValueError, match=rf"{name}' is corrupted: its metadata does not match its sha256"):
            tl.load(tmp_path / name)
    with pytest.raises(ValueError, match="meta.safetensors' is corrupted: its metadata does not match"):
        serialization.load_metadata(tmp_path / "meta.safetensors")

    data = path.read_bytes()
    assert data.count(b'"F32"') == 1
    (tmp_path / "dtype.safetensors").write_bytes(data.replace(b'"F32"', b'"I32"'))
    with pytest.raises(ValueError, match=r"dtype.safetensors' is corrupted: tensor 'w' is int32 \[4\], its metadata "
                                         r"says float32 \[4\]"):
        tl.load(tmp_path / "dtype.safetensors")

    arrays["stowaway"] = np.zeros(2)
    safetensors.numpy.save_file(arrays, tmp_path / "extra.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match="extra.safetensors' is corrupted: it holds a tensor 'stowaway'"):
        tl.load(tmp_path / "extra.safetensors")


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    sd = nn.Linear(2, 2).state_dict()
    sd["weight"][1, 0] = np.nan
    sd["bias"][0] = np.inf
    path = tmp_path / "nan.safetensors"
    tl.save({"model": sd, "optimizer": {"state": {0: {"exp_avg": tl.zeros(2)}}}}, path)
    with pytest.raises(ValueError, match=r"nan.safetensors': tensor 'model.weight' holds 1 non-finite value\(s\) "
                                         r"\(NaN or inf\); pass allow_nonfinite=True"):
        tl.load(path)
    got = tl.load(path, allow_nonfinite=True)
    assert np.isnan(got["model"]["weight"][1, 0]) and got["model"]["bias"][0] == np.inf

    tl.save({"exp_avg_sq": tl.tensor([1.0, float("-inf")])}, path)  # every floating tensor is checked
    with pytest.raises(ValueError, match="tensor 'exp_avg_sq' holds 1 non-finite"):
        tl.load(path)
    assert tl.load(path, allow_nonfinite=True)["exp_avg_sq"].tolist() == [1.0, float("-inf")]

    safetensors.numpy.save_file({"w": np.array([np.nan], np.float16)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="plain.safetensors': tensor 'w' holds 1 non-finite"):
        tl.load(tmp_path / "plain.safetensors")


def test_nonfinite_numbers_that_are_not_weights_load(tmp_path):
    obj = {"best_loss": float("inf"), "last": float("nan"), "best32": np.float32(np.inf),
           "param_groups": [{"max_norm": float("inf")}], "ids": np.array([1, 2]), "w": tl.tensor([0.5])}
    path = tmp_path / "ok.safetensors"
    tl.save(obj, path)
    got = tl.load(path)
    assert got["best_loss"] == float("inf") and np.isnan(got["last"]) and got["best32"] == np.float32(np.inf)
    assert got["param_groups"][0]["max_norm"] == float("inf") and got["w"].tolist() == [0.5]


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_new_files_respect_the_umask_and_overwrites_keep_the_mode(tmp_path):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        path = tmp_path / f"new-{mode:o}.safetensors"
        with _umask(mask):
            tl.save({"step": 1}, path)
            serialization.atomic_write_text(tmp_path / f"config-{mode:o}.json", "{}")
        assert path.stat().st_mode & 0o777 == mode
        assert (tmp_path / f"config-{mode:o}.json").stat().st_mode & 0o777 == mode

    kept = tmp_path / "kept.safetensors"
    for old_mode in (0o644, 0o640, 0o600):
        kept.write_bytes(b"old")
        kept.chmod(old_mode)
        with _umask(0o077 if old_mode == 0o644 else 0o022):
            tl.save({"step": 2}, kept)
        assert kept.stat().st_mode & 0o777 == old_mode and tl.load(kept) == {"step": 2}


def test_symlinked_checkpoint_is_written_through_the_link(tmp_path):
    real = tmp_path / "step-100.safetensors"
    tl.save({"step": 100}, real)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(real.name)
    tl.save({"step": 101}, link)
    assert link.is_symlink() and tl.load(real) == {"step": 101}


def test_longest_file_name_still_gets_a_temp_file(tmp_path):
    path = tmp_path / ("x" * 240 + ".safetensors")  # 252 bytes: the temp name must not grow past 255
    tl.save({"step": 1}, path)
    assert tl.load(path) == {"step": 1} and [p.name for p in tmp_path.iterdir()] == [path.name]


SAVE_LOOP = textwrap.dedent("""
    import sys
    import numpy as np
    import tinygrad_lm as tl

    path, step = sys.argv[1], 0
    while True:
        step += 1
        tl.save({"w": np.full(1_000_000, step, np.float32), "b": tl.full((1000,), float(step)), "step": step}, path)
        if step == 1:
            print("saved", flush=True)
""")


def _start(script: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_save_leaves_only_valid_files(tmp_path):
    """Ten processes save to one path in a loop; each is SIGKILLed at a random moment of everyone's saves."""
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP)
    out = tmp_path / "run"
    out.mkdir()
    path = out / "ckpt.safetensors"
    rng = random.Random(0)
    writers = [_start(script, str(path)) for _ in range(10)]
    try:
        for proc in writers:
            assert proc.stdout.readline() == "saved\n"
        steps = []
        for proc in writers:
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            ckpt = tl.load(path)  # whichever save finished last, whole and verified
            assert (ckpt["w"] == ckpt["step"]).all() and ckpt["b"].tolist() == [float(ckpt["step"])] * 1000
            steps.append(ckpt["step"])
            others = [p.name for p in out.iterdir() if p != path]
            assert all(TEMP_NAME.fullmatch(n) for n in others), others  # temp files of ours, nothing else
    finally:
        for proc in writers:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    tl.save({"step": 0}, out / "other.safetensors")  # the next save into the folder removes what kills left
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.safetensors", "other.safetensors"], steps


BLOCKED_WRITER = textwrap.dedent("""
    import os, sys, time
    from tinygrad_lm import serialization

    def stuck(fd):
        print("writing", flush=True)
        time.sleep(60)

    os.fsync = stuck
    serialization.atomic_write_bytes(sys.argv[1], b"x" * 1000)
""")


def test_only_our_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_WRITER)
    out = tmp_path / "run"
    out.mkdir()
    writer = _start(script, str(out / "config.json"))
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    writer.stdout.close()
    (stale,) = [p for p in out.iterdir()]
    assert TEMP_NAME.fullmatch(stale.name) and f"-{writer.pid}-" in stale.name and stale.read_bytes() == b"x" * 1000

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [
            f".config.json.tmp-{atomic._HOST}-{live.pid}-{secrets.token_hex(8)}",  # a writer still at work
            f".config.json.tmp-{'0' if atomic._HOST != '0' * 8 else '1'}{atomic._HOST[1:]}-{writer.pid}-"
            f"{secrets.token_hex(8)}",  # written on another host that shares the folder
            ".config.json.3kq9x2.tmp",  # someone else's naming
            f".config.json.tmp-{atomic._HOST}-{writer.pid}",  # almost ours
            "notes.txt",
        ]
        for name in keep:
            (out / name).write_text("keep me")
        (out / f".d.tmp-{atomic._HOST}-{writer.pid}-{secrets.token_hex(8)}").mkdir()  # a folder, not our file
        tl.save({"step": 1}, out / "ckpt.safetensors")
        left = {p.name for p in out.iterdir()}
        assert stale.name not in left
        assert set(keep) | {"ckpt.safetensors"} <= left and len(left) == len(keep) + 2
        assert serialization.remove_stale_temp_files(out) == []
    finally:
        live.kill()
        live.wait()


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_keeps_the_old_checkpoint(small_filesystem):
    path = small_filesystem / "ckpt.safetensors"
    tl.save({"w": np.ones(1000, np.float32), "step": 1}, path)
    old = path.read_bytes()
    with pytest.raises(OSError) as info:
        tl.save({"w": np.ones(100_000, np.float32), "step": 2}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == old and tl.load(path)["step"] == 1
    assert [p.name for p in small_filesystem.iterdir()] == ["ckpt.safetensors"]
