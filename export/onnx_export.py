"""Bundle -> one ONNX graph: image batch in, (anomaly map at model resolution, image score) out.

The whole ``BatteryDetector`` (encoder taps, decoder, cached text embeddings, memory bank,
fusion, smoothing, score) is traced into a single graph with a dynamic batch and a static
input size; resizing the map to the frame's resolution stays outside, in ``inspector``.

Example:
    >>> report = export_bundle("bundles/pouch", int8=True)      # doctest: +SKIP
    >>> report["onnx"]["max_abs_map_diff"] < 1e-4               # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.graph import EXTERNAL_DATA_BYTES, INPUT_NAME, MODEL_ID_KEY, OUTPUT_NAMES
from export.parity import parity
from export.quantize import quantize_int8, quantize_static_int8
from models.bundle import load_detector
from models.bundle_files import (
    ONNX_FILE,
    ONNX_INT8_FILE,
    ONNX_INT8_STATIC_FILE,
    REPORT_FILE,
    data_file,
)
from models.detector import BatteryDetector
from models.recipe import load_recipe, tensors_id

DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization is one op from opset 17 on


@contextlib.contextmanager
def mha_fastpath_disabled() -> Iterator[None]:
    """Turn off ``nn.MultiheadAttention``'s fused eval path (it does not export); restore after."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _param_bytes(module: torch.nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def export_detector(
    detector: BatteryDetector,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Trace ``detector`` into ``path``; weights go to ``data_file(path.name)`` when over 2 GB.

    Args:
        detector: the detector, on the CPU, in eval mode.
        path: the ``.onnx`` file to write (its folder must exist).
        opset: ONNX opset, at least 17.
        metadata: string key/values stored in the model's ``metadata_props``.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET} (one LayerNormalization op)")
    path = Path(path)
    size = detector.image_size
    example = torch.zeros(2, 3, size, size)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    big = _param_bytes(detector) > EXTERNAL_DATA_BYTES
    detector = detector.eval()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        # The TorchScript exporter scatters >2 GB weights over one file per tensor; trace into
        # a scratch folder, then gather everything into at most two files in the bundle.
        raw = Path(tmp) / "raw.onnx"
        with mha_fastpath_disabled(), torch.no_grad(), _quiet_export():
            torch.onnx.export(
                detector,
                (example,),
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
        model = onnx.load(str(raw), load_external_data=True)
        _declare_output_shapes(model, size)
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        tmp_out = Path(tmp) / path.name
        data_name = data_file(path.name)
        onnx.save_model(
            model,
            str(tmp_out),
            save_as_external_data=big,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        del model
        if big:
            os.replace(Path(tmp) / data_name, path.parent / data_name)
        elif (path.parent / data_name).exists():
            (path.parent / data_name).unlink()
        os.replace(tmp_out, path)
    return path


def _declare_output_shapes(model: onnx.ModelProto, size: int) -> None:
    """State the outputs' shapes; the tracer loses the map's sides after the reflect-pad blur."""
    shapes = {OUTPUT_NAMES[0]: ["batch", size, size], OUTPUT_NAMES[1]: ["batch"]}
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for value in shapes[output.name]:
            dim = dims.add()
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's known, harmless warnings (legacy exporter, tracer constants)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        yield


def graph_summary(path: str | Path) -> dict:
    """Opset, input shape (``"batch"`` for the dynamic dim) and op counts of an ONNX file."""
    model = onnx.load(str(path), load_external_data=False)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"opset": opset, "input_shape": shape, "ops": dict(sorted(ops.items()))}


def export_bundle(
    bundle: str | Path,
    opset: int = DEFAULT_OPSET,
    int8: bool = False,
    parity_batch: int = 2,
    step: Callable[[str], None] | None = None,
    calibration: np.ndarray | None = None,
) -> dict:
    """Export a bundle's detector to ``BUNDLE/model.onnx`` (and its int8 variants).

    Checks each file against PyTorch with ONNX Runtime (and OpenVINO where installed) on the
    same inputs, and stores the report as ``BUNDLE/export_report.json``.

    Args:
        bundle: the bundle folder.
        opset: ONNX opset (>= 17).
        int8: also write a dynamically quantised int8 variant of the encoder.
        calibration: preprocessed normal images; also write ``model.int8-static.onnx``, static
            int8 calibrated on them (``export.quantize.calibration_inputs``).
        parity_batch: images in the parity check (batch 1 is always checked as well).
        step: called with a short description before each long step (progress display).

    Returns:
        The report: file names, graph summary, max abs map and score differences, versions.
    """
    step = step or (lambda _msg: None)
    bundle = Path(bundle)
    recipe = load_recipe(bundle)
    mid = tensors_id(bundle, recipe)
    step("loading the detector")
    detector = load_detector(bundle, "cpu")
    step(f"tracing {recipe.arch} into ONNX (opset {opset})")
    onnx_path = export_detector(
        detector,
        bundle / ONNX_FILE,
        opset,
        metadata={MODEL_ID_KEY: mid, "arch": recipe.arch, "input_size": str(recipe.input_size)},
    )
    report: dict = {
        "model_id": mid,
        "arch": recipe.arch,
        "input_size": recipe.input_size,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }
    check = _ParityCheck(detector, parity_batch, step)
    report.update(check.fp32(onnx_path))
    report.update(_export_int8(bundle, onnx_path, int8, check))
    report.update(_export_int8_static(bundle, onnx_path, calibration, check))
    tmp = bundle / f".{REPORT_FILE}.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(bundle / REPORT_FILE)
    return report


class _ParityCheck:
    """Each exported file against PyTorch on the same inputs: ONNX Runtime always, OpenVINO
    where it is installed."""

    def __init__(self, detector: BatteryDetector, batch: int, step: Callable[[str], None]) -> None:
        self.detector, self.batch, self.step = detector, batch, step
        self.openvino = importlib.util.find_spec("openvino") is not None

    def __call__(self, path: Path, runtime: str = "onnxruntime") -> dict:
        return parity(self.detector, path, self.batch, runtime=runtime)

    def fp32(self, onnx_path: Path) -> dict:
        """The ``fp32`` section (with the graph's summary) and, with OpenVINO, ``openvino``."""
        self.step("checking ONNX Runtime against PyTorch")
        graph = graph_summary(onnx_path)
        out = {
            "fp32": {
                "file": ONNX_FILE,
                "opset": graph["opset"],
                "input_shape": graph["input_shape"],
                "layer_norm_nodes": graph["ops"].get("LayerNormalization", 0),
                **self(onnx_path),
            }
        }
        if self.openvino:
            self.step("checking OpenVINO against PyTorch")
            out["openvino"] = {"file": ONNX_FILE, **self(onnx_path, "openvino")}
        return out


def _export_int8(bundle: Path, onnx_path: Path, int8: bool, check: _ParityCheck) -> dict:
    """Write and check ``model.int8.onnx`` when asked; otherwise remove an older one, which
    would no longer match."""
    int8_path = bundle / ONNX_INT8_FILE
    if not int8:
        int8_path.unlink(missing_ok=True)
        return {}
    check.step("quantising the encoder to int8")
    quantize_int8(onnx_path, int8_path)
    check.step("checking the int8 model against PyTorch")
    return {"int8": {"file": ONNX_INT8_FILE, **check(int8_path)}}


def _export_int8_static(
    bundle: Path, onnx_path: Path, calibration: np.ndarray | None, check: _ParityCheck
) -> dict:
    """Write and check ``model.int8-static.onnx`` when calibration images are given;
    otherwise remove an older one."""
    static_path = bundle / ONNX_INT8_STATIC_FILE
    if calibration is None:
        static_path.unlink(missing_ok=True)
        return {}
    check.step(f"quantising the encoder to static int8 ({len(calibration)} calibration images)")
    done = quantize_static_int8(onnx_path, static_path, calibration)
    check.step("checking the static int8 model against PyTorch")
    out = {
        "int8_static": {
            **done,
            "calibration_images": len(calibration),
            **check(static_path),
        }
    }
    if check.openvino:  # OpenVINO's int8 kernels round differently: check them too
        out["openvino_int8"] = {"file": ONNX_INT8_STATIC_FILE, **check(static_path, "openvino")}
    return out
