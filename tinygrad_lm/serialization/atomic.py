"""Atomic file writes: a crash at any moment leaves the old file or the whole new one, never half of one.

:func:`atomic_write_bytes` writes the bytes to a temporary file in the target's own
folder, flushes them to disk (``fsync``), renames the temporary file over the target
(a rename within one file system is atomic) and syncs the folder so the rename
itself survives a power cut.

Temporary files are named ``.<name>.tmp-<host>-<pid>-<random>``. A writer killed
mid-write (SIGKILL, OOM killer) leaves its temporary file behind; the next write
into that folder removes such files, but only ours (that exact name pattern, owned
by this user, written on this host, by a process that no longer runs), never anyone
else's files.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(r"\..+\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{16}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    A new file gets the permissions ``open()`` would give it (``0o666`` less the umask);
    an existing file keeps its permissions. A symlink is followed: its target is replaced.
    Missing parent folders are created. ``path`` being a folder raises ``IsADirectoryError``.
    """
    path = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory")
    os.makedirs(folder, exist_ok=True)
    remove_stale_temp_files(folder)
    try:
        old_mode: int | None = os.stat(path).st_mode & 0o777  # (setuid, setgid, sticky: not carried over)
    except FileNotFoundError:
        old_mode = None
    tmp = os.path.join(folder, f".{name[:100]}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(8)}")  # < 255 bytes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # umask applies
    try:
        try:
            if old_mode is not None:
                os.fchmod(fd, old_mode)
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            raise type(err)(err.errno, err.strerror, path) from err  # "No space left on device: '<path>'"
        raise
    _fsync_directory(folder)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`); newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files that killed writers left in ``folder``; returns their paths.

    Only files named as :func:`atomic_write_bytes` names them, owned by this user, made on this
    host by a process that no longer runs. Anything else, a live writer's file included, stays.
    """
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP_NAME.fullmatch(entry.name)
            if match is None or match["host"] != _HOST or _process_runs(int(match["pid"])):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:  # another writer cleaned it up first
                continue
            removed.append(entry.path)
    return removed


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # runs under another user (or not a valid pid: keep the file)
        return True
    return True


def _fsync_directory(folder: str) -> None:
    """Make a rename durable (POSIX; a no-op where folders cannot be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
