"""Checkpoints (``save`` / ``load``, safetensors files that never execute code) and atomic file writes."""
from .atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from .checkpoint import load, load_metadata, save

__all__ = ["atomic_write_bytes", "atomic_write_text", "load", "load_metadata", "remove_stale_temp_files", "save"]
