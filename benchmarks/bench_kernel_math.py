"""exp and tanh inside compiled kernels: the hand-written ones of tinygrad_lm.fast.compiler against libm.

Numba compiles ``math.exp``/``math.tanh`` in a loop to calls into libm, one element at a
time, unless llvmlite was built with Intel's SVML patch and the SVML runtime
(``pip install intel-cmplr-lib-rt``) is installed, in which case the loop vectorises with
SVML's functions. ``compiler.exp``/``compiler.tanh`` are written in arithmetic that LLVM
vectorises on its own. This script times one pass over 32768 elements with each, float32
and float64, and says whether SVML was in use:

    python benchmarks/bench_kernel_math.py [--repeats 41]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tinygrad_lm.fast import compiler  # noqa: E402


def tanh_hand(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        out[i] = compiler.tanh(x[i])


def tanh_libm(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        out[i] = math.tanh(x[i])


def exp_hand(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        out[i] = compiler.exp(x[i])


def exp_libm(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        out[i] = math.exp(x[i])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=41, help="timed rounds (each 20 calls of every variant)")
    p.add_argument("--size", type=int, default=32 * 1024, help="elements per call")
    args = p.parse_args()
    if not compiler.numba_available():
        sys.exit("Numba is not installed")
    numba = compiler.numba_module()
    import llvmlite.binding

    print(f"numba {numba.__version__}, llvmlite {llvmlite.__version__} (LLVM {llvmlite.binding.llvm_version_info}), "
          f"llvmlite built with SVML: {llvmlite.binding.has_svml}, Numba using SVML: {numba.config.USING_SVML}")
    options = {"nogil": True, "fastmath": compiler._FASTMATH, "error_model": "numpy"}  # as compiler.compiled
    kernels = {f.__name__: numba.njit(f, **options) for f in (tanh_hand, tanh_libm, exp_hand, exp_libm)}
    for dtype in (np.float32, np.float64):
        x = (np.random.default_rng(0).standard_normal(args.size) * 3).astype(dtype)
        out = np.empty_like(x)
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for fn in kernels.values():
            fn(x, out)  # compile
        for _ in range(args.repeats):
            for name, fn in kernels.items():  # interleaved, so machine noise hits all alike
                start = time.perf_counter()
                for _ in range(20):
                    fn(x, out)
                times[name].append((time.perf_counter() - start) / 20)
        med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
        cells = ", ".join(f"{name} {us:.1f} us" for name, us in med.items())
        print(f"{dtype.__name__}: {cells}; libm / hand-written: tanh {med['tanh_libm'] / med['tanh_hand']:.1f}x, "
              f"exp {med['exp_libm'] / med['exp_hand']:.1f}x")


if __name__ == "__main__":
    main()
