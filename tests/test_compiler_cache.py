"""The compiled kernels' disk cache: a second process loads what the first compiled."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")
ROOT = Path(__file__).resolve().parents[1]

# Runs one fast-path GELU (a compiled kernel) and prints how many kernels compiled, and how many came from the cache.
CODE = """
import numpy as np
import tinygrad_lm as tl
from tinygrad_lm.fast import compiler
x = tl.tensor(np.linspace(-3, 3, 64), requires_grad=True)
tl.nn.functional.gelu(x).sum().backward()
stats = [fn.stats for fn in compiler._compiled.values()]
print(sum(len(s.cache_misses) for s in stats), sum(len(s.cache_hits) for s in stats), compiler.cache_dir())
"""


def _run(cache: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYGRAD_LM_CACHE_DIR": str(cache), "TINYGRAD_LM_FAST": "on"}
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_second_process_loads_the_kernels_from_disk(tmp_path):
    misses, hits, where = _run(tmp_path)
    assert int(misses) >= 1 and int(hits) == 0  # the first process compiles
    assert where == str(tmp_path / "numba")
    assert any(p.suffix == ".nbi" for p in (tmp_path / "numba").rglob("*"))
    misses, hits, _ = _run(tmp_path)
    assert int(misses) == 0 and int(hits) >= 1  # the second one only loads


def test_cache_dir_follows_xdg_without_override(monkeypatch, tmp_path):
    from tinygrad_lm.fast import compiler

    monkeypatch.delenv("TINYGRAD_LM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiler.cache_dir() == str(tmp_path / "tinygrad_lm" / "numba")
