"""The torch, onnxruntime and tensorrt backends: same maps, same verdicts, clear refusals."""

import importlib.util
import json
import shutil
import textwrap

import cv2
import numpy as np
import pytest

from export.graph import StaleExportError, exported_model_id
from export.onnx_export import export_bundle
from inspector.runtime.backends import BACKENDS, create_backend
from inspector.runtime.backends.onnxruntime_backend import choose_providers
from inspector.runtime.predictor import Predictor
from models.bundle_files import ONNX_FILE, ONNX_INT8_FILE
from models.data.synth import render
from models.recipe import load_recipe, model_id, save_recipe, tensors_id
from tests.cli_helpers import run_inspector

DEFECTS = (None, "scratch", None, "dent", "particle", None, "edge_crack")


@pytest.fixture(scope="module")
def frames():
    return [render("pouch", [7, i], defect=d)[0] for i, d in enumerate(DEFECTS)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_bundle, frames):
    """A tiny bundle exported to ONNX whose thresholds split these frames into pass and fail."""
    out = tmp_path_factory.mktemp("backends") / "tiny"
    shutil.copytree(tiny_bundle, out)
    export_bundle(out, int8=True)
    results = Predictor(out, "torch").inspect_batch(frames)
    scores = sorted(float(r.decision.image_score) for r in results)
    gaps = np.diff(scores)
    k = int(np.argmax(gaps))  # threshold in the middle of the widest gap: no coin flips
    recipe = load_recipe(out)
    recipe.thresholds.image = (scores[k] + scores[k + 1]) / 2
    recipe.thresholds.pixel = min(scores[0], recipe.thresholds.image) * 0.9
    save_recipe(out, recipe)
    return out


def test_all_three_backends_are_registered():
    assert {"torch", "onnxruntime", "onnxruntime-int8", "tensorrt"} <= set(BACKENDS)


def test_torch_autocasts_only_where_asked_and_supported():
    import torch

    from inspector.runtime.backends.torch_backend import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("bf16", cuda) is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("int4", cpu)


def test_onnxruntime_maps_and_verdicts_match_torch_at_any_batch(bundle, frames):
    torch_p = Predictor(bundle, "torch")
    ort_p = Predictor(bundle, "onnxruntime")
    assert ort_p.backend.name == "onnxruntime"
    expected = torch_p.inspect_batch(frames)
    verdicts = {r.verdict for r in expected}
    assert verdicts == {"pass", "fail"}, "thresholds should split the frames"
    for batch in (1, 3, len(frames)):
        got = []
        for start in range(0, len(frames), batch):
            got += ort_p.inspect_batch(frames[start : start + batch])
        for e, g in zip(expected, got, strict=True):
            assert np.abs(e.map - g.map).max() < 1e-3
            assert abs(e.decision.image_score - g.decision.image_score) < 1e-3
            assert e.verdict == g.verdict
            assert len(e.decision.regions) == len(g.decision.regions)


def test_int8_backend_stays_close_to_fp32(bundle, frames):
    fp32 = create_backend("onnxruntime", bundle)
    int8 = create_backend("onnxruntime-int8", bundle)
    assert int8.name == "onnxruntime-int8"
    x = np.concatenate([Predictor(bundle, fp32).prepare_frame(f).inputs for f in frames])
    maps32, _ = fp32.infer(x)
    maps8, _ = int8.infer(x)
    assert 0 < np.abs(maps32 - maps8).max() < 0.05


def test_cpu_session_uses_all_graph_optimisations_and_the_cores(bundle):
    import onnxruntime as ort

    backend = create_backend("onnxruntime", bundle, device="cpu", threads=2)
    assert backend.providers == ["CPUExecutionProvider"]
    assert backend.session.get_session_options().graph_optimization_level == (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    assert backend.session.get_session_options().intra_op_num_threads == 2


def test_cuda_provider_is_chosen_where_present():
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "CUDAExecutionProvider"
    )
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], "cpu") == [
        "CPUExecutionProvider"
    ]
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        choose_providers(["CPUExecutionProvider"], "cuda")


def test_stale_export_is_refused_after_the_tensors_change(bundle, tmp_path):
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    tensors = load_file(copy / "decoder.safetensors")
    save_file({k: v * 1.01 for k, v in tensors.items()}, copy / "decoder.safetensors")
    with pytest.raises(StaleExportError, match="inspector export onnx --bundle"):
        create_backend("onnxruntime", copy)
    with pytest.raises(StaleExportError, match=f"{ONNX_INT8_FILE} was exported .* --int8' again"):
        create_backend("onnxruntime-int8", copy)


def test_an_export_stays_current_when_only_the_thresholds_change(bundle, tmp_path):
    """Calibrating after the export (the engineer guide's order) changes the model id that
    results carry, not the tensors the graph was built from."""
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    before = model_id(copy)
    recipe = load_recipe(copy)
    recipe.thresholds = recipe.thresholds.model_copy(update={"image": 0.61, "calibrated": True})
    save_recipe(copy, recipe)
    backend = create_backend("onnxruntime", copy)
    backend.close()
    assert model_id(copy) != before and tensors_id(copy) == tensors_id(bundle)


@pytest.mark.parametrize("name", [ONNX_FILE, ONNX_INT8_FILE])
def test_exported_model_id_reads_the_graphs_metadata(bundle, name):
    import onnx

    stored = {p.key: p.value for p in onnx.load(str(bundle / name)).metadata_props}
    assert exported_model_id(bundle / name) == stored["model_id"] == tensors_id(bundle)


def test_exported_model_id_of_other_files(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [x])
    plain = helper.make_model(graph, producer_name="test")
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    assert exported_model_id(tmp_path / "plain.onnx") is None
    helper.set_model_props(plain, {"arch": "tiny", "model_id": "tiny-0123456789ab"})
    onnx.save(plain, str(tmp_path / "tagged.onnx"))
    assert exported_model_id(tmp_path / "tagged.onnx") == "tiny-0123456789ab"
    (tmp_path / "junk.onnx").write_bytes(b"\x0f\xff\xff")  # not a protobuf message
    with pytest.raises(ValueError, match="not an ONNX model"):
        exported_model_id(tmp_path / "junk.onnx")


def test_missing_export_says_how_to_make_it(tiny_bundle):
    with pytest.raises(FileNotFoundError, match="inspector export onnx --bundle .* --int8"):
        create_backend("onnxruntime", tiny_bundle, int8=True)


SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, os, sys

    # the export step's torch side; export.graph and export.engine (what a graph and an engine
    # promise their runtimes) are torch-free and the runtime reads them
    BLOCKED = ("torch", "torchvision", "open_clip", "models.bundle", "models.detector",
               "models.backbones", "models.backbones.clip_loader", "models.training",
               "export.onnx_export", "export.parity", "export.quantize", "export.tensorrt_build")

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
                raise ImportError(f"blocked by the test: {name}")

    sys.meta_path.insert(0, _Block())

    @atexit.register
    def _report():
        with open(os.environ["MODULES_OUT"], "w") as f:
            f.write("\\n".join(sorted(sys.modules)))
    """
)


def test_predict_with_onnxruntime_needs_neither_torch_nor_training_code(bundle, frames, tmp_path):
    slim = tmp_path / "slim"
    shutil.copytree(bundle, slim)
    (slim / "encoder.safetensors").unlink()  # the runtime needs the graph, not the weights
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = []
    for i in (0, 1):
        paths.append(tmp_path / f"cell{i}.png")
        cv2.imwrite(str(paths[-1]), frames[i])
    proc = run_inspector(
        "predict",
        "--bundle",
        str(slim),
        "--backend",
        "onnxruntime",
        *map(str, paths),
        "--out",
        str(tmp_path / "out"),
        "--save-map",
        env={"PYTHONPATH": str(hooks), "MODULES_OUT": str(tmp_path / "modules.txt")},
    )
    assert proc.returncode == 0, proc.stderr
    modules = (tmp_path / "modules.txt").read_text().split()
    assert "onnxruntime" in modules and "inspector.runtime.backends.onnxruntime_backend" in modules
    assert not [m for m in modules if m == "torch" or m.startswith(("torch.", "open_clip"))]
    record = json.loads((tmp_path / "out" / "cell1.json").read_text())
    assert record["backend"] == "onnxruntime" and record["verdict"] in ("pass", "fail")
    assert np.load(tmp_path / "out" / "cell1_map.npy").shape == frames[1].shape[:2]


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="TensorRT is installed here; this checks the refusal on machines without it",
)
def test_tensorrt_backend_without_tensorrt_says_what_to_install(bundle, tmp_path):
    proc = run_inspector(
        "predict",
        "--bundle",
        str(bundle),
        "--backend",
        "tensorrt",
        str(tmp_path / "x.png"),
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2
    assert "TensorRT is not installed" in proc.stderr and "onnxruntime" in proc.stderr
