"""n-gram language models ("rolling the weighted die") next to a neural one.

An n-gram model predicts the next token from the n - 1 tokens before it only,
by counting in the training text:

    P(w | h) = c(h w) / c(h),       h = the previous n - 1 tokens

smoothed here with interpolated Kneser-Ney (``NGramLM(n, smoothing='kn')``) so that
a continuation never seen in training still gets some probability. n = 1 ignores
the context altogether (word frequencies); each extra token of context sharpens the
predictions, until the counts get too sparse to trust.

Sampling from any language model is rolling a weighted die, once per token: the
probabilities p_1 .. p_V of the next token cut [0, 1) into V intervals, with
cumulative ends F_i = p_1 + ... + p_i; draw u uniformly from [0, 1) and take the
token whose interval contains u (the first i with u < F_i). The example prints one
such die for the context "th".

The models are scored on held-out text by their perplexity exp(-(1/N) sum_t log P(w_t | h_t)),
the effective number of equally likely choices per token. A character model's
and a word model's perplexities are not comparable (one predicts characters, the
other whole words), so every model is also given in *bits per character*: the
total code length of the held-out text in bits divided by its number of
characters. (The word models map rare words to <unk> and are not charged for
spelling them out, which flatters them a little.)

Next to them, an LSTM character model trained for a short while (see example 05)
with its held-out perplexity and a sample.

What to look for: perplexity falls as n grows, then stalls or rises once the
counts of long contexts get too sparse (for words, after n = 3), while the samples
of high-order models look more and more like the play text, speaker names and
all. The LSTM is given only a short run here: it lands between the 3-gram and the
4-gram, and needs far longer training to pass the 5-gram. Run::

    python examples/06_ngram_vs_neural.py             # about a minute
    python examples/06_ngram_vs_neural.py --quick     # a few seconds (the tests)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
from tinygrad_lm.data import CharTokenizer, WordTokenizer, load_shakespeare
from tinygrad_lm.lm import LSTMLM, NGramLM, RNNLMConfig, TrainConfig, Trainer, generate
from tinygrad_lm.lm.ngram import bits_per_character


def show_die(model: NGramLM, context: str, seed: int) -> None:
    """Print the weighted die of the next character after ``context`` and one roll of it."""
    p = model.distribution(context)
    order = np.argsort(-p)[:6]
    print(f"the die of the {model.n}-gram character model after {context!r} (six most likely faces):")
    cdf = np.cumsum(p)
    for i in order:
        lo = cdf[i] - p[i]
        print(f"  {model.vocab[i]!r:6s} p = {p[i]:.3f}   interval [{lo:.3f}, {cdf[i]:.3f})")
    u = float(np.random.default_rng(seed).random())
    face = model.vocab[int(np.searchsorted(cdf, u, side="right"))]
    print(f"  roll: u = {u:.3f} falls in the interval of {face!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="n-gram samplers vs a neural LM on Shakespeare")
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder (for the LSTM's checkpoint)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    text = load_shakespeare()
    if args.quick:
        text = text[:300_000]
    cut = int(len(text) * 0.95)
    train_text, val_text = text[:cut], text[cut:]
    print(f"training text: {len(train_text):,} characters; held-out text: {len(val_text):,} characters")

    rows = []
    print("\n=== character n-grams ===")
    char_models = {}
    for n in range(1, 6):
        model = NGramLM(n).fit(train_text, vocab=sorted(set(text)))
        char_models[n] = model
        ppl = model.perplexity(val_text)
        rows.append((f"{n}-gram, characters", ppl, bits_per_character(model, val_text)))
        sample = "".join(model.sample(120, seed=args.seed))
        print(f"\n{n}-gram (held-out perplexity {ppl:.2f} per character):\n{sample}")
    print()
    show_die(char_models[3], "th", args.seed)

    print("\n=== word n-grams ===")
    words = WordTokenizer(train_text, min_freq=2)
    train_words, val_words = words.encode(train_text), words.encode(val_text)
    print(f"vocabulary: {words.vocab_size:,} words (words seen once in training became <unk>)")
    for n in range(1, 6):
        model = NGramLM(n).fit(train_words, vocab=range(words.vocab_size))
        ppl = model.perplexity(val_words)
        rows.append((f"{n}-gram, words", ppl, bits_per_character(model, val_words, n_chars=len(val_text))))
        sample = words.decode(model.sample(30, seed=args.seed))
        print(f"\n{n}-gram (held-out perplexity {ppl:.1f} per word):\n{sample}")

    print("\n=== a neural character model (LSTM) ===")
    tl.manual_seed(args.seed)
    chars = CharTokenizer(text)
    lstm = LSTMLM(RNNLMConfig(chars.vocab_size, embed_dim=32, hidden_size=64 if args.quick else 256))
    steps = 30 if args.quick else 500
    config = TrainConfig(max_steps=steps, batch_size=32, seq_len=64, lr=3e-3, min_lr=3e-4, eval_interval=steps,
                         eval_batches=2, log_interval=max(1, steps // 5), checkpoint_interval=steps,
                         seed=args.seed, out_dir=str(out / "ngram_vs_neural_lstm"), progress=False)
    trainer = Trainer(lstm, chars.encode(train_text), chars.encode(val_text), config)
    trainer.train()
    ev = trainer.evaluate(batches=10**9)  # the whole held-out text
    rows.append((f"LSTM, characters ({steps} steps)", ev["ppl"], ev["bpc"]))
    sample = chars.decode(generate(lstm, chars.encode("\n"), 120, seed=args.seed).numpy()[0])
    print(f"LSTM after {steps} steps (held-out perplexity {ev['ppl']:.2f} per character):\n{sample}")

    print("\n=== held-out scores ===")
    print(f"  {'model':34s} {'perplexity':>12s} {'bits/char':>10s}")
    for name, ppl, bpc in rows:
        print(f"  {name:34s} {ppl:12.2f} {bpc:10.3f}")
    best = min(rows, key=lambda r: r[2])
    print(f"lowest bits per character: {best[0]} ({best[2]:.3f}); uniform guessing: "
          f"{math.log2(chars.vocab_size):.3f}")


if __name__ == "__main__":
    main()
