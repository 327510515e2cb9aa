"""tinygrad_lm.distributed and DistributedDataParallel, with real ranks started by ``mpiexec -n 2``.

The multi-rank checks live in ``tests/distributed_scripts/``; each test here starts one of them
under ``mpiexec`` with a hard timeout, so a hang fails the test instead of blocking the suite.
The engine hooks DDP relies on are tested in this process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lm as tl
from tinygrad_lm import autograd, nn

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "distributed_scripts"
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None


def _mpiexec() -> str | None:
    from tinygrad_lm.distributed.launch import find_mpiexec

    try:
        return find_mpiexec()
    except RuntimeError:
        return None


needs_mpi = pytest.mark.skipif(not HAVE_MPI or _mpiexec() is None,
                               reason="needs mpi4py and mpiexec: pip install 'tinygrad_lm[distributed]'")


def run_ranks(script: str, *args: str, n: int = 2, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Start ``n`` ranks of a script under mpiexec; returns the finished process and the seconds it took."""
    from tinygrad_lm.distributed.launch import mpiexec_command

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TINYGRAD_LM_FAST="off",  # Numba's first compile costs seconds per rank; DDP does not depend on it
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = mpiexec_command(n, [sys.executable, str(SCRIPTS / script), *args])
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{script} {' '.join(args)} did not finish within {timeout} s (a hang):\n"
                    f"{err.stdout}\n{err.stderr}")
    return proc, time.monotonic() - started


def _ok(proc: subprocess.CompletedProcess, marker: str) -> None:
    assert proc.returncode == 0 and marker in proc.stdout, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


# ---------------------------------------------------------------------------------------------- engine hooks
def test_post_accumulate_grad_hook_runs_once_after_every_contribution():
    w = nn.Parameter(tl.tensor(np.arange(6.0).reshape(2, 3)))
    b = nn.Parameter(tl.tensor(np.ones(3)))
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda p: seen.append(("w", p.grad.numpy().copy())))
    b.register_post_accumulate_grad_hook(lambda p: seen.append(("b", p.grad.numpy().copy())))
    x = tl.tensor(np.array([[1.0, -2.0]]))
    y = ((x @ w + b) * (x @ w)).sum()  # w feeds two products: its hook waits for both
    y.backward()
    assert [name for name, _ in seen] == ["b", "w"]
    np.testing.assert_array_equal(seen[1][1], w.grad.numpy())
    np.testing.assert_array_equal(seen[0][1], b.grad.numpy())
    handle.remove()
    seen.clear()
    (x @ w).sum().backward()
    assert seen == []


def test_queue_callback_runs_after_backward_and_not_after_an_error():
    w = nn.Parameter(tl.tensor(np.ones(3)))
    order = []

    def hook(p):
        order.append("hook")
        autograd.queue_callback(lambda: order.append(("final", float(p.grad.numpy().sum()))))

    w.register_post_accumulate_grad_hook(hook)
    (w * 2.0).sum().backward()
    assert order == ["hook", ("final", 6.0)]
    with pytest.raises(RuntimeError, match="during the backward pass"):
        autograd.queue_callback(lambda: None)

    class Fails(autograd.Function):
        def forward(self, a):
            return a * 1.0

        def backward(self, grad):
            raise ValueError("backward failed")

    order.clear()
    with pytest.raises(ValueError, match="backward failed"):
        (Fails.apply(w * 3.0) + w).sum().backward()
    assert ("final", 9.0) not in order and not any(isinstance(o, tuple) for o in order)


def test_removing_the_last_hook_leaves_backward_as_without_hooks():
    before = len(autograd._post_accumulate_grad_hooks)
    w = nn.Parameter(tl.ones(2))
    handles = [w.register_post_accumulate_grad_hook(lambda p: None) for _ in range(2)]
    handles[0].remove()
    assert len(autograd._post_accumulate_grad_hooks) == before + 1
    handles[1].remove()
    handles[1].remove()  # twice is harmless
    assert len(autograd._post_accumulate_grad_hooks) == before
    seen = []
    w.register_post_accumulate_grad_hook(seen.append)  # registering again works
    (w * 2).sum().backward()
    assert seen == [w]


def test_hooks_are_dropped_with_their_tensor():
    before = len(autograd._post_accumulate_grad_hooks)
    w = nn.Parameter(tl.ones(2))
    w.register_post_accumulate_grad_hook(lambda p: None)
    assert len(autograd._post_accumulate_grad_hooks) == before + 1
    del w
    assert len(autograd._post_accumulate_grad_hooks) == before


def test_hook_on_a_non_leaf_is_an_error():
    w = nn.Parameter(tl.ones(2))
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)


# ---------------------------------------------------------------------------------------------- without ranks
def test_not_initialized_errors_are_clear():
    import tinygrad_lm.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(tl.ones(2))
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("gloo")
    import tinygrad_lm.nn.parallel as parallel

    assert tl.distributed is dist and tl.nn.parallel is parallel


# ---------------------------------------------------------------------------------------------- real ranks
@needs_mpi
def test_every_collective_every_dtype_and_op():
    proc, _ = run_ranks("collectives.py", "cpu")
    _ok(proc, "collectives OK")


@needs_mpi
def test_one_process_world_runs_without_mpiexec():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYGRAD_LM_FAST="off")
    code = ("import tinygrad_lm as tl, tinygrad_lm.distributed as dist\n"
            "from tinygrad_lm.nn.parallel import DistributedDataParallel as DDP\n"
            "dist.init_process_group()\n"
            "assert (dist.get_rank(), dist.get_world_size()) == (0, 1)\n"
            "t = tl.tensor([1.0, 2.0]); dist.all_reduce(t, op=dist.ReduceOp.AVG); assert t.tolist() == [1.0, 2.0]\n"
            "m = DDP(tl.nn.Linear(2, 1)); m(t).sum().backward(); assert m.module.weight.grad.tolist() == [[1.0, 2.0]]\n"
            "print('single OK')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    _ok(proc, "single OK")


@needs_mpi
def test_ddp_two_ranks_on_half_batches_equal_one_process_on_the_batch():
    proc, _ = run_ranks("ddp_equivalence.py", timeout=120)
    _ok(proc, "ddp_equivalence OK")


@needs_mpi
def test_trainer_on_two_ranks_resumes_on_any_world_size(tmp_path):
    proc, _ = run_ranks("trainer_resume.py", str(tmp_path), timeout=120)
    _ok(proc, "trainer_resume OK")


@needs_mpi
def test_a_rank_that_raises_ends_the_job():
    proc, seconds = run_ranks("faults.py", "raise")
    assert proc.returncode != 0, proc.stdout
    assert "rank 1 fails on purpose" in proc.stderr and "aborting the job" in proc.stderr, proc.stderr
    assert "rank 0 got past" not in proc.stdout
    assert seconds < 30


@needs_mpi
def test_an_error_caught_on_one_rank_still_ends_the_job(tmp_path):
    proc, seconds = run_ranks("faults.py", "caught", str(tmp_path / "handled"))
    assert proc.returncode != 0, proc.stdout
    for rank in (0, 1):  # the error raised alike on both ranks was handled by both (read from files: mpiexec
        # may end on rank 1's abort before it has forwarded rank 0's output)
        assert (tmp_path / f"handled.{rank}").read_text() == f"rank {rank} got: bad settings", proc.stdout
    assert "rank 1 fails inside the command" in proc.stderr and "aborting the job" in proc.stderr, proc.stderr
    assert seconds < 30


@needs_mpi
def test_uneven_data_times_out_instead_of_hanging():
    proc, seconds = run_ranks("faults.py", "uneven")
    assert proc.returncode != 0, proc.stdout
    assert "did not complete within 2 s" in proc.stderr, proc.stderr
    assert seconds < 30


@needs_mpi
def test_models_of_different_shapes_are_refused_naming_the_parameter():
    proc, _ = run_ranks("faults.py", "mismatch")
    assert proc.returncode == 0, proc.stderr
    for rank in (0, 1):
        assert (f"rank {rank} error: DistributedDataParallel: the model differs between ranks: parameter "
                "'body.weight' is float32 (4, 3) on rank 0 but float32 (5, 3) on rank 1") in proc.stdout, proc.stdout


@needs_mpi
def test_unused_parameters_are_named_or_counted_as_zero():
    proc, _ = run_ranks("faults.py", "unused")
    _ok(proc, "unused OK")


# ---------------------------------------------------------------------------------------------- NCCL
def _gpus() -> int:
    from tinygrad_lm import backend

    if not backend.cuda_is_available():
        return 0
    return int(backend.cupy_module().cuda.runtime.getDeviceCount())


def _nccl_ready() -> bool:
    return _gpus() > 0 and importlib.util.find_spec("cupy.cuda.nccl") is not None


@needs_mpi
@pytest.mark.skipif(not _nccl_ready(), reason="needs CuPy with NCCL and a GPU")
def test_every_collective_on_nccl():
    # one rank per GPU (NCCL refuses two ranks on one device); with one GPU this checks the calls, not the sums
    proc, _ = run_ranks("collectives.py", "cuda", n=min(_gpus(), 2), timeout=180)
    _ok(proc, "collectives OK")


@needs_mpi
@pytest.mark.skipif(not _nccl_ready(), reason="needs CuPy with NCCL and a GPU")
def test_ddp_on_nccl_equals_one_process():
    proc, _ = run_ranks("ddp_equivalence.py", "cuda", n=min(_gpus(), 2), timeout=300)
    _ok(proc, "ddp_equivalence OK")


# ---------------------------------------------------------------------------------------------- DistributedSampler
@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False), (2, 3, False),
                                                    (7, 1, True)])
def test_distributed_sampler_shares_are_even_disjoint_and_cover(n, replicas, drop_last):
    from tinygrad_lm.utils.data.distributed import DistributedSampler

    shares = [list(DistributedSampler(range(n), replicas, r, shuffle=True, seed=3, drop_last=drop_last))
              for r in range(replicas)]
    lengths = {len(s) for s in shares}
    assert len(lengths) == 1 and lengths.pop() == len(DistributedSampler(range(n), replicas, 0, drop_last=drop_last))
    everything = [i for s in shares for i in s]
    if drop_last:
        assert len(set(everything)) == len(everything) == (n // replicas) * replicas
    else:
        assert set(everything) == set(range(n)) and len(everything) == -(-n // replicas) * replicas


def test_distributed_sampler_orders_agree_across_ranks_and_change_with_the_epoch():
    from tinygrad_lm.utils.data import Sampler
    from tinygrad_lm.utils.data.distributed import DistributedSampler

    samplers = [DistributedSampler(range(20), 2, r, seed=5) for r in range(2)]
    assert isinstance(samplers[0], Sampler)
    first = [list(s) for s in samplers]
    assert sorted(first[0] + first[1]) == list(range(20)) and first[0] != list(range(0, 20, 2))
    assert [list(s) for s in samplers] == first  # the same epoch gives the same order
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert second != first and sorted(second[0] + second[1]) == list(range(20))
    assert list(DistributedSampler(range(20), 2, 0, seed=5)) == first[0]


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (5, 4, False), (9, 2, True)])
def test_distributed_sampler_without_shuffle_matches_pytorch(n, replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data.distributed")
    from tinygrad_lm.utils.data.distributed import DistributedSampler

    for rank in range(replicas):
        ours = list(DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last))
        theirs = list(torch_data.DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last))
        assert ours == theirs


def test_distributed_sampler_errors_name_the_problem():
    from tinygrad_lm.utils.data.distributed import DistributedSampler

    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))


def test_distributed_sampler_drives_a_dataloader():
    from tinygrad_lm.utils.data import DataLoader, TensorDataset
    from tinygrad_lm.utils.data.distributed import DistributedSampler

    data = TensorDataset(tl.tensor(np.arange(10.0)))
    seen = []
    for rank in range(2):
        loader = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, 2, rank, seed=1))
        seen += [float(v) for (batch,) in loader for v in batch.tolist()]
    assert sorted(seen) == [float(i) for i in range(10)]


# ---------------------------------------------------------------------------------------------- the command line
@needs_mpi
def test_cli_on_two_ranks_and_resumed_across_world_sizes(tmp_path):
    """``train --nproc 2`` continued by one process, against one process continued by ``mpiexec -n 2
    tinygrad-lm train`` (with a host file, where the MPI is MPICH's): the same parameters."""
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    (tmp_path / "corpus.txt").write_text(" ".join(rng.choice(words, size=1500)) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYGRAD_LM_FAST="off", OMP_NUM_THREADS="1")
    common = ["--corpus", str(tmp_path / "corpus.txt"), "--model", "lstm", "--batch-size", "4", "--seq-len", "8",
              "--embed", "8", "--hidden", "16", "--eval-interval", "2", "--sample-tokens", "0", "--no-progress",
              "--time-limit", "0"]

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def train(*args: str) -> subprocess.CompletedProcess:
        return run([sys.executable, "-m", "tinygrad_lm", "train", *common, *args])

    two = train("--steps", "4", "--out", "two", "--nproc", "2")
    assert two.stdout.count("validation loss") == 1, two.stdout  # rank 0 alone prints
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4]  # rank 0 alone logs, once per evaluation
    assert [r["step"] for r in records if "train_loss" in r] == [4]
    train("--steps", "6", "--out", "two", "--resume")  # written by 2 ranks, continued by 1

    train("--steps", "4", "--out", "one")  # written by 1 process, continued by 2 ranks
    mpiexec, script = _mpiexec(), Path(sys.executable).with_name("tinygrad-lm")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    if "HYDRA" in version and script.exists():
        (tmp_path / "hosts").write_text(f"{socket.gethostname()}:2\n")
        run([mpiexec, "-f", "hosts", "-n", "2", str(script), "train", *common, "--steps", "6", "--out", "one",
             "--resume"])
    else:
        train("--steps", "6", "--out", "one", "--resume", "--nproc", "2")
    a = tl.load(tmp_path / "two" / "checkpoint.safetensors")
    b = tl.load(tmp_path / "one" / "checkpoint.safetensors")
    assert a["step"] == b["step"] == 6
    for name, value in b["model"].items():  # float32: the 2-rank average rounds differently from the whole batch
        np.testing.assert_allclose(a["model"][name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@needs_mpi
def test_ctrl_c_on_the_launcher_saves_once_and_exits(tmp_path):
    import re
    import signal

    rng = np.random.default_rng(1)
    (tmp_path / "corpus.txt").write_text(" ".join(rng.choice(["a", "bc", "def", "gh"], size=2000)) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYGRAD_LM_FAST="off", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "tinygrad_lm", "train", "--corpus", "corpus.txt", "--model", "lstm", "--batch-size",
           "4", "--seq-len", "8", "--embed", "8", "--hidden", "16", "--steps", "1000000", "--eval-interval", "20",
           "--sample-tokens", "0", "--no-progress", "--time-limit", "0", "--out", "run", "--nproc", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / "checkpoint.safetensors").exists():  # training has made progress
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # mpiexec takes its ranks down with it
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the job did not stop within 60 s of Ctrl-C:\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    stopped = re.findall(r"received SIGINT: stopped after step (\d+)", out)
    assert len(stopped) == 1, out  # one rank reports, once
    assert tl.load(tmp_path / "run" / "checkpoint.safetensors")["step"] == int(stopped[0])


@needs_mpi
def test_the_distributed_benchmark_runs_at_a_tiny_size():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYGRAD_LM_FAST="off")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_distributed.py"), "--configs", "tiny",
                           "--steps", "2", "--warmup", "1", "--timeout", "60"], capture_output=True, text=True,
                          timeout=150, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    row = proc.stdout.splitlines()[-1].split()
    assert row[0] == "tiny" and len(row) == 12, proc.stdout
    assert float(row[4]) > 0 and int(row[5]) == 1  # the gradient's megabytes, one bucket
