"""How many threads the library computes with: ``set_num_threads`` / ``get_num_threads``, as in PyTorch.

The one thread pool the library uses is that of the BLAS NumPy loaded (OpenBLAS in NumPy's
wheels): the matrix products run on it, and so does the library's own work that is split between
threads (batches of products such as attention's, the compiled GELU, LayerNorm and softmax kernels
in pieces, a large LSTM layer's time loop as one part per thread: ``tinygrad_lm/fast/workers.py``).
The library starts no threads of its own, and its compiled kernels use no pool of Numba's (which,
once started, would also reset the OpenMP thread count of a PyTorch in the same process:
numba/numba#9387). ``set_num_threads(n)`` sets the BLAS's threads through threadpoolctl, which
finds the library NumPy actually loaded (and any other BLAS in the process, such as SciPy's).
Until it is called, the BLAS uses every core, as PyTorch does.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

_num_threads: int | None = None  # the last set_num_threads, None before
_blas_limit: Any = None  # threadpoolctl's handle of the current BLAS limit


def _cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Compute with ``n`` threads (the BLAS products)."""
    global _num_threads, _blas_limit
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: the number of threads must be at least 1, got {n}")
    import numpy  # noqa: F401 - loads the BLAS, so that threadpoolctl finds it

    # Numba, on its first compile, imports scipy.linalg.cython_blas (its check for a BLAS), and with it
    # SciPy's own OpenBLAS. The library never calls that one, but its pool would keep its old count:
    # load it now, so that the limit below covers it too (the first compiled kernel would load it anyway).
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    # Not while work runs on OpenBLAS's threads (fast/workers.py holds it at one thread then: a piece that
    # got a multithreaded product would wait for ever for a free worker). Its lock exists once it is in use.
    workers = sys.modules.get("tinygrad_lm.fast.workers")
    lock: Any = getattr(getattr(workers, "_blas", None), "lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        _blas_limit = threadpool_limits(limits=n, user_api="blas")
        _num_threads = n


def get_num_threads() -> int:
    """The number of threads set by :func:`set_num_threads`, else the number of cores."""
    return _cores() if _num_threads is None else _num_threads


__all__ = ["get_num_threads", "set_num_threads"]
