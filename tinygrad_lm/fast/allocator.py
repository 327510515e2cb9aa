"""Keeping freed arrays in the process's heap, so that each training step reuses the last one's memory.

Applied once, when ``tinygrad_lm`` is imported; ``TINYGRAD_LM_MALLOC=system`` (set before the
import) keeps the C library's defaults. :data:`MALLOC_TUNED` says whether the setting was made.
"""
from __future__ import annotations

import ctypes
import sys

from ..backend import env_choice

_MALLOC_MMAP_THRESHOLD, _MALLOC_TRIM_THRESHOLD = -3, -1  # mallopt parameter numbers in glibc's malloc.h
_MALLOC_CHOICES = ("auto", "system")


def _keep_freed_arrays_in_the_heap() -> bool:
    """On glibc, let freed large arrays go back to the process heap instead of to the OS.

    glibc serves allocations above its mmap threshold (adjusted at run time, at most 32 MiB)
    with fresh pages from the OS and unmaps them on free. A training step allocates the same
    large activations every step, so each step then pays one page fault per 4 KiB page of
    them: measured here, 14,000 faults and about 25 ms of a 190 ms Transformer step, and 0.2 s
    of a 1.6 s two-layer LSTM step. Raising the mmap threshold to 256 MiB and the trim
    threshold to 1 GiB makes freed memory available to the next step's arrays; the resident
    size then stays at its high-water mark, as it does under PyTorch's caching allocators.
    ``TINYGRAD_LM_MALLOC=system`` (set before the import) keeps glibc's defaults. Returns
    whether the thresholds were set.
    """
    if env_choice("TINYGRAD_LM_MALLOC", _MALLOC_CHOICES, "auto") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and other C libraries have their own allocators
            return False
        return bool(libc.mallopt(_MALLOC_MMAP_THRESHOLD, 256 << 20)) and bool(
            libc.mallopt(_MALLOC_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


MALLOC_TUNED = _keep_freed_arrays_in_the_heap()
