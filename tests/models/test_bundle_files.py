"""A bundle's file names have one home, ``models/bundle_files.py``, and one list of them."""

from __future__ import annotations

import ast
from pathlib import Path

from models import bundle_files
from models.bundle_files import BUNDLE_FILES

REPO = Path(__file__).resolve().parents[2]


def test_the_bundle_list_holds_every_file_name():
    names = {v for k, v in vars(bundle_files).items() if k.endswith("_FILE")}
    assert names <= set(BUNDLE_FILES)
    assert len(set(BUNDLE_FILES)) == len(BUNDLE_FILES)


def test_no_other_module_spells_a_bundle_file_name():
    spelled = []
    for package in ("inspector", "models", "export"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "models" / "bundle_files.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
                if isinstance(value, ast.Constant) and value.value in BUNDLE_FILES:
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno} {value.value!r}")
    assert not spelled, "import these from models.bundle_files:\n" + "\n".join(spelled)
