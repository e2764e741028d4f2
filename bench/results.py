"""Writing a benchmark's figures into its own section of ``bench/RESULTS.md``.

Each benchmark owns one section, delimited by HTML comments, and replaces only that section,
so re-running one benchmark never disturbs the others' figures.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is written by the benchmark named in it.\n"


def machine_description() -> str:
    """CPU model, cores, memory and the GPU if torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = ""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return f"{cpu}, {os.cpu_count()} logical cores{mem}{gpu}; Python {platform.python_version()}"


def wall_time_line(elapsed_s: float) -> str:
    """Wall time and the load average at the end; says the machine was shared only when the
    1-minute load exceeded the cores (a benchmark alone keeps it at or under them)."""
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    shared = (
        " (the machine was shared with other work: compare times within this run only)"
        if load[0] > cores + 0.5 else ""
    )
    return (
        f"Wall time {elapsed_s / 60:.1f} min; load average at the end {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f} on {cores} cores{shared}."
    )


def update_results(section: str, body: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the section ``section`` with ``body`` plus machine, command, date."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{begin}\n## {section}\n\n"
        f"- Machine: {machine_description()}\n- Command: `{command}`\n- Date: {stamp}\n\n"
        f"{body.strip()}\n{end}"
    )
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
