"""How much of PyTorch's tensor API tinygrad_lm has, against checked-in lists of PyTorch's names.

``api_coverage/torch_tensor_methods.txt`` and ``api_coverage/torch_functions.txt`` list PyTorch's public
tensor methods and functions (made from an installed PyTorch, so the test needs none). Every name must
either exist here (``tl.Tensor.<name>`` or ``tl.<name>``) or stand in ``api_coverage/not_supported.txt``
with the reason. The behaviour of what exists is checked by the op tests (against PyTorch where it is
installed); this test keeps the list of what is missing explicit and honest.

``python tests/test_api_coverage.py`` prints the coverage figures.
"""
from __future__ import annotations

import pathlib

import tinygrad_lm as tl

_HERE = pathlib.Path(__file__).parent / "api_coverage"


def _names(filename: str) -> list[str]:
    lines = (_HERE / filename).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _not_supported() -> dict[str, tuple[str, str]]:
    """``{kind.name: (reason, line)}`` from lines ``method NAME ... : reason`` / ``function NAME ... : reason``."""
    out: dict[str, tuple[str, str]] = {}
    for line in (_HERE / "not_supported.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, sep, reason = line.partition(":")
        assert sep and reason.strip(), f"not_supported.txt: no reason given in {line!r}"
        kind, *names = head.split()
        assert kind in ("method", "function"), f"not_supported.txt: {line!r} must start with 'method' or 'function'"
        for name in names:
            assert f"{kind}.{name}" not in out, f"not_supported.txt lists {kind} {name} twice"
            out[f"{kind}.{name}"] = (reason.strip(), line)
    return out


def _present(kind: str, name: str) -> bool:
    return hasattr(tl.Tensor, name) if kind == "method" else hasattr(tl, name)


def coverage() -> dict[str, tuple[int, int, list[str]]]:
    """Per kind: (names present, names in PyTorch's list, names neither present nor listed as unsupported)."""
    unsupported = _not_supported()
    result = {}
    for kind, filename in (("method", "torch_tensor_methods.txt"), ("function", "torch_functions.txt")):
        names = _names(filename)
        present = [n for n in names if _present(kind, n)]
        unexplained = [n for n in names if not _present(kind, n) and f"{kind}.{n}" not in unsupported]
        result[kind] = (len(present), len(names), unexplained)
    return result


def test_every_pytorch_name_is_present_or_listed_with_a_reason():
    for kind, (_, _, unexplained) in coverage().items():
        assert not unexplained, f"PyTorch {kind}s neither present nor in not_supported.txt: {unexplained}"


def test_not_supported_names_are_pytorch_names_and_really_absent():
    torch_names = {"method": set(_names("torch_tensor_methods.txt")), "function": set(_names("torch_functions.txt"))}
    for key, (_, line) in _not_supported().items():
        kind, name = key.split(".", 1)
        assert name in torch_names[kind], f"not_supported.txt: {kind} {name} is not in PyTorch's list ({line!r})"
        assert not _present(kind, name), f"not_supported.txt lists {kind} {name}, which exists: drop it from the list"


if __name__ == "__main__":
    for kind, (present, total, _) in coverage().items():
        print(f"{kind}s: {present} of {total} PyTorch names present ({100 * present / total:.0f}%)")
