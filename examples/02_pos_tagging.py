"""Part-of-speech tagging with a many-to-many recurrent network.

A sequence labeller reads a sentence w_1 .. w_T and outputs one tag per word:

    x_t = E[w_t]                               embedding of word t
    h_t = RNN(x_t, h_{t-1})                    Elman:  h_t = tanh(W_ax x_t + W_ah h_{t-1} + b_a)
                                               or the LSTM's gated update (--cell lstm, the default)
    y_hat_t = softmax(W_ya h_t + b_y)          a distribution over tags at every step
    ell = -(1 / sum_t 1) sum_t log y_hat_t[tag_t]

Every step has an output and a loss: that is what "many-to-many" means. The
gradient of ell reaches h_t both from its own output and from all later steps
through h_{t+1}: backpropagation through time.

The corpus is made up here by a small grammar (no real corpus is copied): sentences
like "the old dog watches the ducks near the river ." with their tags. The grammar
plants *ambiguous* words: "watch", "duck", "plant", ... are singular nouns and
plural verbs, "watches", "ducks", "plants", ... plural nouns and singular verbs.
Only the context tells them apart ("the watch" vs "they watch"), and in this
grammar the words to the left are always enough, so a left-to-right RNN can do it.

Two baselines show what the network adds:
- the majority tag: tag every word with the most frequent tag of the training set;
- the per-word majority: tag each word with its most frequent tag in training. This
  is right on every unambiguous word and wrong on the rarer reading of the others.

What to look for: the tagger beats both baselines, and the gap comes from the
ambiguous words (the accuracy on them is printed separately). Run::

    python examples/02_pos_tagging.py              # about ten seconds
    python examples/02_pos_tagging.py --cell rnn   # the Elman tagger
    python examples/02_pos_tagging.py --quick      # a few seconds (what the tests run)
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim

# Words that are a singular noun or a plural (base-form) verb, and their -s forms,
# which are a plural noun or a singular verb.
AMBIGUOUS = ["watch", "duck", "plant", "park", "ring", "light", "fish", "book", "fly", "run"]
PLURAL = {"watch": "watches", "fish": "fish", "fly": "flies"}
NOUNS = ["dog", "cat", "bird", "child", "farmer", "river", "house", "garden", "letter", "teacher"]
PLURAL.update({"child": "children"})
VERBS = ["see", "like", "find", "read", "carry", "follow", "visit", "paint"]
VERB_3SG = {"carry": "carries"}
ADJECTIVES = ["old", "small", "happy", "green", "quiet", "clever"]
ADVERBS = ["quickly", "often", "today", "slowly"]
PREPOSITIONS = ["near", "under", "with", "behind"]
DETERMINERS_SG = ["the", "a", "this", "every"]
DETERMINERS_PL = ["the", "these", "some", "many"]
PRONOUNS_PL = ["they", "we", "you"]
PRONOUNS_SG = ["she", "he", "it"]
TAGS = ["DET", "ADJ", "NOUN", "VERB", "ADV", "PREP", "PRON", "CONJ", "PUNCT"]


def plural(noun: str) -> str:
    return PLURAL.get(noun, noun + ("es" if noun.endswith(("ch", "sh")) else "s"))


def third_singular(verb: str) -> str:
    return VERB_3SG.get(verb, verb + ("es" if verb.endswith(("ch", "sh")) else "s"))


class Grammar:
    """A tiny probabilistic grammar that emits (word, tag) pairs.

    S -> Clause ("and" Clause)? "."        Clause -> Subject VP
    Subject -> NP | Pronoun                NP -> Det Adj* Noun PP?
    VP -> Verb NP Adv? | Verb Adv | Verb PP
    Subjects and verbs agree in number, which is what makes the ambiguous words
    readable from the left: after a determiner or adjective a noun comes, after a
    subject a verb comes.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, words: list[str]) -> str:
        return words[int(self.rng.integers(len(words)))]

    def noun(self, number: str) -> tuple[str, str]:
        base = self.pick(NOUNS + AMBIGUOUS)
        return (base if number == "sg" else plural(base)), "NOUN"

    def verb(self, number: str) -> tuple[str, str]:
        base = self.pick(VERBS + AMBIGUOUS)
        return (third_singular(base) if number == "sg" else base), "VERB"

    def noun_phrase(self, number: str, allow_pp: bool = True) -> list[tuple[str, str]]:
        out = [(self.pick(DETERMINERS_SG if number == "sg" else DETERMINERS_PL), "DET")]
        while self.rng.random() < 0.35:
            out.append((self.pick(ADJECTIVES), "ADJ"))
        out.append(self.noun(number))
        if allow_pp and self.rng.random() < 0.2:
            out += self.prepositional_phrase()
        return out

    def prepositional_phrase(self) -> list[tuple[str, str]]:
        number = "sg" if self.rng.random() < 0.5 else "pl"
        return [(self.pick(PREPOSITIONS), "PREP")] + self.noun_phrase(number, allow_pp=False)

    def clause(self) -> list[tuple[str, str]]:
        number = "sg" if self.rng.random() < 0.5 else "pl"
        if self.rng.random() < 0.3:
            subject = [(self.pick(PRONOUNS_SG if number == "sg" else PRONOUNS_PL), "PRON")]
        else:
            subject = self.noun_phrase(number)
        out = subject + [self.verb(number)]
        r = self.rng.random()
        if r < 0.6:
            out += self.noun_phrase("sg" if self.rng.random() < 0.5 else "pl")
            if self.rng.random() < 0.2:
                out.append((self.pick(ADVERBS), "ADV"))
        elif r < 0.8:
            out.append((self.pick(ADVERBS), "ADV"))
        else:
            out += self.prepositional_phrase()
        return out

    def sentence(self) -> list[tuple[str, str]]:
        out = self.clause()
        if self.rng.random() < 0.25:
            out += [("and", "CONJ")] + self.clause()
        return out + [(".", "PUNCT")]


def encode(sentences: list[list[tuple[str, str]]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Word ids right-padded with 0 (``<pad>``) and tag ids padded with -100 (ignored by the loss)."""
    T = max(len(s) for s in sentences)
    words = np.zeros((len(sentences), T), dtype=np.int64)  # (N, T)
    tags = np.full((len(sentences), T), -100, dtype=np.int64)  # (N, T)
    for i, s in enumerate(sentences):
        words[i, : len(s)] = [vocab[w] for w, _ in s]
        tags[i, : len(s)] = [TAGS.index(t) for _, t in s]
    return words, tags


class Tagger(nn.Module):
    """Embedding -> RNN/LSTM -> linear: one tag distribution per word."""

    def __init__(self, vocab_size: int, n_tags: int, embed_dim: int, hidden_size: int, cell: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        if cell == "lstm":
            self.rnn = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        else:
            self.rnn = nn.RNN(embed_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, n_tags)

    def forward(self, words: tl.Tensor) -> tl.Tensor:
        h, _ = self.rnn(self.embedding(words))  # (B, T, H)
        return self.head(h)  # (B, T, n_tags)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POS tagging with an Elman RNN or LSTM tagger")
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder (this example writes no files)")
    parser.add_argument("--cell", choices=["lstm", "rnn"], default="lstm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    n_train, epochs = (400, 6) if args.quick else (3000, 8)
    grammar = Grammar(rng)
    train = [grammar.sentence() for _ in range(n_train)]
    test = [grammar.sentence() for _ in range(500)]
    print("a generated sentence:", " ".join(f"{w}/{t}" for w, t in train[0]))

    vocab = {"<pad>": 0}
    for s in train + test:
        for w, _ in s:
            vocab.setdefault(w, len(vocab))
    x_test, y_test = encode(test, vocab)
    mask = y_test >= 0
    ambiguous = {w for b in AMBIGUOUS for w in (b, plural(b))}
    amb_mask = mask & np.isin(x_test, [vocab[w] for w in ambiguous if w in vocab])

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train:
        for w, t in s:
            counts[w][t] += 1
    overall = collections.Counter(t for s in train for _, t in s).most_common(1)[0][0]
    per_word = np.array([TAGS.index(counts[w].most_common(1)[0][0]) if counts[w] else TAGS.index(overall)
                         for w in vocab])
    majority_acc = float((y_test[mask] == TAGS.index(overall)).mean())
    per_word_pred = per_word[x_test]
    per_word_acc = float((per_word_pred == y_test)[mask].mean())
    per_word_amb = float((per_word_pred == y_test)[amb_mask].mean())

    model = Tagger(len(vocab), len(TAGS), embed_dim=32, hidden_size=64, cell=args.cell)
    opt = optim.Adam(model.parameters(), lr=0.01)
    batch_size = 32
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_train)
        total, n = 0.0, 0
        for start in range(0, n_train, batch_size):
            batch = [train[i] for i in order[start:start + batch_size]]
            words, tags = encode(batch, vocab)
            logits = model(tl.tensor(words))  # (B, T, n_tags)
            loss = F.cross_entropy(logits.reshape(-1, len(TAGS)), tl.tensor(tags.reshape(-1)), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item()
            n += 1
        print(f"epoch {epoch}: training loss {total / n:.4f}")

    model.eval()
    with tl.no_grad():
        pred = model(tl.tensor(x_test)).argmax(-1).numpy()  # (N, T)
    correct = pred == y_test
    acc = float(correct[mask].mean())
    acc_amb = float(correct[amb_mask].mean())
    print(f"\nheld-out sentences: {len(test)}, words: {int(mask.sum())}, ambiguous words: {int(amb_mask.sum())}")
    print(f"majority-tag baseline ({overall}) accuracy: {majority_acc:.4f}")
    print(f"per-word majority baseline accuracy: {per_word_acc:.4f} (on ambiguous words {per_word_amb:.4f})")
    print(f"{args.cell.upper()} tagger accuracy: {acc:.4f} (on ambiguous words {acc_amb:.4f})")
    print("tagged:", " ".join(f"{w}/{TAGS[p]}" for (w, _), p in zip(test[0], pred[0])))


if __name__ == "__main__":
    main()
