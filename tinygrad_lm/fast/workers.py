"""The library's own work on OpenBLAS's threads: one thread pool per process.

NumPy's products run on OpenBLAS's pool of worker threads. After each product those workers keep
spinning for a while (about 0.1 s of CPU) before they sleep, so inside a training step they are
always awake. OpenBLAS also runs any C function on them: ``gotoblas_pthread(n, f, args, stride)``
calls ``f(args + p * stride)`` for p = 0 .. n-1, part 0 on the calling thread and each other part on
a worker of its own, and returns when all are done. The library's compiled kernels become such C
functions (:func:`compiler.callback`), and their parts reach a worker in 5-80 us, where a thread of
the library's own, sleeping on a condition, took 220-260 us to wake on this project's 2-core
machine, and would then have competed with OpenBLAS's spinning workers for a core. So the library
starts no threads of its own, and ``tl.set_num_threads`` (OpenBLAS's thread count) governs them all:

- :func:`run_on_blas_pool`: a callback run once per row of a task array (:data:`TASK_WORDS` int64
  words per part: the part's index, the addresses and sizes of its arrays), with OpenBLAS held at
  one thread meanwhile: a part that called a multithreaded product from a worker would wait for
  ever for a free worker;
- :func:`pieces_for` and :func:`run_pieces`: independent pieces of work, elements or rows or
  matrices of a batch (:func:`blas.batched_on_blas_pool`, GELU, LayerNorm, the softmaxes);
- :func:`parts_for` and :func:`barrier`: parts that wait for each other. An LSTM's time loop is a
  chain of small steps: a product ``h_{t-1} W_hh^T`` of (B, H) by (H, 4H), then the step's gates.
  OpenBLAS splits each such product between its threads, but it packs W_hh afresh for every call,
  and on two threads it barely beats one (B = 32, H = 256: 255 against 275 us). What scales better
  is splitting the layer itself: each thread owns a slice of the hidden units, with all four gates
  of them, and runs the whole time loop for it. Each step, a one-thread GEMM (:func:`compiler.gemm`,
  NumPy's own ``cblas_?gemm``: one BLAS runtime) multiplies h_{t-1} by that slice's rows of W_hh,
  and the part then waits once for the other slices' h_t. The kernels are in :mod:`.fused_recurrent`.

Only an OpenBLAS with its pthreads pool qualifies (NumPy's wheels). With another BLAS, without
Numba, or on one thread, everything runs in one piece on the calling thread. The BLAS's thread
count is process-wide: a NumPy product that another Python thread runs while parts do runs on one
thread.
"""
from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy

from .. import threads
from . import compiler

# A part gets at least this many hidden units, and a sequence this many multiply-adds per thread in its
# recurrent products (B T H 4H / parts), before the layer is split. Measured on 2 threads, nn.LSTM(64, H)
# forward and backward, split and unsplit alternating in one process: B = 8, T = 16, H = 256 (2^25
# multiply-adds in all) ran 4% slower split, B = 16 (2^26) 4% faster and B = 32, T = 64 (2^28) 18% faster;
# B = 8, T = 64, H = 128 (2^25) gained 21%, so the threshold is a compromise between short and long
# sequences. H = 64 split into 32-unit parts ran 6% slower.
MIN_UNITS_PER_PART = 64
MIN_WORK_PER_PART = 1 << 25
# Spins at a barrier before each sched_yield, so that more parts than free cores still progress.
SPINS_BEFORE_YIELD = 1 << 14
FLAG_STRIDE = 16  # int64 slots between two parts' flags: each on a cache line of its own


class _Blas:
    """NumPy's OpenBLAS as the library calls it: ``cblas_?gemm`` addresses and integer width, its thread
    count (``openblas_get/set_num_threads``), its pool's entry (``gotoblas_pthread``) and size
    (``blas_num_threads``, the threads it has started, counting the caller)."""

    def __init__(self, gemm: dict[str, int], int_like: Any, get_threads: Any, set_threads: Any, pool: Any,
                 pool_size: Any) -> None:
        self.gemm, self.int_like = gemm, int_like
        self.get_threads, self.set_threads, self.pool, self.pool_size = get_threads, set_threads, pool, pool_size
        self.lock = threading.Lock()  # one set of parts at a time holds the BLAS at one thread


_blas: _Blas | None | bool = False  # False: not looked up yet


def _symbol(lib: Any, name: str, prefixes: tuple[str, ...], suffixes: tuple[str, ...]) -> tuple[Any, str, str]:
    for prefix in prefixes:
        for suffix in suffixes:
            function = getattr(lib, prefix + name + suffix, None)
            if function is not None:
                return function, prefix, suffix
    raise AttributeError(name)


def _find_blas() -> _Blas | None:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    numpy_dir = os.path.dirname(os.path.abspath(numpy.__file__))
    candidates = [c for c in ThreadpoolController().select(internal_api="openblas").lib_controllers
                  if getattr(c, "threading_layer", None) == "pthreads"]
    # NumPy's own (its wheels keep it in numpy.libs or numpy/.dylibs); else the only OpenBLAS there is
    own = [c for c in candidates if os.path.abspath(c.filepath).startswith(numpy_dir)]
    if len(own) == 1:
        candidates = own
    if len(candidates) != 1:
        return None
    controller = candidates[0]
    lib = ctypes.CDLL(controller.filepath)
    try:
        config, prefix, suffix = _symbol(lib, "openblas_get_config", ("scipy_", ""), ("64_", "_64", ""))
        config.restype = ctypes.c_char_p
        int_like = numpy.int64 if b"USE64BITINT" in (config() or b"") else numpy.int32
        gemm: dict[str, int] = {}
        for dtype, name in (("float32", "cblas_sgemm"), ("float64", "cblas_dgemm")):
            gemm[dtype] = ctypes.cast(getattr(lib, prefix + name + suffix), ctypes.c_void_p).value or 0
        get_threads, _, _ = _symbol(lib, "openblas_get_num_threads", (prefix,), (suffix,))
        set_threads, _, _ = _symbol(lib, "openblas_set_num_threads", (prefix,), (suffix,))
        pool, _, _ = _symbol(lib, "gotoblas_pthread", (prefix, ""), ("",))
        pool_size = ctypes.c_int.in_dll(lib, "blas_num_threads")
    except (AttributeError, ValueError):
        return None
    get_threads.restype, get_threads.argtypes = ctypes.c_int, []
    set_threads.restype, set_threads.argtypes = None, [ctypes.c_int]
    pool.restype, pool.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    return _Blas(gemm, int_like, get_threads, set_threads, pool, pool_size)


def numpy_blas() -> _Blas | None:
    """NumPy's BLAS, when it is an OpenBLAS with its own pthreads pool that takes other work (found once),
    else None."""
    global _blas
    if _blas is False:
        _blas = _find_blas()
    return _blas  # type: ignore[return-value]


_yield_address: int | None = None


def yield_address() -> int:
    """The address of the C library's ``sched_yield`` (0 where there is none): what :func:`barrier` calls
    after :data:`SPINS_BEFORE_YIELD` spins."""
    global _yield_address
    if _yield_address is None:
        try:
            _yield_address = ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
        except (OSError, AttributeError, TypeError):  # no C library by that name (Windows)
            _yield_address = 0
    return _yield_address


def parts_for(units: int, work: int, *arrays: Any) -> int:
    """How many threads a recurrence over ``units`` hidden units, with ``work`` multiply-adds in its
    recurrent products, runs on: at most ``tl.get_num_threads()`` and the process's cores, each part
    with at least :data:`MIN_UNITS_PER_PART` units and :data:`MIN_WORK_PER_PART` of the work, and at most
    :func:`blas_pool_parts` says. 1 unless ``arrays`` (the layer's inputs; None for an absent bias) are
    NumPy arrays of one float32/float64 dtype."""
    wanted = min(threads.get_num_threads(), threads._cores(), units // MIN_UNITS_PER_PART, work // MIN_WORK_PER_PART)
    if wanted < 2 or not arrays or type(arrays[0]) is not numpy.ndarray or arrays[0].dtype.char not in "fd":
        return 1
    dtype = arrays[0].dtype
    if any(a is not None and (type(a) is not numpy.ndarray or a.dtype != dtype) for a in arrays):
        return 1
    return blas_pool_parts(wanted)


def blas_arguments(dtype: Any) -> tuple[int, Any, int]:
    """What a part kernel passes on to :func:`compiler.gemm` and :func:`barrier`: the address of NumPy's BLAS
    ``cblas_?gemm`` for ``dtype``, a zero of its integer type, and :func:`yield_address`."""
    blas = numpy_blas()
    if blas is None:
        raise RuntimeError("blas_arguments: NumPy's BLAS is not an OpenBLAS with its own pool (ask parts_for first)")
    return blas.gemm[numpy.dtype(dtype).name], blas.int_like(0), yield_address()


def new_flags(parts: int) -> Any:
    """The flags that :func:`barrier` counts steps in, one cache line per part."""
    return numpy.zeros(parts * FLAG_STRIDE, dtype=numpy.int64)


def barrier(flags: Any, part: int, parts: int, count: int, yield_at: int) -> None:
    """Inside a kernel: say that this part has done ``count`` steps, then wait until every part has."""
    compiler.atomic_store(flags, part * FLAG_STRIDE, count)
    for other in range(parts):
        spins = 0
        while compiler.atomic_load(flags, other * FLAG_STRIDE) < count:
            spins += 1
            if spins == SPINS_BEFORE_YIELD:
                spins = 0
                if yield_at != 0:
                    compiler.call(yield_at)


compiler.callable_in_kernels(barrier)

TASK_WORDS = 40  # int64 words per part of a task: what one call of a callback reads


def blas_pool_parts(items: int) -> int:
    """How many threads :func:`run_on_blas_pool` would run ``items`` independent pieces of work on: at most
    ``tl.get_num_threads()``, the BLAS's current thread count and the threads its pool has; 1 where
    there is no such pool (another BLAS, no Numba) or on one thread."""
    if items < 2:  # (small work, the usual case: before get_num_threads, which may ask the OS for the affinity)
        return 1
    wanted = min(threads.get_num_threads(), items)
    if wanted < 2:
        return 1
    blas = numpy_blas()
    if blas is None or not compiler.numba_available():
        return 1
    return max(1, min(wanted, blas.get_threads(), blas.pool_size.value))


def new_tasks(parts: int) -> Any:
    """Zeroed task words for ``parts`` parts, one row of :data:`TASK_WORDS` each."""
    return numpy.zeros((parts, TASK_WORDS), dtype=numpy.int64)


def run_on_blas_pool(kernel: Callable[[int], None], tasks: Any) -> None:
    """Run ``kernel(address of tasks[p])`` for every row p of ``tasks`` (made by :func:`new_tasks`, at most
    :func:`blas_pool_parts` rows) at once: row 0 on this thread, the others on OpenBLAS's worker threads,
    with OpenBLAS held at one thread meanwhile. ``kernel`` is compiled by :func:`compiler.callback`; it
    must not raise (a C callback has no way to report it)."""
    blas = numpy_blas()
    address = compiler.callback(kernel)
    if blas is None or address is None:
        raise RuntimeError("run_on_blas_pool: needs Numba and NumPy's OpenBLAS with its pool (ask blas_pool_parts)")
    parts = tasks.shape[0]
    if not (tasks.dtype == numpy.int64 and tasks.flags.c_contiguous and tasks.shape[1:] == (TASK_WORDS,)):
        raise ValueError(f"run_on_blas_pool: tasks must be a C-contiguous int64 array of shape (parts, {TASK_WORDS})")
    if not 1 <= parts <= blas.pool_size.value:
        raise ValueError(f"run_on_blas_pool: {parts} parts for a pool of {blas.pool_size.value} threads")
    with blas.lock:
        saved = blas.get_threads()
        blas.set_threads(1)
        try:
            blas.pool(parts, address, tasks.ctypes.data, TASK_WORDS * 8)
        finally:
            blas.set_threads(saved)


# An elementwise or row-wise kernel is split between threads from this many elements per part on: a piece
# of 64 K float32 elements takes 50-100 us in the kernels here, about what a hand-off may cost.
MIN_ELEMENTS_PER_PART = 1 << 16


def pieces_for(count: int, elements: int, *arrays: Any) -> int:
    """How many threads a kernel over ``count`` independent pieces (elements or rows), ``elements`` elements
    in all, runs on (:func:`run_pieces`): 1 for small work, one thread, or arrays other than NumPy's
    (None stands for an absent one)."""
    if any(type(a) is not numpy.ndarray for a in arrays if a is not None):
        return 1
    return blas_pool_parts(min(count, elements // MIN_ELEMENTS_PER_PART))


def run_pieces(kernel: Callable[[int], None], parts: int, count: int, *words: int) -> None:
    """Run the callback ``kernel`` on ``parts`` threads of :func:`run_on_blas_pool`. Part p's task words: 0 p,
    1-2 its share ``first, last`` of ``0 .. count`` (``parts`` nearly equal pieces), 3 ``parts``, then from
    4 on ``words``, the same for every part (a kernel's variant, its arrays' addresses and sizes)."""
    padding = [0] * (TASK_WORDS - 4 - len(words))
    rows = [[p, count * p // parts, count * (p + 1) // parts, parts, *words, *padding] for p in range(parts)]
    run_on_blas_pool(kernel, numpy.array(rows, dtype=numpy.int64))  # (one conversion: this runs per op call)


def addresses(*arrays: Any) -> list[int]:
    """The addresses of the arrays' first elements: task words for :func:`run_pieces`."""
    return [a.ctypes.data for a in arrays]


def _forget_lock() -> None:
    """In a forked child: the BLAS's lock may have been held by one of the parent's other threads."""
    if isinstance(_blas, _Blas):
        _blas.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lock)
