"""Long runs: backpropagation through 10,000 time steps, and graphs that do not pile up."""
from __future__ import annotations

import gc

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn, optim


def test_lstm_bptt_over_10000_steps_completes_with_finite_gradients():
    tl.manual_seed(0)
    lstm = nn.LSTM(3, 8)
    head = nn.Linear(8, 5)
    x = tl.randn(10_000, 1, 3)  # (T, B, I)
    targets = tl.randint(0, 5, (10_000,))
    out, (h, c) = lstm(x)
    loss = F.cross_entropy(head(out).reshape(-1, 5), targets)
    loss.backward()
    for name, p in list(lstm.named_parameters()) + list(head.named_parameters()):
        assert p.grad is not None, name
        assert np.isfinite(p.grad.numpy()).all(), name
    assert np.abs(lstm.weight_hh_l0.grad.numpy()).sum() > 0


def test_op_by_op_rnn_unrolled_over_10000_steps_backprops_without_recursion():
    cell = nn.RNNCell(2, 4)
    h = tl.zeros(1, 4)
    x = tl.randn(10_000, 1, 2)
    for t in range(10_000):
        h = cell(x[t], h)
    h.sum().backward()
    assert np.isfinite(cell.weight_hh.grad.numpy()).all()


def _live_tensors() -> int:
    return sum(isinstance(o, tl.Tensor) for o in gc.get_objects())


def test_truncated_bptt_training_keeps_the_number_of_live_tensors_flat():
    """Carrying a detached state between chunks must not keep earlier chunks' graphs alive."""
    tl.manual_seed(0)
    emb, lstm, head = nn.Embedding(11, 6), nn.LSTM(6, 12, batch_first=True), nn.Linear(12, 11)
    params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=1e-2)
    ids = np.arange(4 * 401) % 11
    data = ids.reshape(4, -1)
    state = None
    counts = []
    for step in range(60):
        i = (step * 5) % (data.shape[1] - 6)
        x, y = tl.tensor(data[:, i:i + 5]), tl.tensor(data[:, i + 1:i + 6])
        out, state = lstm(emb(x), state)
        loss = F.cross_entropy(head(out).reshape(-1, 11), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = tuple(s.detach() for s in state)
        del out, loss, x, y
        if step in (10, 59):
            gc.collect()
            counts.append(_live_tensors())
    assert counts[0] == counts[1]
