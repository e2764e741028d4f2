"""The daemon's one YAML configuration file, validated in full before anything starts.

Unknown keys and bad values stop the start with the key path and the reason. Secrets need
not sit in the file: ``password_env: NAME`` (and ``token_env``) read them from the
environment, which a systemd ``EnvironmentFile`` can hold.

Example:
    >>> cfg = load_config("systemd/inspector.example.yaml")  # doctest: +SKIP
    >>> cfg.mqtt.host                                       # doctest: +SKIP
    'localhost'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from inspector.config.feedback import FeedbackConfig
from inspector.explain.config import ExplainerConfig
from inspector.sources.base import PRODUCT
from inspector.sources.config import PylonSourceConfig, SourceConfig
from inspector.station.drift import DriftConfig
from inspector.web.config import WebConfig

# MQTT topic levels: no wildcards, no separators, no NUL, not empty
_TOPIC_LEVEL = re.compile(r"^[^/+#\x00]+$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each key path and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _env_secret(name: str | None) -> str | None:
    if name is not None and name not in os.environ:
        raise ValueError(f"environment variable {name} is not set")
    return name


class StationConfig(_Strict):
    """Where this box stands: the names that form the MQTT topic root."""

    line: str = Field(
        min_length=1, max_length=64, description="Production line name (topic level)."
    )
    station: str = Field(
        min_length=1, max_length=64, description="Station name on that line (topic level)."
    )

    @field_validator("line", "station")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        if not _TOPIC_LEVEL.match(v):
            raise ValueError("must not contain '/', '+', '#' or NUL (it is an MQTT topic level)")
        return v


class TLSConfig(_Strict):
    """TLS towards the broker; files are PEM. No CA file means the system's trust store."""

    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS only).")
    key_file: Path | None = Field(None, description="Its private key (mutual TLS only).")
    insecure: bool = Field(
        False, description="Skip the broker host name check (test benches only)."
    )


class MqttConfig(_Strict):
    """The broker connection and the publishing behaviour."""

    enabled: bool = Field(True, description="false: results are only stored (bench, offline).")
    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    client_id: str | None = Field(
        None, description="MQTT client id; default `inspector-<role>-<line>-<station>`."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Its password (prefer password_env).")
    password_env: str | None = Field(
        None, description="Environment variable holding the broker password."
    )
    tls: TLSConfig | None = Field(None, description="Set to connect over TLS.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval.")
    topic_prefix: str = Field(
        "inspector/v1", description="Topics are `<prefix>/<line>/<station>/<kind>`."
    )
    heartbeat_s: float = Field(
        10.0, gt=0, description="Heartbeat period; also how often backlog and disk are checked."
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay after a loss.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (back-off).")
    inflight_window: int = Field(
        100, ge=1, le=10_000, description="Results published and not yet acknowledged, at most."
    )
    backlog_alarm: int = Field(
        1000, ge=1, description="Unpublished results above this raise `broker_backlog`."
    )

    @field_validator("password_env")
    @classmethod
    def _env_is_set(cls, v: str | None) -> str | None:
        return _env_secret(v)

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self

    def resolved_password(self) -> str | None:
        """The password from the file or from the environment variable it names."""
        if self.password_env:
            return os.environ[self.password_env]
        return self.password.get_secret_value() if self.password else None


class PipelineConfig(_Strict):
    """Stage queues (bounded: a slow stage holds the previous one back) and batching."""

    frame_queue: int = Field(
        16, ge=1, le=10_000, description="Frames grabbed and waiting for the model, at most."
    )
    result_queue: int = Field(
        64, ge=1, le=10_000, description="Verdicts waiting to be stored and published, at most."
    )
    trigger_queue: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Triggers waiting for the camera, at most; each trigger beyond it gets an "
        "`error` result (`trigger queue full`) and a `trigger_overflow` alarm.",
    )
    max_batch: int = Field(8, ge=1, le=256, description="Frames per model call, at most.")
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="0: a batch is what waits when the model is free (a lone frame never "
        "waits); above 0: also wait this long for more frames after the first.",
    )
    channel_order: Literal["bgr", "rgb"] = Field(
        "bgr", description="Channel order of colour frames from the source."
    )


class RetentionConfig(_Strict):
    """How long results and reject pictures are kept, and how much disk they may take.

    Unpublished results and rejects that still wait for an explanation are never deleted.
    """

    max_age_days: float = Field(30.0, gt=0, description="Results older than this are deleted.")
    max_disk_gb: float = Field(
        20.0, gt=0, description="Oldest results (pictures first) go until the data fit in this."
    )
    check_every_s: float = Field(600.0, gt=0, description="How often retention runs.")
    disk_low_alarm_gb: float = Field(
        1.0,
        ge=0,
        description="Free-space floor: below it `disk_low` is raised and reject pictures are "
        "not saved (verdicts still are).",
    )


class HealthConfig(_Strict):
    """systemd watchdog, Prometheus metrics and log format."""

    metrics_port: int | None = Field(
        9108, ge=0, le=65535, description="Prometheus `/metrics` port; null: no endpoint."
    )
    metrics_host: str = Field("127.0.0.1", description="Address the metrics endpoint binds.")
    stall_s: float = Field(
        30.0, gt=0, description="A stage busy with one item this long stops the watchdog pings."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line (journald); text: for people."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged."
    )


class ProductsConfig(_Strict):
    """Several products on one station: each trigger's ``product`` picks its bundle.

    Bundles are loaded at the start (``preload``) as long as they fit ``memory_budget_mb``
    and stay loaded (warm); one that does not fit is loaded at its first frame, putting the
    least recently used bundle aside. A frame whose product is not listed gets an ``error``
    result and an ``unknown_product`` alarm. Without this section the station has one bundle
    (``bundle``) and a trigger's product only labels the result.
    """

    bundles: dict[str, Path] = Field(
        min_length=1,
        description="Product name (as triggers and results spell it) -> bundle folder.",
    )
    default: str | None = Field(
        None,
        description="Product of frames that carry none (hot folder, video, a trigger without "
        "`product`); null: such a frame gets an `error` result, unless only one product is "
        "listed.",
    )
    memory_budget_mb: float = Field(
        4096.0,
        gt=0,
        description="Loaded bundles (their files' size on disk) stay within this; the least "
        "recently used one is put aside to load another. The bundle a frame needs is always "
        "loaded, even alone over the budget.",
    )
    preload: bool = Field(
        True, description="Load the bundles that fit the budget at the start, in listed order."
    )

    @field_validator("bundles")
    @classmethod
    def _names(cls, v: dict[str, Path]) -> dict[str, Path]:
        for name in v:
            if not PRODUCT.fullmatch(name):
                raise ValueError(
                    f"product name {name!r} must be 1-64 letters, digits, spaces or . _ : -"
                )
        return v

    @model_validator(mode="after")
    def _default_listed(self) -> ProductsConfig:
        if self.default is not None and self.default not in self.bundles:
            raise ValueError(f"default {self.default!r} is not one of the bundles' products")
        return self

    def default_product(self) -> str | None:
        """The product of a frame that names none: ``default``, else the only one listed."""
        if self.default is not None:
            return self.default
        return next(iter(self.bundles)) if len(self.bundles) == 1 else None


class AlarmsConfig(_Strict):
    """Which rejects raise an ``alarm`` (station faults always do)."""

    reject: Literal["off", "every", "rate"] = Field(
        "every",
        description="off: rejects raise no alarm (the result says fail); every: one `reject` "
        "alarm per rejected cell; rate: one `reject_rate` alarm when the share of rejects among "
        "the last `reject_window` cells reaches `reject_rate`, one `reject_rate_restored` when "
        "it falls back below.",
    )
    reject_rate: float = Field(
        0.05, gt=0, le=1, description="rate only: share of rejects (0..1) that raises the alarm."
    )
    reject_window: int = Field(
        100, ge=1, le=100_000, description="rate only: how many of the latest cells count."
    )


class PairingConfig(_Strict):
    """Cell ids for frames the camera takes on a hardware trigger.

    With ``mode: mqtt`` a message on the ``trigger`` topic does not grab a frame: it announces
    the id (and product) of a cell, and the daemon pairs ids and frames in order when they
    arrive within ``window_s`` of each other. A frame with no id in its window, an id with no
    frame, or a frame with two ids in its window (or an id in two frames' windows) is never
    guessed: it gets a result flagged in ``source.pairing`` and an alarm. A frame's result waits
    ``window_s`` (at most twice that) for a possible second id, so ``window_s`` adds to the
    latency; it must be under half the line's takt.
    """

    mode: Literal["off", "mqtt"] = Field(
        "off", description="off: frames get generated ids; mqtt: ids from trigger messages."
    )
    window_s: float = Field(
        0.5, gt=0, le=60, description="Largest time between a frame and its id, either way."
    )


class Config(_Strict):
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
    backend: Literal[
        "torch",
        "onnxruntime",
        "onnxruntime-int8",
        "onnxruntime-int8-static",
        "openvino",
        "openvino-int8",
        "tensorrt",
        "auto",
    ] | None = Field(
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
        if (
            self.pairing.mode != "off"
            and isinstance(self.source, PylonSourceConfig)
            and self.source.trigger == "software"
        ):
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
