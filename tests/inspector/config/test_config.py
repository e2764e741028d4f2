"""The station config: the example loads, and every mistake is named by key path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspector.config.station import ConfigError, load_config
from inspector.sources import HotFolderSourceConfig, PylonSourceConfig

EXAMPLE = Path(__file__).parents[3] / "systemd" / "inspector.example.yaml"
SECRETS = {"INSPECTOR_MQTT_PASSWORD": "s3cret", "INSPECTOR_WEB_TOKEN": "t0ken"}


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def minimal() -> dict:
    return {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": "data",
        "bundle": "bundles/pouch",
        "source": {"kind": "hotfolder", "folder": "incoming"},
    }


def test_the_example_config_loads_with_its_secrets_from_the_environment(monkeypatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg.source, PylonSourceConfig) and cfg.source.serial == "40012345"
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls is not None
    assert cfg.mqtt.resolved_password() == "s3cret"
    assert cfg.web.credentials().token == "t0ken"
    assert cfg.explainer.backend == "template"
    assert "s3cret" not in repr(cfg)


def test_defaults_fill_every_optional_section_and_paths_are_relative_to_the_file(
    tmp_path: Path,
) -> None:
    cfg = load_config(write(tmp_path, minimal()))
    assert cfg.data_dir == tmp_path / "data" and cfg.bundle == tmp_path / "bundles/pouch"
    assert isinstance(cfg.source, HotFolderSourceConfig)
    assert cfg.source.folder == tmp_path / "incoming"
    assert cfg.mqtt.host == "localhost" and cfg.pipeline.max_batch == 8
    assert cfg.explainer.backend == "template"


def test_unknown_keys_and_bad_values_are_all_named_with_their_path(tmp_path: Path) -> None:
    data = minimal()
    data["mqtt"] = {"port": 70000, "hots": "broker"}
    data["pipeline"] = {"max_batch": 0}
    data["station"]["line"] = "line/3"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "station.yaml"))
    assert "mqtt.port: Input should be less than or equal to 65535" in msg
    assert "mqtt.hots: Extra inputs are not permitted" in msg
    assert "pipeline.max_batch: Input should be greater than or equal to 1" in msg
    assert "station.line: must not contain '/'" in msg


def test_a_source_of_unknown_kind_or_with_a_stray_key_is_refused(tmp_path: Path) -> None:
    data = minimal()
    data["source"] = {"kind": "webcam"}
    with pytest.raises(ConfigError, match="source: Input tag 'webcam'"):
        load_config(write(tmp_path, data))
    data["source"] = {"kind": "pylon", "serail": "123"}
    with pytest.raises(ConfigError, match=r"source\.pylon\.serail: Extra inputs"):
        load_config(write(tmp_path, data))


def test_a_missing_secret_variable_stops_the_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    data = minimal() | {"mqtt": {"username": "u", "password_env": "NO_SUCH_PASSWORD_VAR"}}
    with pytest.raises(
        ConfigError, match="mqtt.password_env: environment variable NO_SUCH_PASSWORD_VAR"
    ):
        load_config(write(tmp_path, data))
    data["mqtt"]["password"] = "inline"
    monkeypatch.setenv("NO_SUCH_PASSWORD_VAR", "x")
    with pytest.raises(ConfigError, match="password or password_env, not both"):
        load_config(write(tmp_path, data))


def test_missing_sections_files_and_broken_yaml_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="station: Field required.*source: Field required"):
        load_config(write(tmp_path, {"data_dir": "d", "bundle": "b"}))
    with pytest.raises(ConfigError, match="not valid YAML at line 2, column 10: mapping values"):
        load_config(write(tmp_path, "station:\n  line: x: y\n"))
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_products_map_names_to_bundles_and_the_default_stands_in_for_bundle(
    tmp_path: Path,
) -> None:
    data = minimal()
    del data["bundle"]
    data["products"] = {"bundles": {"pouch-a": "bundles/a", "pouch-b": "bundles/b"}}
    data["products"]["default"] = "pouch-b"
    cfg = load_config(write(tmp_path, data))
    assert cfg.products.bundles == {
        "pouch-a": tmp_path / "bundles/a",
        "pouch-b": tmp_path / "bundles/b",
    }
    assert cfg.bundle == tmp_path / "bundles/b", "explainer and engine check use the default's"
    assert cfg.products.memory_budget_mb > 0 and cfg.alarms.reject == "every"
    assert cfg.pairing.mode == "off"


def test_a_config_with_neither_bundle_nor_products_or_a_bad_product_is_refused(
    tmp_path: Path,
) -> None:
    data = minimal()
    del data["bundle"]
    with pytest.raises(ConfigError, match="give bundle .one product. or products"):
        load_config(write(tmp_path, data))
    data["products"] = {"bundles": {"pouch/a": "a"}, "default": "pouch-c"}
    with pytest.raises(ConfigError, match="products.bundles: .*'pouch/a'"):
        load_config(write(tmp_path, data))
    data["products"] = {"bundles": {"pouch-a": "a"}, "default": "pouch-c"}
    with pytest.raises(ConfigError, match="products: .*default 'pouch-c' is not one of"):
        load_config(write(tmp_path, data))


def test_pairing_is_refused_for_a_software_triggered_camera(tmp_path: Path) -> None:
    data = minimal() | {"pairing": {"mode": "mqtt", "window_s": 0.3}}
    data["source"] = {"kind": "pylon", "trigger": "software"}
    with pytest.raises(ConfigError, match="pairing is for source.trigger: hardware"):
        load_config(write(tmp_path, data))
    data["source"]["trigger"] = "hardware"
    assert load_config(write(tmp_path, data)).pairing.window_s == 0.3


def test_reject_alarms_take_off_every_or_a_rate(tmp_path: Path) -> None:
    data = minimal() | {"alarms": {"reject": "rate", "reject_rate": 0.1, "reject_window": 50}}
    assert load_config(write(tmp_path, data)).alarms.reject_window == 50
    data["alarms"] = {"reject": "sometimes"}
    with pytest.raises(ConfigError, match="alarms.reject: Input should be 'off', 'every' or"):
        load_config(write(tmp_path, data))
