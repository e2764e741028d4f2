"""``inspector --help`` and each command's help read as prose: paragraphs wrap to the terminal,
options are where the other commands have them, and groups say what they hold."""

from __future__ import annotations

import pytest

from tests.cli_helpers import run_inspector

COMMANDS = [
    ("calibrate",), ("demo",), ("evaluate",), ("explain",), ("predict",), ("run",), ("serve",),
    ("synth",), ("train",), ("bundle", "create"), ("export", "onnx"), ("export", "tensorrt"),
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_paragraphs_are_not_cut_mid_sentence(command: tuple[str, ...]) -> None:
    proc = run_inspector(*command, "--help", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    prose = proc.stdout.split("\nOptions:")[0].split("\nArguments:")[0]
    lines = [line.strip() for line in prose.splitlines() if line.strip()]
    assert lines[0].startswith("Usage:")
    for line in lines[1:]:  # after "Usage:", each line is a whole paragraph
        assert line[-1] in ".:)", f"{' '.join(command)}: a line ends mid-sentence: {line!r}"
    assert "<bool>" not in proc.stdout  # on/off flags read as --x / --no-x, not as a value


def test_serve_takes_c_like_run_and_explain_and_bundle_offers_what_it_has() -> None:
    for command in ("run", "explain", "serve"):
        assert "-c" in run_inspector(command, "--help", env={"COLUMNS": "200"}).stdout
    bundle = run_inspector("bundle", "--help", env={"COLUMNS": "200"}).stdout
    assert "Create, update and show model bundles." in bundle and "inspect model" not in bundle
    assert all(f"  {c} " in bundle for c in ("create", "update", "show"))
