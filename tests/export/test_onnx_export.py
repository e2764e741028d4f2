"""``inspector export onnx``: one graph, opset >= 17, dynamic batch, parity with PyTorch."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import onnx_export
from export.onnx_export import export_bundle, export_detector, graph_summary, mha_fastpath_disabled
from export.parity import parity_inputs
from export.quantize import encoder_weight_products
from models.bundle import load_detector
from models.bundle_files import BUNDLE_FILES
from tests.cli_helpers import run_inspector


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_bundle):
    """A copy of the tiny bundle exported with the CLI, fp32 and int8."""
    bundle = tmp_path_factory.mktemp("export") / "tiny"
    shutil.copytree(tiny_bundle, bundle)
    proc = run_inspector("export", "onnx", "--bundle", str(bundle), "--int8")
    assert proc.returncode == 0, proc.stderr
    return bundle, proc


def test_cli_prints_and_stores_the_parity_report(exported):
    bundle, proc = exported
    report = json.loads((bundle / "export_report.json").read_text())
    assert report["model_id"].startswith("tiny-")
    assert report["fp32"]["max_abs_map_diff"] < 1e-5
    assert report["fp32"]["max_abs_score_diff"] < 1e-5
    assert report["fp32"]["batch_sizes"] == [1, 2]
    # int8 moves the map, but only a little, and the report says by how much
    assert 0 < report["int8"]["max_abs_map_diff"] < 0.05
    assert "model.onnx: max |map diff|" in proc.stdout
    assert "model.int8.onnx: max |map diff|" in proc.stdout


def test_graph_is_opset_18_with_layernorm_dynamic_batch_and_static_224(exported):
    bundle, _ = exported
    summary = graph_summary(bundle / "model.onnx")
    assert summary["opset"] >= 17
    # 4 blocks x 2 norms + ln_pre + decoder norm per tap: LayerNorm stays one op each
    assert summary["ops"]["LayerNormalization"] >= 9
    assert summary["input_shape"] == ["batch", 3, 224, 224]
    model = onnx.load(str(bundle / "model.onnx"))
    outputs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    }
    assert outputs == {"anomaly_map": ["batch", 224, 224], "score": ["batch"]}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model_id"] == json.loads((bundle / "export_report.json").read_text())["model_id"]


def test_graph_runs_any_batch_size_like_pytorch(exported):
    bundle, _ = exported
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    detector = load_detector(bundle)
    x = parity_inputs(5)
    for b in (1, 3, 5):
        maps, scores = session.run(None, {"images": x[:b]})
        with torch.inference_mode():
            t_maps, t_scores = detector(torch.from_numpy(x[:b]))
        assert maps.shape == (b, 224, 224) and scores.shape == (b,)
        np.testing.assert_allclose(maps, t_maps.numpy(), atol=1e-5)
        np.testing.assert_allclose(scores, t_scores.numpy(), atol=1e-5)


def test_int8_quantises_only_the_encoder_blocks(exported):
    bundle, _ = exported
    fp32 = onnx.load(str(bundle / "model.onnx"))
    int8 = onnx.load(str(bundle / "model.int8.onnx"))
    quantised = encoder_weight_products(fp32)
    assert len(quantised) == 4 * 4  # per block: in-proj, out-proj, fc, proj
    ops = {n.op_type for n in int8.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops or "DynamicQuantizeMatMul" in ops
    float_matmuls = {n.name for n in int8.graph.node if n.op_type == "MatMul"}
    assert any(name.startswith("/memory_bank/") for name in float_matmuls)
    assert any(name.startswith("/decoder/") for name in float_matmuls)
    assert (bundle / "model.int8.onnx").stat().st_size < (bundle / "model.onnx").stat().st_size


def test_big_models_keep_their_weights_in_one_external_file(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 500)  # pretend the model is > 2 GB
    detector = load_detector(tiny_bundle)
    path = export_detector(detector, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert (tmp_path / "model.onnx").stat().st_size < 200_000
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = parity_inputs(1)
    maps, _ = session.run(None, {"images": x})
    with torch.inference_mode():
        expected, _ = detector(torch.from_numpy(x))
    np.testing.assert_allclose(maps, expected.numpy(), atol=1e-5)


def test_pretrained_cnn_bundle_exports_with_parity(effnet_bundle, tmp_path):
    bundle = tmp_path / "effnet"
    shutil.copytree(effnet_bundle, bundle)
    report = export_bundle(bundle, int8=False)
    assert report["model_id"].startswith("effnet-lite0-")
    assert report["fp32"]["max_abs_map_diff"] <= 1e-4
    assert report["fp32"]["max_abs_score_diff"] <= 1e-4


def test_mha_fastpath_is_restored_even_after_an_error():
    before = torch.backends.mha.get_fastpath_enabled()
    with pytest.raises(RuntimeError), mha_fastpath_disabled():
        assert torch.backends.mha.get_fastpath_enabled() is False
        raise RuntimeError("boom")
    assert torch.backends.mha.get_fastpath_enabled() is before


def test_reexport_without_int8_removes_the_stale_int8_file(exported, tmp_path):
    bundle, _ = exported
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    report = export_bundle(copy)
    assert "int8" not in report and not (copy / "model.int8.onnx").exists()


def test_export_of_a_missing_bundle_is_one_line(tmp_path):
    proc = run_inspector("export", "onnx", "--bundle", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "is not a model bundle" in proc.stderr


def test_opset_below_17_is_refused(tiny_bundle):
    proc = run_inspector("export", "onnx", "--bundle", str(tiny_bundle), "--opset", "16")
    assert proc.returncode == 2 and "--opset" in proc.stderr


def test_an_exported_bundle_holds_only_files_the_bundle_list_names(exported):
    bundle, _ = exported
    held = {p.name for p in bundle.iterdir()}
    assert {"recipe.yaml", "model.onnx", "model.int8.onnx", "export_report.json"} <= held
    assert held <= set(BUNDLE_FILES), held - set(BUNDLE_FILES)
