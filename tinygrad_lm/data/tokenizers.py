"""Tokenizers: text to integer ids and back, for characters and for words.

Both keep a vocabulary list ``itos`` (id -> token) whose id 0 is the unknown
token ``<unk>``: text the tokenizer never saw during ``fit`` encodes to it. The
order of the vocabulary is deterministic (sorted characters; words in order of
first appearance), so the same text always gives the same ids. Tokenizers save
to and load from JSON.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..serialization import atomic_write_text

UNK = "<unk>"


class Tokenizer:
    """What every tokenizer shares: the vocabulary, ``decode``, JSON save and load."""

    kind = "base"

    def __init__(self, unk_token: str = UNK) -> None:
        self.unk_token = unk_token
        self.itos: list[str] = [unk_token]
        self.stoi: dict[str, int] = {unk_token: 0}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.itos)

    def _set_vocab(self, tokens: Iterable[str]) -> None:
        self.itos = [self.unk_token] + [t for t in tokens if t != self.unk_token]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def _ids_as_list(self, ids: Any) -> list[int]:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"decode expects a sequence of integer ids, got {type(ids).__name__}")
        ids = list(ids)
        wrong = [i for i in ids if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
        if wrong:
            raise TypeError(f"decode expects integer ids, got {wrong[0]!r} ({type(wrong[0]).__name__})")
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.itos)]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary of size {len(self.itos)}")
        return ids

    def _config(self) -> dict[str, Any]:
        return {}

    def _state(self) -> dict[str, Any]:
        return {"kind": self.kind, "unk_token": self.unk_token, "itos": self.itos, **self._config()}

    def digest(self) -> str:
        """The SHA-256 of the kind, vocabulary and settings (what ``save`` writes, in canonical JSON).

        Two tokenizers with the same digest encode every text alike; a run records it to notice a changed file.
        """
        text = json.dumps(self._state(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as JSON (atomically: a crash never leaves half a file)."""
        atomic_write_text(path, json.dumps(self._state(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Read a tokenizer written by ``save`` (``Tokenizer.load`` picks the right class)."""
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(path)!r} is not a tokenizer JSON file: {err}") from None
        if not isinstance(state, dict) or "kind" not in state or "itos" not in state:
            raise ValueError(f"{str(path)!r} is not a tokenizer file (no 'kind' and 'itos')")
        kinds = {c.kind: c for c in (CharTokenizer, WordTokenizer)}
        if state["kind"] not in kinds:
            raise ValueError(f"{str(path)!r} holds an unknown tokenizer kind {state['kind']!r}")
        target = kinds[state["kind"]]
        if cls is not Tokenizer and target is not cls:
            raise ValueError(f"{str(path)!r} holds a {target.__name__}, not a {cls.__name__}")
        itos, unk = state["itos"], state.get("unk_token", UNK)
        if not isinstance(unk, str) or not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
            raise ValueError(f"{str(path)!r}: 'itos' must be a list of strings and 'unk_token' a string")
        if not itos or itos[0] != unk or len(set(itos)) != len(itos):
            raise ValueError(f"{str(path)!r}: 'itos' must start with the unknown token {unk!r} and hold each "
                             "token once")
        try:
            return target._from_state({**state, "unk_token": unk})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{str(path)!r}: {err}") from None

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError


def _check_text(name: str, text: Any) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} expects a str, got {type(text).__name__}")


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a ``CharTokenizer`` or ``WordTokenizer`` saved with ``save``."""
    return Tokenizer.load(path)


class CharTokenizer(Tokenizer):
    """One token per character; the vocabulary is ``<unk>`` followed by the sorted characters of the text.

    ``decode(encode(text)) == text`` for every text made of characters seen by ``fit``.
    """

    kind = "char"

    def __init__(self, text: str | None = None, unk_token: str = UNK) -> None:
        super().__init__(unk_token)
        self._codes = np.zeros(0, dtype=np.int64)
        if text is not None:
            self.fit(text)

    def fit(self, text: str) -> CharTokenizer:
        _check_text("CharTokenizer.fit", text)
        self._set_vocab(sorted(set(text)))
        self._codes = np.array([ord(c) for c in self.itos[1:]], dtype=np.int64)
        return self

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of ``text`` as an int64 array (unseen characters become ``<unk>``)."""
        _check_text("CharTokenizer.encode", text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if len(self._codes) == 0:
            return np.zeros(len(codes), dtype=np.int64)
        pos = np.searchsorted(self._codes, codes).clip(0, len(self._codes) - 1)
        known = self._codes[pos] == codes
        return np.where(known, pos + 1, 0).astype(np.int64)

    def decode(self, ids: Any) -> str:
        """The text of ``ids``; ``<unk>`` ids decode to the unknown token's string."""
        itos = self.itos
        return "".join(itos[i] for i in self._ids_as_list(ids))

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        tok = cls(unk_token=state["unk_token"])
        tok.fit("".join(state["itos"][1:]))
        if tok.itos != state["itos"]:
            raise ValueError("the character vocabulary in the file is not sorted single characters")
        return tok


_WORD = re.compile(r"\n|'?\w+(?:'\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}'-\n")
_NO_SPACE_AFTER = frozenset("([{-\n")


class WordTokenizer(Tokenizer):
    """Words and punctuation marks: ``"'Tis nine, sir."`` -> ``["'Tis", "nine", ",", "sir", "."]``.

    A word is a run of letters/digits, possibly with inner apostrophes (``cross'd``) or a
    leading one (``'Tis``); every other non-space character is a token of its own.
    Newlines are tokens (``keep_newlines``), other whitespace only separates. With
    ``lower`` the text is lower-cased first. The vocabulary keeps the ``max_size`` most
    frequent tokens that occur at least ``min_freq`` times (ties by first appearance), in
    order of first appearance. ``decode`` joins tokens with single spaces, except
    before closing punctuation, after opening brackets, around hyphens and newlines.
    """

    kind = "word"

    def __init__(
        self,
        text: str | None = None,
        lower: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        keep_newlines: bool = True,
        unk_token: str = UNK,
    ) -> None:
        super().__init__(unk_token)
        for arg, value in (("min_freq", min_freq), ("max_size", max_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"WordTokenizer: {arg} must be an int, got {type(value).__name__} {value!r}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be at least 1 (it counts <unk>), got {max_size}")
        self.lower = lower
        self.min_freq = min_freq
        self.max_size = max_size
        self.keep_newlines = keep_newlines
        if text is not None:
            self.fit(text)

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``text`` (before mapping to ids)."""
        _check_text("WordTokenizer", text)
        if self.lower:
            text = text.lower()
        tokens = _WORD.findall(text)
        if not self.keep_newlines:
            tokens = [t for t in tokens if t != "\n"]
        return tokens

    def fit(self, text: str) -> WordTokenizer:
        tokens = self.tokenize(text)
        counts = collections.Counter(tokens)  # iterates in order of first appearance
        first = {t: i for i, t in enumerate(counts)}
        kept = [t for t in counts if counts[t] >= self.min_freq and t != self.unk_token]
        if self.max_size is not None and len(kept) > self.max_size - 1:
            kept = sorted(kept, key=lambda t: (-counts[t], first[t]))[: self.max_size - 1]
            kept.sort(key=first.__getitem__)
        self._set_vocab(kept)
        return self

    def encode(self, text: str) -> np.ndarray:
        """The ids of the tokens of ``text`` as an int64 array (unknown words become ``<unk>``)."""
        get = self.stoi.get
        return np.array([get(t, 0) for t in self.tokenize(text)], dtype=np.int64)

    def decode(self, ids: Any) -> str:
        itos = self.itos
        pieces: list[str] = []
        prev = "\n"
        for i in self._ids_as_list(ids):
            tok = itos[i]
            if pieces and tok not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER:
                pieces.append(" ")
            pieces.append(tok)
            prev = tok
        return "".join(pieces)

    def _config(self) -> dict[str, Any]:
        return {
            "lower": self.lower, "min_freq": self.min_freq, "max_size": self.max_size,
            "keep_newlines": self.keep_newlines,
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        tok = cls(
            lower=state.get("lower", False), min_freq=state.get("min_freq", 1), max_size=state.get("max_size"),
            keep_newlines=state.get("keep_newlines", True), unk_token=state["unk_token"],
        )
        tok._set_vocab(state["itos"][1:])
        return tok
