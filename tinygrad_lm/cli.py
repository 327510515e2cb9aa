"""The ``tinygrad-lm`` command line: train, sample, eval and ngram.

``tinygrad-lm train`` with no arguments is the main job: a character-level LSTM
on the bundled Shakespeare, a few minutes on two CPU cores, ending with the
validation loss, a sample of generated text and where the checkpoint and the
loss curve were written. A run directory holds everything needed to continue
or sample later:

    runs/<name>/config.json             model, data and training settings
    runs/<name>/tokenizer.json          the vocabulary
    runs/<name>/checkpoint.safetensors  model, optimizer, RNG and data position
    runs/<name>/metrics.jsonl           one JSON line per log/eval point
    runs/<name>/loss.png                the loss curve
    runs/<name>/.lock                   locked (flock) while a training writes the run; holds its pid

A second training on a locked run stops with an error naming the pid that holds it.
The checkpoint's metadata records the SHA-256 of tokenizer.json and config.json
(config.json without the settings --resume may change), and config.json the
corpus's: sample, eval and --resume refuse files that do not belong together.
``sample`` and ``eval`` without --run take the run under ./runs with the newest
checkpoint. A corpus is read up to 1 GiB ($TINYGRAD_LM_MAX_CORPUS_BYTES).

Every mistake in the arguments or the files gives one line on stderr and exit
status 2; a stopped run (Ctrl-C, SIGTERM) saves its checkpoint and exits with 130;
a run stopped by a non-finite loss exits with 1. ``TINYGRAD_LM_DEBUG=1`` shows
the traceback of an unexpected error.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np

from .serialization import atomic_write_text

SPLIT = (0.9, 0.05, 0.05)
MODELS = ("lstm", "rnn", "gru", "transformer")
DEFAULT_STEPS = 3000
DEFAULT_TIME_LIMIT = 300.0
MIN_CORPUS_CHARS = 1000
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
RUNTIME_TRAIN_FIELDS = ("device", "progress", "time_limit", "out_dir")  # TrainConfig fields config.json leaves out
# What 'train --resume' may change (flag -> config.json's train field): the new value wins, announced and saved.
# Flags that would make another model or read other data are refused when they differ from config.json.
RESUME_CHANGES = {"steps": "max_steps", "lr": "lr", "clip": "grad_clip", "eval_interval": "eval_interval",
                  "checkpoint_interval": "checkpoint_interval"}


class CLIError(Exception):
    """A problem with the user's input, reported as one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise CLIError(f"{message} (see {self.prog} --help)")


def load_corpus(corpus: str) -> str:
    """The text of 'shakespeare' (the bundled plays) or of a UTF-8 file or folder of .txt files."""
    from .data import load_shakespeare, load_text

    if corpus == "shakespeare":
        return load_shakespeare()
    path = Path(corpus)
    if not path.exists():
        raise CLIError(f"corpus {corpus!r} is neither 'shakespeare' nor an existing file or folder")
    try:
        return load_text(path)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read corpus {corpus!r}: {err}") from None


def make_tokenizer(kind: str, text: str) -> Any:
    from .data import CharTokenizer, WordTokenizer

    return CharTokenizer(text) if kind == "char" else WordTokenizer(text)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare(corpus: str, tokenizer_kind: str, tokenizer: Any = None,
            digest: str | None = None) -> tuple[Any, tuple[np.ndarray, ...]]:
    """Text -> tokenizer (fitted on the whole corpus unless given) -> train/validation/test ids (90/5/5).

    ``digest`` (a run's ``corpus_sha256``) must match the text's SHA-256, so that a resumed run
    reads the data it was trained on.
    """
    tokenizer, splits, _ = _prepare(corpus, tokenizer_kind, tokenizer, digest)
    return tokenizer, splits


def _prepare(corpus: str, tokenizer_kind: str, tokenizer: Any,
             digest: str | None) -> tuple[Any, tuple[np.ndarray, ...], str]:
    from .data import split_stream

    text = load_corpus(corpus)
    if len(text) < MIN_CORPUS_CHARS:
        raise CLIError(f"corpus {corpus!r} has only {len(text)} characters; at least {MIN_CORPUS_CHARS:,} are needed")
    text_digest = _digest(text)
    if digest is not None and digest != text_digest:
        raise CLIError(f"corpus {corpus!r} changed since this run was trained (its SHA-256 differs)")
    tok = tokenizer if tokenizer is not None else make_tokenizer(tokenizer_kind, text)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    return tok, split_stream(ids, SPLIT), text_digest


def build_model(kind: str, model_config: dict[str, Any]) -> Any:
    """The model of a run: ``kind`` is one of MODELS, ``model_config`` its config's fields."""
    from .lm.models import RecurrentLM, RNNLMConfig, TransformerConfig, TransformerLM

    if kind == "transformer":
        return TransformerLM(TransformerConfig(**model_config))
    return RecurrentLM(RNNLMConfig(**model_config))


def model_config_from_args(args: argparse.Namespace, vocab_size: int) -> dict[str, Any]:
    from .lm.models import RNNLMConfig, TransformerConfig

    if args.model == "transformer":
        return asdict(TransformerConfig(vocab_size=vocab_size, block_size=args.seq_len, n_layer=args.layers,
                                        n_head=args.heads, n_embd=args.embed, mlp_hidden=4 * args.embed,
                                        dropout=args.dropout))
    return asdict(RNNLMConfig(vocab_size=vocab_size, embed_dim=args.embed, hidden_size=args.hidden,
                              num_layers=args.layers, cell=args.model, nonlinearity=args.nonlinearity,
                              dropout=args.dropout))


def _read_config(run_dir: Path) -> dict[str, Any]:
    config_path = run_dir / "config.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise CLIError(f"{str(run_dir)!r} is a file, not a run directory (the folder that 'tinygrad-lm train' wrote)")
    if not run_dir.is_dir():
        raise CLIError(f"run directory {str(run_dir)!r} does not exist; train one with 'tinygrad-lm train --out DIR'")
    if not config_path.exists():
        raise CLIError(f"{str(run_dir)!r} is not a run directory (no config.json); "
                       "train one with 'tinygrad-lm train --out DIR'")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read {config_path}: {err}") from None
    if not isinstance(config, dict):
        raise CLIError(f"{config_path} is not a tinygrad-lm run config (not a JSON object)")
    missing = [k for k in ("model", "model_config", "corpus", "tokenizer", "train") if k not in config]
    if missing:
        raise CLIError(f"{config_path} is not a tinygrad-lm run config (no {', '.join(missing)})")
    _check_config(config, config_path)
    return config


def _check_config(config: dict[str, Any], path: Path) -> None:
    """Every field of a (possibly hand-edited) config.json has its type; a wrong one is named, with the file."""
    from .lm.models import RNNLMConfig, TransformerConfig
    from .lm.trainer import TrainConfig

    if config["model"] not in MODELS:
        raise CLIError(f"{path}: field 'model' must be one of {', '.join(MODELS)}, got {config['model']!r}")
    if config["tokenizer"] not in ("char", "word"):
        raise CLIError(f"{path}: field 'tokenizer' must be 'char' or 'word', got {config['tokenizer']!r}")
    for name, kind in (("corpus", str), ("corpus_sha256", str), ("model_config", dict), ("train", dict)):
        if name in config and not isinstance(config[name], kind):
            raise CLIError(f"{path}: field {name!r} must be a {'JSON object' if kind is dict else 'string'}, "
                           f"got {config[name]!r}")
    if "split" in config and config["split"] != list(SPLIT):
        raise CLIError(f"{path}: field 'split' must be {list(SPLIT)} (the split this version reads), "
                       f"got {config['split']!r}")
    model_class = TransformerConfig if config["model"] == "transformer" else RNNLMConfig
    _check_fields(path, "model_config", model_class, config["model_config"], ())
    _check_fields(path, "train", TrainConfig, config["train"], RUNTIME_TRAIN_FIELDS)
    if config["model"] != "transformer" and config["model_config"]["cell"] != config["model"]:
        raise CLIError(f"{path}: field 'model_config.cell' is {config['model_config']['cell']!r} but 'model' is "
                       f"{config['model']!r}")


def _check_fields(path: Path, section: str, cls: Any, values: dict[str, Any], skip: Sequence[str]) -> None:
    fields = {f.name: str(f.type).replace(" ", "").split("|") for f in dataclasses.fields(cls) if f.name not in skip}
    for name in values:
        if name not in fields:
            raise CLIError(f"{path}: unknown field '{section}.{name}' (known: {', '.join(fields)})")
    for name, allowed in fields.items():
        if name not in values:
            raise CLIError(f"{path}: field '{section}.{name}' is missing")
        if not any(_json_is(values[name], kind) for kind in allowed):
            raise CLIError(f"{path}: field '{section}.{name}' must be {' or '.join(allowed)}, got {values[name]!r}")


def _json_is(value: Any, kind: str) -> bool:
    """Whether a JSON value has the dataclass field type ``kind`` ('int', 'float', 'str', 'bool', 'None')."""
    if kind == "None":
        return value is None
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    types: dict[str, Any] = {"int": int, "float": (int, float), "str": str}
    return isinstance(value, types.get(kind, object))


def _json_digest(obj: Any) -> str:
    """The SHA-256 of a JSON value written canonically (sorted keys, no spaces): layout changes do not count."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _config_digest(config: dict[str, Any]) -> str:
    """The digest of what config.json fixes for good: all but the settings that --resume may change."""
    fixed = {k: v for k, v in config["train"].items() if k not in RESUME_CHANGES.values() and k != "min_lr"}
    return _json_digest({**config, "train": fixed})


def _run_digests(config: dict[str, Any], tokenizer: Any) -> dict[str, str]:
    """What the checkpoint's metadata records about the run's other files, checked by sample, eval and --resume."""
    return {"tokenizer_sha256": tokenizer.digest(), "config_sha256": _config_digest(config)}


def _check_run_files(run_dir: Path, config: dict[str, Any], tokenizer: Any, recorded: dict[str, str]) -> None:
    """config.json, tokenizer.json and the checkpoint belong together: same files, same vocabulary, same kind.

    ``recorded`` is the checkpoint's metadata (its digests of tokenizer.json and config.json).
    """
    for name, expected, actual in (
        ("tokenizer.json", recorded.get("tokenizer_sha256"), tokenizer.digest()),
        ("config.json", recorded.get("config_sha256"), _config_digest(config)),
    ):
        if expected is not None and expected != actual:  # (checkpoints written before the digests have none)
            raise CLIError(f"{run_dir / name} was changed after the checkpoint was written (its SHA-256 differs "
                           "from the one the checkpoint recorded); restore the run's own file")
    tok_path = run_dir / "tokenizer.json"
    if tokenizer.kind != config["tokenizer"]:
        raise CLIError(f"{tok_path} holds a {tokenizer.kind!r} tokenizer but {run_dir / 'config.json'} says "
                       f"'tokenizer': {config['tokenizer']!r}")
    vocab = config["model_config"]["vocab_size"]
    if tokenizer.vocab_size != vocab:
        raise CLIError(f"{tok_path} has {tokenizer.vocab_size} tokens but the model has {vocab} "
                       f"(model_config.vocab_size in {run_dir / 'config.json'})")


def _load_tokenizer(run_dir: Path) -> Any:
    from .data import load_tokenizer

    path = run_dir / "tokenizer.json"
    if not path.exists():
        raise CLIError(f"{str(run_dir)!r} has no tokenizer.json")
    try:
        return load_tokenizer(path)
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(f"cannot read {path}: {err}") from None


def _load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The checkpoint and its file metadata."""
    from .serialization import load

    if not path.exists():
        raise CLIError(f"{str(path.parent)!r} has no checkpoint.safetensors yet")
    try:
        ckpt, metadata = load(path, with_metadata=True)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read the checkpoint: {err}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CLIError(f"{path} holds no model weights")
    return ckpt, metadata


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    """The checkpoint file's metadata, without loading its tensors."""
    from .serialization import load_metadata

    try:
        return load_metadata(path)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read the checkpoint: {err}") from None


def load_run(run: str, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """The trained model (weights from the checkpoint, in eval mode), its tokenizer and its config.json."""
    run_dir = Path(run)
    config = _read_config(run_dir)
    tokenizer = _load_tokenizer(run_dir)
    try:
        model = build_model(config["model"], config["model_config"])
    except (TypeError, ValueError) as err:
        raise CLIError(f"{run_dir / 'config.json'} describes no valid model: {err}") from None
    ckpt, recorded = _load_checkpoint(run_dir / "checkpoint.safetensors")
    _check_run_files(run_dir, config, tokenizer, recorded)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError) as err:
        raise CLIError(f"the checkpoint does not fit the model of config.json: {err}") from None
    model.to(device)
    model.eval()
    return model, tokenizer, config


def sample_text(model: Any, tokenizer: Any, prompt: str, tokens: int, temperature: float, top_k: int | None,
                greedy: bool, seed: int | None) -> str:
    """The prompt and ``tokens`` generated tokens, decoded (an empty prompt starts at a newline)."""
    from .lm.generation import generate

    ids = [int(i) for i in tokenizer.encode(prompt)] if prompt else []
    if not ids:
        newline = tokenizer.encode("\n")
        ids = [int(newline[0])] if len(newline) else [0]
    try:
        out = generate(model, np.asarray([ids], dtype=np.int64), tokens, temperature=temperature, top_k=top_k,
                       greedy=greedy, seed=seed)
    except RuntimeError as err:  # non-finite logits: the weights are damaged
        raise CLIError(f"cannot sample: {err}") from None
    return tokenizer.decode(out.numpy()[0].tolist())


def _check_device(device: str) -> str:
    from . import backend

    try:
        return backend.canonical_device(device)
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CLIError(message)


def _check_train_args(args: argparse.Namespace) -> None:
    _require(args.steps is None or args.steps > 0, f"--steps must be positive, got {args.steps}")
    _require(args.batch_size > 0, f"--batch-size must be positive, got {args.batch_size}")
    _require(args.seq_len > 0, f"--seq-len must be positive, got {args.seq_len}")
    _require(math.isfinite(args.lr) and args.lr > 0, f"--lr must be a positive number, got {args.lr}")
    _require(args.warmup >= 0, f"--warmup must be >= 0, got {args.warmup}")
    _require(math.isfinite(args.clip) and args.clip >= 0, f"--clip must be >= 0, got {args.clip}")
    for name in ("embed", "hidden", "layers", "heads", "eval_interval"):
        value = getattr(args, name)
        _require(value > 0, f"--{name.replace('_', '-')} must be positive, got {value}")
    _require(args.checkpoint_interval is None or args.checkpoint_interval > 0,
             f"--checkpoint-interval must be positive, got {args.checkpoint_interval}")
    _require(0 <= args.dropout < 1, f"--dropout must be in [0, 1), got {args.dropout}")
    _require(args.time_limit >= 0, f"--time-limit must be >= 0 seconds (0: none), got {args.time_limit}")
    _require(args.sample_tokens >= 0, f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    _require(args.temperature >= 0, f"--temperature must be >= 0, got {args.temperature}")
    _check_seed(args.seed)
    if args.model == "transformer":
        _require(args.embed % args.heads == 0, f"--embed ({args.embed}) must be divisible by --heads ({args.heads})")
    _check_device(args.device)


def _holds_run(out: Path) -> bool:
    return (out / "config.json").exists() or (out / "checkpoint.safetensors").exists()


def _claim_default_out(args: argparse.Namespace, held: contextlib.ExitStack) -> Path:
    """runs/<corpus>-<tokenizer>-<model>, numbered -2, -3, ... so that an earlier run is never overwritten.

    The directory is locked before it is returned; one that another training holds is passed over.
    """
    from .lm.trainer import RunLockedError, run_lock

    base = Path("runs") / f"{Path(args.corpus).stem or 'corpus'}-{args.tokenizer}-{args.model}"
    n = 1
    while True:
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        n += 1
        if _holds_run(out):
            continue
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(run_lock(out))
        except RunLockedError:
            continue
        if _holds_run(out):  # written by a run that finished between the look and the lock
            lock.close()
            continue
        held.enter_context(lock)
        return out


def _lock(out: Path, held: contextlib.ExitStack) -> None:
    """Hold the run directory's lock until the command ends (another training there: one line, naming its pid)."""
    from .lm.trainer import RunLockedError, run_lock

    try:
        held.enter_context(run_lock(out))
    except RunLockedError as err:
        raise CLIError(str(err)) from None


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def _start_run(args: argparse.Namespace,
               held: contextlib.ExitStack) -> tuple[Path, dict[str, Any], Any, tuple[np.ndarray, ...], Any]:
    """A new run: its directory (locked in ``held``), config, tokenizer, data and model."""
    from .lm.trainer import TrainConfig

    out = None if args.out is None else Path(args.out)
    if out is not None:
        if out.exists() and not out.is_dir():
            raise CLIError(f"--out {str(out)!r} is a file, not a directory")
        if out.is_dir():
            _lock(out, held)  # a training running there is named before anything else
        if _holds_run(out) and not args.force:
            raise CLIError(f"{str(out)!r} already holds a run; continue it with --resume, or start over with --force")
    corpus = args.corpus if args.corpus == "shakespeare" else str(Path(args.corpus).resolve())
    print(f"reading the corpus ({args.corpus}) ...", flush=True)
    tokenizer, splits, digest = _prepare(corpus, args.tokenizer, None, None)
    if out is None:
        out = _claim_default_out(args, held)
    else:
        _lock(out, held)
        if _holds_run(out) and not args.force:  # another run was written there while the corpus was read
            raise CLIError(f"{str(out)!r} already holds a run; continue it with --resume, or start over with --force")
    model_config = model_config_from_args(args, tokenizer.vocab_size)
    model = build_model(args.model, model_config)
    train = TrainConfig(
        max_steps=args.steps if args.steps is not None else DEFAULT_STEPS, batch_size=args.batch_size,
        seq_len=args.seq_len, optimizer=args.optimizer, lr=args.lr, min_lr=args.lr / 10, grad_clip=args.clip,
        warmup_steps=args.warmup, eval_interval=args.eval_interval,
        checkpoint_interval=args.checkpoint_interval or args.eval_interval, seed=args.seed, out_dir=str(out))
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("checkpoint.safetensors", "metrics.jsonl", "loss.png"):  # --force: start over
        (out / stale).unlink(missing_ok=True)
    tokenizer.save(out / "tokenizer.json")
    saved_train = {k: v for k, v in asdict(train).items() if k not in RUNTIME_TRAIN_FIELDS}
    config = {"model": args.model, "model_config": model_config, "corpus": corpus, "corpus_sha256": digest,
              "tokenizer": args.tokenizer, "split": list(SPLIT), "train": saved_train}
    _write_json(out / "config.json", config)
    return out, config, tokenizer, splits, model


def _resume_conflicts(args: argparse.Namespace, config: dict[str, Any]) -> list[str]:
    """Flags given with --resume that would change the run's model, data or schedule shape: one line each.

    Flags that do not apply to this kind of model are reported as ignored on stdout.
    """
    given: set[str] = getattr(args, "given", set())
    mc, train, model = config["model_config"], config["train"], config["model"]
    transformer = model == "transformer"
    saved: dict[str, Any] = {  # flag -> the run's value (None: the flag does not apply to this model)
        "model": model,
        "tokenizer": config["tokenizer"],
        "corpus": config["corpus"],
        "embed": mc.get("n_embd" if transformer else "embed_dim"),
        "layers": mc.get("n_layer" if transformer else "num_layers"),
        "hidden": None if transformer else mc.get("hidden_size"),
        "heads": mc.get("n_head") if transformer else None,
        "nonlinearity": mc.get("nonlinearity") if model == "rnn" else None,
        "dropout": mc.get("dropout"),
        "batch_size": train.get("batch_size"),
        "seq_len": train.get("seq_len"),
        "optimizer": train.get("optimizer"),
        "warmup": train.get("warmup_steps"),
        "seed": train.get("seed"),
    }
    conflicts = []
    for name in sorted(given & saved.keys()):
        flag, value = "--" + name.replace("_", "-"), getattr(args, name)
        if name == "corpus" and value != "shakespeare":
            value = str(Path(value).resolve())
        if saved[name] is None:
            print(f"{flag} does not apply to this {model} run; ignored")
        elif value != saved[name]:
            conflicts.append(f"{flag} {getattr(args, name)} conflicts with the run's {saved[name]!r}")
    if args.force:
        conflicts.append("--force starts a new run, --resume continues one")
    return conflicts


def _resume_run(args: argparse.Namespace,
                held: contextlib.ExitStack) -> tuple[Path, dict[str, Any], Any, tuple[np.ndarray, ...], Any]:
    """An existing run, as config.json describes it; only the settings in RESUME_CHANGES (and --time-limit,
    --device) can change, and the files must be the ones its checkpoint was written with."""
    if args.out is None:
        raise CLIError("--resume needs --out, the run directory to continue")
    out = Path(args.out)
    config = _read_config(out)
    _lock(out, held)
    conflicts = _resume_conflicts(args, config)
    if conflicts:
        raise CLIError(f"cannot resume {str(out)!r} with other settings: {'; '.join(conflicts)} "
                       "(start a new run with --out elsewhere, or drop the flag)")
    if not (out / "checkpoint.safetensors").exists():
        raise CLIError(f"{str(out)!r} has no checkpoint to resume from")
    tokenizer = _load_tokenizer(out)
    try:
        model = build_model(config["model"], config["model_config"])
    except (TypeError, ValueError) as err:
        raise CLIError(f"{out / 'config.json'} describes no valid model: {err}") from None
    _check_run_files(out, config, tokenizer, _checkpoint_metadata(out / "checkpoint.safetensors"))
    _, splits = prepare(config["corpus"], config["tokenizer"], tokenizer, config.get("corpus_sha256"))
    changed = False
    for name, field in RESUME_CHANGES.items():
        value = getattr(args, name)
        if value is None or name not in getattr(args, "given", {name}) or value == config["train"][field]:
            continue
        print(f"--{name.replace('_', '-')} {value} replaces the run's {config['train'][field]} from here on "
              "(saved in config.json)")
        config["train"][field] = value
        if name == "lr":
            config["train"]["min_lr"] = value / 10
        changed = True
    if changed:
        _check_train_args_of(config, out)
        _write_json(out / "config.json", config)
    return out, config, tokenizer, splits, model


def _check_train_args_of(config: dict[str, Any], out: Path) -> None:
    from .lm.trainer import TrainConfig

    try:
        TrainConfig(**config["train"])
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot resume {str(out)!r} with these settings: {err}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import data_parallel

    nproc = getattr(args, "nproc", None)
    if nproc is not None:
        _require(nproc >= 1, f"--nproc must be >= 1, got {nproc}")
        if nproc > 1 and data_parallel.launched_world_size() <= 1:  # start the ranks; this process only waits
            argv = getattr(args, "argv", sys.argv[1:])
            return data_parallel.relaunch(nproc, data_parallel.without_option(argv, "--nproc"))
    # the run directory stays locked until the command ends; an error on one rank ends every rank
    with contextlib.ExitStack() as held, data_parallel.abort_on_error():
        return _train(args, held)


def _train(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    import tinygrad_lm as tl

    from .lm.trainer import TrainConfig, Trainer

    _check_train_args(args)
    tl.manual_seed(args.seed)
    from .distributed import data_parallel

    group = data_parallel.join_launched_job(args.device)  # under mpiexec -n N; None in one process
    start = _resume_run if args.resume else _start_run
    if group is not None:
        args.device = group.device  # 'cuda' is this rank's own GPU
    if group is None:
        out, config, tokenizer, (train_ids, val_ids, _), model = start(args, held)
    else:  # rank 0 sets the run up and writes its files; the others get its directory, config, tokenizer, data
        out, config, tokenizer, (train_ids, val_ids, _), model = data_parallel.set_up_on_main(
            lambda: start(args, held), shared=4, size=5)
        if model is None:  # the same model: DDP gives it rank 0's weights
            model = build_model(config["model"], config["model_config"])
    try:
        train_config = TrainConfig(**{**config["train"], "device": args.device, "out_dir": str(out),
                                      "progress": not args.no_progress, "time_limit": args.time_limit or None})
        trainer = Trainer(model, train_ids, val_ids, train_config, meta={"tokenizer": config["tokenizer"]},
                          file_metadata=_run_digests(config, tokenizer))
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot train on this corpus with these settings: {err}") from None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{config['model']} LM, {n_params:,} parameters; {config['corpus']}: {len(train_ids):,} training / "
          f"{len(val_ids):,} validation tokens, vocabulary {tokenizer.vocab_size}; device {train_config.device}; "
          f"{'resuming' if args.resume else 'run'} {out}", flush=True)
    started = time.perf_counter()
    try:
        result = trainer.train(resume=args.resume)
    except ValueError as err:  # a checkpoint that does not belong to this run
        raise CLIError(str(err)) from None
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{result.status} after {result.steps} steps ({minutes:.1f} min)")
    if result.val_loss is not None:
        print(f"validation loss {result.val_loss:.4f} nats/token, perplexity {_ppl(result.val_loss)},"
              f" {result.val_loss / math.log(2):.3f} bits/token")
    if result.status == "nonfinite":
        lr = config["train"]["lr"]
        print(f"training stopped: the loss diverged or became non-finite; --lr {lr:g} is probably too high "
              f"(try --lr {lr / 10:g}), or clip the gradients with --clip 1", file=sys.stderr)
        return EXIT_ERROR
    if args.sample_tokens > 0 and result.steps > 0 and result.status != "interrupted":
        text = sample_text(model, tokenizer, args.prompt, args.sample_tokens, args.temperature, None, False, args.seed)
        print("\n--- sample " + "-" * 60 + f"\n{text}\n" + "-" * 71)
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    if result.plot:
        print(f"loss curve: {result.plot}")
    print(f"metrics:    {trainer.metrics_path}")
    if result.status == "interrupted":
        print(f"interrupted; continue with: tinygrad-lm train --resume --out {out}")
        return EXIT_INTERRUPTED
    if result.status == "time_limit":
        print(f"time limit reached; continue with: tinygrad-lm train --resume --out {out}")
    return 0


def _ppl(loss: float) -> str:
    """exp(loss) for printing: 'inf' once it overflows, 1.23e+09 style when large, never 300 digits."""
    from .lm.trainer import format_perplexity, perplexity

    return format_perplexity(perplexity(loss))


def _check_seed(seed: int | None) -> None:
    _require(seed is None or 0 <= seed < 2**63, f"--seed must be an integer in [0, 2**63), got {seed}")


def _run_or_latest(run: str | None) -> str:
    """``run``, or the run under ./runs whose checkpoint was written last (said on stderr)."""
    if run is not None:
        return run
    checkpoints = [p for p in Path("runs").glob("*/checkpoint.safetensors") if p.is_file()]
    if not checkpoints:
        raise CLIError(f"no --run given and no trained run under {str(Path('runs').resolve())!r}; "
                       "train one with 'tinygrad-lm train', or name a run directory with --run")
    latest = max(checkpoints, key=lambda p: p.stat().st_mtime_ns).parent
    print(f"tinygrad-lm: using the most recent run, {latest} (choose another with --run)", file=sys.stderr)
    return str(latest)


def cmd_sample(args: argparse.Namespace) -> int:
    _require(args.tokens >= 0, f"--tokens must be >= 0, got {args.tokens}")
    _require(args.temperature >= 0, f"--temperature must be >= 0, got {args.temperature}")
    _require(args.top_k is None or args.top_k > 0, f"--top-k must be positive, got {args.top_k}")
    _check_seed(args.seed)
    model, tokenizer, _ = load_run(_run_or_latest(args.run), _check_device(args.device))
    print(sample_text(model, tokenizer, args.prompt, args.tokens, args.temperature, args.top_k, args.greedy,
                      args.seed))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .lm.trainer import evaluate, format_perplexity

    _require(args.batches is None or args.batches > 0, f"--batches must be positive, got {args.batches}")
    device = _check_device(args.device)
    model, tokenizer, config = load_run(_run_or_latest(args.run), device)
    _, (_, val_ids, test_ids) = prepare(config["corpus"], config["tokenizer"], tokenizer, config.get("corpus_sha256"))
    ids = val_ids if args.split == "val" else test_ids
    train = config["train"]
    batch_size, seq_len = int(train["batch_size"]), int(train["seq_len"])
    max_tokens = None if args.batches is None else args.batches * batch_size * seq_len
    result = evaluate(model, ids, batch_size, seq_len, max_tokens, device)
    if math.isnan(result["loss"]):
        raise CLIError(f"the {args.split} loss is NaN: the checkpoint's weights are not finite")
    print(f"{args.split}: loss {result['loss']:.4f} nats/token, perplexity {format_perplexity(result['ppl'])}, "
          f"{result['bpc']:.3f} bits/token ({result['tokens']:,} tokens)")
    return 0


def cmd_ngram(args: argparse.Namespace) -> int:
    from .lm.ngram import NGramLM

    _require(args.n >= 1, f"--n must be >= 1, got {args.n}")
    _require(args.k > 0, f"--k must be positive, got {args.k}")
    _require(args.sample_tokens >= 0, f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    _check_seed(args.seed)
    corpus = args.corpus if args.corpus == "shakespeare" else str(Path(args.corpus).resolve())
    tokenizer, (train_ids, val_ids, test_ids) = prepare(corpus, args.tokenizer)
    ids = val_ids if args.split == "val" else test_ids
    started = time.perf_counter()
    model = NGramLM(n=args.n, smoothing=args.smoothing, k=args.k).fit(train_ids, vocab=range(tokenizer.vocab_size))
    fit_s = time.perf_counter() - started
    loss = model.cross_entropy(ids)
    print(f"{args.n}-gram ({args.smoothing}) on {args.corpus}/{args.tokenizer}: fitted on {len(train_ids):,} tokens "
          f"in {fit_s:.2f} s; {args.split} loss {loss:.4f} nats/token, perplexity {_ppl(loss)}, "
          f"{loss / math.log(2):.3f} bits/token")
    if args.sample_tokens > 0:
        out = model.sample(args.sample_tokens, seed=args.seed)
        print("\n--- sample " + "-" * 60 + f"\n{tokenizer.decode([int(t) for t in out])}\n" + "-" * 71)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinygrad-lm", description="Train and sample language models with tinygrad_lm.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a language model (default: char-level LSTM on Shakespeare)")
    t.add_argument("--model", choices=MODELS, default="lstm")
    t.add_argument("--corpus", default="shakespeare", help="'shakespeare' or a UTF-8 text file / folder of .txt")
    t.add_argument("--tokenizer", choices=("char", "word"), default="char")
    t.add_argument("--steps", type=int, default=None, help=f"training steps (default {DEFAULT_STEPS})")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--seq-len", type=int, default=64, help="BPTT chunk length / Transformer context")
    t.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    t.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (cosine decay to lr/10)")
    t.add_argument("--warmup", type=int, default=0, help="linear warmup steps")
    t.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    t.add_argument("--embed", type=int, default=64)
    t.add_argument("--hidden", type=int, default=256)
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--heads", type=int, default=4, help="attention heads (transformer)")
    t.add_argument("--nonlinearity", choices=("tanh", "relu", "sigmoid"), default="tanh", help="for --model rnn")
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--eval-interval", type=int, default=250)
    t.add_argument("--checkpoint-interval", type=int, default=None, help="default: --eval-interval")
    t.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                   help=f"seconds before stopping early, evaluated and saved (0: none; default {DEFAULT_TIME_LIMIT:g})")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--out", default=None, help="run directory (default runs/<corpus>-<tokenizer>-<model>[-N])")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--force", action="store_true", help="start over in an --out that already holds a run")
    t.add_argument("--sample-tokens", type=int, default=400)
    t.add_argument("--prompt", default="ROMEO:\n")
    t.add_argument("--temperature", type=float, default=0.8)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--nproc", type=int, default=None,
                   help="data-parallel processes on this machine: runs mpiexec -n N (leave it out under mpiexec)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate text from a trained run")
    s.add_argument("--run", default=None, help=LATEST_RUN_HELP)
    s.add_argument("--prompt", default="")
    s.add_argument("--tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--device", default="cpu")
    s.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="loss, perplexity and bits/token of a trained run on held-out data")
    e.add_argument("--run", default=None, help=LATEST_RUN_HELP)
    e.add_argument("--split", choices=("val", "test"), default="val")
    e.add_argument("--batches", type=int, default=None, help="read at most this many batches (default: all)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("ngram", help="fit and evaluate an n-gram LM (the counting baseline)")
    g.add_argument("--n", type=int, default=5)
    g.add_argument("--smoothing", choices=("kn", "addk", "mle"), default="kn")
    g.add_argument("--k", type=float, default=1.0, help="add-k constant")
    g.add_argument("--corpus", default="shakespeare")
    g.add_argument("--tokenizer", choices=("char", "word"), default="char")
    g.add_argument("--split", choices=("val", "test"), default="val")
    g.add_argument("--sample-tokens", type=int, default=300)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_ngram)
    return parser


LATEST_RUN_HELP = "run directory written by 'train' (default: the run under ./runs with the newest checkpoint)"
THREADS_HELP = ("threads for the matrix products (tl.set_num_threads; default 0: every core, as the library). "
                "On a machine shared with other work, fewer threads (even 1) can be much faster")


def limit_blas_threads(threads: int | None) -> Any:
    """``tl.set_num_threads(threads)`` for the rest of the process (None or 0: the library's default, every core).

    Returns threadpoolctl's handle of the BLAS limit (None when nothing was set)."""
    if not threads:
        return None
    if threads < 0:
        raise CLIError(f"--threads must be >= 0, got {threads}")
    from . import threads as _threads

    _threads.set_num_threads(threads)
    return _threads._blas_limit


def _threads_per_rank() -> int:
    """Under an MPI launcher, this machine's cores shared among its ranks (so that N ranks do not each take
    every core); otherwise 0, the library's default."""
    from . import threads
    from .distributed import data_parallel

    ranks = data_parallel.launched_local_size()
    return max(1, threads.get_num_threads() // ranks) if ranks > 1 else 0


def _given_options(argv: Sequence[str]) -> set[str]:
    """The destinations of the options that ``argv`` spells out, as opposed to those left at their defaults."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for option in sub._actions:
                    option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(list(argv)))) - {"command", "func"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        args.given = _given_options(argv)
        args.argv = argv
        limit_blas_threads(getattr(args, "threads", None) or _threads_per_rank())
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"tinygrad-lm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tinygrad-lm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug or an environment problem: one line unless debugging
        if os.environ.get("TINYGRAD_LM_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"tinygrad-lm: error: {type(err).__name__}: {message} (set TINYGRAD_LM_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
