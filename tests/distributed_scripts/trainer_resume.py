"""The Trainer on 2 ranks against one process (float64, to 1e-10), and resuming across world sizes.

Run as ``mpiexec -n 2 python trainer_resume.py OUT_DIR``. For an LSTM LM (truncated BPTT, its carried
state split by streams) and a Transformer LM (random windows), rank 0 first trains alone, before the
process group exists: a whole run ``S`` and the first half of a run ``B``. Then both ranks resume
``B`` (1 -> 2 ranks) and train the first half of a run ``A``; last, rank 0 alone resumes ``A``
(2 -> 1). Both must end with ``S``'s parameters and validation losses; only rank 0 writes logs.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import tinygrad_lm as tl
import tinygrad_lm.distributed as dist
from tinygrad_lm.lm.models import LSTMLM, RNNLMConfig, TransformerConfig, TransformerLM
from tinygrad_lm.lm.trainer import TrainConfig, Trainer

V, STEPS, HALF, TOL = 13, 6, 3, 1e-10


def build(kind: str) -> tl.nn.Module:
    tl.manual_seed(11)
    if kind == "lstm":
        return LSTMLM(RNNLMConfig(V, embed_dim=6, hidden_size=10))
    return TransformerLM(TransformerConfig(V, block_size=8, n_layer=1, n_head=2, n_embd=8, mlp_hidden=16))


def trainer(kind: str, out: Path) -> Trainer:
    rng = np.random.default_rng(3)
    train_ids, val_ids = rng.integers(0, V, size=900), rng.integers(0, V, size=300)
    config = TrainConfig(max_steps=STEPS, batch_size=4, seq_len=8, optimizer="adam", lr=1e-2, min_lr=1e-3,
                         eval_interval=HALF, eval_batches=2, log_interval=1, checkpoint_interval=HALF,
                         out_dir=str(out), progress=False, handle_signals=False)
    return Trainer(build(kind), train_ids, val_ids, config)


def params(t: Trainer) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in t.model.state_dict().items()}


def val_losses(out: Path) -> dict[int, float]:
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "train_loss" in r]
    assert len(steps) == len(set(steps)), f"{out}: a step logged twice: {steps}"
    return {r["step"]: r["val_loss"] for r in lines if "val_loss" in r}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        diff = float(np.max(np.abs(a[k] - b[k])))
        assert diff <= TOL, f"{what}: {k} differs by {diff:.3e}"


def same_losses(a: dict[int, float], b: dict[int, float], what: str) -> None:
    assert a.keys() == b.keys() and a, f"{what}: evaluated at {sorted(a)} and {sorted(b)}"
    for k in a:
        assert abs(a[k] - b[k]) <= TOL, f"{what}: validation loss at step {k}: {a[k]} and {b[k]}"


def wait_for_rank0(comm: MPI.Comm) -> None:
    """A barrier that sleeps while it waits (MPI's spins, and would take a core from rank 0)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.01)


def main(root: Path) -> None:
    tl.set_default_dtype(tl.float64)
    comm, rank = MPI.COMM_WORLD, MPI.COMM_WORLD.Get_rank()
    kinds = ("lstm", "transformer")
    reference = {}
    if rank == 0:  # one process, no process group
        for kind in kinds:
            t = trainer(kind, root / f"{kind}-S")
            assert t.train().status == "finished"
            reference[kind] = (params(t), val_losses(root / f"{kind}-S"))
            assert trainer(kind, root / f"{kind}-B").train(until=HALF).status == "stopped"
    wait_for_rank0(comm)
    dist.init_process_group("mpi")
    for kind in kinds:
        t = trainer(kind, root / f"{kind}-B")
        assert t.dp.active and t.dp.rows == slice(2 * rank, 2 * rank + 2)  # each rank trains on its half
        assert t.train(resume=True).status == "finished"  # written by 1 rank, continued by 2
        if rank == 0:
            same(params(t), reference[kind][0], f"{kind}: 1 rank, then 2")
            same_losses(val_losses(root / f"{kind}-B"), reference[kind][1], f"{kind}: 1 rank, then 2")
        assert trainer(kind, root / f"{kind}-A").train(until=HALF).status == "stopped"
    dist.destroy_process_group()
    if rank == 0:
        for kind in kinds:
            t = trainer(kind, root / f"{kind}-A")
            assert t.train(resume=True).status == "finished"  # written by 2 ranks, continued by 1
            same(params(t), reference[kind][0], f"{kind}: 2 ranks, then 1")
            same_losses(val_losses(root / f"{kind}-A"), reference[kind][1], f"{kind}: 2 ranks, then 1")
        print("trainer_resume OK", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
