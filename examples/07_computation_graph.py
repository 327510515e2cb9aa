"""The computation graph of a small unrolled RNN, drawn.

An Elman RNN with 2 hidden units reads a sequence of 3 inputs:

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   t = 1, 2, 3,   h_0 = 0
    y_hat = W_y h_3 + b_y,    ell = (y_hat - y)^2

Every Tensor operation on the way records one node of the graph (a
``Function``: MatMul, Add, Tanh, ...), holding on to its inputs. Unrolled over 3
steps the RNN is just a feed-forward graph, 3 copies of the cell deep, in which
the *same* leaf tensors W_ih and W_hh feed every copy. ``loss.backward()`` walks
this graph from ``ell`` back to the leaves in reverse topological order, and
because W_hh is used at every step, its gradient is the *sum* of the gradients
of its three uses: that is backpropagation through time.

The cell is applied step by step with ``nn.RNNCell`` (the fused ``nn.RNN`` would
draw the whole recurrence as one node). ``tinygrad_lm.viz.to_dot`` turns the graph
into Graphviz DOT text: boxes for ops (type and output shape), green ellipses
for the parameters, grey ones for the inputs x_t, h_0 and the target, arrows in the forward direction.

What to look for: in ``rnn_graph.dot`` (and ``rnn_graph.svg`` / ``.png`` when
Graphviz's ``dot`` program is installed), the three repeated cell blocks, the
parameters with three outgoing arrows each, and the count of nodes printed
below. The gradients printed at the end are what backward produced. Run::

    python examples/07_computation_graph.py --out runs/examples
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
from tinygrad_lm import nn
from tinygrad_lm.viz import render_dot, to_dot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="draw the computation graph of an unrolled RNN")
    parser.add_argument("--quick", action="store_true", help="the same (this example is always quick)")
    parser.add_argument("--out", default="runs/examples", help="output folder for the .dot/.svg/.png files")
    parser.add_argument("--steps", type=int, default=3, help="time steps to unroll")
    parser.add_argument("--hidden", type=int, default=2, help="hidden units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tl.manual_seed(args.seed)

    cell = nn.RNNCell(input_size=1, hidden_size=args.hidden)
    readout = nn.Linear(args.hidden, 1)
    xs = [tl.tensor([[float(t + 1) / args.steps]]) for t in range(args.steps)]  # T inputs x_t, each (1, 1)
    h0 = tl.zeros(1, args.hidden)  # (1, H)
    y = tl.tensor([[1.0]])  # (1, 1)

    h = h0
    for x in xs:
        h = cell(x, h)  # (1, H): h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    loss = ((readout(h) - y) ** 2).sum()

    names = {f"cell.{n}": p for n, p in cell.named_parameters()}
    names.update({f"readout.{n}": p for n, p in readout.named_parameters()})
    labels = {**names, "h_0": h0, "y (target)": y, **{f"x_{t + 1}": x for t, x in enumerate(xs)}}
    dot = to_dot(loss, labels, title=f"Elman RNN unrolled over {args.steps} steps, hidden size {args.hidden}")
    op_nodes = sum(1 for line in dot.splitlines() if "shape=box" in line)
    counts: dict[str, int] = {}
    for line in dot.splitlines():
        if "shape=box" in line:
            op = line.split('label="')[1].split("\\n")[0]
            counts[op] = counts.get(op, 0) + 1
    print(f"the graph of the loss has {op_nodes} op nodes: "
          + ", ".join(f"{n} {op}" for op, n in sorted(counts.items())))

    dot_path = render_dot(dot, out / "rnn_graph.dot")
    print(f"wrote the DOT text to {dot_path}")
    if shutil.which("dot") is None:
        print("Graphviz's `dot` is not installed, so no picture was rendered; install it (e.g. apt-get install "
              f"graphviz) and run `dot -Tsvg {dot_path} -o rnn_graph.svg`, or paste the DOT text into any "
              "Graphviz viewer")
    else:
        for suffix in (".svg", ".png"):
            print(f"rendered {render_dot(dot, out / ('rnn_graph' + suffix))}")

    loss.backward()
    print(f"\nloss = {loss.item():.4f}; gradients after backward (W_hh's sums its {args.steps} uses):")
    for name, p in names.items():
        print(f"  d loss / d {name:17s} = {np.array2string(p.grad.numpy().ravel(), precision=4)}")


if __name__ == "__main__":
    main()
