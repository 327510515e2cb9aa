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


def test_an_unwritable_cache_directory_is_no_error(tmp_path):
    """A cache directory that cannot be made (a file is in the way) is no error: the kernels still compile."""
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the cache directory would go")
    code = CODE.replace("print(", "print('ok', ")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYGRAD_LM_CACHE_DIR": str(blocked), "TINYGRAD_LM_FAST": "on"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_no_cache_location_at_all_compiles_in_memory(monkeypatch):
    """Where Numba finds nowhere to cache ("cannot cache function"), the kernel compiles without a cache."""
    import numpy as np

    from tinygrad_lm.fast import compiler, fused_nn

    compiler.numba_available()
    calls = []

    class RefusingCache:
        def njit(self, fn, cache=False, **options):
            calls.append(cache)
            if cache:
                raise RuntimeError("cannot cache function: no locator available")
            return fn

    monkeypatch.setattr(compiler, "_numba", RefusingCache())
    monkeypatch.setattr(compiler, "_compiled", {})
    assert compiler.compiled(fused_nn._gelu_jit_exact, np.zeros(3)) is fused_nn._gelu_jit_exact
    assert calls == [True, False]


# Compiles (or loads) the callback that runs GELU in pieces on OpenBLAS's threads, and prints its cache hits.
CALLBACK = """
from tinygrad_lm.fast import compiler, fused_nn
compiler.callback(fused_nn._gelu_part)
print(compiler._callback_objects[-1].cache_hits)
"""


def test_second_process_loads_the_callbacks_from_disk(tmp_path):
    """The callbacks that run on OpenBLAS's threads (compiler.callback) are cached like the kernels."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYGRAD_LM_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", CALLBACK], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert [r.stdout.strip() for r in runs] == ["0", "1"]


def test_a_callback_with_no_cache_location_compiles_in_memory(monkeypatch):
    """As for the kernels: where Numba finds nowhere to cache a callback, it compiles without a cache."""
    import numba

    from tinygrad_lm.fast import compiler, fused_nn

    compiler.numba_available()
    calls = []
    real = numba.cfunc

    def refusing(signature, cache=False, **options):
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return real(signature, **options)

    monkeypatch.setattr(numba, "cfunc", refusing)
    monkeypatch.setattr(compiler, "_callbacks", {})
    assert compiler.callback(fused_nn._gelu_part)
    assert calls == [True, False]
