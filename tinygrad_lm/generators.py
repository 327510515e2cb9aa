"""The default random generator of each device, its seed, and its state for checkpoints.

Each device has one default generator, made on first use: NumPy's PCG64 on the CPU, CuPy's
cuRAND XORWOW on a GPU. It starts from the seed :func:`manual_seed` set for every device, or
from the operating system's entropy until then. ``tinygrad_lm/random.py`` builds PyTorch's
``Generator``, ``manual_seed``, ``fork_rng`` and the sampling functions on these.
"""
from __future__ import annotations

import os
from typing import Any

import numpy

from .backend import device_of, get_xp, to_device, to_host

_seed: int | None = None  # manual_seed's seed, for every device; None: each device seeds from the OS
_device_seeds: dict[str, int] = {}  # the seed each device's default generator started from
_generators: dict[str, Any] = {}


def new_generator(device: str, seed: int) -> Any:
    """A generator for ``device`` started from ``seed``: NumPy's PCG64 on the CPU, CuPy's cuRAND XORWOW on a GPU."""
    if device == "cpu":
        return numpy.random.default_rng(seed)
    cupy = get_xp(device)
    with cupy.cuda.Device(int(device.split(":")[1])):  # its state lives in the memory of the device it serves
        return cupy.random.default_rng(seed)


def generator(device: str) -> Any:
    """The default random generator for ``device`` (re-created from the seed by ``manual_seed``)."""
    gen = _generators.get(device)
    if gen is None:
        gen = _generators[device] = new_generator(device, initial_seed(device))
    return gen


def check_seed(seed: Any) -> int:
    """A seed as PyTorch takes it: ``int(seed)`` in [-2**63, 2**64), a negative one read as its uint64 value."""
    value = int(seed)
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"seed {value} is out of range: expected an integer in [-2**63, 2**64)")
    return value % (1 << 64)


def fresh_seed() -> int:
    """A 64-bit seed from the operating system's entropy (``Generator.seed()``, an unseeded process)."""
    return int.from_bytes(os.urandom(8), "little")


def initial_seed(device: str) -> int:
    """The seed the default generator of ``device`` started from (from the OS until ``manual_seed`` is called)."""
    seed = _device_seeds.get(device)
    if seed is None:
        seed = _device_seeds[device] = _seed if _seed is not None else fresh_seed()
    return seed


def seed_generator(device: str, seed: Any, state: numpy.ndarray | None = None) -> None:
    """Restart the default generator of ``device`` alone from ``seed`` (``default_generator.manual_seed``),
    then, when given, put it in ``state`` (:func:`generator_state`'s bytes; nothing changes if they do not fit)."""
    seed = check_seed(seed)
    gen = new_generator(device, seed)
    if state is not None:
        set_generator_state(gen, state)
    _device_seeds[device] = seed
    _generators[device] = gen


def manual_seed(seed: Any) -> None:
    """Seed the generators of every backend (present and future devices)."""
    global _seed
    _seed = check_seed(seed)
    _generators.clear()
    _device_seeds.clear()


def generator_state(gen: Any) -> numpy.ndarray:
    """The state of a generator made by :func:`new_generator`, as a uint8 host array.

    CPU (40 bytes): PCG64's 128-bit state and 128-bit increment, then its buffered 32-bit half
    (``has_uint32``, ``uinteger``), little-endian. GPU: the cuRAND states of CuPy's bit generator
    as they lie in device memory (one per thread of its launch grid, some MBs; CuPy keeps them in
    its private ``_state`` array, and exposes no other way to save them).
    """
    if isinstance(gen, numpy.random.Generator):
        state = gen.bit_generator.state
        if state["bit_generator"] != "PCG64":
            raise TypeError(f"generator_state handles PCG64 generators, not {state['bit_generator']}")
        words = (state["state"]["state"].to_bytes(16, "little") + state["state"]["inc"].to_bytes(16, "little")
                 + int(state["has_uint32"]).to_bytes(4, "little") + int(state["uinteger"]).to_bytes(4, "little"))
        return numpy.frombuffer(words, dtype=numpy.uint8).copy()
    return to_host(gen.bit_generator._state).view(numpy.uint8).copy()


def set_generator_state(gen: Any, state: numpy.ndarray) -> None:
    """Put back a state from :func:`generator_state` (a ValueError when its size does not fit ``gen``)."""
    raw = numpy.ascontiguousarray(state, dtype=numpy.uint8)
    if isinstance(gen, numpy.random.Generator):
        if raw.size != 40:
            raise ValueError(f"a CPU generator state has 40 bytes, this one has {raw.size}")
        data = raw.tobytes()
        gen.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int.from_bytes(data[:16], "little"), "inc": int.from_bytes(data[16:32], "little")},
            "has_uint32": int.from_bytes(data[32:36], "little"),
            "uinteger": int.from_bytes(data[36:40], "little"),
        }
        return
    target = gen.bit_generator._state
    if raw.size != target.nbytes:
        raise ValueError(f"this GPU generator's state has {target.nbytes} bytes, the one given has {raw.size}")
    target[...] = to_device(raw.view(target.dtype), device_of(target))


def permutation(gen: Any, n: int) -> Any:
    """A random permutation of 0 .. n-1 (int64) from ``gen``; CuPy's generator has none, so there the
    order is that of n uniform float64 keys (a tie, probability about n^2 / 2^54, keeps index order)."""
    if isinstance(gen, numpy.random.Generator):
        return gen.permutation(n)
    return gen.random(n).argsort().astype("int64", copy=False)


def search_cdf_rows(cdf: Any, u: Any) -> Any:
    """For every row b of ``cdf (B, V)`` (non-decreasing, ending at its total), and each ``u[b, j]`` in [0, 1):
    the first i with cdf[b, i] > u[b, j] * cdf[b, -1], int64 (B, n): inverse-CDF sampling. Rounding may give V
    for u near 1 (the caller clamps). ``cdf`` may be overwritten.

    NumPy has no batched searchsorted: for long rows one call per row is cheapest. Otherwise every row is scaled
    to end at exactly 1 and shifted by its row number b, so the rows make one sorted array, (b, b + 1] for row
    b, and one search serves them all (one kernel on a GPU).
    """
    B, V = cdf.shape
    if isinstance(cdf, numpy.ndarray) and V >= 1024:  # a call per row (some 5 us) beats two passes over B * V
        out = numpy.empty(u.shape, dtype=numpy.int64)
        for b in range(B):
            out[b] = numpy.searchsorted(cdf[b], u[b] * cdf[b, -1], side="right")
        return out
    xp = get_xp(device_of(cdf))
    rows = xp.arange(B, dtype=cdf.dtype)[:, None]  # (B, 1)
    cdf /= cdf[:, -1:].copy()  # copied: a view of cdf read while cdf is overwritten
    cdf += rows
    flat = xp.searchsorted(cdf.reshape(-1), (u + rows).reshape(-1), side="right").reshape(u.shape)
    return (flat - xp.arange(0, B * V, V, dtype=flat.dtype)[:, None]).astype(numpy.int64, copy=False)


def rng_snapshot(devices: list[str] | None = None) -> tuple[Any, ...]:
    """What the default generators are now (of ``devices`` only, when given): for :func:`rng_restore`."""
    states = {dev: generator_state(gen) for dev, gen in _generators.items() if devices is None or dev in devices}
    return _seed, dict(_device_seeds), states, devices


def rng_restore(snapshot: tuple[Any, ...]) -> None:
    """Put the default generators back as :func:`rng_snapshot` saw them (``fork_rng``'s exit).

    A generator the snapshot did not have is dropped, so that it starts afresh from its seed next time.
    """
    global _seed
    seed, seeds, states, devices = snapshot
    if devices is None:
        _seed = seed
    for dev in set(_generators) | set(_device_seeds) | set(seeds):
        if devices is not None and dev not in devices:
            continue
        if dev in states:
            gen = new_generator(dev, seeds[dev])
            set_generator_state(gen, states[dev])
            _device_seeds[dev], _generators[dev] = seeds[dev], gen
            continue
        _generators.pop(dev, None)
        if dev in seeds:
            _device_seeds[dev] = seeds[dev]
        else:
            _device_seeds.pop(dev, None)


def rng_state() -> dict[str, Any]:
    """The CPU generator's state as a plain dict (for checkpoints)."""
    return generator("cpu").bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    generator("cpu").bit_generator.state = state


def generator_for_check(seed: int) -> numpy.random.Generator:
    """A private host generator (gradcheck's projection weights must not disturb the user's seed)."""
    return numpy.random.default_rng(seed)
