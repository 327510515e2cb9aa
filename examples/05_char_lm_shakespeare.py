"""Character-level language models of Shakespeare: Elman RNN vs LSTM vs Transformer.

A language model gives every next character a probability, given the ones before:

    P(c_1 .. c_N) = prod_t P(c_{t+1} | c_1 .. c_t)

and is trained to minimise the average cross-entropy  ell = -(1/N) sum_t log P(c_{t+1} | c_<=t),
in nats per character. Its value on held-out text is the number to compare:
divide by ln 2 for *bits per character* (bpc; a uniform guess over V characters
costs log2 V bits, about 6 here), or take exp for the perplexity.

The three models differ only in how they summarise c_1 .. c_t:

- Elman RNN:   h_t = tanh(W_ax x_t + W_ah h_{t-1} + b_a),  logits_t = W_ya h_t + b_y
- LSTM:        the same, with the gated cell update (f_t, i_t, C~_t, C_t, o_t, h_t; see
               docs/tutorial.md) whose additive path C_t = f_t * C_{t-1} + i_t * C~_t lets
               gradients, and so information, survive many steps;
- Transformer: no recurrence; every position attends to all earlier positions
               within a window of ``block_size`` characters (causal self-attention).

The recurrent models are trained with truncated BPTT: the corpus is read as
``batch_size`` parallel streams in chunks of ``seq_len`` characters, and the hidden
state is carried from one chunk to the next but *detached*, so backpropagation
stops at the chunk boundary. The Transformer reads random windows. Each model
gets the same number of optimizer steps on the same batch shape.

The three are sized to about 100k parameters each (the LSTM gets half the RNN's
hidden units, since it has four gates' weights per unit).

What to look for: the validation loss of each (printed, in nats and bits per
character) and the loss curves in ``char_lm_curves.png``; after this short run
the samples are not English yet, but they have learned word lengths, spaces,
line breaks and speaker names in capitals. At this small size and with this few
steps the plain Elman RNN is ahead, and it stayed ahead after 2000 steps too
(2.45 bits/char, against 2.58 for the LSTM and 2.56 for the Transformer); the
gated and attention models show their strengths with more data seen, longer
contexts and larger models than a CPU demo affords. Run::

    python examples/05_char_lm_shakespeare.py                # about two minutes
    python examples/05_char_lm_shakespeare.py --steps 2000   # better samples, longer
    python examples/05_char_lm_shakespeare.py --quick        # a few seconds (the tests)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.data import CharTokenizer, load_shakespeare, split_stream
from tinygrad_lm.lm import LSTMLM, RNNLM, RNNLMConfig, TrainConfig, Trainer, TransformerConfig, TransformerLM, generate
from tinygrad_lm.viz import plot_curves


def build(name: str, vocab_size: int, quick: bool, block_size: int) -> nn.Module:
    """The three models, sized to roughly the same number of parameters (about 100k in the full run)."""
    if name == "RNN":
        return RNNLM(RNNLMConfig(vocab_size, embed_dim=32, hidden_size=64 if quick else 256))
    if name == "LSTM":  # four gates: half the hidden units of the RNN for about the same weight count
        return LSTMLM(RNNLMConfig(vocab_size, embed_dim=32, hidden_size=32 if quick else 128))
    return TransformerLM(TransformerConfig(vocab_size, block_size=block_size, n_layer=2, n_head=4,
                                           n_embd=32 if quick else 64, mlp_hidden=128 if quick else 256))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="char-level Elman RNN vs LSTM vs Transformer on Shakespeare")
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder for the plot and checkpoints")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    text = load_shakespeare()
    if args.quick:
        text = text[:200_000]
    tok = CharTokenizer(text)
    train_ids, val_ids = split_stream(tok.encode(text), (0.95, 0.05))
    print(f"corpus: {len(text):,} characters, vocabulary of {tok.vocab_size} "
          f"(uniform guessing: {math.log2(tok.vocab_size):.2f} bits/char)")

    steps = args.steps or (25 if args.quick else 500)
    seq_len, batch_size = (32, 16) if args.quick else (64, 32)
    curves: dict[str, tuple[list[float], list[float]]] = {}
    results = {}
    for name in ("RNN", "LSTM", "Transformer"):
        tl.manual_seed(args.seed)
        model = build(name, tok.vocab_size, args.quick, block_size=seq_len)
        n_params = sum(p.numel() for p in model.parameters())
        config = TrainConfig(max_steps=steps, batch_size=batch_size, seq_len=seq_len, lr=3e-3, min_lr=3e-4,
                             eval_interval=max(1, steps // 10), eval_batches=4 if args.quick else 20,
                             log_interval=max(1, steps // 25), checkpoint_interval=steps, seed=args.seed,
                             out_dir=str(out / f"char_lm_{name.lower()}"), progress=False)
        print(f"\n{name}: {n_params:,} parameters, {steps} steps of {batch_size} x {seq_len} characters")
        result = Trainer(model, train_ids, val_ids, config).train()
        val = [r for r in result.history if "val_loss" in r]
        curves[name] = ([r["step"] for r in val], [r["val_bpc"] for r in val])
        prompt = tok.encode("ROMEO:\n")
        sample = tok.decode(generate(model, prompt, 160, temperature=0.8, seed=args.seed).numpy()[0])
        results[name] = (val[-1]["val_loss"], val[-1]["val_bpc"], sample)

    print("\nvalidation after the same number of steps:")
    for name, (loss, bpc, _) in results.items():
        print(f"  {name:12s} val loss {loss:.4f} nats/char, {bpc:.3f} bits/char, perplexity {math.exp(loss):.2f}")
    for name, (_, _, sample) in results.items():
        print(f"\n--- sample from the {name} ---\n{sample}")
    plot = plot_curves(curves, out / "char_lm_curves.png", ylabel="validation bits per character",
                       title="char-level LMs on Shakespeare, same steps each")
    print(f"\nwrote the loss curves to {plot}")


if __name__ == "__main__":
    main()
