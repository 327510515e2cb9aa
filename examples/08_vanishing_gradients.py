"""Vanishing gradients: how much of the loss at step T reaches the hidden state at step t?

Unroll a recurrent cell for T steps on random inputs and put a loss on the last
step only, ell_T = cross-entropy(W_y h_T + b_y, target). By the chain rule

    d ell_T / d h_t = d ell_T / d h_T * prod_{k=t+1..T} d h_k / d h_{k-1}

For the Elman network h_k = act(a_k), a_k = W_ax x_k + W_ah h_{k-1} + b_a, each factor is

    d h_k / d h_{k-1} = diag(act'(a_k)) W_ah

a product of T - t such matrices. With tanh, act' <= 1; with the sigmoid of the
lecture, act' <= 1/4. Unless W_ah is large, the norm of the product shrinks
geometrically with the distance T - t: the error signal from step T never reaches
the early steps, and the network cannot learn long-range dependencies.

The LSTM adds a second path, through its cell state:

    C_k = f_k * C_{k-1} + i_k * C~_k      so      d C_k / d C_{k-1} = diag(f_k)   (along that path)

No squashing nonlinearity and no weight matrix sit on it, only the forget gate.
When f_k is close to 1 the gradient passes almost unchanged over many steps; when
f_k is about 1/2 it halves every step, and the LSTM vanishes too. At PyTorch's
default initialisation all biases are small, so f_k = sigma(about 0) = 1/2: the
LSTM is not better than the Elman RNN there. A common remedy (Gers et al.;
Jozefowicz et al.) initialises the forget-gate bias to 1 or more, so that the cell
starts by remembering. The example runs the LSTM with b_f = 0 (PyTorch's
default), 1 and 3.

Each cell is unrolled step by step (``nn.RNNCell`` / ``nn.LSTMCell``), and every h_t
calls ``retain_grad()`` so that, after ``loss.backward()``, ``h_t.grad`` holds
d ell_T / d h_t. The computation is in float64: with the sigmoid, the norms fall
below the smallest float32 number within 50 steps.

What to look for: ``vanishing_gradients.png`` plots ||d ell_T / d h_t|| against T - t on a
log scale. Straight lines are geometric decay; the slope is the rate. The printed
ratio ||d ell_T / d h_{T-1}|| / ||d ell_T / d h_{T-50}|| says by how much the signal
shrank over 49 more steps. Run::

    python examples/08_vanishing_gradients.py --out runs/examples
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn
from tinygrad_lm.viz import plot_curves


def gradient_norms(kind: str, steps: int, hidden: int, batch: int, seed: int,
                   forget_bias: float | None = None) -> np.ndarray:
    """||d ell_T / d h_t|| for t = 1..T (index t-1), for an Elman cell ('tanh'/'sigmoid') or an LSTM ('lstm')."""
    tl.manual_seed(seed)
    n_in, n_classes = 8, 10
    if kind == "lstm":
        cell = nn.LSTMCell(n_in, hidden)
        if forget_bias is not None:  # rows H:2H of the stacked (i, f, g, o) biases belong to the forget gate
            with tl.no_grad():
                cell.bias_ih[hidden:2 * hidden] = forget_bias
                cell.bias_hh[hidden:2 * hidden] = 0.0
    else:
        cell = nn.RNNCell(n_in, hidden, nonlinearity=kind)
    head = nn.Linear(hidden, n_classes)
    xs = tl.randn(steps, batch, n_in)  # (T, B, I)
    target = tl.randint(0, n_classes, (batch,))  # (B,)

    state = None
    hs = []
    for t in range(steps):
        state = cell(xs[t], state)
        h = state[0] if kind == "lstm" else state  # (B, H)
        h.retain_grad()
        hs.append(h)
    loss = F.cross_entropy(head(hs[-1]), target)  # the loss of the last step only
    loss.backward()
    return np.array([np.linalg.norm(h.grad.numpy()) for h in hs])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="||d loss_T / d h_t|| against T - t for Elman RNNs and LSTMs")
    parser.add_argument("--quick", action="store_true", help="a smaller batch (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder for the plot")
    parser.add_argument("--steps", type=int, default=60, help="T, the number of unrolled steps (>= 51)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 51:
        parser.error("--steps must be at least 51 to compare T - t = 1 with T - t = 50")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tl.set_default_dtype("float64")
    batch = 4 if args.quick else 32

    runs = {
        "Elman RNN, tanh": ("tanh", None),
        "Elman RNN, sigmoid": ("sigmoid", None),
        "LSTM, b_f = 0 (default init)": ("lstm", None),
        "LSTM, b_f = 1": ("lstm", 1.0),
        "LSTM, b_f = 3": ("lstm", 3.0),
    }
    curves = {}
    print(f"T = {args.steps} steps, hidden size {args.hidden}, batch {batch}, loss on step T only")
    print(f"{'cell':30s} {'|dl/dh_(T-1)|':>14s} {'|dl/dh_(T-50)|':>15s} {'ratio':>10s}")
    for name, (kind, bias) in runs.items():
        norms = gradient_norms(kind, args.steps, args.hidden, batch, args.seed, forget_bias=bias)
        distance = np.arange(args.steps)[::-1]  # T - t for t = 1..T
        curves[name] = (distance[:-1].tolist()[::-1], norms[:-1].tolist()[::-1])  # T - t = 1 .. T-1
        near, far = norms[-2], norms[-51]
        print(f"{name:30s} {near:14.3e} {far:15.3e} {near / far:10.3e}")
    plot = plot_curves(curves, out / "vanishing_gradients.png", xlabel="T - t (steps back from the loss)",
                       ylabel="||d loss_T / d h_t||", title="gradient reaching h_t from a loss at step T",
                       logy=True)
    print(f"wrote the plot to {plot}")


if __name__ == "__main__":
    main()
