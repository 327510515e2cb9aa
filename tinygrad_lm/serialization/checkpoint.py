"""``save`` / ``load``: what training scripts keep with ``torch.save``, as safetensors files that never run code.

A checkpoint is any nesting of dicts (string or integer keys), lists and tuples of
Tensors, NumPy/CuPy arrays, NumPy scalars, Python numbers (``inf`` and ``nan``
included), strings, booleans and ``None``: a ``model.state_dict()``, an
``opt.state_dict()``, or ``{'model': ..., 'optimizer': ..., 'epoch': 3, 'args': {...}}``.
Every array is a safetensors tensor under its dotted path (see ``tree.py``), so a flat
``model.state_dict()`` saved here reads back with any safetensors loader, PyTorch's
included, under the same keys. The structure is a JSON tree in the file's metadata,
under the key ``tinygrad_lm``. Loading reads that JSON and the raw tensor bytes,
nothing else: there is no pickle anywhere.

What comes back is what went in: a Tensor (or ``nn.Parameter``, ``requires_grad`` kept)
where a Tensor was saved, a NumPy/CuPy array where an array was, as ``torch.load``
returns tensors where tensors were saved. ``model.state_dict()`` holds NumPy arrays, so
it loads as NumPy arrays, and ``model.load_state_dict(tl.load(path))`` works. Dicts come back
as plain dicts (an ``OrderedDict`` too), integer keys as integers, tuples as tuples.

Nothing silently wrong: the metadata holds the sha256 of every tensor's bytes (with its
dtype and shape) and of the metadata itself; a file that does not match is an error naming
the file and the tensor. A floating tensor with NaN or inf is an error on load unless
``allow_nonfinite=True`` (Python floats and NumPy scalars, like a ``best_loss = inf``,
are fine). Hashing costs about 35 ms per 50 MB (sha256, which CPUs accelerate; blake2b
took twice as long).

Format versions: "2" adds the checksums, Tensors and devices; files of version "1"
(written before checksums existed) still load, unchecked, with every array as a NumPy array.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Any, Mapping, Union

import numpy
import safetensors
import safetensors.numpy

from .. import backend
from .atomic import atomic_write_bytes
from .tree import MAX_DEPTH, Decoder, Encoder

FORMAT_KEY = "tinygrad_lm"
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")

FileLike = Union[str, "os.PathLike[str]", IO[bytes]]


def save(obj: Any, f: FileLike, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``obj`` to the file ``f`` (a path, written atomically, or a binary file object).

    ``metadata`` is extra ``{str: str}`` stored in the file's safetensors metadata (e.g. the
    hashes of the run's config and tokenizer files), covered by the file's checksum and
    read back with ``load(..., with_metadata=True)`` or :func:`load_metadata`.
    Something that cannot be saved raises ``TypeError`` naming its type and key path.
    """
    extra = _check_metadata(metadata)
    encoder = Encoder()
    tree = encoder.encode(obj)
    tensors = {key: {"dtype": array.dtype.name, "shape": list(array.shape), "sha256": _sha256(array),
                     "device": encoder.devices[key]} for key, array in encoder.arrays.items()}
    header = {"version": FORMAT_VERSION, "tree": tree, "tensors": tensors}
    header["digest"] = _digest(header, extra)
    data = safetensors.numpy.save(encoder.arrays, metadata={**extra, FORMAT_KEY: json.dumps(header)})
    if hasattr(f, "write"):
        f.write(data)
    else:
        atomic_write_bytes(f, data)


def load(f: FileLike, map_location: Any = None, *, weights_only: bool = True, allow_nonfinite: bool = False,
         with_metadata: bool = False) -> Any:
    """Read a checkpoint written by :func:`save` (a path or a binary file object).

    ``map_location``: ``None`` puts every Tensor and array back on the device it was saved
    from (as PyTorch); ``'cpu'``, ``'cuda'``, ``'cuda:N'`` puts all of them there; a dict maps
    saved devices to devices (``{'cuda:0': 'cpu'}``); a callable ``fn(host_array, saved_device)``
    returns the array to use, or ``None`` for the default. ``weights_only`` is accepted for
    PyTorch's sake: loading never executes code, whatever its value.
    ``allow_nonfinite=True`` loads floating tensors holding NaN or inf, refused otherwise.
    ``with_metadata=True`` returns ``(obj, metadata)``, the ``metadata`` given to ``save``.
    A plain safetensors file from another library loads as a flat dict ``{name: array}``.
    """
    del weights_only  # never unpickles, so there is nothing to restrict
    where, metadata, arrays = _read(f)
    extra = {k: v for k, v in metadata.items() if k != FORMAT_KEY}
    if FORMAT_KEY not in metadata:
        header: dict[str, Any] = {"version": None, "tree": {"dict": [[key, {"array": key}] for key in arrays]}}
    else:
        header = _header(metadata[FORMAT_KEY], where)
        _verify(header, extra, arrays, where)
    devices = header.get("tensors", {})
    fetched: dict[str, Any] = {}

    def fetch(key: str, kind: str) -> Any:
        if key not in arrays:
            raise ValueError(f"{where} is a corrupted tinygrad_lm checkpoint: its metadata refers to a "
                             f"missing tensor {key!r}")
        if kind == "scalar":  # a NumPy scalar: a number on the host, like a Python float
            return arrays[key]
        if key not in fetched:
            if not allow_nonfinite:
                _check_finite(arrays[key], key, where)
            saved = devices[key]["device"] if key in devices else "cpu"
            fetched[key] = _place(arrays[key], saved, map_location, key, where)
        return fetched[key]

    obj = Decoder(fetch, where).decode(header["tree"])
    return (obj, extra) if with_metadata else obj


def load_metadata(f: FileLike) -> dict[str, str]:
    """The ``metadata`` given to :func:`save` (checked against its checksum), without loading any tensor."""
    if hasattr(f, "read"):
        return load(f, with_metadata=True, allow_nonfinite=True)[1]
    path = _checked_path(f)
    try:
        with safetensors.safe_open(path, framework="numpy") as sf:
            metadata = sf.metadata() or {}
    except (OSError, MemoryError):
        raise
    except Exception as err:  # safetensors' own error type for a bad header
        raise ValueError(f"{path!r} is not a tinygrad_lm checkpoint (a safetensors file): {err}") from None
    extra = {k: v for k, v in metadata.items() if k != FORMAT_KEY}
    if FORMAT_KEY in metadata:
        header = _header(metadata[FORMAT_KEY], repr(path))
        if "digest" in header and header["digest"] != _digest(header, extra):
            raise ValueError(f"{path!r} is corrupted: its metadata does not match its sha256 checksum")
    return extra


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"save: metadata must be a dict of strings, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"save: metadata keys and values must be strings, got {type(k).__name__} {k!r}: "
                            f"{type(v).__name__}")
    if FORMAT_KEY in metadata:
        raise ValueError(f"save: the metadata key {FORMAT_KEY!r} is reserved for the checkpoint's structure")
    return dict(metadata)


def _sha256(array: numpy.ndarray) -> str:
    return hashlib.sha256(array.data.cast("B") if array.size else b"").hexdigest()  # (no copy of the bytes)


def _digest(header: dict[str, Any], extra: dict[str, str]) -> str:
    """The sha256 of everything the metadata says (structure, tensor checksums, caller's metadata)."""
    text = json.dumps([header["tree"], header["tensors"], extra], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _checked_path(f: Any) -> str:
    path = os.fspath(f)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a checkpoint file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    return path


def _read(f: FileLike) -> tuple[str, dict[str, str], dict[str, numpy.ndarray]]:
    """``(name for messages, safetensors metadata, arrays)`` of a path or a binary file object."""
    if hasattr(f, "read"):
        where = repr(getattr(f, "name", f"<{type(f).__name__}>"))
        data = f.read()  # type: ignore[union-attr]
        not_checkpoint = f"{where} is not a tinygrad_lm checkpoint (a safetensors file)"
        try:
            arrays = safetensors.numpy.load(data)
            size = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8:8 + size]).get("__metadata__") or {}
        except Exception as err:  # safetensors' own error type for a bad header or truncated data
            raise ValueError(f"{not_checkpoint}: {err}") from None
        return where, metadata, arrays
    path = _checked_path(f)
    where = repr(path)
    try:
        with safetensors.safe_open(path, framework="numpy") as sf:
            metadata = sf.metadata() or {}
            arrays = {key: sf.get_tensor(key) for key in sf.keys()}
    except (OSError, MemoryError):
        raise
    except Exception as err:  # safetensors' own error type for a bad header or truncated data
        raise ValueError(f"{where} is not a tinygrad_lm checkpoint (a safetensors file): {err}") from None
    return where, metadata, arrays


def _header(text: str, where: str) -> dict[str, Any]:
    corrupted = f"{where} is a corrupted tinygrad_lm checkpoint"
    try:
        header = json.loads(text)
    except RecursionError:
        raise ValueError(f"{corrupted}: its metadata is nested too deeply (more than {MAX_DEPTH} levels are "
                         "never written)") from None
    except ValueError:
        raise ValueError(f"{corrupted}: its metadata is not valid JSON") from None
    if not isinstance(header, dict) or "tree" not in header:
        raise ValueError(f"{corrupted}: its metadata has no structure")
    header["version"] = str(header.get("version"))
    if header["version"] not in READABLE_VERSIONS:
        raise ValueError(f"{where} is a tinygrad_lm checkpoint of format version {header.get('version')!r}, "
                         f"this version reads {', '.join(map(repr, READABLE_VERSIONS))}")
    if header["version"] != "1":
        tensors = header.get("tensors")
        if not (isinstance(tensors, dict) and "digest" in header
                and all(isinstance(v, dict) and isinstance(v.get("device"), str) for v in tensors.values())):
            raise ValueError(f"{corrupted}: its metadata has no checksums")
    return header


def _verify(header: dict[str, Any], extra: dict[str, str], arrays: dict[str, numpy.ndarray], where: str) -> None:
    """Compare the file with the checksums in its metadata (version "1" files have none: nothing to check)."""
    if header["version"] == "1":
        return
    corrupted = f"{where} is corrupted"
    if header["digest"] != _digest(header, extra):
        raise ValueError(f"{corrupted}: its metadata does not match its sha256 checksum")
    tensors = header["tensors"]
    unlisted = sorted(arrays.keys() - tensors.keys())
    if unlisted:
        raise ValueError(f"{corrupted}: it holds a tensor {unlisted[0]!r} that its metadata does not list")
    for key, info in tensors.items():
        if key not in arrays:
            raise ValueError(f"{corrupted}: tensor {key!r} is missing")
        array = arrays[key]
        if array.dtype.name != info.get("dtype") or list(array.shape) != info.get("shape"):
            raise ValueError(f"{corrupted}: tensor {key!r} is {array.dtype.name} {list(array.shape)}, its metadata "
                             f"says {info.get('dtype')} {info.get('shape')}")
        if _sha256(array) != info.get("sha256"):
            raise ValueError(f"{corrupted}: the bytes of tensor {key!r} do not match their sha256 checksum")


def _check_finite(array: numpy.ndarray, key: str, where: str) -> None:
    if array.dtype.kind != "f":
        return
    bad = array.size - int(numpy.count_nonzero(numpy.isfinite(array)))
    if bad:
        raise ValueError(f"{where}: tensor {key!r} holds {bad} non-finite value(s) (NaN or inf); "
                         "pass allow_nonfinite=True to load it anyway")


def _place(array: numpy.ndarray, saved: str, map_location: Any, key: str, where: str) -> Any:
    """The loaded host ``array`` on the device ``map_location`` gives for one saved on ``saved``."""
    if callable(map_location) and not isinstance(map_location, str):
        placed = map_location(array, saved)
        if placed is not None:
            if not backend.is_backend_array(placed):
                raise TypeError(f"load: map_location returned {type(placed).__name__} for tensor {key!r}, "
                                "expected a NumPy or CuPy array or None")
            return placed
        target: Any = saved
    elif map_location is None:
        target = saved
    elif isinstance(map_location, Mapping):
        named = {_location_name(k): v for k, v in map_location.items()}
        target = named.get(_location_name(saved), saved)
    else:
        target = map_location
    try:
        device = backend.canonical_device(target)
    except RuntimeError as err:
        raise RuntimeError(f"{where}: tensor {key!r} was saved on {saved}: {err}; pass map_location='cpu' "
                           "to load it on the CPU") from None
    if device == "cpu" and array.base is not None:
        return array.copy()  # an array that owns its memory, not a view into the file's buffer
    return backend.to_device(array, device)


def _location_name(device: Any) -> str:
    """``'cuda'`` and ``'CUDA:0'`` -> ``'cuda:0'`` (without asking whether CUDA is there)."""
    name = str(device).strip().lower()
    return "cuda:0" if name == "cuda" else name

