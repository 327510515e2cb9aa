"""The README's API tour runs as written (so it cannot drift from the library)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_starts_with_the_two_newcomer_commands():
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert "tinygrad-lm train" in commands[0] and "pip install -e ." in commands[0]
    assert commands[1].endswith('pip install -e ".[dev]" && python -m pytest')


def test_the_api_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tour saves a checkpoint in the working directory
    tour = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[0]
    namespace: dict = {}
    exec(compile(tour, "README tour", "exec"), namespace)
    assert namespace["w"].grad is not None and namespace["x"].grad.shape == (4, 3)
    assert (tmp_path / "lstm.safetensors").exists()
