"""docs/derivatives.md is generated from the ops' docstrings (tools/derivatives.py): it must be current, and
every op must have a docstring to generate it from."""
from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "derivatives.py"


def _generator():
    spec = importlib.util.spec_from_file_location("derivatives", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_op_in_ops_has_a_docstring():
    missing = [f"{op.module}.{op.name}" for op in _generator().op_docs() if op.summary is None]
    assert not missing, f"ops without a docstring (its first paragraph states the derivative): {missing}"


def test_the_derivatives_table_is_up_to_date():
    gen = _generator()
    stale = gen.out_of_date(gen.op_docs())
    assert not stale, f"docs/derivatives.md is out of date for {', '.join(stale)}: run python tools/derivatives.py"


def test_the_check_names_the_ops_whose_rows_changed(tmp_path):
    gen = _generator()
    ops = gen.op_docs()
    changed = ops[0]._replace(summary="d f(x) = a | b")  # a | in a docstring must not split its cell
    doc = tmp_path / "derivatives.md"
    doc.write_text(gen.render([changed, *ops[1:]]), encoding="utf-8")
    assert "a \\| b" in doc.read_text(encoding="utf-8")
    assert gen.out_of_date(ops, doc) == [f"{changed.module}.{changed.name}"]
    doc.write_text(gen.render(ops[1:] + [gen.OpDoc("nowhere", "Gone", "d = 0")]), encoding="utf-8")
    assert gen.out_of_date(ops, doc) == [f"{ops[0].module}.{ops[0].name}", "nowhere.Gone (gone)"]
    doc.write_text(gen.render(ops), encoding="utf-8")
    assert gen.out_of_date(ops, doc) == []
