"""Shared test configuration: Hypothesis profiles and the backend fixture.

Profiles: ``dev`` (quick, the default on a workstation) and ``ci`` (thorough,
chosen when ``CI`` is set, as on the CI machine, or explicitly with
``HYPOTHESIS_PROFILE=ci``).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import tinygrad_lm as tl

# The device fixture only names a backend, so sharing it across Hypothesis examples is safe.
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "dev", max_examples=15, deadline=None, suppress_health_check=_SUPPRESSED, derandomize=False
)
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=_SUPPRESSED, print_blob=True
)
_default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Every test that takes ``device`` runs once per backend; CUDA skips cleanly without a GPU."""
    if request.param == "cuda" and not tl.cuda_is_available():
        pytest.skip("CUDA is not available (no CuPy or no GPU)")
    return request.param


@pytest.fixture(autouse=True)
def _reset_global_state():
    """Each test starts in grad mode with the default dtype/device and a fixed seed, and leaves the
    fast path's switch (tinygrad_lm.fast) as it found it."""
    tl.manual_seed(1234)
    fast_on = tl.fast.is_enabled()
    yield
    tl.set_default_dtype("float32")
    tl.set_default_device("cpu")
    tl.fast.set_enabled(fast_on)


@pytest.fixture
def reference_path():
    """The fast path off (tinygrad_lm.fast), so that a test exercises the reference ops."""
    tl.fast.set_enabled(False)


@pytest.fixture
def threads_restored():
    """Yields ``tl.set_num_threads``, and restores the library's thread setting after the test."""
    from tinygrad_lm import threads

    saved_count, saved_setting = threads.get_num_threads(), threads._num_threads
    yield tl.set_num_threads
    tl.set_num_threads(saved_count)
    threads._num_threads = saved_setting


@pytest.fixture
def blas_pool_threads(threads_restored):
    """For tests of the work that runs on OpenBLAS's threads (tinygrad_lm/fast/workers.py): as
    ``threads_restored``, but skips without Numba or NumPy's OpenBLAS with its pool."""
    from tinygrad_lm.fast import compiler, workers

    if not compiler.numba_available() or workers.numpy_blas() is None:
        pytest.skip("needs Numba and NumPy's OpenBLAS with gotoblas_pthread")
    return threads_restored
