"""The daemon's one YAML configuration file, validated in full before anything starts.

``Config`` is the whole file, made of the sections of ``inspector.config``; ``load_config``
reads it. Unknown keys and bad values stop the start with the key path and the reason.
Secrets need not sit in the file: ``password_env: NAME`` (and ``token_env``) read them from
the environment, which a systemd ``EnvironmentFile`` can hold.

Example:
    >>> cfg = load_config("systemd/inspector.example.yaml")  # doctest: +SKIP
    >>> cfg.mqtt.host                                       # doctest: +SKIP
    'localhost'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from inspector.config.alarms import AlarmsConfig
from inspector.config.drift import DriftConfig
from inspector.config.feedback import FeedbackConfig
from inspector.config.health import HealthConfig
from inspector.config.line import StationConfig
from inspector.config.mqtt import MqttConfig
from inspector.config.pairing import PairingConfig
from inspector.config.pipeline import PipelineConfig
from inspector.config.products import ProductsConfig
from inspector.config.retention import RetentionConfig
from inspector.config.source import SourceConfig
from inspector.config.web import WebConfig
from inspector.core.config_base import ConfigSection
from inspector.explain.config import ExplainerConfig
from inspector.runtime.backends import AUTO, BACKENDS

#: The values of the top-level ``backend`` key: a runtime of the registry, or ``auto``.
BACKEND_CHOICES = (*BACKENDS, AUTO)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each key path and reason."""


class Config(ConfigSection):
    """The whole file. Relative paths are taken relative to the file's folder."""

    station: StationConfig
    data_dir: Path = Field(
        description="Results database, reject pictures and maps (the only writable folder)."
    )
    bundle: Path | None = Field(
        None,
        description="Model bundle folder (`inspector bundle create`) of a one-product station; "
        "give this or `products`.",
    )
    products: ProductsConfig | None = Field(
        None, description="Product name -> bundle, for a station that inspects several."
    )
    backend: Literal[BACKEND_CHOICES] | None = Field(
        None,
        description="Inference backend; auto: the fastest that runs on this box, timed by "
        "inspector-engine.service; null: what that service chose, else the bundle recipe's.",
    )
    source: SourceConfig = Field(
        description="Where frames come from: a Basler camera, a hot folder or a video stream."
    )
    mqtt: MqttConfig = MqttConfig()
    pipeline: PipelineConfig = PipelineConfig()
    retention: RetentionConfig = RetentionConfig()
    health: HealthConfig = HealthConfig()
    explainer: ExplainerConfig = Field(default_factory=ExplainerConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)
    pairing: PairingConfig = Field(default_factory=PairingConfig)

    @model_validator(mode="after")
    def _bundles_and_pairing(self) -> Config:
        if (self.products is None) == (self.bundle is None):
            raise ValueError("give bundle (one product) or products (several), not both")
        if self.products is not None:  # explainer, engine check and page use the default's
            default = self.products.default_product() or next(iter(self.products.bundles))
            self.bundle = self.products.bundles[default]
        if self.pairing.mode != "off" and self.source.takes_ids_from_triggers:
            raise ValueError(
                "pairing.mode: a software-triggered camera takes its ids from the triggers;"
                " pairing is for source.trigger: hardware (or free_run)"
            )
        return self


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p).expanduser()

    cfg.data_dir = fix(cfg.data_dir)
    for name, value in list(cfg.source):  # folder, emulation_images, done_dir, failed_dir
        if isinstance(value, Path):
            setattr(cfg.source, name, fix(value))
    cfg.bundle = fix(cfg.bundle)
    if cfg.products is not None:
        cfg.products.bundles = {k: fix(v) for k, v in cfg.products.bundles.items()}
    if cfg.mqtt.tls:
        tls = cfg.mqtt.tls
        tls.ca_file, tls.cert_file, tls.key_file = (
            fix(tls.ca_file),
            fix(tls.cert_file),
            fix(tls.key_file),
        )
    cfg.explainer.resolve_paths(base)
    return cfg


def _check_paths(cfg: Config) -> Config:
    """Refuse paths that cannot work on any machine: a NUL byte, a data_dir that is a file."""
    named = {"data_dir": cfg.data_dir, "bundle": cfg.bundle}
    if cfg.products is not None:
        named |= {f"products.bundles.{k}": v for k, v in cfg.products.bundles.items()}
    named |= {f"source.{k}": v for k, v in cfg.source if isinstance(v, Path)}
    if cfg.mqtt.tls:
        named |= {f"mqtt.tls.{k}": v for k, v in cfg.mqtt.tls if isinstance(v, Path)}
    for key, path in named.items():
        if "\x00" in str(path):
            raise ConfigError(f"invalid configuration: {key}: a path must not contain a NUL byte")
    if cfg.data_dir.exists() and not cfg.data_dir.is_dir():
        raise ConfigError(f"invalid configuration: data_dir: {cfg.data_dir} is not a folder")
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue  # unhashable keys: the base class says what is wrong
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_config(data: object, base: Path = Path(".")) -> Config:
    """Validate an already-parsed mapping; raise ``ConfigError`` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping of sections (station, source, ...)")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("invalid configuration: " + "; ".join(_describe(exc))) from None
    return _check_paths(_resolve_paths(cfg, base))


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at ``path``.

    Raises:
        ConfigError: missing file, YAML syntax error, unknown key or bad value; the message
            names the file, each key path (``mqtt.port``) and the reason.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # safe: SafeLoader's constructors only
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    try:
        return parse_config(data, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
