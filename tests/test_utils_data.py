"""tinygrad_lm.utils.data against torch.utils.data: datasets, samplers, collation, the DataLoader and its workers.

Samplers of the two frameworks draw different random orders from the same seed, so the
comparisons with PyTorch are of properties: batch sizes, coverage, collated structure,
dtypes and shapes, error types; ``default_collate`` results are compared value for value.
Worker tests use tiny datasets; helper datasets live at module level so that spawned
workers can unpickle them.
"""
from __future__ import annotations

import collections
import gc
import multiprocessing
import os
import time
from contextlib import nullcontext
from typing import Any, Iterator

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    StackDataset,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)

Point = collections.namedtuple("Point", ["x", "y"])


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def seeded(seed: int) -> Any:
    """A seeded generator for the samplers and the DataLoader."""
    return np.random.default_rng(seed)


# --- helper datasets (module level: spawned workers unpickle them by name) ---------------------------------------


class Names(Dataset):
    """A makemore-style dataset: ``x`` is a window of 3 character ids, ``y`` the next id (``(x.sum() * 7) % 27``)."""

    def __init__(self, n: int) -> None:
        self.x = (np.arange(n * 3).reshape(n, 3) * 5) % 27

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], int(self.x[i].sum() * 7 % 27)


class WhoFetched(Dataset):
    """Item ``i`` is ``(i, worker id, worker seed, pid, a draw from the worker's global generators)``."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, Any]:
        info = get_worker_info()
        assert info is not None and info.dataset is not self  # each worker owns a copy
        return {"index": i, "worker": info.id, "num_workers": info.num_workers, "seed": info.seed,
                "pid": os.getpid(), "draw": float(tl.rand(1).item()), "np_draw": float(np.random.rand())}


class FailsAt(Dataset):
    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            raise ValueError(f"item {i} is broken")
        return i


class Slow(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        time.sleep(3.0)
        return i


class Dies(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        os._exit(3)


class Range(IterableDataset):
    """``range(start, stop)``, split between workers in contiguous shares when ``shard``."""

    def __init__(self, start: int, stop: int, shard: bool = True) -> None:
        self.start, self.stop, self.shard = start, stop, shard

    def __iter__(self) -> Iterator[int]:
        info = get_worker_info()
        if info is None or not self.shard:
            return iter(range(self.start, self.stop))
        per_worker = -(-(self.stop - self.start) // info.num_workers)
        lo = self.start + info.id * per_worker
        return iter(range(lo, min(lo + per_worker, self.stop)))

    def __len__(self) -> int:
        return self.stop - self.start


def record_init(worker_id: int) -> None:
    """A worker_init_fn: leaves a mark that the dataset can read back."""
    os.environ["TL_TEST_INIT"] = f"init {worker_id}"


class ReadsInit(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> str:
        return os.environ.get("TL_TEST_INIT", "not called")


def fails_init(worker_id: int) -> None:
    raise KeyError(f"no config for worker {worker_id}")


# --- collation ---------------------------------------------------------------------------------------------------


def assert_same_as_torch(ours: Any, theirs: Any, torch: Any) -> None:
    """``ours`` has the structure, types, dtypes, shapes and values of PyTorch's ``theirs``."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, tl.Tensor), f"expected a Tensor, got {type(ours).__name__}"
        assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", "")), (ours.dtype, theirs.dtype)
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for key in theirs:
            assert_same_as_torch(ours[key], theirs[key], torch)
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), (type(ours), type(theirs))
        for a, b in zip(ours, theirs):
            assert_same_as_torch(a, b, torch)
    else:
        assert type(ours) is type(theirs) and ours == theirs


SAMPLES = [
    [np.arange(3, dtype=np.float32) + i for i in range(4)],
    [np.int32(i) for i in range(3)],
    [np.float32(i) / 2 for i in range(3)],
    [np.bool_(i % 2) for i in range(3)],
    [1.5, 2.5],
    [1, 2, 3],
    [True, False],
    ["a", "bc"],
    [b"a", b"bc"],
    [(np.ones((2, 2)), 1, "x"), (np.zeros((2, 2)), 2, "y")],
    [[1, 2.0], [3, 4.0]],
    [{"a": 1, "b": {"c": np.float32(2)}}, {"a": 3, "b": {"c": np.float32(4)}}],
    [Point(1, 2.0), Point(3, 4.0)],
    [collections.OrderedDict(q=np.arange(2)), collections.OrderedDict(q=np.arange(2) * 3)],
]


@pytest.mark.parametrize("batch", SAMPLES, ids=lambda b: type(b[0]).__name__)
def test_default_collate_matches_torch(batch, torch):
    from torch.utils.data import default_collate as torch_collate

    assert_same_as_torch(default_collate(batch), torch_collate(batch), torch)


@pytest.mark.parametrize("data", [s[0] for s in SAMPLES] + [(np.ones(2), "a"), np.array(["a"])],
                         ids=lambda d: type(d).__name__)
def test_default_convert_matches_torch(data, torch):
    from torch.utils.data import default_convert as torch_convert

    assert_same_as_torch(default_convert(data), torch_convert(data), torch)


def test_default_collate_stacks_tensors_and_keeps_the_graph():
    a = tl.tensor([1.0, 2.0], requires_grad=True)
    b = tl.tensor([3.0, 4.0], requires_grad=True)
    batch = default_collate([a, b])
    assert batch.shape == (2, 2) and batch.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    (batch * tl.tensor([[1.0, 1.0], [2.0, 2.0]])).sum().backward()
    assert a.grad.tolist() == [1.0, 1.0] and b.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("batch", [
    [np.zeros(2), np.zeros(3)],
    [tl.zeros(2), tl.zeros(3)],
    [[1, 2], [1]],
    [object(), object()],
    [np.array(["a"]), np.array(["b"])],
], ids=["arrays", "tensors", "lists", "object", "strings"])
def test_default_collate_errors_match_torch(batch, torch):
    from torch.utils.data import default_collate as torch_collate

    torch_batch = [torch.zeros(b.shape) if isinstance(b, tl.Tensor) else b for b in batch]
    with pytest.raises(Exception) as theirs:
        torch_collate(torch_batch)
    with pytest.raises(type(theirs.value)) as ours:
        default_collate(batch)
    assert str(ours.value) == str(theirs.value)


def test_default_collate_rejects_an_empty_batch_and_non_sequences():
    with pytest.raises(ValueError, match="at least one"):
        default_collate([])
    with pytest.raises(TypeError, match="sequence of examples"):
        default_collate(np.arange(3))


# --- datasets ----------------------------------------------------------------------------------------------------


def test_tensor_dataset_rows_and_errors(torch):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    ours = TensorDataset(x, np.arange(6))
    theirs = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.arange(6))
    assert len(ours) == len(theirs) == 6
    for i in (0, 5, -1):
        assert_same_as_torch(list(ours[i]), list(theirs[i]), torch)
    with pytest.raises(ValueError, match="Size mismatch.*6, 5"):
        TensorDataset(x, np.arange(5))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_concat_subset_stack_and_chain_datasets():
    a, b = TensorDataset(np.arange(3)), TensorDataset(np.arange(10, 15))
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 8 and both.cumulative_sizes == [3, 8]
    assert [both[i][0].item() for i in range(8)] == [0, 1, 2, 10, 11, 12, 13, 14]
    assert both[-1][0].item() == 14 and both[-8][0].item() == 0
    with pytest.raises(ValueError, match="absolute value of index"):
        both[-9]
    with pytest.raises(IndexError):
        both[8]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([a, Range(0, 3)])

    sub = Subset(both, [7, 0, 3])
    assert len(sub) == 3 and [sub[i][0].item() for i in range(3)] == [14, 0, 10]
    assert [x[0].item() for x in sub.__getitems__([2, 0])] == [10, 14]

    stacked = StackDataset(a, TensorDataset(np.arange(3) * 2))
    assert len(stacked) == 3 and [t.item() for t in stacked[2][1]] == [4]
    named = StackDataset(x=a, y=a)
    assert set(named[1]) == {"x", "y"}
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset(a, b)
    with pytest.raises(ValueError, match="not both"):
        StackDataset(a, y=a)

    chain = Range(0, 3) + Range(5, 7)
    assert isinstance(chain, ChainDataset) and list(chain) == [0, 1, 2, 5, 6] and len(chain) == 5
    assert list(chain) == [0, 1, 2, 5, 6]  # a new pass each epoch
    with pytest.raises(TypeError, match="IterableDataset"):
        list(ChainDataset([a]))


def test_abstract_datasets_name_what_is_missing():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="__iter__"):
        iter(IterableDataset())
    with pytest.raises(NotImplementedError, match="__iter__"):
        iter(Sampler())


@pytest.mark.parametrize("n, lengths", [(11, [0.5, 0.3, 0.2]), (10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]),
                                         (12, [5, 7]), (3, [1.0, 0.0])])
def test_random_split_lengths_match_torch_and_split_disjointly(n, lengths, torch):
    empty_split = pytest.warns(UserWarning, match="split at index 1 is 0") if 0.0 in lengths else nullcontext()
    with empty_split:
        ours = random_split(range(n), lengths, generator=seeded(0))
    with empty_split if 0.0 not in lengths else pytest.warns(UserWarning):
        theirs = torch.utils.data.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert all(isinstance(s, Subset) for s in ours)
    everything = [s[i] for s in ours for i in range(len(s))]
    assert sorted(everything) == list(range(n))


def test_random_split_is_reproducible_and_checks_lengths():
    def split(generator: Any = None) -> list[list[int]]:
        return [list(s.indices) for s in random_split(range(20), [0.25, 0.75], generator=generator)]

    assert split(seeded(3)) == split(seeded(3)) != split(seeded(4))
    tl.manual_seed(7)
    first = split()
    tl.manual_seed(7)
    assert split() == first
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(5), [2, 2])
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(5), [0.5, 0.6])
    with pytest.raises(ValueError, match=r"lengths\[1\]"):
        random_split(range(5), [6, -1])
