"""The systemd units pass ``systemd-analyze verify`` without a single warning.

Each unit is verified inside a temporary root (``--root=``) that holds the units where the
installer puts them, the systemd targets and slices they depend on, and stub executables at
the paths their ``ExecStart=`` lines name; systemd checks those paths inside the root.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run_inspector

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
UNITS = sorted(p.name for p in UNIT_DIR.glob("*.service") if "@" not in p.name)
# one instance per camera on a box: inspector@NAME.service and its companions
TEMPLATES = sorted(p.name for p in UNIT_DIR.glob("*@.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
HOST_UNIT_DIRS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]

needs_analyze = pytest.mark.skipif(
    not Path(SYSTEMD_ANALYZE).exists(), reason="systemd-analyze is not installed on this machine"
)


def unit_directives(path: Path) -> dict[str, list[str]]:
    """``{"Section.Key": [values...]}`` of a unit file (keys may repeat, as in systemd)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _stub_root(root: Path, units: list[Path]) -> Path:
    """Lay out ``root`` so that ``systemd-analyze verify --root=root`` can load ``units``."""
    target_dir = root / "usr/lib/systemd/system"
    target_dir.mkdir(parents=True)
    host_dir = next(d for d in HOST_UNIT_DIRS if d.is_dir())
    for pattern in ("*.target", "*.slice"):
        for unit in host_dir.glob(pattern):
            shutil.copy(unit, target_dir / unit.name, follow_symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, etc / unit.name)
        for cmd in unit_directives(unit).get("Service.ExecStart", []):
            exe = root / shlex.split(cmd.lstrip("-@:+!"))[0].lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\nexit 0\n")
            exe.chmod(0o755)
    return root


def verify(root: Path, unit_name: str) -> str:
    """All output of ``systemd-analyze verify`` for one unit in ``root`` (empty when clean)."""
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={root}", unit_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0 else " (failed)")


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    units = [UNIT_DIR / u for u in UNITS + TEMPLATES]
    return _stub_root(tmp_path_factory.mktemp("root"), units)


def test_all_four_units_exist() -> None:
    assert UNITS == [
        "inspector-engine.service",
        "inspector-explainer.service",
        "inspector-web.service",
        "inspector.service",
    ]


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_without_any_warning(unit_root: Path, unit: str) -> None:
    assert verify(unit_root, unit) == ""


@needs_analyze
def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo and a relative path are reported."""
    broken = tmp_path / "broken.service"
    text = (UNIT_DIR / "inspector.service").read_text()
    text = text.replace("ProtectSystem=strict", "ProtectSytem=strict")
    text = text.replace("ReadWritePaths=/var/lib/inspector", "ReadWritePaths=var/lib/inspector")
    broken.write_text(text)
    out = verify(_stub_root(tmp_path / "root", [broken]), "broken.service")
    assert "Unknown key 'ProtectSytem'" in out
    assert "ReadWritePaths=" in out


def test_daemon_unit_is_hardened_and_supervised() -> None:
    d = unit_directives(UNIT_DIR / "inspector.service")
    assert d["Service.Type"] == ["notify"]
    assert d["Service.WatchdogSec"] and d["Service.Restart"] == ["on-failure"]
    assert d["Unit.StartLimitIntervalSec"] and d["Unit.StartLimitBurst"]
    assert d["Service.User"] == ["inspector"]
    assert d["Service.ExecStart"] == [
        "/opt/battery-inspector/venv/bin/inspector run --config /etc/inspector/inspector.yaml"
    ]
    assert "inspector-engine.service" in " ".join(d["Unit.After"])
    # the engine check's choice of backend reaches the daemon through this file
    assert "-/var/lib/inspector/engine.env" in d["Service.EnvironmentFile"]


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_can_write_only_the_data_dir(unit: str) -> None:
    d = unit_directives(UNIT_DIR / unit)
    assert d["Service.ProtectSystem"] == ["strict"]
    assert d["Service.ReadWritePaths"] == ["/var/lib/inspector"]
    assert d["Service.PrivateTmp"] == ["yes"]
    assert d["Service.NoNewPrivileges"] == ["yes"]
    assert d["Service.User"] == ["inspector"]
    assert d["Service.EnvironmentFile"][0] == "-/etc/inspector/inspector.env"
    assert "--config /etc/inspector/inspector.yaml" in d["Service.ExecStart"][0]


@pytest.mark.parametrize(
    "unit", ["inspector.service", "inspector-engine.service", "inspector-explainer.service"]
)
def test_gpu_units_see_only_the_nvidia_devices(unit: str) -> None:
    d = unit_directives(UNIT_DIR / unit)
    assert d["Service.DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in d["Service.DeviceAllow"]}
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "char-nvidia-frontend"} <= allowed


def test_engine_check_runs_once_before_the_daemon() -> None:
    d = unit_directives(UNIT_DIR / "inspector-engine.service")
    assert d["Service.Type"] == ["oneshot"]
    assert "inspector.service" in d["Unit.Before"]
    assert "-m inspector.station.engine_check" in d["Service.ExecStart"][0]


@pytest.mark.parametrize("unit", UNITS)
def test_exec_start_command_takes_the_units_arguments(unit: str) -> None:
    """The command each unit starts exists and accepts ``--config`` (checked via --help)."""
    argv = shlex.split(unit_directives(UNIT_DIR / unit)["Service.ExecStart"][0])
    if Path(argv[0]).name == "python":  # python -m MODULE --config FILE
        cmd = [sys.executable, *argv[1:3], "--help"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    else:  # inspector SUBCOMMAND --config FILE
        proc = run_inspector(argv[1], "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_raises_the_open_file_limit(unit: str) -> None:
    """systemd's default soft limit of 1024 open files ran out under idle metrics clients."""
    limit = unit_directives(UNIT_DIR / unit).get("Service.LimitNOFILE", ["1024"])[-1]
    assert int(limit.split(":")[0]) >= 65536


def test_each_unit_has_a_template_for_several_cameras_on_one_box() -> None:
    assert sorted(u.replace(".service", "@.service") for u in UNITS) == TEMPLATES


@needs_analyze
@pytest.mark.parametrize("template", TEMPLATES)
def test_an_instance_of_each_template_verifies_without_any_warning(
    unit_root: Path, template: str
) -> None:
    assert verify(unit_root, template.replace("@", "@top-face")) == ""


@pytest.mark.parametrize("template", TEMPLATES)
def test_an_instance_has_its_own_config_and_data_dir_and_nothing_else_differs(
    template: str,
) -> None:
    """The instance NAME reads /etc/inspector/NAME.yaml (its own station id, so its own topics)
    and writes only /var/lib/inspector/NAME; hardening and supervision are the plain unit's."""
    t = unit_directives(UNIT_DIR / template)
    plain = unit_directives(UNIT_DIR / template.replace("@", ""))
    assert t["Service.ReadWritePaths"] == ["/var/lib/inspector/%i"]
    assert t["Service.StateDirectory"] == ["inspector/%i"]
    assert t["Service.ExecStart"] == [
        plain["Service.ExecStart"][0].replace(
            "/etc/inspector/inspector.yaml", "/etc/inspector/%i.yaml"
        )
    ]
    assert "%i" in t["Unit.Description"][0]
    same = {k for k in plain if k.startswith("Service.") and k not in {
        "Service.ReadWritePaths", "Service.StateDirectory", "Service.ExecStart",
        "Service.EnvironmentFile", "Service.Environment",
    }}  # fmt: skip
    assert {k: t.get(k) for k in same} == {k: plain[k] for k in same}


def test_an_instances_engine_check_and_daemon_share_the_instances_engine_env() -> None:
    daemon = unit_directives(UNIT_DIR / "inspector@.service")
    engine = unit_directives(UNIT_DIR / "inspector-engine@.service")
    assert "inspector-engine@%i.service" in daemon["Unit.After"][0]
    assert engine["Unit.Before"] == ["inspector@%i.service"]
    assert "-/var/lib/inspector/%i/engine.env" in daemon["Service.EnvironmentFile"]
    assert "INSPECTOR_UNIT_DATA_DIR=/var/lib/inspector/%i" in engine["Service.Environment"]
