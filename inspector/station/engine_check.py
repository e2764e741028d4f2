"""Before the daemon starts: make sure the bundle's inference engine fits this machine.

Run by ``inspector-engine.service`` (oneshot, ordered before ``inspector.service``) as
``python -m inspector.station.engine_check --config /etc/inspector/inspector.yaml``. For a station
that wants TensorRT (``backend: tensorrt`` in the config, or in the bundle's recipe when the
config leaves it out) it

1. exports ``BUNDLE/model.onnx`` with ``inspector export onnx`` when it is missing or belongs to
   an older state of the bundle (the ONNX graph is what TensorRT builds from);
2. reads the engine's JSON sidecar (``model.plan.json``) and, when the engine is missing or was
   built for another GPU, TensorRT version or model state, rebuilds it with
   ``inspector export tensorrt``;
3. if no usable engine can be had (no GPU, no TensorRT, a failed build), falls back to ONNX
   Runtime and raises an ``engine_fallback`` alarm on MQTT.

With ``backend: auto`` it picks the fastest backend this box has instead: each candidate that
loads here (``tensorrt`` where a GPU and TensorRT are, ``openvino`` where installed,
``onnxruntime``) runs a few batches of the daemon's size, and the one with the lowest median
time wins; the reason lists every time and every candidate left out, and why. Only backends
that give the maps calibration saw are candidates: fp32 ones for a bundle calibrated in fp32,
only the calibrated one for an int8 bundle (int8 maps differ between runtimes).

The choice goes to ``DATA_DIR/engine.env`` (``INSPECTOR_BACKEND=...``, read by the daemon's
unit as an ``EnvironmentFile``) and, with the reason, to ``DATA_DIR/engine-check.json``.

Example:
    >>> choice = EngineCheck(load_config("inspector.yaml")).run()   # doctest: +SKIP
    >>> choice.backend, choice.fallback                               # doctest: +SKIP
    ('onnxruntime', True)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import typer

from export.engine import (
    EngineMismatchError,
    NoGpuError,
    TensorRTMissingError,
    check_engine_compatible,
    describe_gpu,
    import_tensorrt,
)
from export.graph import check_export_current, exported_model_id
from inspector.config.station import Config, ConfigError, load_config
from inspector.core.alarms import Alarm
from inspector.core.timestamps import utc_iso
from inspector.runtime.backends import AUTO, BACKENDS, backend_spec, create_backend
from models.bundle_files import (
    ENGINE_FILE,
    ONNX_FILE,
    ONNX_INT8_STATIC_FILE,
    REPORT_FILE,
    SIDECAR_FILE,
)
from models.recipe import load_recipe, tensors_id

log = logging.getLogger("inspector.station.engine_check")

ENV_FILE = "engine.env"
STATE_FILE = "engine-check.json"
ENV_VAR = "INSPECTOR_BACKEND"
UNIT_DATA_DIR = Path("/var/lib/inspector")  # where inspector.service reads engine.env from
ONNX_EXPORT_TIMEOUT_S = 20 * 60
TENSORRT_BUILD_TIMEOUT_S = 40 * 60


@dataclass
class Runtime:
    """What this machine offers TensorRT: the GPU (``describe_gpu()``) and TensorRT's version.

    ``problem`` says why TensorRT cannot be used here (no GPU, not installed), else ``None``.
    """

    gpu: dict[str, str] | None
    tensorrt: str | None
    problem: str | None = None


@dataclass
class EngineChoice:
    """Which backend the daemon runs and why; written to ``engine-check.json``."""

    backend: str
    wanted: str
    fallback: bool = False
    reason: str = ""
    actions: list[str] = field(default_factory=list)
    gpu: dict[str, str] | None = None
    tensorrt: str | None = None
    model_id: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # per image, with backend: auto
    skipped: dict[str, str] = field(default_factory=dict)  # auto's candidates left out, and why


class ExportFailed(RuntimeError):
    """``inspector export ...`` did not produce what it should have."""


# the fp32 runtimes agree to ~1e-4 (TensorRT FP16 ~1e-3); auto tries the registry's last first
FP32_FAMILY = tuple(name for name, spec in reversed(BACKENDS.items()) if spec.auto)
INT8_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.int8)
TIMING_REPS = 5


def candidates_for(calibrated_with: str) -> tuple[str, ...]:
    """Backends whose maps match those the recipe's thresholds were calibrated on.

    The fp32 runtimes agree to 1e-4, so any of them will do. int8 maps depend on the runtime's
    own int8 kernels (OpenVINO and ONNX Runtime differ by up to 0.7 in map value on the same
    QDQ file for effnet-lite0, bench/RESULTS.md), so an int8 calibration keeps its runtime.
    """
    if calibrated_with in INT8_BACKENDS:
        return (calibrated_with,)
    return FP32_FAMILY


def time_backend(name: str, bundle: Path, batch: int, reps: int = TIMING_REPS) -> float:
    """Median milliseconds per image of backend ``name`` on ``reps`` batches of ``batch``.

    The input is noise of the model's shape: the time of these graphs does not depend on
    pixel values, and the check must not need images or PyTorch.
    """
    size = load_recipe(bundle).input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    with create_backend(name, bundle) as backend:
        backend.infer(x)  # warm-up: allocations, kernel selection, lazy compilation
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            backend.infer(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3 / batch


def probe_runtime() -> Runtime:
    """This machine's GPU and TensorRT version, or the reason TensorRT cannot run here."""
    try:
        gpu = describe_gpu()
    except NoGpuError as exc:
        return Runtime(None, None, str(exc))
    try:
        trt = import_tensorrt()
    except TensorRTMissingError as exc:
        return Runtime(gpu, None, str(exc))
    return Runtime(gpu, str(trt.__version__))


def inspector_command() -> list[str]:
    """The ``inspector`` executable of this environment (the venv's, under systemd)."""
    beside = Path(sys.executable).with_name("inspector")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("inspector")
    if found:
        return [found]
    return [sys.executable, "-c", "from inspector.cli import main; main()"]


def run_export(kind: str, bundle: Path) -> None:
    """``inspector export KIND --bundle BUNDLE``, its output going to the journal.

    Raises:
        ExportFailed: the command failed or timed out; the message has its last words.
    """
    timeout = TENSORRT_BUILD_TIMEOUT_S if kind == "tensorrt" else ONNX_EXPORT_TIMEOUT_S
    cmd = [*inspector_command(), "export", kind, "--bundle", str(bundle)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportFailed(f"'inspector export {kind}' took longer than {timeout} s") from None
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("export %s: %s", kind, line.rstrip()[-300:])
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ExportFailed(f"'inspector export {kind}' failed ({proc.returncode}): {last}")


def publish_alarm(cfg: Config, kind: str, severity: str, message: str, **extra: object) -> bool:
    """Publish one alarm on the station's ``alarm`` topic; True once the broker has it."""
    if not cfg.mqtt.enabled:
        return False
    from inspector.comms.mqtt import ALARM_SCHEMA, MqttLink  # paho: only with MQTT enabled

    link = MqttLink(cfg.mqtt, cfg.station.line, cfg.station.station, role="engine", will=False)
    link.start()
    try:
        if not link.wait_connected(15):
            log.error("broker %s:%s unreachable; alarm not published", cfg.mqtt.host, cfg.mqtt.port)
            return False
        payload = {
            "schema": ALARM_SCHEMA,
            "line": cfg.station.line,
            "station": cfg.station.station,
            "ts": utc_iso(),
            "kind": kind,
            "severity": severity,
            "message": message,
            **extra,
        }
        info = link.publish_json("alarm", payload, qos=1)
        info.wait_for_publish(10)
        return info.is_published()
    except (RuntimeError, ValueError) as exc:
        log.error("alarm not published: %s", exc)
        return False
    finally:
        link.stop(final_status=None)


class EngineCheck:
    """Decides the daemon's backend for one configuration, exporting what is missing.

    Args:
        cfg: the station's configuration (``bundle``, ``backend``, ``data_dir``, ``mqtt``).
        probe: returns this machine's ``Runtime`` (tests pass a fake GPU; none exists here).
        export: runs ``inspector export KIND --bundle B`` (tests may fake the TensorRT build).
        alarm: publishes an alarm; returns whether the broker got it.
        timer: ``(backend, bundle, batch) -> ms per image`` for ``backend: auto``.
    """

    def __init__(
        self,
        cfg: Config,
        probe: Callable[[], Runtime] = probe_runtime,
        export: Callable[[str, Path], None] = run_export,
        alarm: Callable[..., bool] | None = None,
        timer: Callable[[str, Path, int], float] = time_backend,
    ) -> None:
        self.cfg = cfg
        self.bundle = Path(cfg.bundle)
        self.probe = probe
        self.export = export
        self.timer = timer
        self.alarm = alarm or (lambda *a, **k: publish_alarm(cfg, *a, **k))

    # --- what is there -------------------------------------------------------------------

    def model_id(self) -> str:
        return tensors_id(self.bundle, load_recipe(self.bundle))

    def wanted(self) -> str:
        """The configured backend, else the bundle recipe's.

        Raises:
            ValueError: the recipe names no backend there is (the message lists them).
        """
        if self.cfg.backend:
            return self.cfg.backend
        name = load_recipe(self.bundle).backend
        try:
            backend_spec(name)
        except ValueError as exc:
            raise ValueError(f"{self.bundle}: recipe.yaml: {exc}") from None
        return name

    def onnx_problem(self, current_id: str) -> str | None:
        """Why ``model.onnx`` cannot be used as it is, or None when it is current.

        The graph's own metadata says which model it is; the export report, written last,
        says the export (with its parity check) finished for that same model.
        """
        if not (self.bundle / ONNX_FILE).is_file():
            return f"{ONNX_FILE} is missing"
        try:
            exported = exported_model_id(self.bundle / ONNX_FILE)
        except (OSError, ValueError) as exc:
            return f"{ONNX_FILE} is unreadable ({exc})"
        if exported != current_id:
            return f"{ONNX_FILE} was exported from model {exported}, the bundle is {current_id}"
        try:
            reported = json.loads((self.bundle / REPORT_FILE).read_text()).get("model_id")
        except (OSError, ValueError):
            return f"{REPORT_FILE} is missing or unreadable"
        if reported != exported:
            return f"the export of {exported} did not finish ({REPORT_FILE} is of {reported})"
        return None

    def engine_problem(self, runtime: Runtime, current_id: str) -> str | None:
        """Why the TensorRT engine cannot run here, or None when it fits this machine."""
        if not (self.bundle / ENGINE_FILE).is_file():
            return f"{ENGINE_FILE} is missing"
        try:
            sidecar = json.loads((self.bundle / SIDECAR_FILE).read_text())
        except (OSError, ValueError):
            return f"{SIDECAR_FILE} is missing or unreadable"
        try:
            check_engine_compatible(
                sidecar, runtime.gpu or {}, runtime.tensorrt or "", current_id, str(self.bundle)
            )
        except EngineMismatchError as exc:
            return str(exc)
        return None

    # --- the choice ----------------------------------------------------------------------

    def ensure_onnx(self, choice: EngineChoice) -> None:
        problem = self.onnx_problem(choice.model_id)
        if problem is None:
            return
        log.info("exporting ONNX: %s", problem)
        self.export("onnx", self.bundle)
        choice.actions.append(f"exported ONNX ({problem})")
        if (after := self.onnx_problem(choice.model_id)) is not None:
            raise ExportFailed(f"'inspector export onnx' left the bundle unusable: {after}")

    def ensure_engine(self, choice: EngineChoice, runtime: Runtime, problem: str) -> None:
        """Build the engine for this machine; ``ExportFailed`` when that is impossible."""
        if runtime.problem:
            raise ExportFailed(runtime.problem)
        log.info("building the TensorRT engine: %s", problem)
        self.export("tensorrt", self.bundle)
        choice.actions.append(f"built the TensorRT engine ({problem})")
        if (after := self.engine_problem(runtime, choice.model_id)) is not None:
            raise ExportFailed(f"the new engine is still unusable: {after}")

    def unavailable(self, name: str, choice: EngineChoice) -> str | None:
        """Why candidate ``name`` cannot run here (building its engine if it can), or None."""
        if name == "tensorrt":
            runtime = self.probe()
            choice.gpu, choice.tensorrt = runtime.gpu, runtime.tensorrt
            problem = runtime.problem or self.engine_problem(runtime, choice.model_id)
            if problem is not None:
                try:
                    self.ensure_engine(choice, runtime, problem)
                except ExportFailed as exc:
                    return str(exc)
            return None
        if name.startswith("openvino") and importlib.util.find_spec("openvino") is None:
            return "not installed (pip install 'battery-inspector[openvino]')"
        if backend_spec(name).int8 == "static":
            path = self.bundle / ONNX_INT8_STATIC_FILE
            if not path.is_file():
                return f"{ONNX_INT8_STATIC_FILE} is missing"
            try:
                check_export_current(path, self.bundle, choice.model_id)
            except ValueError as exc:
                return str(exc)
        return None

    def decide_fastest(self, choice: EngineChoice) -> EngineChoice:
        """``backend: auto``: time every candidate that runs here and keep the fastest.

        Raises:
            ExportFailed: no candidate runs here.
        """
        self.ensure_onnx(choice)
        calibrated_with = load_recipe(self.bundle).backend
        batch = self.cfg.pipeline.max_batch
        for name in candidates_for(calibrated_with):
            problem = self.unavailable(name, choice)
            if problem is None:
                try:
                    choice.timings_ms[name] = self.timer(name, self.bundle, batch)
                except Exception as exc:  # noqa: BLE001 - any failure rules the candidate out
                    problem = f"failed to run: {exc}"
            if problem is not None:
                choice.skipped[name] = problem
        if not choice.timings_ms:
            left = "; ".join(f"{k}: {v}" for k, v in choice.skipped.items())
            raise ExportFailed(f"no backend runs on this box ({left})")
        ranked = sorted(choice.timings_ms.items(), key=lambda kv: kv[1])
        choice.backend = ranked[0][0]
        times = ", ".join(f"{k} {v:.1f} ms" for k, v in ranked)
        reason = (
            f"fastest here: {choice.backend} ({times} per image, median of {TIMING_REPS} "
            f"batches of {batch}; maps as calibrated with {calibrated_with})"
        )
        if choice.skipped:
            reason += "; left out: " + "; ".join(f"{k}: {v}" for k, v in choice.skipped.items())
        choice.reason = reason
        return choice

    def decide(self) -> EngineChoice:
        """Export what the wanted backend needs; fall back to ONNX Runtime if TensorRT fails.

        Raises:
            ExportFailed: not even the ONNX Runtime fallback is usable.
        """
        wanted = self.wanted()
        choice = EngineChoice(backend=wanted, wanted=wanted, model_id=self.model_id())
        if wanted == "torch":
            choice.reason = "PyTorch backend: nothing to build"
            return choice
        if wanted == AUTO:
            return self.decide_fastest(choice)
        if wanted == "tensorrt":
            runtime = self.probe()
            choice.gpu, choice.tensorrt = runtime.gpu, runtime.tensorrt
            problem = runtime.problem or self.engine_problem(runtime, choice.model_id)
            if problem is None:
                choice.reason = "TensorRT engine fits this GPU, TensorRT version and model"
                return choice
        # TensorRT builds from the ONNX graph, and ONNX Runtime is the fallback: both need it.
        self.ensure_onnx(choice)
        if wanted.startswith("openvino") and (problem := self.unavailable(wanted, choice)):
            if wanted == "openvino-int8":  # no other runtime gives its int8 maps
                raise ExportFailed(f"openvino-int8 cannot run here: {problem}")
            choice.backend, choice.fallback = "onnxruntime", True
            choice.reason = f"openvino cannot run here, running onnxruntime: {problem}"
            return choice
        if wanted != "tensorrt":  # onnxruntime*, openvino*: the recipe's, as calibrated
            choice.reason = f"{wanted} backend: model.onnx is current"
            return choice
        try:
            self.ensure_engine(choice, runtime, problem)
        except ExportFailed as exc:
            choice.backend, choice.fallback = "onnxruntime", True
            choice.reason = f"no usable TensorRT engine, running ONNX Runtime: {exc}"
            return choice
        choice.reason = "TensorRT engine rebuilt for this GPU and TensorRT version"
        return choice

    def record(self, choice: EngineChoice) -> None:
        """Write ``engine.env`` (for the daemon's unit) and ``engine-check.json``."""
        data_dir = Path(self.cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        # inspector-engine@NAME.service names its instance's data directory
        unit_dir = Path(os.environ.get("INSPECTOR_UNIT_DATA_DIR") or UNIT_DATA_DIR)
        if os.environ.get("INVOCATION_ID") and data_dir != unit_dir:  # under systemd
            log.warning(
                "data_dir is %s, but the daemon's unit reads %s: the daemon will not see "
                "this decision",
                data_dir,
                unit_dir / ENV_FILE,
            )
        env = (
            "# written by inspector-engine.service (inspector/station/engine_check.py); "
            "do not edit\n"
            f"# {choice.reason}\n"
            f"{ENV_VAR}={choice.backend}\n"
        )
        for name, text in (
            (ENV_FILE, env),
            (STATE_FILE, json.dumps(asdict(choice), indent=2) + "\n"),
        ):
            tmp = data_dir / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, data_dir / name)

    def run(self) -> EngineChoice:
        """Decide, record, and raise the alarm on a fallback. Returns the choice."""
        choice = self.decide()
        self.record(choice)
        if choice.fallback:
            log.warning("alarm engine_fallback: %s", choice.reason)
            self.alarm(
                Alarm.ENGINE_FALLBACK,
                "warning",
                choice.reason,
                backend=choice.backend,
                gpu=(choice.gpu or {}).get("name"),
                tensorrt=choice.tensorrt,
            )
        else:
            log.info("backend %s: %s", choice.backend, choice.reason)
        return choice


def main(
    config: Path = typer.Option(..., help="The station's YAML configuration."),
) -> None:
    """Make sure the bundle's engine fits this GPU before the daemon starts.

    Rebuilds the TensorRT engine when it is missing or was built for another GPU, TensorRT
    version or model state; falls back to ONNX Runtime with an engine_fallback alarm when it
    cannot. With 'backend: auto' it times every backend that runs on this box (TensorRT,
    OpenVINO, ONNX Runtime) and picks the fastest, saying why. Writes the choice to
    DATA_DIR/engine.env (INSPECTOR_BACKEND=...) and the reason to DATA_DIR/engine-check.json.
    Exit status 0 when the daemon has a usable backend.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        cfg = load_config(config)
        choice = EngineCheck(cfg).run()
    except (ConfigError, ExportFailed, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(f"backend {choice.backend}: {choice.reason}")


if __name__ == "__main__":
    typer.run(main)
