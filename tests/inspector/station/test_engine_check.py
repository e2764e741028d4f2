"""The engine check before the daemon: a current engine is kept, a stale one rebuilt, and
without a usable TensorRT engine the station falls back to ONNX Runtime with an alarm.

Real parts: the tiny bundle, ``inspector export onnx`` (the real command), ONNX Runtime's
files, a real Mosquitto for the alarm. Fakes only for what cannot exist here: the GPU (a
``Runtime`` naming one) and the TensorRT build (writes an engine file and the real sidecar).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from export.graph import exported_model_id
from inspector.config.station import parse_config
from inspector.station.engine_check import (
    ENV_FILE,
    STATE_FILE,
    EngineCheck,
    ExportFailed,
    Runtime,
)
from models.bundle_files import ENGINE_FILE, REPORT_FILE, SIDECAR_FILE
from models.recipe import load_recipe, tensors_id
from tests.broker import Collector, broker  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[3]
H100 = Runtime({"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}, "10.7.0")
L4 = Runtime({"name": "NVIDIA L4", "compute_capability": "8.9"}, "10.7.0")
NO_GPU = Runtime(None, None, "no NVIDIA GPU found for TensorRT (nvidia-smi: not found)")


@pytest.fixture(scope="module")
def exported_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a real ``model.onnx`` from ``inspector export onnx``."""
    from export.onnx_export import export_bundle

    bundle = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    export_bundle(bundle)  # in-process: the end-to-end test below runs the command itself
    return bundle


@pytest.fixture()
def bundle(exported_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(exported_bundle, out)
    return out


def station_config(tmp_path: Path, bundle: Path, backend: str | None, port: int | None = None):
    (tmp_path / "incoming").mkdir(exist_ok=True)
    data = {
        "station": {"line": "L1", "station": "S1"},
        "data_dir": str(tmp_path / "data"),
        "bundle": str(bundle),
        "backend": backend,
        "source": {"kind": "hotfolder", "folder": str(tmp_path / "incoming")},
        "mqtt": {"host": "127.0.0.1", "port": port} if port else {"enabled": False},
    }
    return data


class FakeTensorRT:
    """Stands in for ``inspector export tensorrt`` on a machine with ``runtime``'s GPU.

    It writes what the real build writes: an engine file and the sidecar of
    ``export.engine.engine_sidecar`` for this GPU, TensorRT version and model.
    """

    def __init__(self, runtime: Runtime, fail: str | None = None) -> None:
        self.runtime, self.fail = runtime, fail
        self.calls: list[str] = []

    def __call__(self, kind: str, bundle: Path) -> None:
        self.calls.append(kind)
        if kind == "onnx":  # the real command; the end-to-end test runs it as a subprocess
            from export.onnx_export import export_bundle

            export_bundle(bundle)
            return
        if self.fail:
            raise ExportFailed(self.fail)
        write_engine(bundle, self.runtime)


def write_engine(bundle: Path, runtime: Runtime, model: str | None = None) -> None:
    from export.engine import engine_sidecar

    (bundle / ENGINE_FILE).write_bytes(b"serialized engine")
    sidecar = engine_sidecar(
        tensorrt_version=runtime.tensorrt,
        gpu=runtime.gpu,
        size=224,
        max_batch=32,
        opt_batch=32,
        precision="fp16",
        fp32_layers=13,
        bundle_model_id=model or tensors_id(bundle, load_recipe(bundle)),
    )
    (bundle / SIDECAR_FILE).write_text(json.dumps(sidecar))


def check(tmp_path, bundle, backend, runtime, build, alarms=None, port=None) -> EngineCheck:
    cfg = parse_config(station_config(tmp_path, bundle, backend, port))
    recorder = alarms if alarms is not None else []
    return EngineCheck(
        cfg,
        probe=lambda: runtime,
        export=build,
        alarm=lambda *a, **k: recorder.append((a, k)) or True,
    )


def env_backend(tmp_path: Path) -> str:
    lines = (tmp_path / "data" / ENV_FILE).read_text().splitlines()
    return next(x for x in lines if not x.startswith("#")).split("=", 1)[1]


def test_current_engine_is_used_without_rebuilding(bundle: Path, tmp_path: Path) -> None:
    write_engine(bundle, H100)
    build, alarms = FakeTensorRT(H100), []
    decision = check(tmp_path, bundle, "tensorrt", H100, build, alarms).run()
    assert (decision.backend, decision.fallback, build.calls, alarms) == (
        "tensorrt",
        False,
        [],
        [],
    )
    assert env_backend(tmp_path) == "tensorrt"


def test_missing_engine_is_built_for_this_gpu(bundle: Path, tmp_path: Path) -> None:
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, "tensorrt", H100, build).run()
    assert decision.backend == "tensorrt" and build.calls == ["tensorrt"]
    assert json.loads((bundle / SIDECAR_FILE).read_text())["gpu"] == H100.gpu


@pytest.mark.parametrize(
    "built_for, model, why",
    [
        (L4, None, "GPU NVIDIA L4"),
        (Runtime(H100.gpu, "8.6.1"), None, "TensorRT 8.6.1"),
        (H100, "tiny-000000000000", "model tiny-000000000000"),
    ],
    ids=["other-gpu", "other-tensorrt", "older-model"],
)
def test_engine_built_for_something_else_is_rebuilt(
    bundle: Path, tmp_path: Path, built_for: Runtime, model: str | None, why: str
) -> None:
    write_engine(bundle, built_for, model)
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, "tensorrt", H100, build).run()
    assert decision.backend == "tensorrt" and build.calls == ["tensorrt"]
    assert why in decision.actions[0]
    assert json.loads((bundle / SIDECAR_FILE).read_text())["gpu"] == H100.gpu


def test_failed_build_falls_back_to_onnxruntime_with_an_alarm(bundle: Path, tmp_path: Path) -> None:
    alarms: list = []
    build = FakeTensorRT(H100, fail="TensorRT failed to build the engine (out of memory)")
    decision = check(tmp_path, bundle, "tensorrt", H100, build, alarms).run()
    assert (decision.backend, decision.fallback) == ("onnxruntime", True)
    assert env_backend(tmp_path) == "onnxruntime"
    (kind, severity, message), extra = alarms[0]
    assert (kind, severity, extra["backend"]) == ("engine_fallback", "warning", "onnxruntime")
    assert "out of memory" in message
    state = json.loads((tmp_path / "data" / STATE_FILE).read_text())
    assert state["fallback"] is True and "out of memory" in state["reason"]


def test_stale_onnx_is_exported_again(bundle: Path, tmp_path: Path) -> None:
    report = json.loads((bundle / REPORT_FILE).read_text())
    (bundle / REPORT_FILE).write_text(json.dumps({**report, "model_id": "tiny-000000000000"}))
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, "onnxruntime", H100, build).run()
    assert decision.backend == "onnxruntime" and build.calls == ["onnx"]
    assert json.loads((bundle / REPORT_FILE).read_text())["model_id"] == decision.model_id
    assert "did not finish" in decision.actions[0]


def test_onnx_of_an_older_model_is_exported_again_whatever_the_report_says(
    bundle: Path, tmp_path: Path
) -> None:
    """The graph's own metadata decides: retrained after the export, report edited to match."""
    from safetensors.numpy import load_file, save_file

    old = tensors_id(bundle, load_recipe(bundle))
    tensors = load_file(bundle / "decoder.safetensors")
    save_file({k: v * 1.01 for k, v in tensors.items()}, bundle / "decoder.safetensors")
    new = tensors_id(bundle, load_recipe(bundle))
    report = json.loads((bundle / REPORT_FILE).read_text())
    (bundle / REPORT_FILE).write_text(json.dumps({**report, "model_id": new}))
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, "onnxruntime", H100, build).run()
    assert decision.backend == "onnxruntime" and build.calls == ["onnx"]
    assert f"was exported from model {old}, the bundle is {new}" in decision.actions[0]
    assert exported_model_id(bundle / "model.onnx") == new == decision.model_id


def test_unfinished_export_is_done_again(bundle: Path, tmp_path: Path) -> None:
    (bundle / REPORT_FILE).unlink()  # the export stopped before its parity report
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, "onnxruntime", H100, build).run()
    assert build.calls == ["onnx"] and f"{REPORT_FILE} is missing" in decision.actions[0]


def test_no_gpu_alarm_reaches_the_broker(bundle, tmp_path, broker) -> None:  # noqa: F811
    collector = Collector(broker, "inspector/v1/L1/S1/", client_id="engine-test")
    try:
        cfg = parse_config(station_config(tmp_path, bundle, "tensorrt", broker.port))
        decision = EngineCheck(cfg, probe=lambda: NO_GPU, export=FakeTensorRT(H100)).run()
        alarm = collector.wait_for("alarm", timeout=20)[0]
    finally:
        collector.close()
    assert decision.backend == "onnxruntime"
    assert alarm["kind"] == "engine_fallback" and alarm["severity"] == "warning"
    assert alarm["backend"] == "onnxruntime" and "no NVIDIA GPU" in alarm["message"]
    assert alarm["schema"] == "inspector.alarm/1"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None,
    reason="this machine has an NVIDIA GPU; the end-to-end fallback needs a box without one",
)
def test_service_command_on_a_box_without_gpu(tiny_bundle, tmp_path, broker) -> None:  # noqa: F811
    """What inspector-engine.service runs, unfaked: exports ONNX, finds no GPU, falls back."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)  # no model.onnx yet
    config = tmp_path / "inspector.yaml"
    config.write_text(yaml.safe_dump(station_config(tmp_path, bundle, "tensorrt", broker.port)))
    collector = Collector(broker, "inspector/v1/L1/S1/", client_id="engine-cli-test")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "inspector.station.engine_check", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        alarm = collector.wait_for("alarm", timeout=20)[0]
    finally:
        collector.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("backend onnxruntime: no usable TensorRT engine")
    assert (bundle / "model.onnx").is_file()
    assert env_backend(tmp_path) == "onnxruntime"
    assert alarm["kind"] == "engine_fallback"


def test_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "inspector.yaml"
    config.write_text("station: {line: L1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.station.engine_check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "station.station" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("calibrated_with", ["onnxruntime", "onnxruntime-int8"])
def test_without_a_configured_backend_the_one_calibration_recorded_is_used(
    bundle: Path, tmp_path: Path, calibrated_with: str
) -> None:
    from models.recipe import save_recipe

    recipe = load_recipe(bundle)
    recipe.backend = calibrated_with  # what 'inspector calibrate --backend ...' leaves
    save_recipe(bundle, recipe)
    build = FakeTensorRT(H100)
    decision = check(tmp_path, bundle, None, H100, build).decide()
    assert (decision.backend, decision.fallback) == (calibrated_with, False)
    assert build.calls == [] and not (bundle / ENGINE_FILE).exists()
