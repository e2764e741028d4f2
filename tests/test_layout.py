"""The tree keeps its shape: no function over 80 lines or class over 400 lines in the packages,
and every folder README's folder table names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inspector", "models", "export")  # bench/ and tests/ are exempt
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 400


def oversized(root: Path = REPO) -> list[str]:
    """``path:line kind name (n lines)`` for every function or class over its limit, counted
    from the ``def``/``class`` line to its last line (signature and docstring included)."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    kind, limit = "function", MAX_FUNCTION_LINES
                elif isinstance(node, ast.ClassDef):
                    kind, limit = "class", MAX_CLASS_LINES
                else:
                    continue
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.append(f"{where} {kind} {node.name} ({n} lines, limit {limit})")
    return found


def test_no_function_over_80_lines_and_no_class_over_400():
    offenders = oversized()
    assert not offenders, "split these:\n" + "\n".join(offenders)


def folder_table(readme: str) -> list[tuple[str, str]]:
    """The rows of README's table whose header's first column is ``folder``."""
    rows, in_table = [], False
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            if in_table:
                break
            continue
        if cells[0] == "folder":
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1] if len(cells) > 1 else ""))
    return rows


def named_paths(folder: str, text: str) -> list[str]:
    """Paths a row names: its folder, and in its text each ``sub/`` (inside the folder) and
    each ``folder/path`` (from the top)."""
    paths = []
    for token in re.findall(r"`([^`\s]+)`", text):
        if token.startswith(folder):
            paths.append(token)
        elif token.endswith("/"):
            paths.append(folder + token)
    return paths


def test_every_folder_in_the_readme_table_exists():
    rows = folder_table((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(rows) >= 5, "README.md has no folder table (a '| folder | ... |' header)"
    missing = []
    for first, text in rows:
        folders = re.findall(r"`([^`\s]+/)`", first)
        assert folders, f"a folder table row names no folder: {first!r}"
        for folder in folders:
            for path in [folder, *named_paths(folder, text)]:
                found = (REPO / path).is_dir() if path.endswith("/") else (REPO / path).exists()
                if not found:
                    missing.append(path)
    assert not missing, f"README.md's folder table names folders that do not exist: {missing}"
