"""A many-to-one recurrent classifier: is a bracket string balanced?

The network reads a whole sequence and answers once, from its last hidden state:

    x_t = E[c_t]                        embedding of character t ("(" or ")")
    h_t = LSTM(x_t, (h_{t-1}, C_{t-1}))  (or the Elman update with --cell rnn)
    p = softmax(W_y h_T + b_y)           one prediction for the whole string
    ell = -log p[label]

"Many-to-one": T inputs, one output, one loss. The gradient of ell enters at h_T
only and has to travel back through every step to reach the early characters:
the whole sequence must be summarised in h_T.

The task: a string of brackets is balanced when every ")" closes an earlier "("
and nothing is left open, e.g. "(()())" yes, "())(()" no. Half of the examples are
balanced. Most of the unbalanced ones have as many "(" as ")", so counting the
two characters is not enough: the network has to track the running depth and
notice when it goes below zero. (A finite-state machine cannot do this for any
length; an RNN does it for the short lengths it was trained on.)

Strings in a batch have different lengths. They are right-padded, and the
"last hidden state" of string b is read at its own last position,
``out[arange(B), lengths - 1]``: an integer-array index into the outputs (B, T, H),
so the padding never reaches the classifier.

What to look for: the accuracy on held-out strings against the 50% of guessing, and
on the hard negatives (equal counts, still unbalanced). Run::

    python examples/03_many_to_one_classifier.py            # about ten seconds
    python examples/03_many_to_one_classifier.py --quick    # a few seconds (the tests)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim

PAD, OPEN, CLOSE = 0, 1, 2


def balanced(s: np.ndarray) -> bool:
    depth = np.cumsum(np.where(s == OPEN, 1, -1))
    return bool(depth.min() >= 0 and depth[-1] == 0)


def random_balanced(pairs: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random balanced string of ``pairs`` pairs: shuffle the brackets until one is balanced."""
    brackets = np.array([OPEN] * pairs + [CLOSE] * pairs, dtype=np.int64)
    while True:  # a shuffle is balanced with probability 1 / (pairs + 1)
        s = rng.permutation(brackets)
        if balanced(s):
            return s


def make_example(rng: np.random.Generator, min_len: int, max_len: int) -> tuple[np.ndarray, int, bool]:
    """(string, label, is a hard negative): balanced, same-count unbalanced, or any unbalanced string."""
    pairs = int(rng.integers(min_len // 2, max_len // 2 + 1))
    if rng.random() < 0.5:
        return random_balanced(pairs, rng), 1, False
    if rng.random() < 0.7:  # equal counts, yet unbalanced
        brackets = np.array([OPEN] * pairs + [CLOSE] * pairs, dtype=np.int64)
        while True:
            s = rng.permutation(brackets)
            if not balanced(s):
                return s, 0, True
    while True:
        s = rng.integers(OPEN, CLOSE + 1, size=2 * pairs)
        if not balanced(s):
            return s, 0, bool((s == OPEN).sum() == pairs)


def make_set(n: int, rng: np.random.Generator, min_len: int, max_len: int) -> tuple[np.ndarray, ...]:
    examples = [make_example(rng, min_len, max_len) for _ in range(n)]
    lengths = np.array([len(s) for s, _, _ in examples], dtype=np.int64)
    strings = np.zeros((n, lengths.max()), dtype=np.int64)  # (N, T), right-padded
    for i, (s, _, _) in enumerate(examples):
        strings[i, : len(s)] = s
    labels = np.array([y for _, y, _ in examples], dtype=np.int64)
    hard = np.array([h for _, _, h in examples])
    return strings, lengths, labels, hard


class Classifier(nn.Module):
    """Embedding -> LSTM (or Elman RNN) -> the hidden state at each string's last character -> 2 logits."""

    def __init__(self, hidden_size: int, cell: str) -> None:
        super().__init__()
        self.embedding = nn.Embedding(3, 8)
        self.rnn = nn.LSTM(8, hidden_size, batch_first=True) if cell == "lstm" else nn.RNN(8, hidden_size,
                                                                                           batch_first=True)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, strings: tl.Tensor, lengths: np.ndarray) -> tl.Tensor:
        out, _ = self.rnn(self.embedding(strings))  # (B, T, H)
        last = out[np.arange(len(lengths)), lengths - 1]  # (B, H): h_T of each string
        return self.head(last)  # (B, 2)


def accuracy(model: Classifier, strings: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> np.ndarray:
    with tl.no_grad():
        pred = model(tl.tensor(strings), lengths).argmax(-1).numpy()
    return pred == labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="many-to-one LSTM classifier of balanced bracket strings")
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder (this example writes no files)")
    parser.add_argument("--cell", choices=["lstm", "rnn"], default="lstm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    min_len, max_len = 2, 20
    steps = 300 if args.quick else 1500
    batch_size = 64
    test = make_set(2000, rng, min_len, max_len)
    model = Classifier(hidden_size=32, cell=args.cell)
    opt = optim.Adam(model.parameters(), lr=0.01)
    seen: set[bytes] = set()
    for step in range(1, steps + 1):
        strings, lengths, labels, _ = make_set(batch_size, rng, min_len, max_len)
        seen.update(row[:n].tobytes() for row, n in zip(strings, lengths))
        loss = F.cross_entropy(model(tl.tensor(strings), lengths), tl.tensor(labels))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % (steps // 5) == 0:
            print(f"step {step:4d}: loss {loss.item():.4f}")

    model.eval()
    strings, lengths, labels, hard = test
    correct = accuracy(model, strings, lengths, labels)
    unseen = np.array([row[:n].tobytes() not in seen for row, n in zip(strings, lengths)])
    equal_counts = (strings == OPEN).sum(1) * 2 == lengths
    print(f"\nheld-out strings: {len(labels)} ({labels.mean():.1%} balanced), lengths {min_len}..{max_len}, "
          f"{unseen.sum()} of them never seen in training")
    print(f"guessing the majority class: {max(labels.mean(), 1 - labels.mean()):.4f}")
    print(f"counting baseline ('balanced' iff as many '(' as ')'): {(equal_counts == (labels == 1)).mean():.4f}")
    print(f"{args.cell.upper()} accuracy: {correct.mean():.4f}; on balanced strings {correct[labels == 1].mean():.4f};"
          f" on hard negatives (equal counts) {correct[hard].mean():.4f};"
          f" on unseen strings {correct[unseen].mean():.4f}")
    print()
    show = ["(()())", "())(()", "((()))", ")(", "(()", "()()()"]
    enc = [np.array([OPEN if c == "(" else CLOSE for c in s]) for s in show]
    T = max(len(s) for s in enc)
    batch = np.zeros((len(enc), T), dtype=np.int64)
    for i, s in enumerate(enc):
        batch[i, : len(s)] = s
    with tl.no_grad():
        p = model(tl.tensor(batch), np.array([len(s) for s in enc])).softmax(-1).numpy()[:, 1]
    for s, e, q in zip(show, enc, p):
        print(f"  {s:>8s}  P(balanced) = {q:.3f}  (truth: {'balanced' if balanced(e) else 'unbalanced'})")


if __name__ == "__main__":
    main()
