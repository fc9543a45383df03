"""The README cannot rot: its example snippets are lines of the example files, and its Python parses.

A fenced ``python`` block right after ``<!-- snippet: PATH -->`` must consist of lines of ``PATH`` (compared
without leading or trailing whitespace; blank lines are free). Every other ``python`` block must at least
be valid Python.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- snippet: (?P<path>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)
BLOCKS = [(m.group("path"), m.group("code")) for m in BLOCK.finditer(README)]


def test_the_readme_has_snippets_from_every_example() -> None:
    sources = {path for path, _ in BLOCKS if path}
    examples = {str(p.relative_to(ROOT)) for p in (ROOT / "scripts" / "examples").glob("*.py")}
    assert examples <= sources, f"examples the README does not show: {sorted(examples - sources)}"


@pytest.mark.parametrize(("path", "code"), [b for b in BLOCKS if b[0]], ids=lambda v: str(v)[:40])
def test_snippet_lines_come_from_the_file(path: str, code: str) -> None:
    lines = {line.strip() for line in (ROOT / path).read_text().splitlines()}
    missing = [line for line in code.splitlines() if line.strip() and line.strip() not in lines]
    assert not missing, f"README lines not in {path}: {missing}"


@pytest.mark.parametrize("code", [c for p, c in BLOCKS if not p], ids=lambda v: v.splitlines()[0][:40])
def test_other_python_blocks_parse(code: str) -> None:
    ast.parse(code)
