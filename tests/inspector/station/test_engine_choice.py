"""``backend: auto``: the engine check times the backends this box can run and keeps the
fastest, saying why; it only considers backends that give the maps calibration saw."""

import json
import shutil
from pathlib import Path

import pytest

from export.onnx_export import export_bundle
from inspector.config.station import parse_config
from inspector.station.engine_check import (
    ENV_FILE,
    FP32_FAMILY,
    STATE_FILE,
    EngineCheck,
    ExportFailed,
    Runtime,
    candidates_for,
)
from models.recipe import load_recipe, save_recipe

NO_GPU = Runtime(None, None, "no NVIDIA GPU found for TensorRT (nvidia-smi: not found)")


@pytest.fixture(scope="module")
def exported(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "tiny"
    shutil.copytree(tiny_bundle, out)
    export_bundle(out)
    return out


@pytest.fixture()
def bundle(exported, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(exported, out)
    return out


def engine_check(tmp_path: Path, bundle: Path, timer=None, runtime=NO_GPU) -> EngineCheck:
    (tmp_path / "incoming").mkdir(exist_ok=True)
    cfg = parse_config(
        {
            "station": {"line": "L1", "station": "S1"},
            "data_dir": str(tmp_path / "data"),
            "bundle": str(bundle),
            "backend": "auto",
            "source": {"kind": "hotfolder", "folder": str(tmp_path / "incoming")},
            "mqtt": {"enabled": False},
            "pipeline": {"max_batch": 2},
        }
    )
    options = {"timer": timer} if timer else {}

    def no_export(kind, _bundle):
        raise AssertionError(f"nothing should be exported here ({kind})")

    return EngineCheck(cfg, probe=lambda: runtime, export=no_export, **options)


def env_backend(tmp_path: Path) -> str:
    lines = (tmp_path / "data" / ENV_FILE).read_text().splitlines()
    return next(x for x in lines if not x.startswith("#")).split("=", 1)[1]


def test_candidates_are_the_backends_that_give_the_calibrated_maps():
    assert candidates_for("torch") == candidates_for("onnxruntime") == FP32_FAMILY
    assert candidates_for("openvino") == FP32_FAMILY
    for int8 in ("onnxruntime-int8", "onnxruntime-int8-static", "openvino-int8"):
        assert candidates_for(int8) == (int8,)  # int8 maps differ between runtimes


def test_the_fastest_backend_is_chosen_and_the_reason_names_every_time(bundle, tmp_path):
    times = {"onnxruntime": 12.0, "openvino": 7.5}
    timed = []

    def timer(name, _bundle, batch):
        timed.append((name, batch))
        return times[name]

    decision = engine_check(tmp_path, bundle, timer).run()
    assert decision.backend == "openvino" and not decision.fallback
    assert sorted(timed) == [("onnxruntime", 2), ("openvino", 2)]  # at the daemon's batch
    assert "fastest here: openvino (openvino 7.5 ms, onnxruntime 12.0 ms per image" in (
        decision.reason
    )
    assert "tensorrt: no NVIDIA GPU" in decision.reason
    assert env_backend(tmp_path) == "openvino"
    state = json.loads((tmp_path / "data" / STATE_FILE).read_text())
    assert state["timings_ms"] == times and "tensorrt" in state["skipped"]


def test_a_backend_that_fails_to_run_is_left_out_with_its_error(bundle, tmp_path):
    def timer(name, _bundle, _batch):
        if name == "openvino":
            raise RuntimeError("CPU plugin: unsupported ISA")
        return 20.0

    decision = engine_check(tmp_path, bundle, timer).decide()
    assert decision.backend == "onnxruntime"
    assert decision.skipped["openvino"] == "failed to run: CPU plugin: unsupported ISA"


def test_nothing_runnable_is_an_error(bundle, tmp_path):
    def timer(name, _bundle, _batch):
        raise RuntimeError("broken")

    with pytest.raises(ExportFailed, match="no backend runs on this box"):
        engine_check(tmp_path, bundle, timer).decide()


def test_a_static_int8_calibration_is_never_swapped_for_another_runtime(bundle, tmp_path):
    recipe = load_recipe(bundle)
    recipe.backend = "openvino-int8"
    save_recipe(bundle, recipe)

    timed = []
    check = engine_check(tmp_path, bundle, lambda name, *_: timed.append(name) or 1.0)
    # no model.int8-static.onnx in this bundle: no fp32 or other int8 runtime is taken instead
    with pytest.raises(ExportFailed, match="openvino-int8: model.int8-static.onnx is missing"):
        check.decide()
    assert timed == []


def test_real_timing_on_this_machine(bundle, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (dev extra)")
    decision = engine_check(tmp_path, bundle).run()
    assert set(decision.timings_ms) == {"onnxruntime", "openvino"}
    assert decision.backend == min(decision.timings_ms, key=decision.timings_ms.get)
    assert all(t > 0 for t in decision.timings_ms.values())
