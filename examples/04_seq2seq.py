"""An encoder-decoder (sequence-to-sequence) LSTM that learns to reverse digit strings.

Input "3 1 4 1 5", output "5 1 4 1 3". Input and output are both sequences, and
their lengths need not match in general, so one network reads and another writes:

    encoder:  (h_s, C_s) = LSTM_enc(E_src[x_s], (h_{s-1}, C_{s-1})),  s = 1..S
              the final (h_S, C_S) is the whole input, summarised in a fixed-size vector
    decoder:  starts from (h_S, C_S) and reads <bos> y_1 .. y_{T-1}:
              (g_t, D_t) = LSTM_dec(E_tgt[y_{t-1}], (g_{t-1}, D_{t-1}))
              P(y_t | y_<t, x) = softmax(W g_t + b)
    loss:     ell = -(1/T) sum_t log P(y_t | y_<t, x), with y_T = <eos>

Teacher forcing: during training the decoder is fed the *true* previous token
y_{t-1}, not its own guess, so all T steps run as one batched LSTM call and the
gradient of every step's loss flows back through the decoder, into the
encoder's final state and through the encoder (backpropagation through both).

At test time there is no true previous token: greedy decoding feeds back the
decoder's own argmax, one step at a time, until it says <eos> (or gives up
after S + 1 steps). A mistake early on is then fed back and can derail the rest.

What to look for: the token accuracy and the whole-sequence accuracy of greedy
decoding on held-out strings, against the 10% of guessing a digit; and a few
decoded examples. ``--task sort`` learns to sort the digits instead. Run::

    python examples/04_seq2seq.py             # under a minute
    python examples/04_seq2seq.py --quick     # a few seconds (what the tests run)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim

BOS, EOS = 10, 11  # digits are ids 0..9
VOCAB = 12


def make_batch(batch_size: int, length: int, task: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Source digits (B, S) and their reversal (or sorted version) (B, S)."""
    src = rng.integers(0, 10, size=(batch_size, length))
    tgt = src[:, ::-1] if task == "reverse" else np.sort(src, axis=1)
    return src.astype(np.int64), np.ascontiguousarray(tgt).astype(np.int64)


class Seq2Seq(nn.Module):
    """LSTM encoder, LSTM decoder initialised with the encoder's final (h, C), linear output layer."""

    def __init__(self, embed_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.src_embedding = nn.Embedding(VOCAB, embed_dim)
        self.tgt_embedding = nn.Embedding(VOCAB, embed_dim)
        self.encoder = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.decoder = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, VOCAB)

    def encode(self, src: tl.Tensor) -> tuple[tl.Tensor, tl.Tensor]:
        _, state = self.encoder(self.src_embedding(src))  # h, C: (1, B, H) each
        return state

    def forward(self, src: tl.Tensor, tgt_in: tl.Tensor) -> tl.Tensor:
        """Teacher forcing: logits (B, T, VOCAB) for every target position at once."""
        out, _ = self.decoder(self.tgt_embedding(tgt_in), self.encode(src))  # (B, T, H)
        return self.head(out)  # (B, T, VOCAB)

    def greedy(self, src: tl.Tensor, max_len: int) -> np.ndarray:
        """Decode one token at a time, feeding back the argmax; stops when every row has said <eos>."""
        with tl.no_grad():
            state = self.encode(src)
            token = tl.full((src.shape[0], 1), BOS, dtype=tl.int64)  # (B, 1)
            out = []
            for _ in range(max_len):
                h, state = self.decoder(self.tgt_embedding(token), state)  # (B, 1, H)
                token = self.head(h).argmax(-1)  # (B, 1)
                out.append(token.numpy())
                if (np.concatenate(out, axis=1) == EOS).any(axis=1).all():
                    break
        return np.concatenate(out, axis=1)  # (B, <= max_len)


def strip(row: np.ndarray) -> list[int]:
    """The digits of a decoded row, up to its first <eos>."""
    out = []
    for t in row.tolist():
        if t == EOS:
            break
        out.append(t)
    return out


def evaluate(model: Seq2Seq, lengths: range, task: str, rng: np.random.Generator, n: int) -> tuple[float, float]:
    """Greedy-decoding token accuracy and exact-sequence accuracy over ``n`` strings of each length."""
    tokens = token_hits = seq_hits = seqs = 0
    for length in lengths:
        src, tgt = make_batch(n, length, task, rng)
        decoded = model.greedy(tl.tensor(src), max_len=length + 1)
        for row, truth in zip(decoded, tgt):
            guess = strip(row)
            token_hits += sum(int(a == b) for a, b in zip(guess, truth))
            tokens += len(truth)
            seq_hits += int(guess == truth.tolist())
            seqs += 1
    return token_hits / tokens, seq_hits / seqs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LSTM encoder-decoder reversing or sorting digit strings")
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder (this example writes no files)")
    parser.add_argument("--task", choices=["reverse", "sort"], default="reverse")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    lengths = range(3, 6) if args.quick else range(3, 10)
    steps = 400 if args.quick else 3000
    model = Seq2Seq(embed_dim=16, hidden_size=64 if args.quick else 128)
    opt = optim.Adam(model.parameters(), lr=0.005)
    for step in range(1, steps + 1):
        length = int(rng.integers(lengths.start, lengths.stop))  # one length per batch: no padding needed
        src, tgt = make_batch(64, length, args.task, rng)
        tgt_in = np.concatenate([np.full((64, 1), BOS), tgt], axis=1)  # (B, S+1): <bos> y_1 .. y_S
        tgt_out = np.concatenate([tgt, np.full((64, 1), EOS)], axis=1)  # (B, S+1): y_1 .. y_S <eos>
        logits = model(tl.tensor(src), tl.tensor(tgt_in))  # (B, S+1, VOCAB)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tl.tensor(tgt_out.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % (steps // 5) == 0:
            print(f"step {step:4d}: teacher-forced loss {loss.item():.4f}")

    model.eval()
    token_acc, seq_acc = evaluate(model, lengths, args.task, rng, n=200)
    print(f"\ntask: {args.task}, lengths {lengths.start}..{lengths.stop - 1}, greedy decoding on held-out strings")
    print(f"token accuracy {token_acc:.4f} (chance 0.1), sequence accuracy {seq_acc:.4f}")
    src, tgt = make_batch(5, lengths.stop - 1, args.task, rng)
    for s, t, d in zip(src, tgt, model.greedy(tl.tensor(src), max_len=lengths.stop)):
        print(f"  {' '.join(map(str, s))}  ->  {' '.join(map(str, strip(d)))}   (truth {' '.join(map(str, t))})")


if __name__ == "__main__":
    main()
