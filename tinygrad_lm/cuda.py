"""``tl.cuda``: PyTorch's ``torch.cuda`` helpers, over CuPy (all harmless where no GPU is present)."""
from __future__ import annotations

from typing import Any

from . import backend, generators


def is_available() -> bool:
    """True when CuPy imports and a CUDA GPU is visible."""
    return backend.cuda_is_available()


def device_count() -> int:
    if not backend.cuda_is_available():
        return 0
    return int(backend.cupy_module().cuda.runtime.getDeviceCount())


def current_device() -> int:
    """The index of the current GPU (RuntimeError without one, as PyTorch)."""
    return int(backend.cupy_module().cuda.runtime.getDevice())


def set_device(device: Any) -> None:
    index = backend.Device(device).index if not isinstance(device, int) else device
    backend.cupy_module().cuda.runtime.setDevice(index or 0)


def synchronize(device: Any = None) -> None:
    """Wait for the GPU's queued work to finish (nothing to wait for without a GPU)."""
    if backend.cuda_is_available():
        backend.cupy_module().cuda.runtime.deviceSynchronize()


def manual_seed(seed: int) -> None:
    """Seed the generator of the current GPU (nothing to seed without one, as PyTorch)."""
    if backend.cuda_is_available():
        generators.seed_generator(f"cuda:{current_device()}", seed)


def manual_seed_all(seed: int) -> None:
    """Seed the generators of every GPU."""
    for i in range(device_count()):
        generators.seed_generator(f"cuda:{i}", seed)


def empty_cache() -> None:
    """Return the cached, unused GPU memory of CuPy's pools to the driver."""
    if backend.cuda_is_available():
        cupy = backend.cupy_module()
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def memory_allocated(device: Any = None) -> int:
    if not backend.cuda_is_available():
        return 0
    return int(backend.cupy_module().get_default_memory_pool().used_bytes())


__all__ = ["current_device", "device_count", "empty_cache", "is_available", "manual_seed", "manual_seed_all",
           "memory_allocated", "set_device", "synchronize"]
