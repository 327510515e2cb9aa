"""backend.erf against SciPy, float32 GELU against float64, and the allocator setting."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import erf as exact_erf

import tinygrad_lm as tl
from tinygrad_lm import backend


def test_large_float32_gelu_matches_float64():
    x64 = np.random.default_rng(0).standard_normal((64, 256)) * 3
    y32 = tl.tensor(x64.astype(np.float32)).gelu().numpy()
    expected = x64 * 0.5 * (1 + exact_erf(x64 / np.sqrt(2)))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=0, atol=3e-6)


def test_float64_erf_is_exact():
    x = np.linspace(-5, 5, 10_001)
    np.testing.assert_array_equal(backend.erf(x), exact_erf(x))


_FAULTS_SCRIPT = """
import resource
import numpy as np
from tinygrad_lm.fast import allocator
def step():
    a = np.empty(64 << 20, dtype=np.uint8)  # 64 MiB: above the 32 MiB cap of glibc's adjustable mmap threshold
    a.fill(1)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(allocator.MALLOC_TUNED, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setting: str) -> tuple[str, int]:
    env = {**os.environ, "TINYGRAD_LM_MALLOC": setting}
    result = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    tuned, faults = result.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator setting is for glibc on Linux")
def test_freed_large_arrays_are_reused_without_page_faults() -> None:
    """With the glibc thresholds raised, a repeated 64 MiB allocation stops faulting in fresh pages."""
    if not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"):
        pytest.skip("not glibc")
    tuned, faults_tuned = _faults("")
    default, faults_default = _faults("system")
    assert (tuned, default) == ("True", "False")
    # glibc's default maps and unmaps every 64 MiB array: at least one fault per 2 MiB huge page each time
    assert faults_default >= 4 * 32
    assert faults_tuned * 20 < faults_default
