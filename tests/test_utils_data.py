"""tinygrad_lm.utils.data against torch.utils.data: datasets, samplers, collation, the DataLoader and its workers.

Samplers of the two frameworks draw different random orders from the same seed, so the
comparisons with PyTorch are of properties: batch sizes, coverage, collated structure,
dtypes and shapes, error types; ``default_collate`` results are compared value for value.
Worker tests use tiny datasets; helper datasets live at module level so that spawned
workers can unpickle them.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import time
from contextlib import nullcontext
from typing import Any, Iterator

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm.random import Generator
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
    WorkerInfo,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)

Point = collections.namedtuple("Point", ["x", "y"])


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def seeded(seed: int) -> Generator:
    """A seeded generator for the samplers and the DataLoader."""
    return Generator().manual_seed(seed)


# --- helper datasets (module level: spawned workers unpickle them by name) ---------------------------------------


class Names(Dataset):
    """A makemore-style dataset: ``x`` is a window of 3 character ids, ``y`` the next id (``(x.sum() * 7) % 27``).

    Example ``i`` is ``x = [i % 27, 5 i % 27, i // 27]``, so a row names its example.
    """

    def __init__(self, n: int) -> None:
        i = np.arange(n)
        self.x = np.stack([i % 27, i * 5 % 27, i // 27], axis=1)  # (n, 3)

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
        assert info is not None and isinstance(info.dataset, WhoFetched)
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
        time.sleep(5.0)
        return i


class SlowFirst(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        if i == 0:
            time.sleep(0.5)
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
    [1, 2.5],
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


# --- samplers ----------------------------------------------------------------------------------------------------


def test_sequential_and_random_samplers():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4] and len(SequentialSampler(range(5))) == 5
    perm = RandomSampler(range(10))
    epochs = [list(perm) for _ in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs) and len(perm) == 10
    assert epochs[0] != epochs[1]  # a new permutation each epoch

    more = list(RandomSampler(range(4), num_samples=10, generator=seeded(0)))
    assert len(more) == 10 and sorted(more[:4]) == sorted(more[4:8]) == [0, 1, 2, 3] and len(set(more[8:])) == 2
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=100, generator=seeded(0)))
    assert len(drawn) == 100 and set(drawn) == {0, 1, 2}
    assert len(RandomSampler(range(3), replacement=True, num_samples=100)) == 100


def test_random_samplers_are_reproducible_with_a_generator_and_with_manual_seed():
    def draws(generator: Any = None) -> list[list[int]]:
        return [list(RandomSampler(range(20), generator=generator)),
                list(RandomSampler(range(20), replacement=True, num_samples=7, generator=generator)),
                list(SubsetRandomSampler([3, 5, 7, 9], generator=generator)),
                list(WeightedRandomSampler([1.0, 2.0, 3.0], 6, generator=generator))]

    assert draws(seeded(1)) == draws(seeded(1)) != draws(seeded(2))
    tl.manual_seed(3)
    first = draws()
    tl.manual_seed(3)
    assert draws() == first


def test_subset_random_sampler_permutes_its_indices():
    sampler = SubsetRandomSampler([10, 20, 30, 40])
    assert len(sampler) == 4 and sorted(sampler) == [10, 20, 30, 40]
    orders = {tuple(sampler) for _ in range(20)}
    assert len(orders) > 1


def test_weighted_random_sampler_draws_in_proportion_to_the_weights():
    n = 30_000
    weights = np.array([1.0, 0.0, 3.0, 6.0])
    counts = np.bincount(list(WeightedRandomSampler(weights, n, generator=seeded(0))), minlength=4)
    p = weights / weights.sum()
    assert counts[1] == 0
    assert np.all(np.abs(counts - n * p) <= 5 * np.sqrt(n * p * (1 - p)) + 1e-9)  # within 5 standard deviations

    distinct = list(WeightedRandomSampler([5.0, 0.0, 1.0, 2.0], 3, replacement=False, generator=seeded(0)))
    assert sorted(distinct) == [0, 2, 3]  # positive weights first, the zero weight only after them
    assert sorted(WeightedRandomSampler([1.0, 0.0, 0.0], 3, replacement=False)) == [0, 1, 2]
    first = [list(WeightedRandomSampler([1.0, 1.0, 8.0], 1, replacement=False, generator=seeded(s)))[0]
             for s in range(400)]
    assert 0.7 < first.count(2) / 400 < 0.9  # P = 0.8, sd 0.02: a 5-sigma band


@pytest.mark.parametrize("make", [
    lambda s: s.WeightedRandomSampler([1.0, 2.0], 0),
    lambda s: s.WeightedRandomSampler([1.0, 2.0], 2, replacement=1),
    lambda s: s.WeightedRandomSampler([[1.0]], 2),
    lambda s: list(s.WeightedRandomSampler([1.0, 2.0], 3, replacement=False)),
    lambda s: list(s.WeightedRandomSampler([1.0, -2.0], 3)),
    lambda s: list(s.WeightedRandomSampler([0.0, 0.0], 3)),
    lambda s: list(s.WeightedRandomSampler([1.0, float("inf")], 3)),
    lambda s: s.RandomSampler(range(3), replacement=1),
    lambda s: s.RandomSampler(range(3), num_samples=0),
    lambda s: s.RandomSampler([]),
    lambda s: s.BatchSampler(range(3), 0, False),
    lambda s: s.BatchSampler(range(3), 2, 1),
], ids=["num_samples", "replacement", "weights_2d", "too_many", "negative", "zero_sum", "inf", "random_replacement",
        "random_num_samples", "empty", "batch_size", "drop_last"])
def test_sampler_errors_match_torch(make, torch):
    import tinygrad_lm.utils.data as ours

    with pytest.raises(Exception) as theirs:
        make(torch.utils.data)
    with pytest.raises(type(theirs.value)) as mine:
        make(ours)
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False)])
def test_batch_sampler_matches_torch(n, batch_size, drop_last, torch):
    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    theirs = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


# --- the DataLoader ----------------------------------------------------------------------------------------------


def check_name_batches(batches: list[Any], sizes: list[int]) -> list[int]:
    """Batches of ``Names``: ``[x (B, 3) int64, y (B,) int64]`` with ``y`` the label of ``x``; returns the rows."""
    assert [len(b[1]) for b in batches] == sizes
    rows = []
    for x, y in batches:
        x, y = x.numpy(), y.numpy()
        assert x.dtype == np.int64 and y.dtype == np.int64 and x.shape == (len(y), 3)
        np.testing.assert_array_equal(x.sum(axis=1) * 7 % 27, y)
        rows += (x[:, 0] + 27 * x[:, 2]).tolist()
    return rows


def test_name_generator_program_matches_torch(torch):
    """makemore's data pipeline: (context, next character) pairs, drawn with replacement by two workers."""
    data = Names(40)
    sampler = RandomSampler(data, replacement=True, num_samples=50, generator=seeded(0))
    loader = DataLoader(data, batch_size=8, sampler=sampler, num_workers=2, pin_memory=True)
    torch_sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=50)
    torch_loader = torch.utils.data.DataLoader(data, batch_size=8, sampler=torch_sampler, num_workers=2,
                                               pin_memory=False)
    ours, theirs = list(loader), list(torch_loader)
    assert len(loader) == len(torch_loader) == len(ours) == len(theirs) == 7
    assert type(ours[0]) is type(theirs[0]) is list
    for a, b in zip(ours, theirs):
        assert [t.dtype for t in a] == [np.dtype(str(t.dtype).replace("torch.", "")) for t in b]
        assert [t.shape for t in a] == [tuple(t.shape) for t in b]
    rows = check_name_batches(ours, [8] * 6 + [2])
    assert len(rows) == 50 and set(rows) <= set(range(40))

    shuffled = DataLoader(data, batch_size=16, shuffle=True, num_workers=2, generator=seeded(1))
    torch_shuffled = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, num_workers=2)
    ours, theirs = list(shuffled), list(torch_shuffled)
    assert [len(b[1]) for b in ours] == [len(b[1]) for b in theirs] == [16, 16, 8]
    rows = check_name_batches(ours, [16, 16, 8])
    assert sorted(rows) == list(range(40)) and rows != list(range(40))  # every example once, shuffled
    torch_rows = [int(r) for x, _ in theirs for r in x[:, 0] + 27 * x[:, 2]]
    assert sorted(torch_rows) == sorted(rows)


def test_a_shuffled_epoch_visits_every_example_once_and_each_epoch_differs():
    loader = DataLoader(TensorDataset(np.arange(23)), batch_size=5, shuffle=True, generator=seeded(0))
    epochs = [[b[0].tolist() for b in loader] for _ in range(2)]
    for epoch in epochs:
        assert [len(b) for b in epoch] == [5, 5, 5, 5, 3]
        assert sorted(sum(epoch, [])) == list(range(23))
    assert epochs[0] != epochs[1]
    dropped = DataLoader(TensorDataset(np.arange(23)), batch_size=5, shuffle=True, drop_last=True)
    assert len(dropped) == 4 and [len(b[0]) for b in dropped] == [5] * 4


def test_shuffle_is_reproducible_and_independent_of_num_workers():
    def epoch(num_workers: int, generator: Any = None) -> list[list[int]]:
        loader = DataLoader(TensorDataset(np.arange(12)), batch_size=4, shuffle=True, num_workers=num_workers,
                            generator=generator)
        return [b[0].tolist() for b in loader]

    assert epoch(0, seeded(5)) == epoch(2, seeded(5)) == epoch(0, seeded(5)) != epoch(0, seeded(6))
    persistent = DataLoader(TensorDataset(np.arange(12)), batch_size=4, shuffle=True, num_workers=2,
                            persistent_workers=True, generator=seeded(5))
    in_main = DataLoader(TensorDataset(np.arange(12)), batch_size=4, shuffle=True, generator=seeded(5))
    for _ in range(2):
        assert [b[0].tolist() for b in persistent] == [b[0].tolist() for b in in_main]
    tl.manual_seed(9)
    first = epoch(0)
    tl.manual_seed(9)
    assert epoch(2) == first


def test_loader_options_batch_sampler_no_batching_and_collate_fn(torch):
    data = TensorDataset(np.arange(6) * 10)
    by_sampler = DataLoader(data, batch_sampler=[[5, 0], [1]])
    assert [b[0].tolist() for b in by_sampler] == [[50, 0], [10]] and len(by_sampler) == 2
    unbatched = DataLoader(Names(4), batch_size=None)
    items = list(unbatched)
    torch_items = list(torch.utils.data.DataLoader(Names(4), batch_size=None))
    assert len(unbatched) == 4 and len(items) == 4
    for a, b in zip(items, torch_items):
        assert_same_as_torch(a, b, torch)
    raw = DataLoader(Names(5), batch_size=2, collate_fn=lambda batch: [y for _, y in batch])
    assert list(raw) == [[Names(5)[i][1] for i in (0, 1)], [Names(5)[i][1] for i in (2, 3)], [Names(5)[4][1]]]


def test_loader_takes_a_whole_batch_from_get_batch_with_the_default_collate(monkeypatch):
    def per_example(self, index):
        raise AssertionError("fetched example by example")

    monkeypatch.setattr(TensorDataset, "__getitem__", per_example)
    batches = list(DataLoader(TensorDataset(np.arange(5), np.arange(5) * 2.0), batch_size=2))
    assert isinstance(batches[0], list) and [b[1].tolist() for b in batches] == [[0.0, 2.0], [4.0, 6.0], [8.0]]
    train, _ = random_split(TensorDataset(np.arange(10)), [0.6, 0.4], generator=seeded(0))
    assert [b[0].tolist() for b in DataLoader(train, batch_size=4)] == [train.indices[:4], train.indices[4:]]
    assert Subset(Names(3), [0]).get_batch is None  # Names has no get_batch: examples are fetched one by one


LOADER_ERRORS = [
    dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2), dict(num_workers=1, prefetch_factor=-1),
    dict(persistent_workers=True), dict(shuffle=True, sampler=[0, 1]), dict(batch_sampler=[[0]], batch_size=2),
    dict(batch_sampler=[[0]], shuffle=True), dict(batch_sampler=[[0]], drop_last=True),
    dict(batch_sampler=[[0]], sampler=[0]), dict(batch_size=None, drop_last=True),
    dict(multiprocessing_context="spawn"), dict(num_workers=1, multiprocessing_context="bogus"),
    dict(num_workers=1, multiprocessing_context=3), dict(batch_size=0), dict(batch_size=-1), dict(drop_last=1),
]


@pytest.mark.parametrize("kwargs", LOADER_ERRORS, ids=lambda k: ",".join(k))
def test_loader_argument_errors_match_torch(kwargs, torch):
    with pytest.raises(Exception) as theirs:
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(5)), **kwargs)
    with pytest.raises(type(theirs.value)) as ours:
        DataLoader(TensorDataset(np.arange(5)), **kwargs)
    def words(message: str) -> list[str]:
        return message.replace(".", ". ").split()  # PyTorch misses a space after one full stop

    assert words(str(ours.value)) == words(str(theirs.value))
    assert any(name in str(ours.value) for name in kwargs)  # it names the offending argument


@pytest.mark.parametrize("kwargs", [dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])],
                         ids=lambda k: ",".join(k))
def test_iterable_dataset_refuses_samplers_like_torch(kwargs, torch):
    class TorchRange(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(ValueError) as theirs:
        torch.utils.data.DataLoader(TorchRange(), **kwargs)
    with pytest.raises(ValueError) as ours:
        DataLoader(Range(0, 3), **kwargs)
    assert str(ours.value) == str(theirs.value)


def test_loader_attributes_are_frozen_and_len_follows_the_dataset():
    loader = DataLoader(TensorDataset(np.arange(7)), batch_size=3)
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 2
    assert len(loader) == 3
    assert len(DataLoader(Range(0, 7), batch_size=3)) == 3
    assert len(DataLoader(Range(0, 7), batch_size=3, drop_last=True)) == 2
    assert len(DataLoader(Range(0, 7), batch_size=None)) == 7
    with pytest.raises(TypeError):
        len(DataLoader(ChainDataset([IterableDataset()])))


def test_iterable_dataset_in_the_main_process():
    assert [b.tolist() for b in DataLoader(Range(0, 7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Range(0, 7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert [b for b in DataLoader(Range(0, 3), batch_size=None)] == [0, 1, 2]


# --- worker processes --------------------------------------------------------------------------------------------


def test_workers_return_batches_in_order_with_their_own_seeds():
    loader = DataLoader(WhoFetched(), batch_size=2, num_workers=2, generator=seeded(0))
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [b["worker"].tolist() for b in batches] == [[0, 0], [1, 1], [0, 0], [1, 1]]  # round robin
    assert all(b["num_workers"].tolist() == [2, 2] for b in batches)
    seeds = {w: s for b in batches for w, s in zip(b["worker"].tolist(), b["seed"].tolist())}
    assert seeds[1] == seeds[0] + 1  # base_seed + worker_id
    pids = {b["pid"][0].item() for b in batches}
    assert len(pids) == 2 and os.getpid() not in pids
    draws = [d for b in batches for d in b["draw"].tolist()]
    assert len(set(draws)) == 8  # workers draw different numbers from tinygrad_lm's generator...
    np_draws = [d for b in batches for d in b["np_draw"].tolist()]
    assert len(set(np_draws)) == 8  # ... and from NumPy's
    again = list(DataLoader(WhoFetched(), batch_size=2, num_workers=2, generator=seeded(0)))
    assert [b["draw"].tolist() for b in again] == [b["draw"].tolist() for b in batches]  # the same base seed
    other = list(DataLoader(WhoFetched(), batch_size=2, num_workers=2, generator=seeded(1)))
    assert [b["draw"].tolist() for b in other] != [b["draw"].tolist() for b in batches]
    assert get_worker_info() is None  # in the main process
    info = WorkerInfo(id=0, num_workers=1, seed=3, dataset=None)
    with pytest.raises(RuntimeError, match="Cannot assign attributes to WorkerInfo"):
        info.id = 1


def test_worker_init_fn_runs_in_each_worker():
    loader = DataLoader(ReadsInit(), batch_size=1, num_workers=2, worker_init_fn=record_init)
    assert list(loader) == [["init 0"], ["init 1"], ["init 0"], ["init 1"]]
    assert "TL_TEST_INIT" not in os.environ


def test_worker_exceptions_reraise_in_the_main_process_naming_the_worker():
    loader = DataLoader(FailsAt(3), batch_size=2, num_workers=2)
    iterator = iter(loader)
    assert next(iterator).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"(?s)Caught ValueError in DataLoader worker process 1\..*item 3 is broken"):
        next(iterator)
    assert next(iterator).tolist() == [4, 5]  # the iterator stays usable, as in PyTorch
    with pytest.raises(StopIteration):
        next(iterator)

    failing_init = DataLoader(FailsAt(99), num_workers=1, worker_init_fn=fails_init)
    with pytest.raises(KeyError, match=r"(?s)worker process 0 while starting.*no config for worker 0"):
        list(failing_init)


def test_a_worker_that_dies_or_stalls_raises():
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+.*exited unexpectedly"):
        list(DataLoader(Dies(), num_workers=1))
    persistent = DataLoader(Dies(), num_workers=1, persistent_workers=True)
    for _ in range(2):  # the second epoch starts new workers in place of the dead one
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            list(persistent)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.3 seconds"):
        list(DataLoader(Slow(), num_workers=1, timeout=0.3))
    assert time.monotonic() - start < 2.5  # the stalled worker is terminated, not waited for (5 s)


@pytest.mark.parametrize("batch_size, drop_last", [(3, False), (3, True), (None, False)])
def test_iterable_dataset_sharded_between_workers(batch_size, drop_last):
    loader = DataLoader(Range(0, 10), batch_size=batch_size, drop_last=drop_last, num_workers=2)
    batches = list(loader)
    items = [i for b in batches for i in (b.tolist() if batch_size else [b])]
    if batch_size is None:
        assert sorted(items) == list(range(10))
    elif drop_last:
        assert [b.tolist() for b in batches] == [[0, 1, 2], [5, 6, 7]]  # each worker drops its own short tail
    else:
        assert [b.tolist() for b in batches] == [[0, 1, 2], [5, 6, 7], [3, 4], [8, 9]]  # alternating workers
    unsharded = list(DataLoader(Range(0, 4, shard=False), batch_size=2, num_workers=2))
    assert sorted(i for b in unsharded for i in b.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]  # each copy yields all


def test_uneven_iterable_shards_end_cleanly():
    loader = DataLoader(Range(0, 3), batch_size=1, num_workers=3, persistent_workers=True)
    for _ in range(2):
        assert sorted(b.item() for b in loader) == [0, 1, 2]


def test_persistent_workers_live_across_epochs_and_others_do_not():
    persistent = DataLoader(WhoFetched(), batch_size=4, num_workers=2, persistent_workers=True)
    pids = [{b["pid"][0].item() for b in persistent} for _ in range(2)]
    assert pids[0] == pids[1] and len(pids[0]) == 2
    iterator = iter(persistent)
    next(iterator)
    assert [b["index"].tolist() for b in persistent] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a half epoch is dropped
    workers = persistent._iterator._workers
    del persistent, iterator
    assert not any(w.is_alive() for w in workers)

    fresh = DataLoader(WhoFetched(), batch_size=4, num_workers=2)
    assert {b["pid"][0].item() for b in fresh}.isdisjoint({b["pid"][0].item() for b in fresh})


def test_workers_shut_down_on_completion_break_and_del():
    loader = DataLoader(TensorDataset(np.arange(40)), batch_size=2, num_workers=2)
    iterator = iter(loader)
    workers = iterator._workers
    assert sum(b[0].numel() for b in iterator) == 40
    assert not any(w.is_alive() for w in workers)  # the end of the epoch stops them

    iterator = iter(loader)
    next(iterator)
    workers = iterator._workers
    assert all(w.is_alive() for w in workers)
    del iterator
    assert not any(w.is_alive() for w in workers)  # del stops them at once

    before = set(multiprocessing.active_children())
    for _ in loader:
        workers = list(set(multiprocessing.active_children()) - before)
        break
    assert len(workers) == 2 and not any(w.is_alive() for w in workers)  # so does leaving the loop


def test_in_order_false_hands_out_every_batch_as_it_arrives():
    loader = DataLoader(SlowFirst(), batch_size=1, num_workers=2, in_order=False)
    batches = [b.item() for b in loader]
    assert sorted(batches) == list(range(6)) and batches[0] != 0  # item 0 is slow: it does not hold the others up
    assert [b.item() for b in DataLoader(SlowFirst(), batch_size=1, num_workers=2)] == list(range(6))
    ranges = DataLoader(Range(0, 10), batch_size=3, num_workers=2, in_order=False)
    assert sorted(i for b in ranges for i in b.tolist()) == list(range(10))


def test_the_iterator_has_the_loaders_length():
    loader = DataLoader(TensorDataset(np.arange(10)), batch_size=4, num_workers=1)
    iterator = iter(loader)
    assert len(iterator) == len(iter(DataLoader(TensorDataset(np.arange(10)), batch_size=4))) == len(loader) == 3
    del iterator


def test_a_generator_that_is_not_one_is_refused_by_name():
    with pytest.raises(TypeError, match="RandomSampler: generator must be a tinygrad_lm.Generator, got int"):
        list(RandomSampler(range(3), generator=5))
    with pytest.raises(TypeError, match="random_split: generator must be a tinygrad_lm.Generator"):
        random_split(range(3), [1, 2], generator="seed")


def test_spawned_workers_give_the_same_batches():
    data = TensorDataset(np.arange(8), np.arange(8) * 0.5)
    expected = [[t.tolist() for t in b] for b in DataLoader(data, batch_size=3, shuffle=True, generator=seeded(2))]
    spawned = DataLoader(data, batch_size=3, shuffle=True, generator=seeded(2), num_workers=2,
                         multiprocessing_context="spawn", worker_init_fn=record_init)
    assert [[t.tolist() for t in b] for b in spawned] == expected
    context = multiprocessing.get_context("spawn")
    assert list(DataLoader(ReadsInit(), num_workers=1, multiprocessing_context=context,
                           worker_init_fn=record_init)) == [["init 0"]] * 4


@pytest.mark.cuda
def test_cuda_tensors_from_workers_raise_a_clear_error():
    if not tl.cuda_is_available():
        pytest.skip("CUDA is not available (no CuPy or no GPU)")
    data = TensorDataset(tl.arange(4, device="cuda"))
    assert [b[0].device for b in DataLoader(data, batch_size=2)] == [data.tensors[0].device] * 2
    with pytest.raises(RuntimeError, match="workers take and return only CPU tensors; got a tensor on cuda"):
        list(DataLoader(data, batch_size=2, num_workers=1, multiprocessing_context="spawn"))
