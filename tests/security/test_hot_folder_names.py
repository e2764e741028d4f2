"""Hostile entries in a scanner's hot folder, against a running daemon and a real Mosquitto:
links are not followed out of the folder, and a file name never puts a newline, a quote or
markup into an MQTT payload (its cell id must be a valid one, else the cell gets an error).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

from inspector.station.daemon import Daemon
from tests.inspector.daemon_helpers import bad_image, good_image, make_config, running
from tests.reliability.fs_wait import wait_until


def hot_station(tmp_path: Path, bundle: Path, port: int, pattern: str):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    hot = {
        "kind": "hotfolder",
        "folder": str(incoming),
        "cell_id_pattern": pattern,
        "settle_s": 0.05,
        "corrupt_after_s": 0.5,
    }
    return make_config(tmp_path, bundle, port, hot), incoming


def put(folder: Path, name: str, image) -> None:
    ok, png = cv2.imencode(".png", image)
    assert ok
    staging = folder.parent / "staging.tmp"
    staging.write_bytes(png.tobytes())
    os.replace(staging, folder / name)


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


@pytest.mark.slow
def test_links_in_the_hot_folder_are_not_followed_and_say_so_in_the_log(
    tmp_path: Path, broker, collector, line_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, incoming = hot_station(tmp_path, line_bundle, broker.port, r"^(?P<cell_id>[A-Z0-9-]+)\.")
    outside = tmp_path / "secret.png"
    cv2.imwrite(str(outside), bad_image(2))
    caplog.set_level("INFO", logger="inspector")
    with running(Daemon(cfg)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        (incoming / "LINK-1.png").symlink_to(outside)
        (incoming / "LINK-2.png").symlink_to("../secret.png")
        put(incoming, "AFTER-1.png", good_image(2))
        collector.wait_for("result", where=lambda r: r["cell_id"] == "AFTER-1")
        wait_until(incoming, lambda: (incoming / "done" / "AFTER-1.png").exists(), 10, "filed")
    assert [r["cell_id"] for r in collector.on("result")] == ["AFTER-1"], "no link inspected"
    for name in ("LINK-1.png", "LINK-2.png"):
        assert (incoming / name).is_symlink(), "left where it is"
        assert f"{name!r} in the hot folder is a symbolic link: skipped" in caplog.text
    assert outside.exists() and not list((incoming / "failed").iterdir())


HOSTILE_NAMES = {  # file name -> what must not reach a payload
    "C1\n.png": "\n",
    'C"2".png': '"',
    "<b>C3.png": "<b>",
    "C4'; DROP.png": "'",
}


@pytest.mark.slow
def test_a_cell_id_from_a_file_name_is_valid_or_the_cell_gets_an_error_result(
    tmp_path: Path, broker, collector, line_bundle: Path
) -> None:
    # a pattern that takes anything up to the suffix, as a careless configuration might
    cfg, incoming = hot_station(tmp_path, line_bundle, broker.port, r"(?s)^(?P<cell_id>.+)\.png$")
    with running(Daemon(cfg)):
        collector.wait_for("status", where=lambda p: p["state"] == "online")
        for name in HOSTILE_NAMES:
            put(incoming, name, good_image(4))
        put(incoming, "GOOD-1.png", good_image(4))
        results = collector.wait_for("result", len(HOSTILE_NAMES) + 1, timeout=60)
        alarms = collector.wait_for(
            "alarm", len(HOSTILE_NAMES), where=lambda a: a["kind"] == "frame_error"
        )
    by_file = {r["source"]["file"]: r for r in results}
    assert by_file["GOOD-1.png"]["verdict"] == "pass"
    assert by_file["GOOD-1.png"]["cell_id"] == "GOOD-1"
    errors = [r for r in results if r["cell_id"] != "GOOD-1"]
    assert len(errors) == len(HOSTILE_NAMES)
    for r in errors:
        assert r["verdict"] == "error" and "from the file name is not valid" in r["error"]
        assert r["cell_id"].startswith("cell-"), "a generated id, not the name's"
    for message in results + alarms:
        for text in strings_in(message):
            for bad in HOSTILE_NAMES.values():
                assert bad not in text, (bad, text)
    assert "\\n" not in json.dumps(results)
    failed = sorted((incoming / "failed").iterdir())
    assert len(failed) == len(HOSTILE_NAMES), "the files are kept, in failed/"
