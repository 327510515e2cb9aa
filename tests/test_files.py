"""Atomic writes of small files (configs, tokenizers, metrics, plots): the whole new file or the old one."""
from __future__ import annotations

import os

from tinygrad_lm.serialization import atomic_write_text
from tinygrad_lm.viz import plot_curves


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "sub" / "config.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


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


def test_a_plot_is_written_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "loss.png"
    plot_curves({"train": ([1, 2, 3], [3.0, 2.0, 1.5])}, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
