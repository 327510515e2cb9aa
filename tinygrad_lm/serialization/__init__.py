"""Checkpoints and atomic file writes.

- ``checkpoint.py``: ``save(obj, f, *, metadata=None)``, ``load(f, map_location=None, *, weights_only=True,
  allow_nonfinite=False, with_metadata=False)``, ``load_metadata(f)``: safetensors files with a JSON
  structure and sha256 checksums, never pickle.
- ``tree.py``: how a nested object becomes that JSON structure plus named arrays, and back.
- ``atomic.py``: ``atomic_write_bytes`` / ``atomic_write_text`` (temp file, fsync, rename) and the
  clean-up of temp files that killed writers left behind.
"""
from .atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from .checkpoint import load, load_metadata, save

__all__ = ["atomic_write_bytes", "atomic_write_text", "load", "load_metadata", "remove_stale_temp_files", "save"]
