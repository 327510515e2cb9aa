"""Random sampling, as PyTorch's: generators, distributions, in-place fills.

A :class:`Generator` is one stream of pseudo-random numbers on one device: NumPy's
PCG64 on the CPU, CuPy's cuRAND XORWOW on a GPU (the bit generators are made in
``generators.py``). Every function here takes ``generator=``; without it, it draws
from the device's default stream, which ``tl.manual_seed`` seeds. A seed gives
the same numbers on every run, but not PyTorch's numbers: the algorithms differ.

The samplers state what they draw:

- ``rand`` u ~ U[0, 1); ``randn`` z ~ N(0, 1); ``randint`` k ~ U{low, ..., high - 1};
  ``randperm`` a uniformly random permutation;
- ``bernoulli`` 1[u < p]; ``poisson`` k ~ Poisson(rate); ``normal`` mean + std z;
- ``multinomial`` category i with probability p_i / sum_j p_j, by inverting the CDF
  (with replacement) or by the exponential race (without: see :func:`multinomial`);
- in-place fills ``normal_``, ``uniform_``, ``exponential_`` (E / lambda, E ~ Exp(1)),
  ``log_normal_``, ``cauchy_``, ``geometric_``, ``bernoulli_``, ``random_``, which keep the
  tensor's dtype and bump its version counter.

A sample has no gradient with respect to the parameters it was drawn with: when they
require grad the result does too, with a zero gradient, as in PyTorch (write
``mean + std * tl.randn(...)`` for the reparameterised, pathwise gradient).
"""
from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any

from . import autograd, backend, dtypes, generators
from .autograd import Function
from .tensor import Tensor

_DEFAULT_SEED = 67280421310721  # the seed a new torch.Generator starts from
_NOT_GIVEN: Any = object()  # random_'s ``to`` when not passed (``to=None`` means "up to the dtype's maximum")
_SEED_BYTES = 8


def _dtype(dtype: Any) -> Any:
    """The NumPy dtype behind a dtype-like (also tinygrad_lm's DType), checked to be supported."""
    return dtypes.check_dtype(dtype)


class Generator:
    """A stream of random numbers on one device (``torch.Generator``): pass it as ``generator=``.

    A new generator starts from PyTorch's default seed 67280421310721. ``get_state()`` is a
    uint8 CPU tensor: the initial seed (8 bytes, little-endian), then the bit generator's state
    (:func:`generators.generator_state`: 40 bytes on the CPU, CuPy's cuRAND states on a GPU).
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device: str = backend.canonical_device(device)
        self._default = False
        self._seed = _DEFAULT_SEED
        self._rng: Any = generators.new_generator(self.device, _DEFAULT_SEED)

    @classmethod
    def _of_default_stream(cls, device: str) -> Generator:
        """The generator object for a device's default stream (it follows ``tl.manual_seed``)."""
        gen = cls.__new__(cls)
        gen.device = device
        gen._default = True
        gen._seed = 0
        gen._rng = None
        return gen

    def _engine(self) -> Any:
        """The NumPy or CuPy generator that draws the numbers."""
        return generators.generator(self.device) if self._default else self._rng

    def manual_seed(self, seed: Any) -> Generator:
        """Restart the stream from ``seed`` (an int in [-2**63, 2**64)); returns the generator."""
        seed = generators.check_seed(seed)
        if self._default:
            generators.seed_generator(self.device, seed)
        else:
            self._seed = seed
            self._rng = generators.new_generator(self.device, seed)
        return self

    def seed(self) -> int:
        """Restart from a seed taken from the operating system's entropy; returns that seed."""
        seed = generators.fresh_seed()
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        """The seed the stream was last started from."""
        return generators.initial_seed(self.device) if self._default else self._seed

    def get_state(self) -> Tensor:
        """The state as a uint8 CPU tensor (a copy: drawing more does not change it)."""
        host = Tensor._xp_of("cpu")
        seed = host.frombuffer(self.initial_seed().to_bytes(_SEED_BYTES, "little"), dtype="uint8")
        return Tensor._wrap(host.concatenate([seed, generators.generator_state(self._engine())]), "cpu")

    def set_state(self, new_state: Tensor) -> Generator:
        """Continue from a state that :meth:`get_state` returned (of a generator on the same kind of device)."""
        if not isinstance(new_state, Tensor):
            raise TypeError(f"set_state: expected a uint8 tl.Tensor (from get_state), got {type(new_state).__name__}")
        if _dtype(new_state.dtype).name != "uint8":
            raise TypeError(f"set_state: RNG state must be a uint8 tensor, got {_dtype(new_state.dtype)}")
        raw = backend.to_host(new_state.array).reshape(-1)
        if raw.size < _SEED_BYTES:
            raise RuntimeError(f"set_state: an RNG state has at least {_SEED_BYTES} bytes, this one has {raw.size}")
        seed = int.from_bytes(raw[:_SEED_BYTES].tobytes(), "little")
        try:
            if self._default:
                generators.seed_generator(self.device, seed, raw[_SEED_BYTES:])
            else:
                rng = generators.new_generator(self.device, seed)
                generators.set_generator_state(rng, raw[_SEED_BYTES:])
                self._seed, self._rng = seed, rng
        except ValueError as err:
            raise RuntimeError(f"set_state: {err} (a state of another device's generator?)") from None
        return self

    def __repr__(self) -> str:
        kind = "default generator" if self._default else "Generator"
        return f"<tinygrad_lm {kind} on {self.device}>"


_default_generators: dict[str, Generator] = {}


def default_generator_for(device: Any) -> Generator:
    """The :class:`Generator` of ``device``'s default stream (``torch.cuda.default_generators[i]``)."""
    dev = backend.canonical_device(device)
    gen = _default_generators.get(dev)
    if gen is None:
        gen = _default_generators[dev] = Generator._of_default_stream(dev)
    return gen


default_generator = default_generator_for("cpu")


def manual_seed(seed: Any) -> Generator:
    """Seed the default generators of every device; returns the CPU's (``torch.manual_seed``)."""
    generators.manual_seed(seed)
    return default_generator


def seed() -> int:
    """Seed every device's default generator from the operating system's entropy; returns the seed."""
    value = generators.fresh_seed()
    generators.manual_seed(value)
    return value


def initial_seed() -> int:
    """The seed of the CPU's default generator."""
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    """The CPU default generator's state (a uint8 tensor, see :class:`Generator`)."""
    return default_generator.get_state()


def set_rng_state(new_state: Tensor) -> None:
    """Put back a state from :func:`get_rng_state`."""
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices: Any = None, enabled: bool = True) -> Iterator[None]:
    """Inside, draw as you like; on leaving, the default generators are back where they were.

    As ``torch.random.fork_rng``: the CPU's is always forked, and the GPUs' in ``devices``
    (indices or device strings), or every device's when ``devices`` is None.
    """
    if not enabled:
        yield
        return
    listed = None if devices is None else ["cpu"] + [
        backend.canonical_device(f"cuda:{d}" if isinstance(d, int) else d) for d in devices]
    snapshot = generators.rng_snapshot(listed)
    try:
        yield
    finally:
        generators.rng_restore(snapshot)


def backend_generator(generator: Generator | None, device: str, name: str) -> Any:
    """The NumPy/CuPy generator to draw from for a result on ``device``: ``generator``'s, or the device's
    default one. For library code that samples on its own (nn.init, samplers); ``name`` is for the errors."""
    if generator is None:
        return generators.generator(device)
    if not isinstance(generator, Generator):
        raise TypeError(f"{name}: generator must be a tinygrad_lm.Generator, got {type(generator).__name__}")
    if generator.device != device:
        raise RuntimeError(f"{name}: the generator is on {generator.device} but the result is on {device} "
                           "(a generator draws for its own device only)")
    return generator._engine()


class Sample(Function):
    """A sample drawn with parameters that may require grad: d sample / d parameter = 0 (PyTorch's rule)."""

    def forward(self, *params: Any, sample: Any) -> Any:
        self.like = [(p.shape, p.dtype) for p in params]
        return sample

    def backward(self, g: Any) -> Any:
        return tuple(self.xp.zeros(shape, dtype=dtype) if need else None
                     for (shape, dtype), need in zip(self.like, self.needs_grad))


def _result(sample: Any, params: list[Tensor], device: str) -> Tensor:
    """The sample as a tensor; in the graph (zero gradient) when a parameter tensor requires grad."""
    if any(p.requires_grad for p in params):
        return Sample.apply(*params, sample=sample)
    return Tensor._wrap(sample, device)


# ----------------------------------------------------------------------------- drawing arrays
def _uniform(rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """u ~ U[0, 1) in a float dtype: float32 has 24 random bits, float64 53, float16 11 (as PyTorch draws it)."""
    if dtype.itemsize >= 4:
        return rng.random(shape, dtype=dtype)
    u = rng.integers(0, 1 << 11, size=shape, dtype="int32").astype(dtype)
    u *= 2.0**-11
    return u


def _standard_normal(rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """z ~ N(0, 1), drawn in float32 for float16 (the transform is then done in float32 and rounded once)."""
    return rng.standard_normal(shape, dtype=dtype if dtype.itemsize >= 4 else "float32")


def _standard_exponential(rng: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """E ~ Exp(1) (finite, >= 0), drawn in float32 for float16."""
    return rng.standard_exponential(shape, dtype=dtype if dtype.itemsize >= 4 else "float32")


# ----------------------------------------------------------------------------- argument checks
def _check_tensor(name: str, arg: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {arg} must be a tl.Tensor, got {type(value).__name__}")
    return value


def _check_number(name: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: {arg} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_int(name: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}(): argument '{arg}' must be int, not {type(value).__name__}")
    return int(value)


def _shape(name: str, size: tuple[Any, ...]) -> tuple[int, ...]:
    """``(2, 3)``, ``((2, 3),)`` or ``([2, 3],)`` as the shape (2, 3); negative sizes are an error."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{name}: size must be ints, got {size!r}")
        if n < 0:
            raise RuntimeError(f"{name}: Trying to create tensor with negative dimension {n}: {list(size)}")
    return tuple(int(n) for n in size)


def _float_dtype(name: str, dtype: Any) -> Any:
    dt = dtypes.get_default_dtype() if dtype is None else _dtype(dtype)
    if dt.kind != "f":
        raise RuntimeError(f"{name}: draws floating point numbers, dtype {dt} is not one")
    return dt


def _check_fill(name: str, tensor: Any, floating: bool = True) -> Any:
    """The tensor of an in-place fill, checked: its dtype (a NumPy dtype) is returned."""
    _check_tensor(name, "self", tensor)
    dt = _dtype(tensor.dtype)
    if floating and dt.kind != "f":
        raise RuntimeError(f"{name}: expects a floating point tensor, got {dt}")
    if tensor.requires_grad and tensor.grad_fn is None and autograd.is_grad_enabled():
        raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place operation. "
                           "(fill it inside tl.no_grad(), as nn.init does)")
    return dt


def _fill(name: str, tensor: Tensor, values: Any) -> Tensor:
    """Make ``values`` (broadcast to its shape) ``tensor``'s values, in place; record the change for autograd."""
    if tensor.grad_fn is not None and autograd.is_grad_enabled():
        # In a graph, the tensor becomes a sample held in new memory (Tensor._rebind, as its in-place ops do):
        # ops that saved the old values keep them, and backward gives what it was made from zero gradient.
        sample = tensor.xp.broadcast_to(values, tensor.shape).astype(tensor.array.dtype)
        result = Sample.apply(tensor, sample=sample)
        rebind = getattr(tensor, "_rebind", None)
        if rebind is not None:
            return rebind(name, result)
        tensor.array, tensor.grad_fn, tensor._output_nr = sample, result.grad_fn, 0
        return tensor
    if not getattr(tensor.array.flags, "writeable", True):  # CuPy arrays have no such flag
        raise RuntimeError(f"{name}: the tensor is read-only (an expand()ed tensor shares one memory location "
                           "among several elements); clone() it first")
    tensor.array[...] = values
    bump = getattr(tensor, "_bump_version", None)
    if bump is not None:
        bump()
    return tensor


def _into(name: str, out: Tensor | None, result: Tensor) -> Tensor:
    """``result``, or ``out`` holding it (resized as PyTorch resizes ``out``) when given."""
    if out is None:
        return result
    _check_tensor(name, "out", out)
    if out.device != result.device:
        raise RuntimeError(f"{name}: out is on {out.device} but the result is on {result.device}")
    if _dtype(out.dtype) != _dtype(result.dtype):
        raise RuntimeError(f"{name}: out has dtype {_dtype(out.dtype)}, the result is {_dtype(result.dtype)}")
    if out.shape == result.shape:
        out.array[...] = result.array
    else:
        out.array = result.array
    bump = getattr(out, "_bump_version", None)
    if bump is not None:
        bump()
    return out


def _finish(name: str, array: Any, device: str, requires_grad: bool, out: Tensor | None) -> Tensor:
    t = Tensor._wrap(array, device)
    if requires_grad:
        t.requires_grad_(True)
    return _into(name, out, t)


def _target(out: Tensor | None, dtype: Any, device: Any) -> tuple[Any, str]:
    """The dtype and device of a new tensor: those given, else ``out``'s, else the defaults."""
    if out is not None and isinstance(out, Tensor):
        dtype = out.dtype if dtype is None else dtype
        device = out.device if device is None else device
    return dtype, backend.canonical_device(device)


# ----------------------------------------------------------------------------- new tensors
def rand(*size: Any, generator: Generator | None = None, out: Tensor | None = None, dtype: Any = None,
         device: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples u ~ U[0, 1) of shape ``size``."""
    shape = _shape("rand", size)
    dtype, dev = _target(out, dtype, device)
    dt = _float_dtype("rand", dtype)
    array = _uniform(backend_generator(generator, dev, "rand"), shape, dt)
    return _finish("rand", array, dev, requires_grad, out)


def randn(*size: Any, generator: Generator | None = None, out: Tensor | None = None, dtype: Any = None,
          device: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples z ~ N(0, 1) of shape ``size``."""
    shape = _shape("randn", size)
    dtype, dev = _target(out, dtype, device)
    dt = _float_dtype("randn", dtype)
    array = _standard_normal(backend_generator(generator, dev, "randn"), shape, dt).astype(dt, copy=False)
    return _finish("randn", array, dev, requires_grad, out)


def _int_range(name: str, low: int, high: int, dt: Any, xp: Any, names: tuple[str, str] = ("from", "to")) -> None:
    """[low, high) must be non-empty and representable in ``dt``; ``names`` are the caller's for the two bounds."""
    lo_name, hi_name = names
    if low >= high:
        raise RuntimeError(f"{name}: expects '{lo_name}' to be less than '{hi_name}', "
                           f"but got {lo_name}={low} >= {hi_name}={high}")
    if dt.kind == "b":
        lo, hi = 0, 1
    elif dt.kind in "iu":
        info = xp.iinfo(dt)
        lo, hi = int(info.min), int(info.max)
    else:
        hi = 1 << (xp.finfo(dt).nmant + 1)  # every integer up to 2**digits is exact
        lo = -hi
    if low < lo:
        raise RuntimeError(f"{name}: {lo_name} = {low} is out of bounds for {dt} (smallest {lo})")
    if high - 1 > hi:
        raise RuntimeError(f"{name}: {hi_name} - 1 = {high - 1} is out of bounds for {dt} (largest {hi})")


def _integers(rng: Any, low: int, high: int, shape: tuple[int, ...], dt: Any) -> Any:
    """k ~ U{low, ..., high - 1} as ``dt`` (drawn as int64)."""
    k = rng.integers(low, high - 1, size=shape, dtype="int64", endpoint=True)
    return k.astype(dt, copy=False)


def randint(low: Any = 0, high: Any = None, size: Any = None, *, generator: Generator | None = None,
            out: Tensor | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers k ~ U{low, ..., high - 1} of shape ``size`` (int64 unless ``dtype``).

    As PyTorch: ``randint(high, size)``, ``randint(low, high, size)``, ``randint(high=h, size=s)``.
    """
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: missing the size argument: randint(high, size) or randint(low, high, size)")
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint: size must be a tuple of ints, got {type(size).__name__} {size!r}")
    low, high = _check_int("randint", "low", low), _check_int("randint", "high", high)
    shape = _shape("randint", tuple(size))
    dtype, dev = _target(out, dtype, device)
    dt = _dtype("int64" if dtype is None else dtype)
    _int_range("randint", low, high, dt, Tensor._xp_of(dev), ("low", "high"))
    array = _integers(backend_generator(generator, dev, "randint"), low, high, shape, dt)
    return _finish("randint", array, dev, requires_grad, out)


def randperm(n: int, *, generator: Generator | None = None, out: Tensor | None = None, dtype: Any = "int64",
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """A uniformly random permutation of 0, ..., n - 1."""
    n = _check_int("randperm", "n", n)
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    dtype, dev = _target(out, dtype, device)
    dt = _dtype(dtype)
    if dt.kind == "b":
        raise RuntimeError("randperm: not implemented for dtype bool")
    if n > 0:
        _int_range("randperm", 0, n, dt, Tensor._xp_of(dev), ("0", "n"))
    array = generators.permutation(backend_generator(generator, dev, "randperm"), n).astype(dt, copy=False)
    return _finish("randperm", array, dev, requires_grad, out)


def rand_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """``rand`` of ``input``'s shape, dtype and device."""
    _check_tensor("rand_like", "input", input)
    return rand(input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                device=input.device if device is None else device, requires_grad=requires_grad)


def randn_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    """``randn`` of ``input``'s shape, dtype and device."""
    _check_tensor("randn_like", "input", input)
    return randn(input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                 device=input.device if device is None else device, requires_grad=requires_grad)


def randint_like(input: Tensor, low: int = 0, high: int | None = None, *, generator: Generator | None = None,
                 dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``randint`` of ``input``'s shape, dtype and device: ``randint_like(x, high)`` or ``(x, low, high)``."""
    _check_tensor("randint_like", "input", input)
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, generator=generator, dtype=input.dtype if dtype is None else dtype,
                   device=input.device if device is None else device, requires_grad=requires_grad)


# ----------------------------------------------------------------------------- distributions with parameters
def normal(mean: Any, std: Any = 1.0, size: Any = None, *, generator: Generator | None = None,
           out: Tensor | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """mean + std z, z ~ N(0, 1): PyTorch's four forms.

    ``normal(mean_tensor, std_tensor)`` (broadcast), ``normal(mean_tensor, std=1.0)``,
    ``normal(mean, std_tensor)``, and ``normal(mean, std, size, dtype=, device=)`` for numbers.
    """
    params = [t for t in (mean, std) if isinstance(t, Tensor)]
    if not params:
        mean, std = _check_number("normal", "mean", mean), _check_number("normal", "std", std)
        if size is None:
            raise TypeError("normal: with a number mean and std, give the size of the result: normal(mean, std, size)")
        if not std >= 0.0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
        shape = _shape("normal", tuple(size) if isinstance(size, (tuple, list)) else (size,))
        dtype, dev = _target(out, dtype, device)
        dt = _float_dtype("normal", dtype)
        z = _standard_normal(backend_generator(generator, dev, "normal"), shape, dt)
        z *= std
        z += mean
        return _finish("normal", z.astype(dt, copy=False), dev, requires_grad, out)
    for arg, value in (("size", size), ("dtype", dtype), ("device", device)):
        if value is not None:
            raise TypeError(f"normal: {arg} is only taken with a number mean and std (the tensors give it)")
    for arg, value in (("mean", mean), ("std", std)):
        if isinstance(value, Tensor):
            if _dtype(value.dtype).kind != "f":
                raise RuntimeError(f"normal: {arg} must be a floating point tensor, got {_dtype(value.dtype)}")
        else:
            _check_number("normal", arg, value)
    dev = params[0].device
    if len(params) == 2 and params[1].device != dev:
        raise RuntimeError(f"normal: mean is on {dev} but std is on {params[1].device}")
    dt = _dtype(params[0].dtype) if len(params) == 1 else dtypes.result_type(mean.array, std.array)
    common = _broadcast_shape(params[0].shape, params[-1].shape)
    if common is None:
        raise RuntimeError(f"normal: mean of shape {mean.shape} and std of shape {std.shape} "
                           "do not broadcast to one shape")
    s = std.array if isinstance(std, Tensor) else float(std)
    if isinstance(std, Tensor):
        if std.array.size and not bool((std.array >= 0).all()):
            raise RuntimeError("normal expects all elements of std >= 0.0")
    elif not std >= 0.0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    m = mean.array if isinstance(mean, Tensor) else float(mean)
    z = _standard_normal(backend_generator(generator, dev, "normal"), common, dt)
    sample = (z * s + m).astype(dt, copy=False)
    return _into("normal", out, _result(sample, params, dev))


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape ``a`` and ``b`` broadcast to, or None where they do not."""
    a, b = (1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        return None
    return tuple(y if x == 1 else x for x, y in zip(a, b))


def _check_probabilities(name: str, p: Any) -> None:
    """Every p in [0, 1] (NaN fails too)."""
    if p.size and not (bool(p.min() >= 0) and bool(p.max() <= 1)):
        raise RuntimeError(f"{name}: probabilities must lie in [0, 1] (Expected p_in >= 0 && p_in <= 1)")


def bernoulli(input: Tensor, p: float | None = None, *, generator: Generator | None = None,
              out: Tensor | None = None) -> Tensor:
    """x ~ Bernoulli(input) elementwise (1 with probability ``input``, else 0), in ``input``'s dtype.

    With a number ``p``, every element is 1 with probability ``p`` instead (``input`` gives the shape and dtype).
    """
    _check_tensor("bernoulli", "input", input)
    dt = _dtype(input.dtype)
    if p is None:
        if dt.kind != "f":
            raise RuntimeError(f"bernoulli: input holds the probabilities and must be floating point, got {dt}")
        _check_probabilities("bernoulli", input.array)
        prob: Any = input.array
        draw_dt = dt
    else:
        prob = _check_number("bernoulli", "p", p)
        if not 0.0 <= prob <= 1.0:
            raise RuntimeError(f"bernoulli: bernoulli_ expects p to be in [0, 1], but got p={p}")
        draw_dt = dt if dt.kind == "f" else _dtype("float64")
    u = _uniform(backend_generator(generator, input.device, "bernoulli"), input.shape, draw_dt if draw_dt.itemsize >= 4
                 else _dtype("float32"))
    sample = (u < prob).astype(dt)
    params = [input] if dt.kind == "f" else []
    return _into("bernoulli", out, _result(sample, params, input.device))


def poisson(input: Tensor, generator: Generator | None = None) -> Tensor:
    """k ~ Poisson(rate) elementwise for the rates in ``input`` (>= 0), in ``input``'s dtype."""
    _check_tensor("poisson", "input", input)
    dt = _dtype(input.dtype)
    if dt.kind != "f":
        raise RuntimeError(f"poisson: the rates must be a floating point tensor, got {dt}")
    rate = input.array
    if rate.size and not bool(rate.min() >= 0):
        raise RuntimeError("poisson: invalid Poisson rate, expected rate to be non-negative (and not NaN)")
    k = backend_generator(generator, input.device, "poisson").poisson(rate.astype("float64"), size=rate.shape)
    return _result(k.astype(dt), [input], input.device)


def _check_distribution(xp: Any, p: Any, totals: Any) -> None:
    """Rows of non-negative, finite weights with a positive sum (PyTorch's two messages)."""
    if not bool(p.min() >= 0) or not bool(xp.isfinite(totals).all()):  # NaN fails ``>=``; inf makes a total inf
        raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or element < 0")
    if not bool((totals > 0).all()):
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")


def _with_replacement(xp: Any, rng: Any, p: Any, cdf: Any, n: int) -> Any:
    """n independent draws per row by inverting the CDF: the first i with cdf_i > u sum(p), u ~ U[0, 1).

    A zero weight repeats its left neighbour's cdf value, so it is never the first to exceed u sum(p).
    """
    V = cdf.shape[1]
    idx = generators.search_cdf_rows(cdf, rng.random((cdf.shape[0], n)))  # (B, n)
    if bool((idx >= V).any()):  # u sum(p) rounded up to sum(p): take the row's last category of positive weight
        last = V - 1 - xp.argmax(p[:, ::-1] > 0, axis=-1)  # (B,)
        idx = xp.minimum(idx, last[:, None])
    return idx


def _without_replacement(xp: Any, rng: Any, p: Any, totals: Any, n: int) -> Any:
    """n distinct draws per row, each renormalised over the categories not yet drawn.

    The exponential race: with E_i ~ Exp(1), E_i / p_i ~ Exp(p_i), and the order of these waiting
    times is the order of sequential draws without replacement (the smallest is i with probability
    p_i / sum p; memorylessness restarts the race among the rest). So sort by key_i = p_i / E_i,
    largest first. Zero weights have key 0 and come after every positive one, as in PyTorch.
    """
    B, V = p.shape
    e = _standard_exponential(rng, (B, V), _dtype("float64"))  # (B, V)
    xp.maximum(e, 1e-300, out=e)  # E = 0 (u = 0 exactly) would divide by zero
    e *= totals[:, None]  # keys of normalised weights: at most 1e300, never inf
    keys = p / e  # (B, V)
    xp.negative(keys, out=keys)  # ascending order of -key: largest key first
    if n < V:
        top = xp.argpartition(keys, n - 1, axis=-1)[:, :n]  # (B, n), unordered
        order = xp.argsort(xp.take_along_axis(keys, top, axis=-1), axis=-1)
        return xp.take_along_axis(top, order, axis=-1).astype("int64", copy=False)
    return xp.argsort(keys, axis=-1).astype("int64", copy=False)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator: Generator | None = None,
                out: Tensor | None = None) -> Tensor:
    """Category indices drawn from the rows of ``input``: int64 ``(num_samples,)`` or ``(B, num_samples)``.

    ``input`` is ``(V,)`` or ``(B, V)`` non-negative weights, not necessarily normalised: category i
    of a row is drawn with probability p_i / sum_j p_j. With ``replacement`` the draws are independent;
    without, they are distinct (sequential draws, each from the categories left), and zero-weight
    categories come only once the positive ones are used up. Sampling the next token of a language
    model is ``multinomial(probs, 1)`` on ``probs (B, V)``: one pass for the CDF, one binary search per row.
    """
    _check_tensor("multinomial", "input", input)
    n = _check_int("multinomial", "num_samples", num_samples)
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got a {input.ndim}-d tensor")
    dt = _dtype(input.dtype)
    if dt.kind != "f":
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: {dt}")
    if n <= 0:
        raise RuntimeError(f"multinomial: cannot sample n_sample <= 0 samples (num_samples={n})")
    V = input.shape[-1]
    if not replacement and n > V:
        raise RuntimeError(f"multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement "
                           f"({n} > {V})")
    xp = input.xp
    p = input.array if input.ndim == 2 else input.array[None, :]  # (B, V)
    B = p.shape[0]
    if B == 0:
        idx = xp.empty((0, n), dtype="int64")
    elif V == 0:
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    elif replacement or n == 1:
        cdf = xp.cumsum(p, axis=-1, dtype="float64")  # (B, V)
        _check_distribution(xp, p, cdf[:, -1])
        idx = _with_replacement(xp, backend_generator(generator, input.device, "multinomial"), p, cdf, n)
    else:
        totals = p.sum(axis=-1, dtype="float64")  # (B,)
        _check_distribution(xp, p, totals)
        idx = _without_replacement(xp, backend_generator(generator, input.device, "multinomial"), p, totals, n)
    if input.ndim == 1:
        idx = idx.reshape(n)
    return _into("multinomial", out, Tensor._wrap(idx, input.device))


# ----------------------------------------------------------------------------- in-place fills
def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with mean + std z, z ~ N(0, 1)."""
    dt = _check_fill("normal_", tensor)
    mean, std = _check_number("normal_", "mean", mean), _check_number("normal_", "std", std)
    if not std >= 0.0:
        raise RuntimeError(f"normal_: normal expects std >= 0.0, but found std {std}")
    z = _standard_normal(backend_generator(generator, tensor.device, "normal_"), tensor.shape, dt)
    z *= std
    z += mean
    return _fill("normal_", tensor, z)


def uniform_(tensor: Tensor, from_: float = 0.0, to: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with from + (to - from) u, u ~ U[0, 1) (PyTorch's ``uniform_(from=0, to=1)``)."""
    dt = _check_fill("uniform_", tensor)
    lo, hi = _check_number("uniform_", "from", from_), _check_number("uniform_", "to", to)
    if not lo <= hi:
        raise RuntimeError(f"uniform_: uniform_ expects to return a [from, to) range, but found from={from_} > to={to}")
    u = _uniform(backend_generator(generator, tensor.device, "uniform_"), tensor.shape,
                 dt if dt.itemsize >= 4 else _dtype("float32"))
    u *= hi - lo
    u += lo
    return _fill("uniform_", tensor, u)


def exponential_(tensor: Tensor, lambd: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with E / lambd, E ~ Exp(1): density lambd exp(-lambd x), x >= 0."""
    dt = _check_fill("exponential_", tensor)
    lam = _check_number("exponential_", "lambd", lambd)
    if not lam > 0.0:
        raise RuntimeError(f"exponential_: exponential_ expects lambda > 0.0, but found lambda={lambd}")
    e = _standard_exponential(backend_generator(generator, tensor.device, "exponential_"), tensor.shape, dt)
    e /= lam
    return _fill("exponential_", tensor, e)


def log_normal_(tensor: Tensor, mean: float = 1.0, std: float = 2.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with exp(mean + std z), z ~ N(0, 1): the logarithm of each value is N(mean, std^2)."""
    dt = _check_fill("log_normal_", tensor)
    mean, std = _check_number("log_normal_", "mean", mean), _check_number("log_normal_", "std", std)
    if not std > 0.0:
        raise RuntimeError(f"log_normal_: log_normal_ expects std > 0.0, but found std={std:g}")
    z = _standard_normal(backend_generator(generator, tensor.device, "log_normal_"), tensor.shape, dt)
    z *= std
    z += mean
    tensor.xp.exp(z, out=z)
    return _fill("log_normal_", tensor, z)


def cauchy_(tensor: Tensor, median: float = 0.0, sigma: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with median + sigma tan(pi (u - 1/2)), u ~ U[0, 1): the inverse of the Cauchy CDF."""
    dt = _check_fill("cauchy_", tensor)
    median, sigma = _check_number("cauchy_", "median", median), _check_number("cauchy_", "sigma", sigma)
    if not sigma > 0.0:
        raise RuntimeError(f"cauchy_: cauchy_ expects sigma > 0.0, but found sigma={sigma:g}")
    u = _uniform(backend_generator(generator, tensor.device, "cauchy_"), tensor.shape,
                 dt if dt.itemsize >= 4 else _dtype("float32"))
    u -= 0.5
    u *= math.pi
    tensor.xp.tan(u, out=u)
    u *= sigma
    u += median
    return _fill("cauchy_", tensor, u)


def geometric_(tensor: Tensor, p: float, *, generator: Generator | None = None) -> Tensor:
    """Fill with k in {1, 2, ...}, P(k) = (1 - p)^(k - 1) p: the number of Bernoulli(p) trials to the first success."""
    dt = _check_fill("geometric_", tensor, floating=False)
    if dt.kind == "b":
        raise RuntimeError("geometric_: not implemented for dtype bool")
    prob = _check_number("geometric_", "p", p)
    if not 0.0 < prob < 1.0:
        raise RuntimeError(f"geometric_: geometric_ expects p to be in (0, 1), but got p={p}")
    k = backend_generator(generator, tensor.device, "geometric_").geometric(prob, size=tensor.shape)
    return _fill("geometric_", tensor, k)


def bernoulli_(tensor: Tensor, p: Any = 0.5, *, generator: Generator | None = None) -> Tensor:
    """Fill with 1 where u < p, else 0, u ~ U[0, 1); ``p`` a number or a tensor broadcast to ``tensor``."""
    dt = _check_fill("bernoulli_", tensor, floating=False)
    if isinstance(p, Tensor):
        if p.device != tensor.device:
            raise RuntimeError(f"bernoulli_: p is on {p.device} but the tensor is on {tensor.device}")
        if _dtype(p.dtype).kind != "f":
            raise RuntimeError(f"bernoulli_: p must be a floating point tensor, got {_dtype(p.dtype)}")
        _check_probabilities("bernoulli_", p.array)
        try:
            prob: Any = tensor.xp.broadcast_to(p.array, tensor.shape)
        except ValueError:
            raise RuntimeError(f"bernoulli_: p of shape {p.shape} does not broadcast to the tensor's "
                               f"shape {tensor.shape}") from None
        draw_dt = _dtype(p.dtype)
    else:
        prob = _check_number("bernoulli_", "p", p)
        if not 0.0 <= prob <= 1.0:
            raise RuntimeError(f"bernoulli_: bernoulli_ expects p to be in [0, 1], but got p={p}")
        draw_dt = dt if dt.kind == "f" else _dtype("float64")
    u = _uniform(backend_generator(generator, tensor.device, "bernoulli_"), tensor.shape,
                 draw_dt if draw_dt.itemsize >= 4 else _dtype("float32"))
    return _fill("bernoulli_", tensor, u < prob)


def random_(tensor: Tensor, from_: int | None = None, to: Any = _NOT_GIVEN, *,
            generator: Generator | None = None) -> Tensor:
    """Fill with integers uniform on [from, to - 1]: PyTorch's ``random_()``, ``random_(to)``, ``random_(from, to)``.

    Without bounds: [0, 2**digits] for floats (every integer exact: 2**24 for float32), [0, max] for
    integer dtypes, {False, True} for bool; ``random_(from, None)`` goes up to that same maximum.
    """
    dt = _check_fill("random_", tensor, floating=False)
    xp = tensor.xp
    if dt.kind == "b":
        top = 1
    elif dt.kind in "iu":
        top = int(xp.iinfo(dt).max)
    else:
        top = 1 << (xp.finfo(dt).nmant + 1)
    if to is _NOT_GIVEN:  # random_() or random_(to)
        low, high = (0, top + 1) if from_ is None else (0, _check_int("random_", "to", from_))
    else:
        low = 0 if from_ is None else _check_int("random_", "from", from_)
        high = top + 1 if to is None else _check_int("random_", "to", to)
    _int_range("random_", low, high, dt, xp)
    k = _integers(backend_generator(generator, tensor.device, "random_"), low, high, tensor.shape, dt)
    return _fill("random_", tensor, k)


__all__ = [
    "Generator", "bernoulli", "bernoulli_", "cauchy_", "default_generator", "default_generator_for", "exponential_",
    "fork_rng", "geometric_", "get_rng_state", "initial_seed", "log_normal_", "manual_seed", "multinomial", "normal",
    "normal_", "poisson", "rand", "rand_like", "randint", "randint_like", "randn", "randn_like", "random_", "randperm",
    "seed", "set_rng_state", "uniform_",
]
