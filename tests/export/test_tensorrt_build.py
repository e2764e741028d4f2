"""TensorRT engine building: the pure parts always, the build itself where TensorRT imports."""

import importlib.util
import shutil

import numpy as np
import pytest

from export.tensorrt_build import engine_sidecar, profile_shapes
from inspector.backends.tensorrt_backend import EngineMismatchError, check_engine_compatible
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
        onnx_sha256="0" * 64,
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
    from inspector.backends.onnxruntime_backend import OnnxRuntimeBackend
    from inspector.backends.tensorrt_backend import TensorRTBackend

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    assert run_inspector("export", "onnx", "--bundle", str(bundle)).returncode == 0
    proc = run_inspector("export", "tensorrt", "--bundle", str(bundle), "--max-batch", "4")
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "model.plan.json").is_file() and (bundle / "tensorrt.timing-cache").is_file()
    x = parity_inputs(6)
    with TensorRTBackend(bundle) as trt_b, OnnxRuntimeBackend(bundle) as ort_b:
        for b in (1, 4, 6):  # 6 > max batch: run in chunks
            maps, scores = trt_b.infer(x[:b])
            ref_maps, ref_scores = ort_b.infer(x[:b])
            assert np.abs(maps - ref_maps).max() < 2e-2
            assert np.abs(scores - ref_scores).max() < 2e-2
