"""Pictures: the computation graph as DOT, and loss curves as PNG."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import tinygrad_lm as tl
import tinygrad_lm.nn.functional as F
from tinygrad_lm import nn
from tinygrad_lm.viz import plot_curves, render_dot, to_dot

PNG = b"\x89PNG\r\n\x1a\n"


def unrolled_rnn_loss(steps: int = 3):
    """ell = sum_t CE(W_hy h_t + b_y, y_t) with h_t = tanh(W_ih x_t + W_hh h_{t-1} + b): a 3-step unrolled RNN."""
    tl.manual_seed(0)
    cell, head = nn.RNNCell(3, 4), nn.Linear(4, 5)
    x, h, loss = tl.randn(steps, 2, 3), None, None
    for t in range(steps):
        h = cell(x[t], h)
        step_loss = F.cross_entropy(head(h), tl.tensor([1, 2]))
        loss = step_loss if loss is None else loss + step_loss
    named = list(cell.named_parameters(prefix="cell")) + list(head.named_parameters(prefix="head"))
    return loss, named


def graph_nodes(t) -> list:
    seen, stack, out = set(), [t.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(getattr(x, "grad_fn", None) for x in node.inputs)
    return out


def test_to_dot_draws_every_op_with_its_shape_and_names_parameters():
    loss, named = unrolled_rnn_loss()
    dot = to_dot(loss, named, title='an "unrolled" RNN')
    assert dot.startswith("digraph computation {") and dot.rstrip().endswith("}")
    nodes = graph_nodes(loss)
    boxes = re.findall(r'\[label="(\w+)\\n(\([\d, ]*\))", shape=box', dot)
    assert len(boxes) == len(nodes)  # one box per node of the graph
    assert sorted(kind for kind, _ in boxes) == sorted(type(n).__name__ for n in nodes)
    assert {"Tanh", "Matmul", "CrossEntropy", "Add"} <= {kind for kind, _ in boxes}
    assert ("CrossEntropy", "()") in boxes and ("Tanh", "(2, 4)") in boxes
    for name, p in named:
        assert dot.count(f'label="{name}\\n{tuple(p.shape)}"') == 1  # each parameter once, however often used
    assert 'label="an \\"unrolled\\" RNN"' in dot
    assert 'label="output\\n()"' in dot
    anonymous = to_dot(loss)
    assert "cell.weight_hh" not in anonymous and 'label="leaf\\n(4, 4)"' in anonymous
    edges = re.findall(r"^  (\w+) -> (\w+);$", dot, flags=re.M)
    assert len(edges) == sum(sum(1 for x in n.inputs if isinstance(x, tl.Tensor) or getattr(x, "grad_fn", None))
                             for n in nodes) + 1


def test_to_dot_after_backward():
    loss, named = unrolled_rnn_loss()
    loss.backward(retain_graph=True)
    assert "Tanh" in to_dot(loss, named)  # a retained graph can still be drawn
    loss.backward()
    with pytest.raises(RuntimeError, match="freed by backward"):
        to_dot(loss, named)


def test_to_dot_of_a_leaf_and_bad_input():
    dot = to_dot(tl.ones(2, 3))
    assert 'label="output\\n(2, 3)"' in dot and "shape=box" not in dot
    with pytest.raises(TypeError, match="expects a Tensor"):
        to_dot(np.ones(3))


def test_render_dot(tmp_path):
    loss, named = unrolled_rnn_loss(1)
    dot = to_dot(loss, named)
    assert render_dot(dot, tmp_path / "g.dot").read_text() == dot
    result = render_dot(dot, tmp_path / "pics" / "g.svg")
    if shutil.which("dot") is None:
        assert result is None and (tmp_path / "pics" / "g.dot").read_text() == dot
    else:
        assert result == tmp_path / "pics" / "g.svg" and "<svg" in result.read_text()


def test_plot_curves_writes_a_png_and_leaves_pyplot_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    backend = matplotlib.get_backend()
    path = plot_curves({"train": ([1, 2, 3], [2.0, 1.5, 1.2]), "validation": ([2], [1.6])}, tmp_path / "a" / "c.png",
                       title="loss", logy=True)
    assert path == tmp_path / "a" / "c.png" and path.read_bytes()[:8] == PNG
    assert not list((tmp_path / "a").glob("*.tmp*"))
    assert matplotlib.get_backend() == backend
