"""TensorRT engine building: the pure parts always, the build itself where TensorRT imports."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from export.engine import EngineMismatchError, check_engine_compatible, engine_sidecar
from export.graph import exported_model_id
from export.tensorrt_build import profile_shapes
from models.recipe import tensors_id
from tests.cli_helpers import run_inspector

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT cannot be installed on this machine (no NVIDIA GPU)"
H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def sidecar(gpu=H100, version="10.3.0", mid="tiny-abc"):
    return engine_sidecar(
        tensorrt_version=version,
        gpu=gpu,
        size=224,
        max_batch=32,
        opt_batch=32,
        precision="fp16",
        fp32_layers=9,
        bundle_model_id=mid,
    )


def test_profile_covers_batch_1_to_max():
    shapes = profile_shapes(16, 224, opt_batch=8)
    assert shapes == {"min": (1, 3, 224, 224), "opt": (8, 3, 224, 224), "max": (16, 3, 224, 224)}
    assert profile_shapes(4, 224, opt_batch=99)["opt"][0] == 4
    with pytest.raises(ValueError, match="max-batch"):
        profile_shapes(0, 224)


def test_sidecar_records_what_the_engine_was_built_for():
    s = sidecar()
    assert s["tensorrt"] == "10.3.0" and s["gpu"] == H100
    assert s["input_shape"] == [-1, 3, 224, 224] and (s["min_batch"], s["max_batch"]) == (1, 32)
    assert s["precision"] == "fp16" and s["model_id"] == "tiny-abc"


def test_engine_for_the_same_gpu_and_version_is_accepted():
    check_engine_compatible(sidecar(), dict(H100), "10.3.0", "tiny-abc", "b")


@pytest.mark.parametrize(
    ("gpu", "version", "mid", "says"),
    [
        ({"name": "NVIDIA L4", "compute_capability": "8.9"}, "10.3.0", "tiny-abc", "NVIDIA L4"),
        ({**H100, "name": "NVIDIA H100 PCIe"}, "10.3.0", "tiny-abc", "H100 PCIe"),
        (H100, "10.7.0", "tiny-abc", "this machine has 10.7.0"),
        (H100, "10.3.0", "tiny-new", "the bundle is now tiny-new"),
    ],
)
def test_engine_for_another_gpu_version_or_model_is_refused_with_rebuild_advice(
    gpu, version, mid, says
):
    with pytest.raises(EngineMismatchError) as err:
        check_engine_compatible(sidecar(), gpu, version, mid, "bundles/pouch")
    assert says in str(err.value)
    assert "inspector export tensorrt --bundle bundles/pouch" in str(err.value)


def test_build_without_an_onnx_export_says_to_export_first(tiny_bundle):
    proc = run_inspector("export", "tensorrt", "--bundle", str(tiny_bundle))
    assert proc.returncode == 2
    assert "inspector export onnx --bundle" in proc.stderr


def test_a_stale_onnx_export_is_refused_before_tensorrt_is_needed(
    tiny_bundle, tmp_path, monkeypatch
):
    """Retrained after the export: the engine would run the old graph under the new id."""
    import export.tensorrt_build as build
    from export.graph import StaleExportError
    from export.onnx_export import export_bundle

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    export_bundle(bundle)
    exported = tensors_id(bundle)
    tensors = load_file(bundle / "decoder.safetensors")
    save_file({k: v * 1.01 for k, v in tensors.items()}, bundle / "decoder.safetensors")

    def no_tensorrt():
        raise AssertionError("the stale check must come before TensorRT is imported")

    monkeypatch.setattr(build, "import_tensorrt", no_tensorrt)
    with pytest.raises(StaleExportError) as err:
        build.build_engine(bundle)
    assert f"exported from model {exported}, but the bundle is now {tensors_id(bundle)}" in str(
        err.value
    )
    assert "inspector export onnx --bundle" in str(err.value)
    assert not (bundle / "model.plan").exists() and not (bundle / "model.plan.json").exists()
    proc = run_inspector("export", "tensorrt", "--bundle", str(bundle))
    assert proc.returncode == 2 and "was exported from model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_input_name_is_defined_once():
    import export.onnx_export as onnx_export
    import export.tensorrt_build as build
    from export import engine, graph

    assert onnx_export.INPUT_NAME is build.INPUT_NAME is engine.INPUT_NAME is graph.INPUT_NAME


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_build_is_one_clear_line(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    assert run_inspector("export", "onnx", "--bundle", str(bundle)).returncode == 0
    proc = run_inspector("export", "tensorrt", "--bundle", str(bundle))
    assert proc.returncode == 2
    assert "TensorRT is not installed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not HAS_TENSORRT, reason=NO_TENSORRT)
def test_engine_builds_and_matches_onnxruntime(tiny_bundle, tmp_path):
    from export.parity import parity_inputs
    from inspector.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from inspector.runtime.backends.tensorrt_backend import TensorRTBackend

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    assert run_inspector("export", "onnx", "--bundle", str(bundle)).returncode == 0
    proc = run_inspector("export", "tensorrt", "--bundle", str(bundle), "--max-batch", "4")
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "model.plan.json").is_file() and (bundle / "tensorrt.timing-cache").is_file()
    built = json.loads((bundle / "model.plan.json").read_text())
    assert built["model_id"] == exported_model_id(bundle / "model.onnx") == tensors_id(bundle)
    assert "onnx_sha256" not in built
    x = parity_inputs(6)
    with TensorRTBackend(bundle) as trt_b, OnnxRuntimeBackend(bundle) as ort_b:
        for b in (1, 4, 6):  # 6 > max batch: run in chunks
            maps, scores = trt_b.infer(x[:b])
            ref_maps, ref_scores = ort_b.infer(x[:b])
            assert np.abs(maps - ref_maps).max() < 2e-2
            assert np.abs(scores - ref_scores).max() < 2e-2
