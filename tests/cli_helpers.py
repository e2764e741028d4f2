"""Running the installed ``inspector`` command as a user would, with no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INSPECTOR = str(Path(sys.executable).with_name("inspector"))


def _offline_prefix() -> list[str]:
    """``unshare -n`` (an empty network namespace) where this user may create one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


OFFLINE = _offline_prefix()


def run_inspector(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 600,
    env: dict | None = None,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``inspector ARGS`` offline; returns the completed process (text output).

    ``prefix`` goes before the command (``setpriv ... --`` to run it as another user).
    """
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [*OFFLINE, *(prefix or []), INSPECTOR, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
