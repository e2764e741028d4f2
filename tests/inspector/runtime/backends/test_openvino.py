"""OpenVINO beside ONNX Runtime: the same graph gives the same maps; the static int8 graph is
calibrated on the bundle's normal images and runs in both runtimes."""

import shutil

import numpy as np
import onnx
import pytest

from export.onnx_export import export_bundle
from export.quantize import calibration_inputs, encoder_weight_products
from inspector.runtime.backends import BACKENDS, create_backend
from inspector.runtime.predictor import Predictor
from models.bundle_files import ONNX_FILE, ONNX_INT8_STATIC_FILE, REPORT_FILE
from models.data.synth import render
from tests.cli_helpers import run_inspector

pytest.importorskip("openvino", reason="OpenVINO is not installed (the dev extra pulls it in)")

DEFECTS = (None, "scratch", None, "dent", "particle")


@pytest.fixture(scope="module")
def frames():
    return [render("pouch", [11, i], defect=d)[0] for i, d in enumerate(DEFECTS)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_bundle, reference_dir):
    """The tiny bundle exported fp32 + static int8, calibrated on its own reference images."""
    out = tmp_path_factory.mktemp("openvino") / "tiny"
    shutil.copytree(tiny_bundle, out)
    export_bundle(out, calibration=calibration_inputs(out, reference_dir))
    return out


@pytest.fixture(scope="module")
def inputs(bundle, frames):
    predictor = Predictor(bundle, create_backend("onnxruntime", bundle))
    return np.concatenate([predictor.prepare_frame(f).inputs for f in frames])


def test_openvino_backends_are_registered():
    assert {"openvino", "openvino-int8", "onnxruntime-int8-static"} <= set(BACKENDS)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_openvino_maps_match_onnxruntime_fp32(bundle, inputs, batch):
    ort = create_backend("onnxruntime", bundle)
    ov = create_backend("openvino", bundle)
    assert ov.name == "openvino" and ov.precision == "fp32"
    for start in range(0, len(inputs), batch):
        x = inputs[start : start + batch]
        maps_o, scores_o = ort.infer(x)
        maps_v, scores_v = ov.infer(x)
        assert maps_v.shape == maps_o.shape and scores_v.shape == scores_o.shape
        assert np.abs(maps_v - maps_o).max() <= 1e-4
        assert np.abs(scores_v - scores_o).max() <= 1e-4


def test_openvino_verdicts_match_torch(bundle, frames):
    expected = Predictor(bundle, "torch").inspect_batch(frames)
    got = Predictor(bundle, "openvino").inspect_batch(frames)
    for e, g in zip(expected, got, strict=True):
        assert np.abs(e.map - g.map).max() < 1e-3
        assert e.verdict == g.verdict


def test_export_report_has_openvino_and_static_int8_parity(bundle):
    import json

    report = json.loads((bundle / REPORT_FILE).read_text())
    assert report["openvino"]["max_abs_map_diff"] < 1e-4
    assert report["int8_static"]["calibration_images"] == 4
    assert 0 < report["int8_static"]["max_abs_map_diff"] < 0.05
    assert 0 < report["openvino_int8"]["max_abs_map_diff"] < 0.05  # its own kernels, measured


def test_static_int8_quantises_the_encoder_only(bundle):
    model = onnx.load(str(bundle / ONNX_INT8_STATIC_FILE))
    quantised_inputs = {
        i for n in model.graph.node if n.op_type == "DequantizeLinear" for i in n.output
    }
    products = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    in_int8 = [n.name for n in products if n.input[0] in quantised_inputs]
    assert in_int8 and all(name.startswith("/encoder/") for name in in_int8)
    # the first and last ViT blocks stay fp32 (outlier channels; the last tap is read there)
    assert not any("resblocks.0/" in name or "resblocks.3/" in name for name in in_int8)
    assert any("resblocks.1/" in name for name in in_int8)


def test_static_int8_scales_come_from_the_calibration_images(bundle, reference_dir, tmp_path):
    """Calibrating on other images gives other activation scales: the images are used."""
    from export.quantize import quantize_static_int8

    images = calibration_inputs(bundle, reference_dir)
    quantize_static_int8(bundle / ONNX_FILE, tmp_path / "a.onnx", images)
    quantize_static_int8(bundle / ONNX_FILE, tmp_path / "b.onnx", images[:, ::-1] * 3.0)

    def activation_scales(path):
        model = onnx.load(str(path))
        init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        return np.array([float(init[n.input[1]]) for n in quant])

    a, b = activation_scales(tmp_path / "a.onnx"), activation_scales(tmp_path / "b.onnx")
    assert len(a) == len(b) > 10
    assert np.abs(a - b).max() / a.max() > 0.1


@pytest.mark.parametrize("name", ["onnxruntime-int8-static", "openvino-int8"])
def test_static_int8_backends_stay_close_to_fp32(bundle, inputs, name):
    fp32 = create_backend("onnxruntime", bundle)
    int8 = create_backend(name, bundle)
    assert int8.name == name and int8.precision == "int8"
    maps32, _ = fp32.infer(inputs)
    maps8, _ = int8.infer(inputs)
    assert 0 < np.abs(maps32 - maps8).max() < 0.05


def test_missing_static_file_names_the_export_command(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    for name in ("openvino", "openvino-int8", "onnxruntime-int8-static"):
        with pytest.raises(FileNotFoundError, match="inspector export onnx --bundle"):
            create_backend(name, copy)


def test_cli_int8_static_needs_calibration_images(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    proc = run_inspector("export", "onnx", "--bundle", str(copy), "--int8-static")
    assert proc.returncode == 2
    assert "--int8-static needs --calibration-dir" in proc.stderr
    assert not (copy / ONNX_FILE).exists()


def test_encoder_weight_products_cover_the_tiny_vit(bundle):
    nodes = encoder_weight_products(onnx.load(str(bundle / ONNX_FILE)))
    assert len(nodes) >= 4 * 4  # qkv, out, fc1, fc2 in each of the 4 blocks


def test_cli_writes_the_static_int8_graph_and_says_what_stayed_fp32(
    tiny_bundle, reference_dir, tmp_path
):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    proc = run_inspector(
        "export", "onnx", "--bundle", str(copy), "--int8-static",
        "--calibration-dir", str(reference_dir),
    )
    assert proc.returncode == 0, proc.stderr
    assert (copy / ONNX_INT8_STATIC_FILE).is_file()
    assert "(OpenVINO): max |map diff|" in proc.stdout
    assert "static int8: 8 encoder products int8, 8 fp32" in proc.stdout
    assert "from 4 normal image(s)" in proc.stdout
