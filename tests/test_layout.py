"""The tree keeps its shape: no function over 80 lines or class over 400 lines in the packages,
every import inside a function says why it is deferred, and every folder README's folder table
names exists."""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


PRAGMA = re.compile(r"#\s*(noqa\b[:\s\w,]*|type:\s*ignore\S*)\s*$")  # a pragma says no why


def comment_lines(source: str) -> dict[int, str]:
    """Line number -> the comment on that line (pragmas alone do not count)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {
        t.start[0]: t.string
        for t in tokens
        if t.type == tokenize.COMMENT and not PRAGMA.fullmatch(t.string)
    }


def unexplained_deferred_imports(root: Path = REPO) -> list[str]:
    """``path:line module`` for every import inside a function without a comment saying why
    it is deferred: on the import's line(s), or a comment line just above it."""
    found = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            comments, lines = comment_lines(source), source.splitlines()
            for fn in ast.walk(ast.parse(source)):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(fn):
                    if not isinstance(node, ast.Import | ast.ImportFrom):
                        continue
                    span = range(node.lineno, node.end_lineno + 1)
                    above = node.lineno - 1
                    if any(n in comments for n in span) or (
                        above in comments and lines[above - 1].lstrip().startswith("#")
                    ):
                        continue
                    module = node.module if isinstance(node, ast.ImportFrom) else None
                    name = "." * getattr(node, "level", 0) + (module or node.names[0].name)
                    found.add((str(path.relative_to(root)), node.lineno, name))
    return [f"{path}:{line} {name}" for path, line, name in sorted(found)]


def test_imports_inside_functions_say_why_they_are_deferred():
    offenders = unexplained_deferred_imports()
    assert not offenders, (
        "import these at the module top, or say on the line why they wait (a heavy optional "
        "dependency: torch, tensorrt, openvino, transformers...):\n" + "\n".join(offenders)
    )


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
