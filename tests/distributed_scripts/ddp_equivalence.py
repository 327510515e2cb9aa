"""DDP on N ranks, each on 1/N of the batch, against one process on the whole batch (float64, to 1e-10).

Rank r>0 builds its replica from other random weights: DDP must broadcast rank 0's. Covered: the
RNN, LSTM and Transformer LMs, SGD with momentum and Adam, several buckets and one, a truncated-BPTT
state carried between steps, and gradient accumulation with ``no_sync``.
Run as ``mpiexec -n N python ddp_equivalence.py [cpu|cuda]``; prints ``ddp_equivalence OK`` on rank 0.
"""
from __future__ import annotations

import sys

import numpy as np

import tinygrad_lm as tl
import tinygrad_lm.distributed as dist
from tinygrad_lm import optim
from tinygrad_lm.lm.models import LSTMLM, RNNLM, RNNLMConfig, TransformerConfig, TransformerLM, detach_state
from tinygrad_lm.nn.parallel import DistributedDataParallel as DDP

V, B, T, STEPS = 11, 4, 6, 3
TOL = 1e-10
DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cpu"


def build(kind: str, seed: int) -> tl.nn.Module:
    tl.manual_seed(seed)
    if kind == "rnn":
        model = RNNLM(RNNLMConfig(V, embed_dim=5, hidden_size=7, num_layers=2, cell="rnn"))
    elif kind == "lstm":
        model = LSTMLM(RNNLMConfig(V, embed_dim=5, hidden_size=7, num_layers=1, cell="lstm"))
    else:
        model = TransformerLM(TransformerConfig(V, block_size=T, n_layer=2, n_head=2, n_embd=8, mlp_hidden=16))
    return model.to(DEVICE)


def make_optimizer(name: str, params: list) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=0.01)


def batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(STEPS):
        ids = rng.integers(0, V, size=(B, T + 1))
        out.append((ids[:, :-1], ids[:, 1:]))
    return out


def forward(model: tl.nn.Module, kind: str, x: np.ndarray, y: np.ndarray, state: object) -> tuple:
    x, y = tl.tensor(x, device=DEVICE), tl.tensor(y, device=DEVICE)
    if kind == "transformer":
        return model(x, y)[1], None
    _, loss, state = model(x, y, state=state, return_state=True)
    return loss, detach_state(state)


def compare(ref: tl.nn.Module, ddp: DDP, what: str) -> None:
    mine = dict(ddp.module.named_parameters())
    for name, p in ref.named_parameters():
        diff = float(np.max(np.abs(p.detach().numpy() - mine[name].detach().numpy())))
        if not diff <= TOL:
            raise AssertionError(f"rank {dist.get_rank()}: {what}: parameter {name} differs by {diff:.3e}")


def run(kind: str, opt: str, bucket_cap_mb: float) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    ref = build(kind, seed=100)  # every rank computes the one-process run itself
    replica = build(kind, seed=100 + rank)  # rank 1 starts elsewhere: DDP broadcasts rank 0's weights
    if rank > 0:
        assert any(not np.array_equal(a.detach().numpy(), b.detach().numpy())
                   for a, b in zip(ref.parameters(), replica.parameters()))
    ddp = DDP(replica, bucket_cap_mb=bucket_cap_mb)
    compare(ref, ddp, f"{kind} after construction")
    if bucket_cap_mb < 0.01:
        assert len(ddp._buckets) > 2, len(ddp._buckets)
    opt_ref = make_optimizer(opt, list(ref.parameters()))
    opt_ddp = make_optimizer(opt, list(ddp.parameters()))
    rows = slice(rank * B // world, (rank + 1) * B // world)
    state_ref = state_ddp = None
    for step, (x, y) in enumerate(batches(seed=7)):
        opt_ref.zero_grad()
        loss, state_ref = forward(ref, kind, x, y, state_ref)
        loss.backward()
        opt_ref.step()
        opt_ddp.zero_grad()
        loss, state_ddp = forward(ddp, kind, x[rows], y[rows], state_ddp)
        loss.backward()
        opt_ddp.step()
        compare(ref, ddp, f"{kind} {opt} bucket_cap_mb={bucket_cap_mb} step {step}")
    if kind == "transformer":  # the carried states of the recurrent runs would make no_sync's check longer
        return
    # gradient accumulation: two micro-batches, the first inside no_sync, equal the sum of their full-batch grads
    (x1, y1), (x2, y2) = batches(seed=8)[:2]
    opt_ref.zero_grad()
    for x, y in ((x1, y1), (x2, y2)):
        forward(ref, kind, x, y, None)[0].backward()
    opt_ddp.zero_grad()
    with ddp.no_sync():
        forward(ddp, kind, x1[rows], y1[rows], None)[0].backward()
    local = {n: p.grad.numpy().copy() for n, p in ddp.module.named_parameters()}
    forward(ddp, kind, x2[rows], y2[rows], None)[0].backward()
    assert any(not np.array_equal(local[n], p.grad.numpy()) for n, p in ddp.module.named_parameters())
    mine = dict(ddp.module.named_parameters())
    for name, p in ref.named_parameters():
        diff = float(np.max(np.abs(p.grad.numpy() - mine[name].grad.numpy())))
        if not diff <= TOL:
            raise AssertionError(f"rank {rank}: {kind} no_sync accumulation: {name}.grad differs by {diff:.3e}")


def main() -> None:
    dist.init_process_group("mpi" if DEVICE == "cpu" else "nccl")
    tl.set_default_dtype(tl.float64)
    world = dist.get_world_size()
    assert (world >= 2 or DEVICE != "cpu") and B % world == 0, "run with mpiexec -n 2 (or 4)"
    for kind, opt, cap in (("rnn", "sgd", 0.001), ("rnn", "adam", 25), ("lstm", "sgd", 25),
                           ("lstm", "adam", 0.001), ("transformer", "sgd", 0.001), ("transformer", "adam", 25)):
        run(kind, opt, cap)
    sd = DDP(build("lstm", 1)).state_dict()
    assert sd and all(k.startswith("module.") for k in sd), list(sd)
    rank = dist.get_rank()
    dist.destroy_process_group()
    if rank == 0:
        print("ddp_equivalence OK", flush=True)

if __name__ == "__main__":
    main()
