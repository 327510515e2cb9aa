"""Pictures of what autodiff does: computation graphs as Graphviz DOT, and curves as PNG.

``to_dot(loss)`` walks the graph that produced ``loss`` (before ``backward`` frees
it) and returns DOT text: one box per op (its type and output shape), one
ellipse per leaf tensor (named when you pass ``params``), arrows in the
direction of the forward pass. Backward runs along the same arrows in reverse.
``render_dot`` turns it into SVG or PNG when Graphviz's ``dot`` is installed.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

from .serialization import atomic_write_bytes
from .tensor import Tensor


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))


def _quote(text: str) -> str:
    """``text`` safe inside a double-quoted DOT label."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(output: Tensor, params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
           title: str | None = None) -> str:
    """The computation graph of ``output`` in Graphviz DOT.

    ``params`` (e.g. ``model.named_parameters()``) labels leaf tensors by name.
    Call it before ``backward()`` (or after ``backward(retain_graph=True)``): a graph
    that backward has freed cannot be drawn, and that raises ``RuntimeError``.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"to_dot expects a Tensor, got {type(output).__name__}")
    names = {id(t): n for n, t in (params.items() if isinstance(params, Mapping) else (params or []))}
    lines = ["digraph computation {", '  rankdir="LR";', '  node [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f'  label="{_quote(title)}"; labelloc="t";')
    seen: set[int] = set()
    out_id = f"t{id(output)}"
    lines.append(f'  {out_id} [label="output\\n{_shape(output.shape)}", shape=doubleoctagon, style=filled, '
                 'fillcolor="#f6d55c"];')
    root = output.grad_fn
    if root is None:
        lines.append("}")
        return "\n".join(lines)
    lines.append(f"  n{id(root)} -> {out_id};")
    stack = [(root, output.shape)]
    seen.add(id(root))
    while stack:
        node, shape = stack.pop()
        if node.inputs is None:
            raise RuntimeError("this graph was freed by backward(); draw it before, or use backward(retain_graph=True)")
        lines.append(f'  n{id(node)} [label="{type(node).__name__}\\n{_shape(shape)}", shape=box, '
                     'style="rounded,filled", fillcolor="#e8eef7"];')
        for x in node.inputs:
            fn = getattr(x, "grad_fn", None)  # a Tensor, or the graph's edge to a non-leaf input
            if fn is None and not isinstance(x, Tensor):
                continue
            if fn is not None:
                lines.append(f"  n{id(fn)} -> n{id(node)};")
                if id(fn) not in seen:
                    seen.add(id(fn))
                    stack.append((fn, x.shape))
            else:
                leaf = f"t{id(x)}"
                if id(x) not in seen:
                    seen.add(id(x))
                    label = _quote(names.get(id(x), "input" if not x.requires_grad else "leaf"))
                    color = "#a3d9a5" if x.requires_grad else "#eeeeee"
                    lines.append(f'  {leaf} [label="{label}\\n{_shape(x.shape)}", style=filled, fillcolor="{color}"];')
                lines.append(f"  {leaf} -> n{id(node)};")
    lines.append("}")
    return "\n".join(lines)


def render_dot(dot: str, path: str | Path) -> Path | None:
    """Write ``dot`` to ``path`` (``.dot``, or ``.svg``/``.png`` rendered by Graphviz if it is installed).

    Returns the written path, or ``None`` when a picture was asked for and Graphviz is missing
    (the ``.dot`` text is then written next to it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".dot":
        path.write_text(dot)
        return path
    exe = shutil.which("dot")
    if exe is None:
        path.with_suffix(".dot").write_text(dot)
        return None
    subprocess.run([exe, f"-T{path.suffix.lstrip('.')}", "-o", str(path)], input=dot.encode(), check=True)
    return path


def plot_curves(series: Mapping[str, tuple[list[float], list[float]]], path: str | Path, xlabel: str = "step",
                ylabel: str = "loss", title: str | None = None, logy: bool = False) -> Path:
    """Plot named (x, y) series into a PNG, written atomically.

    Draws on a bare Agg canvas: no display is needed and pyplot's global backend is left alone
    (a notebook keeps its inline plots).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, image.getbuffer())
    return path
