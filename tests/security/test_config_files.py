"""Malformed station configs: each gives one clear line naming the key (or the YAML line), and
the CLI prints it as a single ``error:`` line with exit status 2, never a traceback.

tests/inspector/config/test_config.py covers unknown keys, out-of-range values, a missing secret,
missing sections, unreadable files and broken YAML; these are the ones it does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config.station import ConfigError, load_config
from tests.cli_helpers import run_inspector

GOOD = (
    "station: {line: L1, station: S1}\n"
    "data_dir: data\n"
    "bundle: bundle\n"
    "source: {kind: hotfolder, folder: incoming}\n"
)
CASES = {
    # wrong types
    "port as a word": (GOOD + "mqtt: {port: abc}\n", "mqtt.port: Input should be a valid integer"),
    "section as a list": (
        GOOD.replace("station: {line: L1, station: S1}", "station: [L1, S1]"),
        "station: Input should be a valid dictionary",
    ),
    "section as a number": (GOOD + "pipeline: 5\n", "pipeline: Input should be a valid dict"),
    "yes/no as a name": (
        GOOD.replace("line: L1", "line: yes"),
        "station.line: Input should be a valid string",
    ),
    "half a batch": (GOOD + "pipeline: {max_batch: 2.5}\n", "pipeline.max_batch: Input should"),
    "maybe enabled": (GOOD + "mqtt: {enabled: maybe}\n", "mqtt.enabled: Input should be a valid"),
    "path as a list": (GOOD.replace("data_dir: data", "data_dir: [1]"), "data_dir: Input is not"),
    # unknown keys deeper down
    "typo in tls": (GOOD + "mqtt: {tls: {cafile: ca.pem}}\n", "mqtt.tls.cafile: Extra inputs"),
    "typo in a section name": (GOOD + "healht: {}\n", "healht: Extra inputs are not permitted"),
    # missing pieces
    "source without kind": (
        GOOD.replace("kind: hotfolder, ", ""),
        "source: Unable to extract tag using discriminator 'kind'",
    ),
    "no data_dir": (GOOD.replace("data_dir: data\n", ""), "data_dir: Field required"),
    "empty file": ("", "must be a mapping of sections"),
    # bad YAML and bad bytes
    "key given twice": (GOOD + "mqtt: {port: 1883}\nmqtt: {port: 8883}\n", "'mqtt' is given twice"),
    "name given twice": (
        GOOD.replace("station: S1", "station: S1, line: L2"),
        "at line 1, column 34: the key 'line' is given twice",
    ),
    "a tab": ("station:\n\tline: L1\n", "not valid YAML at line 2, column 1"),
    "python object tag": (
        GOOD + "mqtt: !!python/object/apply:os.system [touch /tmp/pwned]\n",
        "could not determine a constructor",
    ),
    "not UTF-8": (b"station: \xff\xfe\n", "not UTF-8 text (byte 9)"),
    # bad paths
    "NUL in a path": (
        GOOD.replace("data_dir: data", 'data_dir: "da\\0ta"'),
        "data_dir: a path must not contain a NUL byte",
    ),
    "NUL in a tls path": (
        GOOD + 'mqtt: {tls: {ca_file: "ca\\0.pem"}}\n',
        "mqtt.tls.ca_file: a path must not contain a NUL byte",
    ),
    "data_dir is a file": (GOOD.replace("data_dir: data", "data_dir: notes.txt"), "data_dir: "),
}


def write(folder: Path, text: str | bytes) -> Path:
    path = folder / "station.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    (folder / "notes.txt").write_text("a file where the data folder should be\n")
    return path


@pytest.mark.parametrize("case", CASES)
def test_each_malformed_config_gives_one_line_naming_the_key(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert expected in message, message
    assert "\n" not in message and message.startswith(str(tmp_path / "station.yaml"))
    assert not Path("/tmp/pwned").exists()


def test_data_dir_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    text = GOOD.replace("data_dir: data", "data_dir: notes.txt")
    with pytest.raises(ConfigError, match=r"data_dir: .*notes\.txt is not a folder"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CASES["not UTF-8"][0], "error: " + "{config}: not UTF-8 text (byte 9)"),
        (CASES["data_dir is a file"][0], "data_dir: {folder}/notes.txt is not a folder"),
        (GOOD + "mqtt: {tls: {ca_file: missing-ca.pem}}\n", "mqtt.tls.ca_file: {folder}/missing"),
    ],
    ids=["not UTF-8", "data_dir is a file", "missing CA file"],
)
def test_the_daemon_refuses_to_start_in_one_line(
    tmp_path: Path, line_bundle: Path, text, expected: str
) -> None:
    if isinstance(text, str):  # a real bundle, so that only the config's mistake can stop it
        text = text.replace("bundle: bundle", f"bundle: {line_bundle}")
    config = write(tmp_path, text)
    (tmp_path / "incoming").mkdir()
    done = run_inspector("run", "--config", str(config), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected.format(config=config, folder=tmp_path) in lines[0]
