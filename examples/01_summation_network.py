"""The summation network and the summation-and-comparison network.

The smallest networks worth training: one unit each.

1. The summation network is a single linear unit

       y_hat = w_1 x_1 + w_2 x_2 + b

   trained on pairs (x_1, x_2) whose target is their sum y = x_1 + x_2, with the
   squared error  ell = (y_hat - y)^2  averaged over a mini-batch. Its gradient is

       d ell / d w_j = 2 (y_hat - y) x_j,    d ell / d b = 2 (y_hat - y)

   and mini-batch SGD steps  w <- w - lr * mean over the batch of d ell / d w.
   The only weights with zero loss are w = (1, 1), b = 0: watch them appear.

2. The summation-and-comparison network passes the same weighted sum through a
   sigmoid, giving the probability that the sum exceeds a threshold theta:

       p = sigma(w_1 x_1 + w_2 x_2 + b),   target y = [x_1 + x_2 > theta]

   trained with the binary cross-entropy  ell = -(y log p + (1 - y) log(1 - p)),
   whose gradient is simply  d ell / d z = p - y  for the pre-activation z.
   Here the weights are not pinned down: any w_1 = w_2 = k > 0 with b = -k theta
   draws the same decision line x_1 + x_2 = theta, and a larger k only makes the
   sigmoid steeper. So look at the ratio w_1 / w_2 (should be close to 1) and at
   the threshold the network learned: its line w_1 x_1 + w_2 x_2 + b = 0 crosses
   the diagonal x_1 = x_2 where x_1 + x_2 = -2b / (w_1 + w_2), close to theta.

Both are trained with ``DataLoader(shuffle=True)``: each epoch visits every training
example once, in disjoint mini-batches. Run::

    python examples/01_summation_network.py            # a few seconds
    python examples/01_summation_network.py --quick    # what the tests run
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim
from tinygrad_lm.data import DataLoader, TensorDataset
from tinygrad_lm.random import Generator


def make_pairs(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random input pairs, uniform in [-1, 1]^2, as float32 ``(n, 2)``."""
    return rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)


def train_summation(epochs: int, batch_size: int, lr: float, seed: int) -> nn.Linear:
    """Fit y_hat = w . x + b to y = x_1 + x_2 with mini-batch SGD on the squared error."""
    rng = np.random.default_rng(seed)
    x = make_pairs(512, rng)  # (N, 2)
    y = x.sum(axis=1, keepdims=True)  # (N, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=Generator().manual_seed(seed))
    unit = nn.Linear(2, 1)
    opt = optim.SGD(unit.parameters(), lr=lr)
    print(f"summation network: start  w = {unit.weight.detach().numpy().ravel().round(3)}, "
          f"b = {unit.bias.item():.3f}")
    for epoch in range(1, epochs + 1):
        total = 0.0
        for xb, yb in loader:
            loss = F.mse_loss(unit(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        if epoch == 1 or epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            print(f"  epoch {epoch:3d}: mean squared error {total / len(x):.6f}")
    return unit


def train_comparison(epochs: int, batch_size: int, lr: float, theta: float, seed: int) -> tuple[nn.Linear, float]:
    """Fit p = sigma(w . x + b) to y = [x_1 + x_2 > theta] with the binary cross-entropy."""
    rng = np.random.default_rng(seed + 1)
    x = make_pairs(1024, rng)  # (N, 2)
    y = (x.sum(axis=1, keepdims=True) > theta).astype(np.float32)  # (N, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=Generator().manual_seed(seed))
    unit = nn.Linear(2, 1)
    opt = optim.SGD(unit.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        total = 0.0
        for xb, yb in loader:
            p = unit(xb).sigmoid()  # (B, 1)
            loss = -(yb * p.clamp(1e-7, 1.0).log() + (1.0 - yb) * (1.0 - p).clamp(1e-7, 1.0).log()).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        if epoch == 1 or epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            print(f"  epoch {epoch:3d}: binary cross-entropy {total / len(x):.4f}")
    with tl.no_grad():
        test = make_pairs(2000, rng)
        pred = unit(tl.tensor(test)).sigmoid().numpy().ravel() > 0.5
    accuracy = float((pred == (test.sum(axis=1) > theta)).mean())
    return unit, accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run (what the tests use)")
    parser.add_argument("--out", default="runs/examples", help="output folder (this example writes no files)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tl.manual_seed(args.seed)

    epochs = 20 if args.quick else 100
    unit = train_summation(epochs, batch_size=16, lr=0.1, seed=args.seed)
    w = unit.weight.detach().numpy().ravel()
    b = unit.bias.item()
    print(f"summation network: learned w_1 = {w[0]:.4f}, w_2 = {w[1]:.4f}, b = {b:.4f}  (ideal: 1, 1, 0)")

    theta = 0.5
    print(f"\nsummation-and-comparison network: is x_1 + x_2 > {theta}?")
    unit, accuracy = train_comparison(epochs, batch_size=16, lr=0.5, theta=theta, seed=args.seed)
    w = unit.weight.detach().numpy().ravel()
    b = unit.bias.item()
    print(f"comparison network: learned w_1 = {w[0]:.4f}, w_2 = {w[1]:.4f}, b = {b:.4f}")
    print(f"comparison network: w_1 / w_2 = {w[0] / w[1]:.4f} (ideal 1), learned threshold "
          f"-2b / (w_1 + w_2) = {-2 * b / (w[0] + w[1]):.4f} (true {theta}), test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
