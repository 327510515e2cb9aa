"""Shared Hypothesis strategies and checks for tinygrad_lm's tests.

Strategies draw plain float64 NumPy arrays; ``check_grad`` turns them into
tensors on the test's device, runs ``tl.gradcheck`` and asserts that neither
the forward nor the backward pass wrote into its inputs.

    from helpers import arrays, broadcastable_shapes, check_grad, shapes

    @given(data=st.data())
    def test_tanh_grad(device, data):
        x = data.draw(arrays(data.draw(shapes()), -2, 2))
        check_grad(lambda t: t.tanh(), x, device=device)
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lm as tl

SearchStrategy = st.SearchStrategy


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> SearchStrategy:
    """Array shapes small enough for finite differences (at most 4**3 elements by default)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(
    num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 3
) -> SearchStrategy:
    """A tuple of ``num_shapes`` mutually broadcastable shapes, e.g. ((3, 1), (2, 1, 4))."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda b: b.input_shapes)


def matmul_shapes(max_dims: int = 2, max_side: int = 3) -> SearchStrategy:
    """Shape pairs valid for ``@``: 1-D and 2-D operands and broadcast batch dims (NumPy's gufunc signature)."""
    return hnp.mutually_broadcastable_shapes(
        signature="(m?,n),(n,p?)->(m?,p?)", max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda b: b.input_shapes)


def arrays(shape: Any, lo: float = -3.0, hi: float = 3.0, dtype: Any = np.float64) -> SearchStrategy:
    """Arrays of ``shape`` (a tuple or a strategy of tuples) with finite values in [lo, hi]."""
    elements = st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    return hnp.arrays(dtype, shape, elements=elements)


def arrays_avoiding(
    shape: Any, points: Sequence[float], margin: float = 0.1, lo: float = -3.0, hi: float = 3.0
) -> SearchStrategy:
    """Arrays in [lo, hi] whose values keep ``margin`` away from each of ``points`` (the kinks of an op).

    ``arrays_avoiding(s, [0.0])`` suits abs and relu; ``[lo_clamp, hi_clamp]`` suits clamp.
    """
    cuts = sorted(p for p in points if lo < p < hi)
    edges = [lo] + [c for p in cuts for c in (p - margin, p + margin)] + [hi]
    pieces = [
        st.floats(a, b, allow_nan=False, allow_infinity=False, allow_subnormal=False)
        for a, b in zip(edges[::2], edges[1::2])
        if a < b
    ]
    return hnp.arrays(np.float64, shape, elements=st.one_of(*pieces))


def positive_arrays(shape: Any, lo: float = 0.2, hi: float = 3.0) -> SearchStrategy:
    """Arrays bounded away from zero, for log, sqrt, division and the base of ``**``."""
    return arrays(shape, lo, hi)


def distinct_arrays(shape: Any, gap: float = 0.1, offset: float = -1.0) -> SearchStrategy:
    """Arrays whose elements all differ by at least ``gap``: max/min have no ties to break."""

    def build(draw_shape: tuple[int, ...]) -> SearchStrategy:
        n = int(np.prod(draw_shape))
        perm = st.permutations(list(range(n)))
        return perm.map(lambda p: (np.asarray(p, dtype=np.float64) * gap + offset).reshape(draw_shape))

    if isinstance(shape, tuple):
        return build(shape)
    return shape.flatmap(build)


def interleaved_arrays(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> SearchStrategy:
    """Two arrays that never tie: ``a`` on the grid k/2, ``b`` on k/2 + 1/4 (for maximum/minimum)."""
    grid = st.integers(-6, 6)
    a = hnp.arrays(np.int64, shape_a, elements=grid).map(lambda v: v * 0.5)
    b = hnp.arrays(np.int64, shape_b, elements=grid).map(lambda v: v * 0.5 + 0.25)
    return st.tuples(a, b)


def to_tensors(arrays_: Sequence[Any], device: str, requires_grad: bool = True) -> list[tl.Tensor]:
    """float64 leaf tensors on ``device`` from host arrays (integer and bool arrays never require grad)."""
    out = []
    for a in arrays_:
        a = np.asarray(a)
        rg = requires_grad and a.dtype.kind == "f"
        out.append(tl.tensor(a, device=device, requires_grad=rg))
    return out


def check_grad(fn: Callable[..., Any], *arrays_: Any, device: str = "cpu", **kwargs: Any) -> None:
    """``tl.gradcheck`` of ``fn`` at float64 tensors made from ``arrays_``; inputs must come back unmodified.

    Float arrays become tensors with ``requires_grad=True``; integer or bool arrays are passed as
    tensors without gradient (indices, masks). Extra keyword arguments go to ``tl.gradcheck``.
    """
    tensors = to_tensors(arrays_, device)
    before = [host(t) for t in tensors]
    assert tl.gradcheck(fn, tensors, **kwargs)
    for t, b in zip(tensors, before):
        np.testing.assert_array_equal(tl.backend.to_host(t.array), b, err_msg="the op modified its input")
    out = fn(*tensors)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if o.requires_grad]
    if outs:
        sum((o.sum() for o in outs[1:]), outs[0].sum()).backward()
    for t, b in zip(tensors, before):
        np.testing.assert_array_equal(tl.backend.to_host(t.array), b, err_msg="backward modified an input")


def host(t: tl.Tensor) -> np.ndarray:
    """A detached host copy of a tensor's values, for comparing with NumPy."""
    return np.array(tl.backend.to_host(t.detach().array), copy=True)


@st.composite
def dims(draw: Any, ndim: int, allow_none: bool = True, allow_tuple: bool = True) -> Any:
    """A ``dim`` argument for a reduction over ``ndim`` dims: None, an int (maybe negative) or a tuple."""
    options = ["none"] if allow_none or ndim == 0 else []
    if ndim > 0:
        options.append("int")
        if allow_tuple:
            options.append("tuple")
    kind = draw(st.sampled_from(options))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


def reduced_size(shape: tuple[int, ...], dim: Any) -> int:
    """How many elements a reduction over ``dim`` folds into each result element."""
    if dim is None:
        return int(np.prod(shape))
    axes = dim if isinstance(dim, tuple) else (dim,)
    return int(np.prod([shape[a] for a in axes]))


@contextlib.contextmanager
def kernels_taken() -> Iterator[list[str]]:
    """The names of the compiled kernels that ran (``fast.compiler.compiled`` gave one) inside the block."""
    from tinygrad_lm.fast import compiler

    taken: list[str] = []
    compiled = compiler.compiled

    def spy(kernel: Any, *arrays: Any) -> Any:
        fn = compiled(kernel, *arrays)
        if fn is not None:
            taken.append(kernel.__name__)
        return fn

    compiler.compiled = spy  # type: ignore[assignment]
    try:
        yield taken
    finally:
        compiler.compiled = compiled  # type: ignore[assignment]
