"""The training loop every language model uses.

One step of mini-batch SGD with backpropagation (through time, for recurrent
models):

    logits, loss = model(x, y)        # forward: ell = mean_t ell_t (or sum_t)
    optimizer.zero_grad()
    loss.backward()                   # autodiff: d ell / d theta for every parameter
    clip_grad_norm_(params, clip)     # keep exploding gradients in check
    optimizer.step()                  # theta <- theta - lr * update
    scheduler.step()                  # the learning-rate schedule

Recurrent models read the corpus as ``batch_size`` contiguous streams in chunks
of ``seq_len`` tokens and carry their hidden state from one chunk to the next,
detached, so that backward stops at the chunk boundary: truncated BPTT. The
Transformer reads random windows instead.

Around the step: periodic evaluation (loss, perplexity, bits per token), a
progress bar with loss and tokens/s, a JSONL metrics log, a loss-curve PNG, and
checkpoints (model, optimizer, scheduler, random generators, data position,
carried state) written atomically, from which ``train(resume=True)`` continues
to the same parameters, bit for bit on the CPU, as a run that never stopped.
Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves and returns
``'interrupted'``; a time limit saves and returns ``'time_limit'``; a non-finite
loss or gradient, or a loss far worse than a uniform guess over the vocabulary (diverged),
stops before it touches the parameters and the last checkpoint (``'nonfinite'``).
All losses reported here are per token, whatever the model's ``loss_reduction``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import backend, creation, generators, optim
from ..autograd import no_grad
from ..data import BPTTBatcher
from ..distributed.data_parallel import TrainingGroup
from ..nn.utils import clip_grad_norm_
from ..serialization import atomic_write_text, load, remove_stale_temp_files, save
from ..tensor import Tensor
from .models import RecurrentLM, detach_state

try:
    import fcntl
except ImportError:  # Windows: run directories are not locked
    fcntl = None  # type: ignore[assignment]

LN2 = math.log(2.0)
CHECKPOINT_FORMAT = "tinygrad_lm.trainer/1"
MAX_SKIPPED_IN_A_ROW = 10
LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the lock of a run directory."""


_held_locks: dict[str, list[Any]] = {}  # real path of a run directory -> [lock file descriptor or None, depth]


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the advisory lock of ``run_dir`` (created if missing) for the block: one writer per run directory.

    The lock is ``flock`` on ``run_dir/.lock``, which holds the owner's pid; the operating system
    releases it when the process exits or dies, so a crash never leaves a run locked. A second
    process gets :class:`RunLockedError` naming the directory and the owner's pid; in the process
    that holds it the lock is re-entrant.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(run_dir)
    if key not in _held_locks:
        _held_locks[key] = [_acquire(run_dir), 0]
    _held_locks[key][1] += 1
    try:
        yield run_dir
    finally:
        _held_locks[key][1] -= 1
        if _held_locks[key][1] == 0:
            fd = _held_locks.pop(key)[0]
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock


def _acquire(run_dir: Path) -> int | None:
    if fcntl is None:
        return None
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(f"the run directory {str(run_dir)!r} is in use by another process (pid {holder}, "
                             f"which holds {str(path)!r}); two trainings cannot write to one run") from None
    except OSError:  # a file system without flock (some network mounts): go on unlocked
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


@dataclass
class TrainConfig:
    """Everything the loop needs besides the model and the data."""

    max_steps: int = 2000
    batch_size: int = 32
    seq_len: int = 128
    optimizer: str = "adam"  # 'adam', 'adamw' or 'sgd'
    lr: float = 3e-3
    min_lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # 'cosine', 'constant' or 'step'
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    eval_interval: int = 100
    eval_batches: int = 8  # evaluation reads eval_batches * batch_size * seq_len held-out tokens
    log_interval: int = 10
    checkpoint_interval: int = 100
    bptt: bool | None = None  # None: truncated BPTT for recurrent models, random windows otherwise
    time_limit: float | None = None  # seconds; stop early (evaluated and saved) when reached
    seed: int = 1337
    device: str = "cpu"
    out_dir: str = "runs/default"
    progress: bool = True
    stop_on_nonfinite: bool = True  # False: skip a batch with a non-finite loss or gradient instead
    handle_signals: bool = True  # Ctrl-C / SIGTERM finish the step and save (main thread only)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant", "step"):
            raise ValueError(f"schedule must be 'cosine', 'constant' or 'step', got {self.schedule!r}")
        for name in ("max_steps", "batch_size", "seq_len", "eval_interval", "eval_batches", "log_interval",
                     "checkpoint_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "min_lr", "momentum", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {self.time_limit!r}")


@dataclass
class TrainResult:
    """What a call to ``Trainer.train`` did."""

    steps: int
    status: str  # 'finished', 'stopped' (at ``until``), 'time_limit', 'interrupted' or 'nonfinite' (or diverged)
    val_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    plot: Path | None = None
    skipped: int = 0  # batches skipped for a non-finite loss (stop_on_nonfinite=False)


def _per_token(loss: Tensor, n_tokens: int, reduction: str) -> float:
    """The mean loss per token of a batch of ``n_tokens``, whatever the model's loss reduction."""
    value = float(loss.item())
    return value / n_tokens if reduction == "sum" else value


def _reduction(model: Any) -> str:
    return getattr(getattr(model, "config", None), "loss_reduction", "mean")


def perplexity(loss: float) -> float:
    """exp(loss), inf once that overflows (a diverged model), never a 300-digit number."""
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < 700 else math.inf


def format_perplexity(ppl: float) -> str:
    """Two decimals up to a million, then three significant digits (1.23e+09), or 'inf'."""
    return f"{ppl:.2f}" if not ppl >= 1e6 else f"{ppl:.3g}"


@no_grad()
@np.errstate(all="ignore")  # a diverged model's overflows show as an inf or NaN loss, not as NumPy warnings
def evaluate(model: Any, ids: Any, batch_size: int, seq_len: int, max_tokens: int | None = None,
             device: str | None = None) -> dict[str, float]:
    """Mean loss per token on the first ``max_tokens`` predictions of ``ids`` (all of them if None).

    Returns ``loss`` (nats per token), ``ppl = exp(loss)``, ``bpc = loss / ln 2`` (bits per token) and
    ``tokens`` (how many were predicted). Recurrent models read ``ids`` as up to ``batch_size``
    contiguous streams with their state carried across chunks of ``seq_len``, as they were trained;
    other models read consecutive non-overlapping windows of ``seq_len`` tokens.
    """
    ids = np.asarray(backend.to_host(ids) if backend.is_backend_array(ids) else ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"evaluation needs a 1-D stream of at least 2 token ids, got shape {ids.shape}")
    n = len(ids) - 1 if max_tokens is None else min(len(ids) - 1, int(max_tokens))
    if n < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    ids = ids[: n + 1]
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else "cpu"
    reduction = _reduction(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        if isinstance(model, RecurrentLM):
            streams = max(1, min(batch_size, n // seq_len))
            batcher = BPTTBatcher(ids, streams, seq_len)
            state = None
            for k in range(len(batcher)):
                x, y = batcher.chunk(k)  # (B, T) each
                _, loss, state = model(x.to(device), y.to(device), state=state, return_state=True)
                total += _per_token(loss, x.numel(), reduction) * x.numel()
                count += x.numel()
        else:
            T = min(seq_len, n)
            starts = np.arange(n // T) * T  # (W,)
            for i in range(0, len(starts), batch_size):
                offsets = starts[i:i + batch_size, None] + np.arange(T)  # (B, T)
                x = creation.tensor(ids[offsets], device=device)
                y = creation.tensor(ids[offsets + 1], device=device)
                _, loss = model(x, y)
                total += _per_token(loss, x.numel(), reduction) * x.numel()
                count += x.numel()
    finally:
        model.train(was_training)
    mean = total / count
    return {"loss": mean, "ppl": perplexity(mean), "bpc": mean / LN2, "tokens": count}


def _state_to_host(state: Any) -> Any:
    """A carried recurrent state as host arrays, keeping its structure (None, array, or tuple of arrays)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return backend.to_host(state.array).copy()
    return tuple(_state_to_host(s) for s in state)


def _state_from_host(state: Any, device: str) -> Any:
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_state_from_host(s, device) for s in state)
    return creation.tensor(np.asarray(state), device=device)


def _config_dict(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) and not isinstance(config, type) else {}


class _StopRequests:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current step; a second one aborts at once."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@dataclass
class _Window:
    """The steps since the last log line, whose averages the next line records."""

    tokens: int = 0
    seconds: float = 0.0
    loss: float = 0.0
    norm: float = 0.0
    n: int = 0

    def add(self, seconds: float, tokens: int, loss: float, norm: float | None) -> None:
        self.seconds += seconds
        self.tokens += tokens
        self.loss += loss
        self.norm += norm or 0.0
        self.n += 1


@dataclass
class _Run:
    """Where one call of ``Trainer.train`` stands: its loop's state, and how it ended (``status``)."""

    stop: int  # the step after which this call stops (``until``, or ``max_steps``)
    bar: Any  # the progress bar
    stops: _StopRequests  # Ctrl-C and SIGTERM received
    started: float = field(default_factory=time.perf_counter)
    status: str = "finished"
    skipped: int = 0  # the batches skipped for a non-finite loss or gradient
    skipped_in_a_row: int = 0
    evaluated_at: int = -1  # the step of the last evaluation
    window: _Window = field(default_factory=_Window)


class Trainer:
    """Trains ``model`` on the token ids ``train_ids``, evaluating on ``val_ids`` (None: no evaluation).

    ``meta`` is any JSON-serialisable dict kept in the checkpoint (e.g. the tokenizer's name);
    ``file_metadata`` are strings stored as the checkpoint file's own metadata, which
    ``tinygrad_lm.serialization.load_metadata`` reads without loading the tensors (e.g. digests
    of the files the run belongs with).
    """

    def __init__(self, model: Any, train_ids: Any, val_ids: Any, config: TrainConfig,
                 meta: dict[str, Any] | None = None, file_metadata: dict[str, str] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.meta = dict(meta or {})
        self.file_metadata = dict(file_metadata or {})
        self.train_ids = np.asarray(train_ids, dtype=np.int64)
        self.val_ids = None if val_ids is None else np.asarray(val_ids, dtype=np.int64)
        if self.train_ids.ndim != 1 or (self.val_ids is not None and self.val_ids.ndim != 1):
            raise ValueError("train_ids and val_ids must be 1-D streams of token ids")
        if self.val_ids is not None and len(self.val_ids) < 2:
            raise ValueError(f"the validation stream has {len(self.val_ids)} tokens; evaluation needs at least 2")
        self.device = backend.canonical_device(config.device)
        model.to(self.device)
        self.recurrent = isinstance(model, RecurrentLM)
        self.bptt = self.recurrent if config.bptt is None else (bool(config.bptt) and self.recurrent)
        block = getattr(getattr(model, "config", None), "block_size", None)
        if block is not None and config.seq_len > block:
            raise ValueError(f"seq_len {config.seq_len} exceeds the model's block_size {block}")
        if self.bptt:
            self.streams: BPTTBatcher | None = BPTTBatcher(self.train_ids, config.batch_size, config.seq_len)
        else:
            self.streams = None
            if len(self.train_ids) < config.seq_len + 1:
                raise ValueError(f"the training stream has {len(self.train_ids)} tokens, fewer than seq_len + 1 = "
                                 f"{config.seq_len + 1}")
        self.params = list(model.parameters())
        self.dp = TrainingGroup(model, config.batch_size)  # one process: dp.model is model
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.rng = np.random.default_rng(config.seed)
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        # A training loss above this many nats/token has diverged: a uniform guess scores ln V.
        self.diverged_loss = max(4 * math.log(vocab), math.log(vocab) + 10) if vocab else math.inf
        self._bad_loss = math.nan
        self.state: Any = None  # the carried (detached) recurrent state
        self.step = 0
        self.last_val: float | None = None
        self._phase = "between"  # 'step' (data read, nothing updated), 'update' or 'between' steps
        self._mark: tuple[Any, ...] | None = None
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.safetensors"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.plot_path = self.out_dir / "loss.png"

    def _make_optimizer(self) -> Any:
        c = self.config
        if c.optimizer == "sgd":
            return optim.SGD(self.params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return optim.AdamW(self.params, lr=c.lr, weight_decay=c.weight_decay)
        return optim.Adam(self.params, lr=c.lr, weight_decay=c.weight_decay)

    def _make_scheduler(self) -> Any:
        """Linear warmup, then constant, a step down at half way, or a cosine down to ``min_lr``."""
        c = self.config
        floor = min(c.min_lr / c.lr, 1.0) if c.lr > 0 else 1.0
        decay_steps = max(1, c.max_steps - c.warmup_steps)

        def factor(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            if c.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - c.warmup_steps) / decay_steps)
            if c.schedule == "step":
                return floor if progress >= 0.5 else 1.0
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _batch(self) -> tuple[Tensor, Tensor, bool]:
        """The next ``(x, y)``, each ``(B, T)``, and whether the carried state must start from zeros."""
        if self.streams is not None:
            s = self.streams
            if s.position >= len(s):  # a new pass over the streams: the state does not carry over
                s.position, s.epoch = 0, s.epoch + 1
            fresh = s.position == 0
            x, y = s.chunk(s.position)
            s.position += 1
            return x.to(self.device), y.to(self.device), fresh
        c = self.config
        starts = self.rng.integers(0, len(self.train_ids) - c.seq_len, size=c.batch_size)  # (B,)
        offsets = starts[:, None] + np.arange(c.seq_len)  # (B, T)
        x = creation.tensor(self.train_ids[offsets], device=self.device)
        y = creation.tensor(self.train_ids[offsets + 1], device=self.device)
        return x, y, True

    def evaluate(self, ids: Any = None, batches: int | None = None) -> dict[str, float]:
        """Loss per token, perplexity and bits per token on ``ids`` (default: the validation stream).

        At most ``batches * batch_size * seq_len`` tokens are read (``config.eval_batches`` by default).
        """
        ids = self.val_ids if ids is None else ids
        if ids is None:
            raise ValueError("this Trainer has no validation stream; pass ids to evaluate")
        c = self.config
        batches = c.eval_batches if batches is None else batches
        return self.dp.evaluate(evaluate, self.model, ids, c.batch_size, c.seq_len, batches * c.batch_size * c.seq_len,
                                self.device, self.recurrent)

    def state_dict(self) -> dict[str, Any]:
        """The whole training state: what ``load_state_dict`` needs to continue exactly."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": {"trainer": json.dumps(self.rng.bit_generator.state), "tl": json.dumps(generators.rng_state())},
            "data": self.streams.state_dict() if self.streams is not None else {},
            "carried": _state_to_host(self.dp.gather_state(self.state)),
            "model_config": _config_dict(getattr(self.model, "config", None)),
            "val_loss": self.last_val,
            "meta": json.dumps(self.meta),
        }

    def load_state_dict(self, ckpt: dict[str, Any], where: str = "the checkpoint") -> None:
        """Restore model, optimizer, scheduler, generators, data position and carried state."""
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{where} is not a tinygrad_lm training checkpoint")
        missing = [k for k in ("model", "optimizer", "scheduler", "step", "rng", "data") if k not in ckpt]
        if missing:
            raise ValueError(f"{where} is incomplete: it has no {', '.join(missing)} entry")
        mine = _config_dict(getattr(self.model, "config", None))
        if ckpt.get("model_config") and mine and ckpt["model_config"] != mine:
            raise ValueError(f"{where} was written by a model with config {ckpt['model_config']}, "
                             f"this model has {mine}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if any(base != self.config.lr for base in self.scheduler.base_lrs):  # a new peak rate: it rules from here on
            self.scheduler.base_lrs = [self.config.lr] * len(self.scheduler.base_lrs)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
                group["initial_lr"], group["lr"] = self.config.lr, lr
        self.step = int(ckpt["step"])
        self.rng.bit_generator.state = json.loads(ckpt["rng"]["trainer"])
        generators.set_rng_state(json.loads(ckpt["rng"]["tl"]))
        if self.streams is not None:
            self.streams.load_state_dict(ckpt["data"])
        self.state = self.dp.shard_state(_state_from_host(ckpt.get("carried"), self.device))
        self.last_val = ckpt.get("val_loss")

    def save_checkpoint(self) -> Path:
        """Write the whole training state atomically (temporary file + rename): a crash leaves the old or the new."""
        state = self.state_dict()  # every rank: it gathers the carried state
        if self.dp.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save(state, self.checkpoint_path, metadata=self.file_metadata)
        return self.checkpoint_path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        """Restore the state saved by ``save_checkpoint`` (``path`` defaults to the run's checkpoint)."""
        path = Path(path) if path is not None else self.checkpoint_path
        self.load_state_dict(load(path), where=str(path))

    def _position(self) -> tuple[Any, ...]:
        """Where the data and the random generators stand (cheap: a few small dicts)."""
        data = self.streams.state_dict() if self.streams is not None else None
        return data, self.rng.bit_generator.state, generators.rng_state()

    def _rewind(self, mark: tuple[Any, ...]) -> None:
        data, rng, tl_rng = mark
        if self.streams is not None:
            self.streams.load_state_dict(data)
        self.rng.bit_generator.state = rng
        generators.set_rng_state(tl_rng)

    def _params_finite(self) -> bool:
        return all(bool(p.xp.isfinite(p.array).all()) for p in self.params)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dp.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _keep_metrics_up_to(self, step: int) -> None:
        """On resume: drop log lines written after the checkpoint (they will be written again)."""
        if not self.dp.is_main:
            return
        records = [r for r in read_metrics(self.metrics_path) if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def _eval_and_log(self, bar: Any) -> float:
        ev = self.evaluate()
        self.last_val = ev["loss"]
        self._log({"step": self.step, "val_loss": ev["loss"], "val_ppl": ev["ppl"], "val_bpc": ev["bpc"]})
        bar.write(f"step {self.step}: val loss {ev['loss']:.4f}, perplexity {format_perplexity(ev['ppl'])}, "
                  f"{ev['bpc']:.3f} bits/token")
        return ev["loss"]

    def _train_step(self) -> tuple[float | None, float | None, int]:
        """One update. Returns (loss per token, gradient norm, tokens); the loss is None when it was not finite."""
        c = self.config
        self._mark = self._position()
        self._phase = "step"  # reading data and computing gradients: undone by rewinding to the mark
        x, y, fresh = self._batch()
        x, y = self.dp.shard(x), self.dp.shard(y)  # this rank's rows (all of them in one process)
        if self.bptt:
            state_in = None if fresh else self.state
            _, loss, state = self.dp.model(x, y, state=state_in, return_state=True)
        else:
            _, loss = self.dp.model(x, y)
        value = self.dp.mean(_per_token(loss, x.numel(), _reduction(self.model)))
        if not math.isfinite(value) or value > self.diverged_loss:
            self._phase = "between"  # a skipped batch stays consumed
            self._bad_loss = value
            return None, None, x.numel()
        self.optimizer.zero_grad()
        loss.backward()
        norm = None
        if c.grad_clip > 0:
            norm = float(clip_grad_norm_(self.params, c.grad_clip).item())
            if not math.isfinite(norm):
                self._phase = "between"
                return None, norm, x.numel()
        self._phase = "update"  # from here to the end of the step the training state is half new
        self.optimizer.step()
        self.scheduler.step()
        if self.bptt:
            self.state = detach_state(state)
        self.step += 1
        self._phase = "between"
        return value, norm, x.numel()

    def train(self, resume: bool = False, until: int | None = None) -> TrainResult:
        """Run until ``max_steps``, the time limit, Ctrl-C/SIGTERM, or a non-finite loss.

        ``resume=True`` first loads the run's checkpoint. ``until`` stops (saved) after that step
        without changing the schedule, which is planned for ``max_steps``: ``train(until=500)``
        then ``train()`` trains exactly as one ``train()`` does. A Trainer that has not trained
        yet starts a new metrics log. The run directory is locked meanwhile (:func:`run_lock`),
        and NumPy's overflow warnings are silenced: a non-finite loss or gradient stops the run.
        """
        with self.dp.main_only(run_lock(self.out_dir)), np.errstate(all="ignore"):
            return self._train(resume, until)

    def _train(self, resume: bool, until: int | None) -> TrainResult:
        """The loop: a step, then the log line, the evaluation and the checkpoint each when due, until a stop."""
        c = self.config
        self._open_run(resume)
        self.model.train()
        bar = _progress(c.progress and self.dp.is_main, total=c.max_steps, initial=min(self.step, c.max_steps))
        run = _Run(c.max_steps if until is None else min(int(until), c.max_steps), bar, _StopRequests(c.handle_signals))
        self._phase = "between"
        try:
            with run.stops:
                while self.step < run.stop:
                    t0 = time.perf_counter()
                    value, norm, n_tokens = self._train_step()
                    if value is None:  # a non-finite loss or gradient norm, or a diverged loss: nothing was updated
                        if self._skip_batch(run, norm):
                            continue
                        break
                    run.skipped_in_a_row = 0
                    run.window.add(time.perf_counter() - t0, n_tokens * self.dp.world_size, value, norm)
                    run.bar.update(1)
                    self._log_on_schedule(run, norm)
                    self._evaluate_on_schedule(run)
                    if not self._checkpoint_on_schedule(run) or self._stop_requested(run):
                        break
        except KeyboardInterrupt:
            run.status = "interrupted"
        finally:
            run.bar.close()
        return self._finish(run)

    def _open_run(self, resume: bool) -> None:
        """Ready the run directory: drop the temporary files of a killed save, then load the checkpoint
        (``resume``, forgetting the log lines written after it) or, for a Trainer that has not trained
        yet, start a new metrics log."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.dp.is_main:
            remove_stale_temp_files(self.out_dir)  # left by a process killed mid-save
        if resume:
            if not self.checkpoint_path.exists():
                raise FileNotFoundError(f"no checkpoint to resume from at {self.checkpoint_path}")
            self.load_checkpoint()
            self._keep_metrics_up_to(self.step)
        elif self.step == 0 and self.metrics_path.exists() and self.dp.is_main:
            self.metrics_path.unlink()

    def _skip_batch(self, run: _Run, norm: float | None) -> bool:
        """The step just tried had a non-finite loss or gradient norm, or a diverged loss: say so, and skip
        the batch (True), unless ``stop_on_nonfinite`` or ``MAX_SKIPPED_IN_A_ROW`` skips in a row end the run."""
        c = self.config
        diverged = norm is None and math.isfinite(self._bad_loss)
        what = (f"loss diverged ({self._bad_loss:.4g} nats/token, above {self.diverged_loss:.3g})"
                if diverged else f"{'gradient norm' if norm is not None else 'loss'} became non-finite")
        if c.stop_on_nonfinite or run.skipped_in_a_row + 1 >= MAX_SKIPPED_IN_A_ROW:
            run.status = "nonfinite"
            last = self.checkpoint_path if self.checkpoint_path.exists() else "not written yet"
            run.bar.write(f"the {what} at step {self.step + 1}; stopping before "
                          f"the update. The last good checkpoint is {last}")
            return False
        run.skipped, run.skipped_in_a_row = run.skipped + 1, run.skipped_in_a_row + 1
        self.state = None
        run.bar.write(f"skipping a batch: the {what} at step {self.step + 1}")
        return True

    def _due(self, interval: int) -> bool:
        """Whether something done every ``interval`` steps (and after the last) is due now."""
        return self.step % interval == 0 or self.step == self.config.max_steps

    def _log_on_schedule(self, run: _Run, norm: float | None) -> None:
        """Every ``log_interval`` steps: the averages of the steps since the last log line, to the metrics log
        and the progress bar (the gradient norm when this step clipped, so measured, it)."""
        if not self._due(self.config.log_interval):
            return
        w = run.window
        rate = w.tokens / max(w.seconds, 1e-9)
        record = {"step": self.step, "train_loss": w.loss / w.n, "lr": self.optimizer.param_groups[0]["lr"],
                  "tokens_per_s": rate}
        if norm is not None:
            record["grad_norm"] = w.norm / w.n
        self._log(record)
        run.bar.set_postfix(loss=f"{record['train_loss']:.3f}", tok_s=f"{rate:,.0f}")
        run.window = _Window()

    def _evaluate_on_schedule(self, run: _Run) -> None:
        """Every ``eval_interval`` steps, when there is a validation stream: evaluate and log."""
        if self.val_ids is not None and self._due(self.config.eval_interval):
            self._eval_and_log(run.bar)
            run.evaluated_at = self.step

    def _checkpoint_on_schedule(self, run: _Run) -> bool:
        """Every ``checkpoint_interval`` steps and at the last step of this call: save, unless a parameter
        became non-finite, which ends the run (False) and leaves the last good checkpoint in place."""
        if self.step % self.config.checkpoint_interval != 0 and self.step != run.stop:
            return True
        if not self._params_finite():
            run.status = "nonfinite"
            run.bar.write(f"a parameter became non-finite at step {self.step}; the checkpoint was not overwritten")
            return False
        self.save_checkpoint()
        return True

    def _stop_requested(self, run: _Run) -> bool:
        """Whether Ctrl-C/SIGTERM or the time limit ends the run after this step (agreed by all ranks)."""
        c = self.config
        run.stops.signal = self.dp.agree_signal(run.stops.signal)  # all ranks stop after the same step
        if run.stops.signal is not None:
            run.status = "interrupted"
            run.bar.write(f"received {signal.Signals(run.stops.signal).name}: stopped after step {self.step}")
            return True
        if c.time_limit is not None and self.dp.any(time.perf_counter() - run.started > c.time_limit):
            run.status = "time_limit"
            return True
        return False

    def _finish(self, run: _Run) -> TrainResult:
        """After the loop: save what an interruption left, evaluate the last step if it was not, plot the curves."""
        status = run.status
        if status in ("interrupted", "time_limit"):
            self._save_interrupted(status)
        if status == "finished" and self.step < self.config.max_steps:
            status = "stopped"
        evaluated = self.val_ids is None or run.evaluated_at == self.step
        if status in ("finished", "stopped", "time_limit") and not evaluated:
            self._eval_and_log(run.bar)
        history = read_metrics(self.metrics_path)
        plot = plot_metrics(history, self.plot_path) if history and self.dp.is_main else None
        return TrainResult(self.step, status, self.last_val, history,
                           self.checkpoint_path if self.checkpoint_path.exists() else None, plot, run.skipped)

    def _save_interrupted(self, status: str) -> None:
        """A stop between steps or while one read its batch is saved (the batch unread again, so that resuming
        trains on it); one in the middle of an update is not, the checkpoint keeping the last whole step."""
        if status == "interrupted" and self._phase == "update":
            print(f"interrupted in the middle of the update of step {self.step + 1}: the checkpoint was not "
                  "overwritten", file=sys.stderr)
            return
        if self._phase == "step" and self._mark is not None:  # a batch was read, no parameter changed:
            self._rewind(self._mark)  # forget that batch
        if self._params_finite():
            self.save_checkpoint()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (a line cut short by a crash is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def plot_metrics(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Training and validation loss against step, as a PNG."""
    from ..viz import plot_curves

    train = [(r["step"], r["train_loss"]) for r in history if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    series = {}
    if train:
        series["train"] = ([s for s, _ in train], [v for _, v in train])
    if val:
        series["validation"] = ([s for s, _ in val], [v for _, v in val])
    return plot_curves(series, path, ylabel="loss (nats/token)", title="training curve")


def _progress(enabled: bool, total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
