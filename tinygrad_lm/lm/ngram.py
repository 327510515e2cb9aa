"""Count-based n-gram language models: MLE, add-k and interpolated Kneser-Ney.

An n-gram model predicts token ``w`` from the ``n - 1`` tokens before it, its
context ``h``, by counting how often each continuation followed ``h`` in the
training text. Every document is padded on the left with ``n - 1`` copies of a
beginning-of-sequence marker ``<s>``, so the first tokens have a context too
(``<s>`` is never predicted).

Counting is done with NumPy, not per-token Python dicts: tokens become int ids,
and an m-gram gets an id from its (m-1)-gram prefix id and its last token: the
rank of the int64 key ``prefix_id * base + token`` among the sorted distinct keys
(what ``np.unique(..., return_inverse=True)`` computes; exact, no hashing).
The sorted unique keys of each order double as a lookup table: the m-grams with
context ``h`` are the contiguous run of keys in ``[id(h) * base, (id(h) + 1) * base)``.
"""
from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from .. import backend, generators

SMOOTHINGS = ("kn", "addk", "mle")
BOS = "<s>"


def _unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of ``keys`` and each key's rank among them."""
    order = np.argsort(keys)
    ranked = keys[order]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
    inverse = np.empty(len(keys), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ranked[new], inverse


class NGramLM:
    """An n-gram language model over any hashable tokens (characters, words, int ids).

    With ``c(.)`` the training counts, ``h`` the context (the previous ``n - 1``
    tokens), ``V`` the vocabulary size and ``c(h) = sum_w c(h w)``:

    - ``'mle'``: ``P(w | h) = c(h w) / c(h)``, the counting estimate. An n-gram never
      seen gets probability 0, so a held-out text with one has infinite perplexity,
      and a context never seen has no distribution at all (0 / 0).
    - ``'addk'``: ``P(w | h) = (c(h w) + k) / (c(h) + k V)``; ``k = 1`` is Laplace smoothing.
    - ``'kn'``: interpolated Kneser-Ney with absolute discount ``D``. At the highest
      order ``a(h w) = c(h w)``; at every lower order ``a(h' w) = N1+(. h' w)``, the number
      of distinct tokens seen before ``h' w`` (continuation counts: how many contexts a
      word completes, not how often it occurs). With ``h'`` the context minus its first
      token and ``N1+(h .)`` the number of distinct ``w`` with ``a(h w) > 0``::

          P(w | h) = max(a(h w) - D, 0) / a(h) + D N1+(h .) / a(h) * P(w | h')

      where ``a(h) = sum_w a(h w)``, recursing down to the empty context, whose lower
      order is the uniform ``1 / V``. A context never seen (``a(h) = 0``) passes ``P(w | h')``
      through unchanged. Every level sums to 1 over the vocabulary.

    ``fit`` takes one token sequence (a ``str`` is a sequence of characters) or a list
    of documents (lists or arrays of tokens); pass ``vocab`` to give probability to
    tokens that the training text lacks (e.g. every id of a tokenizer).
    """

    def __init__(self, n: int = 3, smoothing: str = "kn", k: float = 1.0, discount: float = 0.75) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if smoothing == "addk" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got {k}")
        if smoothing == "kn" and not 0 < discount <= 1:
            raise ValueError(f"the Kneser-Ney discount must be in (0, 1], got {discount}")
        self.n = n
        self.smoothing = smoothing
        self.k = float(k)
        self.discount = float(discount)
        self.vocab: list[Any] = []
        self._index: dict[Any, int] = {}
        self._int_vocab: tuple[np.ndarray, np.ndarray] | None = None
        self._keys: list[np.ndarray] = []
        self._raw: list[np.ndarray] = []
        self._a: list[np.ndarray] = []
        self._ctx_total: list[np.ndarray] = []
        self._ctx_types: list[np.ndarray] = []

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def _base(self) -> int:
        return len(self.vocab) + 2  # token ids, then <s>, then "a token the model never saw" (contexts only)

    @property
    def _bos(self) -> int:
        return len(self.vocab)

    @property
    def _unseen(self) -> int:
        return len(self.vocab) + 1

    def __repr__(self) -> str:
        extra = {"kn": f", discount={self.discount}", "addk": f", k={self.k}", "mle": ""}[self.smoothing]
        return f"NGramLM(n={self.n}, smoothing={self.smoothing!r}{extra}, vocab_size={self.vocab_size})"

    def fit(self, tokens: Any, vocab: Iterable[Hashable] | None = None) -> NGramLM:
        """Count the n-grams of ``tokens`` (one sequence, or a list of documents)."""
        docs = _documents(tokens)
        if sum(len(d) for d in docs) == 0:
            raise ValueError("fit needs at least one token")
        if vocab is not None:
            self._set_vocab(list(dict.fromkeys(vocab)))
            id_docs = [self._encode(d, "training") for d in docs]
        else:
            id_docs = self._encode_new_vocab(docs)
        self._count(self._padded_stream(id_docs))
        return self

    def _set_vocab(self, vocab: list[Any]) -> None:
        if not vocab:
            raise ValueError("the vocabulary is empty")
        self.vocab = vocab
        self._index = {t: i for i, t in enumerate(vocab)}
        self._int_vocab = None
        if all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in vocab):
            values = np.array(vocab, dtype=np.int64)
            order = np.argsort(values)
            self._int_vocab = (values[order], order.astype(np.int64))

    def _encode_new_vocab(self, docs: list[Any]) -> list[np.ndarray]:
        if all(isinstance(d, str) for d in docs):
            codes = [np.frombuffer(d.encode("utf-32-le"), dtype=np.uint32).astype(np.int64) for d in docs]
            values, inverse = _unique_inverse(np.concatenate(codes))
            self._set_vocab([chr(c) for c in values.tolist()])
        elif all(isinstance(d, np.ndarray) and d.dtype.kind in "iu" for d in docs):
            values, inverse = _unique_inverse(np.concatenate(docs).astype(np.int64))
            self._set_vocab(values.tolist())
        else:
            seen: dict[Any, int] = {}
            flat = [seen.setdefault(t, len(seen)) for d in docs for t in d]
            vocab = list(seen)
            try:
                vocab.sort()
            except TypeError:
                pass  # tokens of mixed types keep the order of first appearance
            self._set_vocab(vocab)
            remap = np.array([self._index[t] for t in seen], dtype=np.int64)
            inverse = remap[np.array(flat, dtype=np.int64)]
        ends = np.cumsum([len(d) for d in docs])
        return np.split(inverse, ends[:-1])

    def _encode(self, tokens: Any, what: str) -> np.ndarray:
        """Token ids of ``tokens``; a token outside the vocabulary is an error naming it."""
        if self._int_vocab is not None and isinstance(tokens, np.ndarray) and tokens.dtype.kind in "iu":
            values, order = self._int_vocab
            tokens = tokens.astype(np.int64)
            pos = np.searchsorted(values, tokens).clip(0, len(values) - 1)
            missing = values[pos] != tokens
            if missing.any():
                _raise_unknown(tokens[missing].tolist(), what)
            return order[pos]
        get = self._index.get
        ids = [get(t, -1) for t in tokens]
        if ids and min(ids) < 0:
            _raise_unknown([t for t, i in zip(tokens, ids) if i < 0], what)
        return np.array(ids, dtype=np.int64)

    def _padded_stream(self, id_docs: list[np.ndarray]) -> np.ndarray:
        pad = np.full(self.n - 1, self._bos, dtype=np.int64)
        return np.concatenate([part for d in id_docs for part in (pad, d)])

    def _count(self, stream: np.ndarray) -> None:
        """Keys, raw counts, KN counts and per-context totals for every order 1..n."""
        n, base, V = self.n, self._base, len(self.vocab)
        real = stream < V
        if len(stream) * base >= 2**62:
            raise ValueError(f"{len(stream)} tokens with a vocabulary of {V} overflow the int64 n-gram keys")
        self._keys, self._raw, self._a, self._ctx_total, self._ctx_types = [], [], [], [], []
        h_prev = np.zeros(len(stream), dtype=np.int64)  # id of the (m-1)-gram ending at each position
        for m in range(1, n + 1):
            if m == 1:
                keys, h = np.arange(base, dtype=np.int64), stream
            else:
                before = np.concatenate([h_prev[:1], h_prev[:-1]])  # (m-1)-gram ending one step earlier
                keys, h = _unique_inverse(before * base + stream)
            raw = np.bincount(h[real], minlength=len(keys)).astype(np.float64)
            if m > 1 and self.smoothing == "kn":
                suffix = np.empty(len(keys), dtype=np.int64)
                suffix[h] = h_prev  # the (m-1)-gram that ends each m-gram
                continuation = np.bincount(suffix[raw > 0], minlength=len(self._keys[-1]))
                self._a[-1] = continuation.astype(np.float64)
            self._keys.append(keys)
            self._raw.append(raw)
            self._a.append(raw)
            h_prev = h
        for m in range(1, n + 1):
            ctx = self._keys[m - 1] // base
            size = 1 if m == 1 else len(self._keys[m - 2])
            a = self._a[m - 1]
            self._ctx_total.append(np.bincount(ctx, weights=a, minlength=size))
            self._ctx_types.append(np.bincount(ctx, weights=(a > 0).astype(np.float64), minlength=size))

    def _check_fitted(self) -> None:
        if not self._keys:
            raise RuntimeError("this NGramLM is not fitted yet: call fit(tokens) first")

    def _context_ids(self, context: Any) -> np.ndarray:
        """The last ``n - 1`` tokens of ``context`` as ids, left-padded with ``<s>`` (unseen tokens allowed)."""
        context = [] if context is None else list(context)
        tail = context[max(0, len(context) - (self.n - 1)) :] if self.n > 1 else []
        ids = [self._index.get(t, self._bos if t == BOS else self._unseen) for t in tail]
        return np.array([self._bos] * (self.n - 1 - len(ids)) + ids, dtype=np.int64)

    def _find(self, m: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the m-grams with the given keys, and whether each exists."""
        if m == 1:
            return keys, np.ones(len(keys), dtype=bool)
        table = self._keys[m - 1]
        pos = np.searchsorted(table, keys).clip(0, len(table) - 1)
        return pos, table[pos] == keys

    def _order_contexts(self, contexts: np.ndarray) -> list[np.ndarray]:
        """For each order m, the id of the (m-1)-gram ending each context row (-1 if never seen)."""
        rows = len(contexts)
        out = []
        for m in range(1, self.n + 1):
            gram = np.zeros(rows, dtype=np.int64)
            known = np.ones(rows, dtype=bool)
            for j in range(1, m):
                column = contexts[:, self.n - m + j - 1]  # (N,)
                gram, found = self._find(j, gram * self._base + column)
                known &= found
            out.append(np.where(known, gram, -1))
        return out

    def _probs(self, contexts: np.ndarray, words: np.ndarray) -> np.ndarray:
        """P(words[i] | contexts[i]) for rows of context ids (N, n-1) and word ids (N,)."""
        cids = self._order_contexts(contexts)
        if self.smoothing == "kn":
            p = np.full(len(words), 1.0 / len(self.vocab))
            for m in range(1, self.n + 1):
                a, total, types = self._lookup(m, cids[m - 1], words, self._a[m - 1])
                p = self._interpolate(a, total, types, p)
            return p
        count, total, _ = self._lookup(self.n, cids[-1], words, self._raw[-1])
        if self.smoothing == "addk":
            return (count + self.k) / (total + self.k * len(self.vocab))
        return np.where(total > 0, count / np.where(total > 0, total, 1.0), 0.0)  # unseen context: 0

    def _lookup(
        self, m: int, cid: np.ndarray, words: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seen = cid >= 0
        safe = np.where(seen, cid, 0)
        pos, found = self._find(m, safe * self._base + words)
        a = np.where(seen & found, counts[pos], 0.0)
        total = np.where(seen, self._ctx_total[m - 1][safe], 0.0)
        types = np.where(seen, self._ctx_types[m - 1][safe], 0.0)
        return a, total, types

    def _interpolate(self, a: Any, total: Any, types: Any, lower: Any) -> Any:
        """One Kneser-Ney level: max(a - D, 0) / a(h) + D N1+(h .) / a(h) * lower, or lower if a(h) = 0."""
        d = self.discount
        has = total > 0
        safe = np.where(has, total, 1.0)
        return np.where(has, (np.maximum(a - d, 0.0) + d * types * lower) / safe, lower)

    def _dense(self, m: int, cid: int, counts: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The counts of every token after the (m-1)-gram ``cid`` as a dense (V,) vector, with a(h) and N1+(h .)."""
        V, base = len(self.vocab), self._base
        out = np.zeros(V)
        if cid < 0:
            return out, 0.0, 0.0
        table = self._keys[m - 1]
        lo, hi = np.searchsorted(table, [cid * base, (cid + 1) * base])
        words = table[lo:hi] - cid * base
        keep = words < V
        out[words[keep]] = counts[lo:hi][keep]
        return out, float(self._ctx_total[m - 1][cid]), float(self._ctx_types[m - 1][cid])

    def _distribution_ids(self, context_ids: np.ndarray) -> np.ndarray:
        cids = [int(c[0]) for c in self._order_contexts(context_ids[None, :])]
        V = len(self.vocab)
        if self.smoothing == "kn":
            p = np.full(V, 1.0 / V)
            for m in range(1, self.n + 1):
                a, total, types = self._dense(m, cids[m - 1], self._a[m - 1])
                p = self._interpolate(a, total, types, p)
            return p
        count, total, _ = self._dense(self.n, cids[-1], self._raw[-1])
        if self.smoothing == "addk":
            return (count + self.k) / (total + self.k * V)
        if total == 0:
            raise ValueError(
                "the MLE has no distribution for a context never followed by a token in training (0 / 0); "
                "use smoothing='addk' or 'kn'"
            )
        return count / total

    def count(self, ngram: Sequence[Any]) -> int:
        """How often the tokens ``ngram`` (1 to n of them) occur in the training text, ``<s>`` padding included."""
        self._check_fitted()
        ngram = list(ngram)
        if not 1 <= len(ngram) <= self.n:
            raise ValueError(f"count takes 1 to {self.n} tokens, got {len(ngram)}")
        ids = [self._bos if t == BOS else self._index.get(t, self._unseen) for t in ngram]
        gram = np.zeros(1, dtype=np.int64)
        for j, t in enumerate(ids, start=1):
            gram, found = self._find(j, gram * self._base + t)
            if not found[0]:
                return 0
        return int(self._raw[len(ids) - 1][gram[0]])

    def prob(self, token: Any, context: Any = None) -> float:
        """P(token | context): ``context`` is the preceding tokens (only the last n - 1 matter; None = start)."""
        self._check_fitted()
        word = self._encode([token], "prob")
        return float(self._probs(self._context_ids(context)[None, :], word)[0])

    def logprob(self, token: Any, context: Any = None) -> float:
        """ln P(token | context); -inf for an event of probability 0."""
        p = self.prob(token, context)
        return math.log(p) if p > 0 else -math.inf

    def distribution(self, context: Any = None) -> np.ndarray:
        """P(w | context) for every token ``w`` of ``self.vocab``, as a float64 array that sums to 1."""
        self._check_fitted()
        return self._distribution_ids(self._context_ids(context))

    def log_likelihood(self, tokens: Any) -> tuple[float, int]:
        """Sum of ln P(w_t | w_{t-n+1..t-1}) over a held-out text (padded like training) and its token count."""
        self._check_fitted()
        docs = [self._encode(d, "evaluation") for d in _documents(tokens)]
        stream = self._padded_stream(docs)
        targets = np.flatnonzero(stream < len(self.vocab))
        total = 0.0
        offsets = np.arange(-(self.n - 1), 0)
        with np.errstate(divide="ignore"):
            for start in range(0, len(targets), 1 << 18):
                t = targets[start : start + (1 << 18)]
                contexts = stream[t[:, None] + offsets]  # (N, n-1)
                total += float(np.log(self._probs(contexts, stream[t])).sum())
        return total, len(targets)

    def cross_entropy(self, tokens: Any) -> float:
        """Average negative log-likelihood per token, in nats (inf if some token has probability 0)."""
        ll, count = self.log_likelihood(tokens)
        if count == 0:
            raise ValueError("cannot evaluate on an empty text")
        return -ll / count

    def perplexity(self, tokens: Any) -> float:
        """exp(cross entropy): the effective number of equally likely choices per token.

        A uniform model over V tokens has perplexity V. With ``'mle'`` a held-out n-gram
        (or context) never seen in training has probability 0 and the perplexity is inf.
        """
        h = self.cross_entropy(tokens)
        return math.exp(h) if h < 700 else math.inf

    def bits_per_token(self, tokens: Any) -> float:
        """Cross entropy in bits per token (bits per character for a character model)."""
        return self.cross_entropy(tokens) / math.log(2)

    def sample(
        self, n_tokens: int, context: Any = None, seed: int | None = None, temperature: float = 1.0
    ) -> list[Any]:
        """Generate ``n_tokens`` tokens, each drawn from P(w | the n - 1 tokens before it).

        Each draw "rolls a weighted die": the distribution p_1..p_V over the vocabulary
        splits [0, 1) into V intervals of lengths p_i (the cumulative sums
        F_i = p_1 + ... + p_i mark their ends); draw u ~ U(0, 1) and return the token whose
        interval holds u, the first i with u < F_i. Tokens of probability 0 own empty
        intervals and are never drawn. ``temperature`` reshapes p to p^(1/T) (renormalised):
        below 1 it sharpens, above 1 it flattens. ``context`` is the tokens to continue
        (None starts a new document); ``seed`` makes the draw reproducible (without it,
        tinygrad_lm's CPU generator is used, see ``tl.manual_seed``). With ``'mle'``,
        reaching a context that training never saw followed by a token raises ``ValueError``.
        """
        self._check_fitted()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        rng = np.random.default_rng(seed) if seed is not None else generators.generator("cpu")
        ctx = self._context_ids(context)
        out: list[Any] = []
        for _ in range(n_tokens):
            p = self._distribution_ids(ctx)
            if temperature != 1.0:
                p = (p / p.max()) ** (1.0 / temperature)
            cdf = np.cumsum(p)
            u = float(rng.random()) * cdf[-1]
            i = min(int(np.searchsorted(cdf, u, side="right")), int(np.flatnonzero(p)[-1]))
            out.append(self.vocab[i])
            if self.n > 1:
                ctx = np.append(ctx[1:], i)
        return out


def bits_per_character(model: NGramLM, tokens: Any, n_chars: int | None = None) -> float:
    """Total code length of ``tokens`` under ``model`` in bits, divided by the number of characters.

    For a character model ``n_chars`` defaults to the number of tokens; for a word model
    pass the length of the text the tokens came from, so that the number is comparable
    across tokenizations.
    """
    ll, count = model.log_likelihood(tokens)
    chars = count if n_chars is None else n_chars
    if chars <= 0:
        raise ValueError(f"n_chars must be positive, got {chars}")
    return -ll / math.log(2) / chars


def _documents(tokens: Any) -> list[Any]:
    """One token sequence -> [it]; a list of sequences (lists, tuples, arrays) -> that list."""
    if isinstance(tokens, (str, np.ndarray)):
        if isinstance(tokens, np.ndarray) and tokens.ndim != 1:
            raise ValueError(f"expected a 1-D array of tokens, got shape {tokens.shape}")
        return [tokens]
    if hasattr(tokens, "numpy") and hasattr(tokens, "shape"):
        return [backend.to_host(tokens.numpy())]
    tokens = list(tokens)
    if tokens and all(isinstance(d, (list, tuple, np.ndarray)) for d in tokens):
        return [d if isinstance(d, np.ndarray) else list(d) for d in tokens]
    return [tokens]


def _raise_unknown(unknown: list[Any], what: str) -> None:
    shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:5])
    raise ValueError(
        f"{what} tokens not in the model's vocabulary: {shown}; map them to an unknown token "
        "(a tokenizer's <unk>) or pass vocab=... to fit"
    )
