"""docs/RELIABILITY_TESTS.md stays true: one row per RELIABILITY.md case, and every test it names exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "RELIABILITY_TESTS.md"
N_CASES = 17


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def _rows() -> dict[int, str]:
    rows = {}
    for line in MAP.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|", line)
        if match:
            rows[int(match.group(1))] = line
    return rows


def test_every_case_has_a_row_with_tests():
    rows = _rows()
    assert sorted(rows) == list(range(1, N_CASES + 1))
    for case, line in rows.items():
        assert "::test_" in line, f"case {case} names no test"


def test_every_named_test_exists():
    """``file.py::test_name`` and the shorthand ``::test_name`` (same file as the reference before it)."""
    missing = []
    for case, line in _rows().items():
        current = None
        for path, name in re.findall(r"(?:`(tests/[\w/]+\.py)::|`::)(test_\w+)", line):
            current = path or current
            assert current is not None, f"case {case}: {name} without a file"
            names = _test_names(ROOT / current)
            if name.endswith("_") or name.endswith("*"):
                continue
            if name not in names:
                missing.append(f"case {case}: {current}::{name}")
    assert missing == []
