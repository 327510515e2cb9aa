"""Atomic file writes: the target holds the old file or the whole new one, never half, and no temp is left."""
from __future__ import annotations

import os

import pytest

from tinygrad_lm.files import atomic_path, atomic_write_text


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_a_failure_inside_the_block_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "metrics.jsonl"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_new_files_get_ordinary_permissions_and_old_files_keep_theirs(tmp_path):
    fresh = tmp_path / "fresh.txt"
    atomic_write_text(fresh, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o640)
    atomic_write_text(kept, "y")
    assert kept.stat().st_mode & 0o777 == 0o640
