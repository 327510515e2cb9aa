"""The ways users write attention, against the fused call, in one process: tinygrad_lm alone.

The issue behind this script asks that attention written by hand (``q @ k.transpose``, scale,
``masked_fill``, ``softmax``, ``@ v``) and attention through ``nn.MultiheadAttention`` cost no more
than ``F.scaled_dot_product_attention``. The training-step benchmark compares each with PyTorch in
separate processes, whose spread on a shared machine (10-30%) hides differences of a few percent.
Here the four ``gpt`` models of ``models.py`` (``gpt``: the fused call; ``gpt-manual``; ``gpt-mha``;
``gpt-mha-weights``) train in one process, one step of each in turn (the order reversed every
round), and each round's step times are divided by the fused model's in the same round: the
median of those pair ratios, with their quartiles.

``--layouts`` instead times each model with the gradients laid out as their inputs
(``tinygrad_lm/fast/layouts.py``, the default) against the same model with that switched off (every
gradient C-contiguous, copied back through the reshape and concatenated by the split), alternating.
``--in-place`` does the same for the backward passes that write over a gradient the engine hands
over (``tinygrad_lm/fast/in_place.py``) against every such pass writing a new array.

    python benchmarks/bench_attention.py [--threads 2] [--steps 30] [--layouts | --in-place]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402
from bench_train_step import make_frameworks  # noqa: E402

FORMS = ("gpt", "gpt-manual", "gpt-mha", "gpt-mha-weights")


def make_step(name: str) -> Callable[[], float]:
    """A function running one training step of configuration ``name`` (the training-step benchmark's model,
    weights and batch: ``bench_train_step.make_frameworks``), returning its seconds."""
    fw = make_frameworks(models.get_config(name), None, lr=0.01)[0]

    def step() -> float:
        fw.step(record=True)
        return fw.times[-1]

    return step


def alternate(steps: dict[str, Callable[[], float]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """``warmup`` untimed then ``rounds`` timed rounds of one call of each, the order reversed every round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds = steps[name]()
            if r >= warmup:
                times[name].append(seconds)
    return times


def ratio_cells(times: list[float], base: list[float]) -> str:
    ratios = sorted(t / b for t, b in zip(times, base))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    return f"{statistics.median(ratios):.3f} ({q1:.3f}-{q3:.3f})"


def forms_table(args: argparse.Namespace) -> None:
    steps = {name: make_step(name) for name in FORMS}
    times = alternate(steps, args.steps, args.warmup)
    print(f"{'model':18s} {'ms/step':>9s}   step / gpt's step, median of {args.steps} rounds (quartiles)")
    for name in FORMS:
        print(f"{name:18s} {1e3 * statistics.median(times[name]):9.1f}   {ratio_cells(times[name], times['gpt'])}")


def on_off_table(args: argparse.Namespace, labels: tuple[str, str],
                 switch: Callable[[bool], Callable[[], None]]) -> None:
    """Each model's steps with a technique on and off, alternating: ``switch(on)`` turns it on or off and returns
    what restores the default."""
    print(f"{'model':18s} {labels[0]:>10s} {labels[1]:>10s}   {labels[0]} / {labels[1]}, median of {args.steps} "
          "pairs (quartiles)")
    for name in FORMS:
        step = make_step(name)

        def with_switch(on: bool, step: Callable[[], float] = step) -> Callable[[], float]:
            def run() -> float:
                restore = switch(on)
                try:
                    return step()
                finally:
                    restore()
            return run

        times = alternate({"on": with_switch(True), "off": with_switch(False)}, args.steps, args.warmup)
        print(f"{name:18s} {1e3 * statistics.median(times['on']):10.1f} {1e3 * statistics.median(times['off']):10.1f}"
              f"   {ratio_cells(times['on'], times['off'])}")


def layouts_switch(on: bool) -> Callable[[], None]:
    """Gradients laid out as their inputs (the default), or every one made C-contiguous as the reference makes it."""
    from tinygrad_lm.fast import layouts

    laid_out = layouts.empty_like_inputs

    def c_contiguous(inputs: list[Any], shapes: list[Any], dtype: Any) -> list[Any]:
        return [None] * len(inputs)

    layouts.empty_like_inputs = laid_out if on else c_contiguous

    def restore() -> None:
        layouts.empty_like_inputs = laid_out
    return restore


def in_place_switch(on: bool) -> Callable[[], None]:
    """The engine handing the gradients it alone holds to the ops (the default: fast/in_place.py), or never."""
    from tinygrad_lm import autograd

    handing_over = autograd._node_backward

    def never(node: Any, g: Any, retain_graph: bool, own: bool) -> Any:
        return handing_over(node, g, retain_graph, False)

    autograd._node_backward = handing_over if on else never

    def restore() -> None:
        autograd._node_backward = handing_over
    return restore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="tl.set_num_threads (default: every core)")
    parser.add_argument("--steps", type=int, default=30, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--layouts", action="store_true", help="gradient layouts on against off, per model")
    parser.add_argument("--in-place", action="store_true",
                        help="backward passes over the gradients the engine hands over, on against off, per model")
    args = parser.parse_args(argv)
    import tinygrad_lm as tl

    if args.threads is not None:
        tl.set_num_threads(args.threads)
    print(f"tinygrad_lm {tl.__version__}, {tl.get_num_threads()} threads, fast path "
          f"{'on' if tl.fast.is_enabled() else 'off'}")
    if args.layouts:
        on_off_table(args, ("laid out", "contiguous"), layouts_switch)
    elif args.in_place:
        on_off_table(args, ("in place", "new"), in_place_switch)
    else:
        forms_table(args)


if __name__ == "__main__":
    main()
