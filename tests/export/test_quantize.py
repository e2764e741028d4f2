"""int8 graphs: weights outside the protobuf when big (like the fp32 file), and static int8
that survives CLIP-like outlier channels."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.external_data_helper import uses_external_data

from export import graph, onnx_export, quantize
from export.onnx_export import export_bundle, export_detector
from export.quantize import (
    calibration_inputs,
    quantize_int8,
    quantize_static_int8,
    weight_bytes,
)
from models.bundle import load_detector
from models.bundle_files import ONNX_FILE


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_bundle):
    out = tmp_path_factory.mktemp("quantize") / "tiny"
    shutil.copytree(tiny_bundle, out)
    export_bundle(out)
    return out


@pytest.fixture(scope="module")
def images(exported, reference_dir):
    return calibration_inputs(exported, reference_dir)


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_int8_follows_the_fp32_files_size_rule():
    limit = graph.PROTOBUF_LIMIT // 2
    assert quantize.EXTERNAL_DATA_BYTES == onnx_export.EXTERNAL_DATA_BYTES == limit


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_big_int8_graphs_keep_their_weights_in_an_external_file(
    exported, images, tmp_path, monkeypatch, kind
):
    """A bank of ~250 ViT-H references passes 2 GB; here the threshold is lowered instead."""

    def write(dst):
        if kind == "dynamic":
            quantize_int8(exported / ONNX_FILE, dst)
        else:
            quantize_static_int8(exported / ONNX_FILE, dst, images)

    inline = tmp_path / "inline" / "model.int8.onnx"
    inline.parent.mkdir()
    write(inline)
    assert not (inline.parent / "model.int8.onnx.data").exists()

    big = tmp_path / "big" / "model.int8.onnx"
    big.parent.mkdir()
    monkeypatch.setattr(quantize, "EXTERNAL_DATA_BYTES", 1024)
    write(big)
    data = big.parent / "model.int8.onnx.data"
    assert data.is_file() and data.stat().st_size > big.stat().st_size
    graph = onnx.load(str(big), load_external_data=False)
    assert any(uses_external_data(t) for t in graph.graph.initializer)
    assert weight_bytes(big) == pytest.approx(weight_bytes(inline), rel=0.01)
    np.testing.assert_allclose(run(big, images[:2]), run(inline, images[:2]), atol=1e-6)

    monkeypatch.setattr(quantize, "EXTERNAL_DATA_BYTES", 2**40)
    write(big)  # small again: the old .data file must not be left behind
    assert not data.exists()


def test_outlier_channels_stay_fp32_and_keep_the_int8_map_close(exported, images):
    """CLIP-like outlier channels (a few thousand in 3 channels) ruin per-tensor uint8; the
    default static recipe finds them on the calibration images and keeps those products fp32."""
    from bench.latency import inject_outlier_channels

    det = load_detector(exported)
    inject_outlier_channels(det)
    folder = exported.parent / "outliers"
    folder.mkdir(exist_ok=True)
    fp32 = export_detector(det, folder / "model.onnx")
    ref = run(fp32, images)

    naive = quantize_static_int8(
        fp32, folder / "naive.onnx", images, keep_vit_ends=False, outlier_ratio=None
    )
    assert naive["kept_fp32"] == 0
    ours = quantize_static_int8(fp32, folder / "ours.onnx", images)
    assert ours["outlier_nodes"] and ours["quantised"] > 0

    naive_err = np.abs(run(folder / "naive.onnx", images) - ref).max()
    ours_err = np.abs(run(folder / "ours.onnx", images) - ref).max()
    assert naive_err > 0.05  # the outliers break per-tensor uint8
    assert ours_err < 0.01 and ours_err < naive_err / 10
