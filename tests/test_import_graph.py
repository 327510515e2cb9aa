"""The package's modules import each other without a cycle (imports at module level, as Python runs them)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tinygrad_lm"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imported(name: str, path: Path, node: ast.stmt, mods: dict[str, Path]) -> list[str]:
    """The package modules that one import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in mods]
    if not isinstance(node, ast.ImportFrom):
        return []
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if node.level:
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.append(candidate if candidate in mods else base)
    return [m for m in found if m in mods]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            graph[name] |= {m for m in _imported(name, path, node, mods) if m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules along it, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_the_graph_sees_the_package():
    graph = _graph()
    assert "tinygrad_lm.ops.elementwise" in graph["tinygrad_lm.fast.fused_nn"] or \
        "tinygrad_lm.ops" in graph["tinygrad_lm.fast.fused_nn"]
    assert "tinygrad_lm.nn.functional" in graph["tinygrad_lm.nn.attention"]


def test_no_module_level_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_ops_do_not_mention_the_fast_path():
    for path in (PACKAGE / "ops").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for word in ("fast", "compiler", "jit", "numba", 'device == "cpu"'):
            assert word not in text, f"{path.name} mentions {word!r}: speed code belongs in tinygrad_lm/fast"
