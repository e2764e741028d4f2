"""``scripts/install.sh`` into a temporary root: the expected tree, idempotent, data kept.

The installer runs with ``--root`` (nothing outside the temporary root is touched, systemctl
is never called) and ``--no-venv`` (pip-installing torch into a temporary root is too heavy
for a test). The venv step's decision to reinstall is tested with a stub ``python`` that only
records the pip call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
AS_ROOT = os.geteuid() == 0

UNITS = [
    "inspector-engine.service",
    "inspector.service",
    "inspector-explainer.service",
    "inspector-web.service",
]


def run_installer(root: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its type, mode, owner, mtime and content hash/target."""
    tree: dict[str, tuple] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            what = "->" + os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        tree[rel] = (what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    return tree


def id_in_root(root: Path, table: str, name: str) -> int:
    """The numeric id of ``name`` in ``root``'s ``etc/passwd`` or ``etc/group``."""
    for line in (root / "etc" / table).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"no {name} in {root}/etc/{table}")


@pytest.fixture()
def installed(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    run_installer(root, "--no-venv")
    return root


def test_help_is_true_about_the_test_flags() -> None:
    out = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--root", "--no-venv", "--uninstall", "--wheelhouse"):
        assert flag in out.stdout


def test_unknown_option_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(INSTALL), "--root", str(tmp_path), "--frobnicate"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown option --frobnicate (see --help)"


def test_install_produces_the_expected_tree(installed: Path) -> None:
    tree = snapshot(installed)
    for unit in UNITS:
        assert (installed / "etc/systemd/system" / unit).read_bytes() == (
            REPO / "systemd" / unit
        ).read_bytes()
        link = installed / "etc/systemd/system/multi-user.target.wants" / unit
        assert os.readlink(link) == f"/etc/systemd/system/{unit}"
    for unit in (REPO / "systemd").glob("*@.service"):  # templates: enabled per instance
        assert (installed / "etc/systemd/system" / unit.name).read_bytes() == unit.read_bytes()
        assert not (installed / "etc/systemd/system/multi-user.target.wants" / unit.name).exists()
    assert (installed / "etc/inspector/inspector.yaml").read_bytes() == (
        REPO / "systemd/inspector.example.yaml"
    ).read_bytes()
    assert tree["etc/inspector/inspector.env"][1] == 0o640  # holds secrets
    assert tree["etc/inspector"][1] == 0o750
    assert tree["var/lib/inspector"][1] == 0o750
    assert (installed / "var/lib/inspector/bundles").is_dir()
    assert (installed / "usr/lib/sysusers.d/inspector.conf").is_file()
    assert (installed / "usr/lib/tmpfiles.d/inspector.conf").is_file()
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert (installed / "opt/battery-inspector/docs" / doc.name).is_file()
    assert not (installed / "opt/battery-inspector/venv").exists()  # --no-venv
    if AS_ROOT:  # ownership is only set when the installer runs as root
        uid = id_in_root(installed, "passwd", "inspector")
        gid = id_in_root(installed, "group", "inspector")
        assert tree["var/lib/inspector"][2:4] == (uid, gid)
        assert tree["etc/inspector/inspector.env"][2:4] == (0, gid)


def test_second_run_changes_nothing(installed: Path) -> None:
    before = snapshot(installed)
    proc = run_installer(installed, "--no-venv")
    assert snapshot(installed) == before
    assert "nothing changed" in proc.stdout


def test_operator_config_is_never_overwritten(installed: Path) -> None:
    config = installed / "etc/inspector/inspector.yaml"
    config.write_text("station: {line: L7, station: S2}\n")
    run_installer(installed, "--no-venv")
    assert config.read_text() == "station: {line: L7, station: S2}\n"


def test_changed_unit_is_reinstalled(installed: Path) -> None:
    unit = installed / "etc/systemd/system/inspector.service"
    unit.write_text("stale\n")
    proc = run_installer(installed, "--no-venv")
    assert unit.read_bytes() == (REPO / "systemd/inspector.service").read_bytes()
    assert "installed /etc/systemd/system/inspector.service" in proc.stdout


def test_uninstall_keeps_data_and_config(installed: Path) -> None:
    db = installed / "var/lib/inspector/inspector.db"
    db.write_bytes(b"results")
    wants = installed / "etc/systemd/system/multi-user.target.wants"
    (wants / "inspector@top.service").symlink_to("/etc/systemd/system/inspector@.service")
    proc = run_installer(installed, "--uninstall")
    assert db.read_bytes() == b"results"
    assert (installed / "etc/inspector/inspector.yaml").is_file()
    assert not (installed / "opt/battery-inspector").exists()
    assert not list((installed / "etc/systemd/system").rglob("inspector*.service"))
    assert not (wants / "inspector@top.service").is_symlink(), "an enabled instance is disabled"
    assert "kept /var/lib/inspector" in proc.stdout
    again = run_installer(installed, "--uninstall")
    assert "nothing to remove" in again.stdout


@pytest.mark.skipif(
    not Path("/usr/bin/systemd-analyze").exists(), reason="systemd-analyze is not installed"
)
def test_installed_units_verify_in_the_installed_tree(installed: Path) -> None:
    """The units as installed and enabled load cleanly, with the venv's commands stubbed."""
    from tests.systemd.test_units import HOST_UNIT_DIRS, verify

    venv_bin = installed / "opt/battery-inspector/venv/bin"
    venv_bin.mkdir(parents=True)
    for name in ("inspector", "python"):
        (venv_bin / name).write_text("#!/bin/sh\nexit 0\n")
        (venv_bin / name).chmod(0o755)
    targets = installed / "usr/lib/systemd/system"
    targets.mkdir(parents=True)
    host = next(d for d in HOST_UNIT_DIRS if d.is_dir())
    for unit in [*host.glob("*.target"), *host.glob("*.slice")]:
        shutil.copy(unit, targets / unit.name)
    for unit in UNITS:
        assert verify(installed, unit) == ""


SOURCE_PARTS = ("scripts", "systemd", "docs", "inspector", "models", "export")


def source_copy(dest: Path) -> Path:
    """A copy of the parts of the source tree the installer reads, to change without harm."""
    for name in SOURCE_PARTS:
        shutil.copytree(
            REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    return dest


def test_a_template_only_change_is_reinstalled(tmp_path: Path) -> None:
    """The venv is pip-installed again when any package file changed, not only Python code."""
    src = source_copy(tmp_path / "src")
    root = tmp_path / "root"
    pip_log = tmp_path / "pip.log"
    venv_bin = root / "opt/battery-inspector/venv/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\necho "$@" >>"{pip_log}"\n')
    (venv_bin / "python").chmod(0o755)

    def install() -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", str(src / "scripts/install.sh"), "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    assert "installed battery-inspector into" in install().stdout
    assert "nothing changed" in install().stdout
    assert len(pip_log.read_text().splitlines()) == 1
    (src / "inspector/web/templates/login.html").write_text("{# changed #}\n", "utf-8")
    assert "installed battery-inspector into" in install().stdout
    assert len(pip_log.read_text().splitlines()) == 2
    cache = src / "inspector/web/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "app.cpython-311.pyc").write_bytes(b"bytecode")  # not a source change
    assert "nothing changed" in install().stdout
