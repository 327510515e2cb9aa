"""tl.set_num_threads / tl.get_num_threads: one setting for every BLAS in the process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinygrad_lm as tl
from tinygrad_lm import threads

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_default_is_the_cores_of_the_process():
    out = _run("import os, tinygrad_lm as tl; print(tl.get_num_threads(), len(os.sched_getaffinity(0)))")
    got, cores = out.split()
    assert got == cores


def test_set_num_threads_limits_the_blas_numpy_loaded():
    code = ("import tinygrad_lm as tl, threadpoolctl\n"
            "tl.set_num_threads(1)\n"
            "print(tl.get_num_threads(), sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() "
            "if i['user_api'] == 'blas'}))")
    assert _run(code) == "1 [1]"


def test_set_num_threads_limits_a_blas_that_the_kernels_bring_in_later():
    """Numba imports SciPy, which loads a BLAS of its own; a kernel that runs after set_num_threads must not
    leave that one at its old count."""
    code = ("import tinygrad_lm as tl, threadpoolctl\n"
            "tl.set_num_threads(1)\n"
            "x = tl.randn(8, 8, requires_grad=True)\n"
            "x.tanh().sum().backward()  # a compiled kernel: Numba is loaded by now\n"
            "print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")
    assert _run(code) == "[1]"


def test_set_num_threads_leaves_a_pytorch_in_the_process_alone():
    pytest.importorskip("torch")
    code = ("import torch, tinygrad_lm as tl\n"
            "torch.set_num_threads(1)\n"
            "tl.set_num_threads(1)\n"
            "x = tl.randn(64, 64, requires_grad=True)\n"
            "tl.nn.functional.gelu(x @ x).sum().backward()  # a compiled kernel and a product\n"
            "print(torch.get_num_threads())")
    assert _run(code) == "1"


@pytest.mark.parametrize("bad", [0, -2])
def test_set_num_threads_rejects_counts_below_one(bad):
    with pytest.raises(ValueError, match="at least 1"):
        tl.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", True, None])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="set_num_threads"):
        tl.set_num_threads(bad)


def test_get_num_threads_returns_what_was_set(monkeypatch):
    monkeypatch.setattr(threads, "_num_threads", None)
    before = threads._blas_limit
    try:
        tl.set_num_threads(2)
        assert tl.get_num_threads() == 2
    finally:
        if threads._blas_limit is not None:
            threads._blas_limit.restore_original_limits()
        threads._blas_limit = before


def test_the_command_line_shares_the_cores_among_the_ranks_of_this_machine(monkeypatch):
    from tinygrad_lm import cli

    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPIR_CVAR_CH4_NUM_LOCAL_RANKS", "PMI_SIZE",
                 "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_num_threads", 4)
    assert cli._threads_per_rank() == 0  # not under a launcher: the library's default
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert cli._threads_per_rank() == 2
    monkeypatch.setenv("MPI_LOCALNRANKS", "8")
    assert cli._threads_per_rank() == 1
