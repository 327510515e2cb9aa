"""Only the backend touches NumPy/CuPy: array math elsewhere goes through ``tensor.xp`` / ``Function.xp``.

Every module of the engine, the ops, nn and the language models is parsed with ``ast``
and may not import numpy or cupy (``import numpy``, ``import cupy as cp``,
``from numpy import ...``, ``import numpy.linalg``, also inside functions). Host-side
modules that turn arrays into files, batches, plots or text are allowed to, and are
listed explicitly below.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tinygrad_lm"
FORBIDDEN = {"numpy", "cupy", "cupyx"}

# Modules (paths relative to tinygrad_lm/) that may import numpy (and, for backend.py only, cupy):
# the backend itself and host-side I/O. A module of a checked package that only does host-side
# work would be added here by its path, e.g. "lm/some_module.py", with a comment saying why.
ALLOWED = {
    "backend.py",  # the one place that knows NumPy and CuPy
    "generators.py",  # the backend's random generators (NumPy's or, through backend.get_xp, CuPy's)
    "dtypes.py",  # tinygrad_lm's dtypes over NumPy's
    "printing.py",  # tensor values as text, through NumPy's formatting
    "viz.py",  # plots and graph drawings on the host
    "cli.py",
    "__main__.py",
    "lm/ngram.py",  # n-gram counting is host-side NumPy on token ids, no tensors involved
    "lm/generation.py",  # sampling from logits copied to the host, with its own seeded generator
    "lm/trainer.py",  # token-id batching and metrics on the host; the model runs through tensors
}
ALLOWED_PACKAGES = {"data"}  # datasets, tokenizers and batching produce host arrays

CHECKED_FILES = ["tensor.py", "autograd.py", "creation.py", "gradcheck.py", "functions.py", "random.py", "cuda.py"]
CHECKED_PACKAGES = ["ops", "nn", "lm"]


def _checked_modules() -> list[Path]:
    files = [PACKAGE / f for f in CHECKED_FILES if (PACKAGE / f).exists()]
    for pkg in CHECKED_PACKAGES:
        if (PACKAGE / pkg).is_dir():
            files.extend(sorted((PACKAGE / pkg).rglob("*.py")))
    return [f for f in files if f.relative_to(PACKAGE).as_posix() not in ALLOWED]


def _array_library_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend(f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in FORBIDDEN)
    return found


def test_the_boundary_checks_something():
    modules = {p.name for p in _checked_modules()}
    core = {"tensor.py", "autograd.py", "creation.py", "elementwise.py", "reduce.py", "movement.py", "matmul.py"}
    assert core <= modules
    assert "module.py" in modules and "layers.py" in modules


@pytest.mark.parametrize("path", _checked_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_does_not_import_numpy_or_cupy(path):
    bad = _array_library_imports(path)
    assert not bad, (
        f"{path.relative_to(PACKAGE.parent)} imports an array library ({', '.join(bad)}); "
        "get the array module from tensor.xp / Function.xp and put library-specific helpers in backend.py"
    )


def test_the_detector_sees_every_import_form(tmp_path):
    src = tmp_path / "sample.py"
    src.write_text(
        "import os\nimport numpy as np\nfrom cupy import asarray\nimport numpy.linalg\n"
        "from . import numpy\nfrom cupyx.scipy import special\n"
        "def f():\n    import cupy\n"
    )
    assert _array_library_imports(src) == [
        "line 2: numpy",
        "line 3: cupy",
        "line 4: numpy.linalg",
        "line 6: cupyx.scipy",
        "line 8: cupy",
    ]


def test_only_the_backend_imports_cupy():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "backend.py" and path.parent == PACKAGE:
            continue
        cupy = [i for i in _array_library_imports(path) if i.split(": ")[1].split(".")[0] in ("cupy", "cupyx")]
        assert not cupy, f"{path.relative_to(PACKAGE.parent)} imports CuPy ({', '.join(cupy)}); only backend.py may"


def test_the_engine_and_ops_are_never_allowed():
    never = set(CHECKED_FILES) | {f"ops/{p.name}" for p in (PACKAGE / "ops").glob("*.py")}
    assert not (ALLOWED & never)
    assert not (ALLOWED_PACKAGES & set(CHECKED_PACKAGES))
