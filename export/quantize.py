"""int8 variants of an exported graph: ONNX Runtime dynamic or static quantisation of the encoder.

Only the backbone's weight products are quantised (a ViT's transformer-block MatMul/Gemm, a
CNN's convolutions; weights int8 per output channel). They carry almost all of the FLOPs; the
decoder's cosine logits, the normalisations, the softmax, the memory bank's nearest-neighbour
search and the smoothing stay float32 because small errors there move the map directly.

- **dynamic** (``model.int8.onnx``): activations uint8 with a scale computed per call. Needs
  no data; slow for CNNs on CPUs (ConvInteger), fine for ViT MatMuls.
- **static** (``model.int8-static.onnx``, QDQ): activation scales fixed beforehand from normal
  images of the product (``ImageCalibration``), so the int8 kernels of ONNX Runtime and
  OpenVINO run without a per-call range pass. Activations are quantised per tensor; CLIP ViTs
  carry a few channels with values in the thousands, which a per-tensor range turns into one
  huge step that zeroes every other channel. So: the range is the 99.999th percentile of the
  calibration activations (rare outliers clip instead of swamping the rest); a ViT's first and
  last encoder blocks stay fp32; and every product whose input has outlier *channels* on the
  calibration images (``channel_outliers``: one channel peaking over ``OUTLIER_RATIO`` times
  the median one) stays fp32, since a percentile cannot clip a whole channel away.

Both write their weights to an external ``.data`` file when the graph is too big for one
protobuf (a ViT-H bank past ~250 references), as the fp32 export does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import uses_external_data
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from export.graph import EXTERNAL_DATA_BYTES
from models.bundle_files import data_file
from models.data.datasets import normal_images, pick_evenly
from models.image_io import read_image
from models.preprocess import preprocess
from models.recipe import load_recipe

ENCODER_BLOCK_PREFIXES = (
    "/encoder/resblocks.",
    "/encoder/visual/transformer/resblocks.",
    "/encoder/net/",  # models.backbones.efficientnet
)
QUANTISED_OPS = ("MatMul", "Gemm", "Conv")
CALIBRATION_PERCENTILE = 99.999
CALIBRATION_METHODS = {
    "percentile": CalibrationMethod.Percentile,
    "minmax": CalibrationMethod.MinMax,
}
OUTLIER_RATIO = 64.0  # a channel 64x the median one leaves 1/16 of the uint8 steps to the rest
_VIT_BLOCK = re.compile(r"resblocks\.(\d+)/")


def encoder_weight_products(model: onnx.ModelProto) -> list[str]:
    """Names of the encoder's MatMul/Gemm/Conv nodes whose second input is a weight."""
    weights = {init.name for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in QUANTISED_OPS
        and node.name.startswith(ENCODER_BLOCK_PREFIXES)
        and len(node.input) > 1
        and node.input[1] in weights
    ]


def weight_bytes(path: str | Path) -> int:
    """Bytes of the graph's initializers, whether stored inline or in an external file."""
    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if uses_external_data(init):
            total += int({e.key: e.value for e in init.external_data}.get("length", 0))
        else:
            total += len(init.raw_data) or onnx.numpy_helper.to_array(init).nbytes
    return total


def needs_external_data(path: str | Path) -> bool:
    """Whether a graph with ``path``'s weights must keep them outside the protobuf."""
    return weight_bytes(path) > EXTERNAL_DATA_BYTES


def vit_boundary_blocks(nodes: Sequence[str]) -> set[int]:
    """The first and last transformer block the encoder runs (empty for a CNN)."""
    blocks = {int(m.group(1)) for n in nodes if (m := _VIT_BLOCK.search(n))}
    return {min(blocks), max(blocks)} if blocks else set()


def _quantised_nodes(src: Path, keep_vit_ends: bool) -> list[str]:
    model = onnx.load(str(src), load_external_data=False)
    nodes = encoder_weight_products(model)
    del model
    if not nodes:
        raise ValueError(f"{src} has no encoder MatMul/Gemm/Conv nodes with weights to quantise")
    if keep_vit_ends:
        ends = vit_boundary_blocks(nodes)
        nodes = [
            n for n in nodes if not ((m := _VIT_BLOCK.search(n)) and int(m.group(1)) in ends)
        ]
    return nodes


def _write_via_tmp(dst: Path, external: bool, write) -> Path:
    """Run ``write(tmp_path)`` in a scratch folder beside ``dst``, then move the result (and
    its ``.data`` file when ``external``) into place; a stale ``.data`` file is removed."""
    data_name = data_file(dst.name)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        tmp_out = Path(tmp) / dst.name
        logging.disable(logging.WARNING)  # advice to run shape pre-processing first
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its steps
                write(tmp_out)
        finally:
            logging.disable(logging.NOTSET)
        if external:
            (Path(tmp) / data_name).replace(dst.parent / data_name)
        else:
            (dst.parent / data_name).unlink(missing_ok=True)
        tmp_out.replace(dst)
    return dst


def quantize_int8(src: str | Path, dst: str | Path, per_channel: bool = True) -> Path:
    """Write a dynamically quantised copy of ``src`` to ``dst``; returns ``dst``.

    Raises:
        ValueError: the graph has no encoder weight products to quantise.
    """
    src, dst = Path(src), Path(dst)
    nodes = _quantised_nodes(src, keep_vit_ends=False)
    external = needs_external_data(src)
    return _write_via_tmp(
        dst,
        external,
        lambda out: quantize_dynamic(
            src,
            out,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            use_external_data_format=external,
            extra_options={"MatMulConstBOnly": True},
        ),
    )


class ImageCalibration(CalibrationDataReader):
    """Hands the preprocessed images to ONNX Runtime's calibrator one at a time."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self.images, self.input_name = images, input_name
        self._it: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x[None], np.float32)}

    def rewind(self) -> None:
        self._it = iter(self.images)


def channel_outliers(src: Path, nodes: Sequence[str], images: np.ndarray) -> dict[str, float]:
    """For each node, how far its activation input's largest channel stands out on ``images``.

    The ratio of the largest per-channel max |value| to the median channel's: about 1-10 for
    ordinary activations, hundreds where a few channels carry values in the thousands (CLIP
    ViTs). Per-tensor uint8 gives every channel the step of the largest, so the others round
    to a handful of levels.
    """
    model = onnx.load(str(src))
    by_name = {n.name: n for n in model.graph.node}
    inputs = {name: by_name[name].input[0] for name in nodes}
    known = {o.name for o in model.graph.output}
    for tensor in sorted(set(inputs.values()) - known):
        model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    conv_inputs = {by_name[n].input[0] for n in nodes if by_name[n].op_type == "Conv"}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save_model(
            model,
            str(probe),
            save_as_external_data=needs_external_data(src),
            location="probe.onnx.data",
        )
        del model
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        wanted = [n for n in names if n in set(inputs.values())]
        peaks: dict[str, np.ndarray] = {}
        for x in images:
            outs = session.run(wanted, {session.get_inputs()[0].name: x[None].astype(np.float32)})
            for name, a in zip(wanted, outs, strict=True):
                axis = 1 if name in conv_inputs else a.ndim - 1
                other = tuple(i for i in range(a.ndim) if i != axis)
                peak = np.abs(a).max(axis=other)
                peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    ratios = {}
    for node, tensor in inputs.items():
        peak = peaks[tensor]
        ratios[node] = float(peak.max() / max(float(np.median(peak)), 1e-12))
    return ratios


def quantize_static_int8(
    src: str | Path,
    dst: str | Path,
    images: np.ndarray,
    method: str = "percentile",
    keep_vit_ends: bool = True,
    outlier_ratio: float | None = OUTLIER_RATIO,
) -> dict:
    """Write a statically quantised (QDQ) copy of ``src`` to ``dst``, calibrated on ``images``.

    Args:
        src: the fp32 graph (``model.onnx``).
        dst: the int8 graph to write.
        images: preprocessed normal images ``float32 [N, 3, S, S]`` (``models.preprocess``); a
            few dozen are enough.
        method: ``percentile`` (99.999th percentile of each activation: rare outliers clip) or
            ``minmax``.
        keep_vit_ends: leave a ViT's first and last encoder blocks in fp32.
        outlier_ratio: keep a product in fp32 when one channel of its input peaks more than
            this many times above the median channel on the calibration images
            (``channel_outliers``); None quantises them all.

    Returns:
        What was done: ``file``, ``quantised`` and ``kept_fp32`` node counts, the ``method``
        (``minmax`` when the percentile histogram cannot be built) and the ``outlier_nodes``.

    Raises:
        ValueError: no images, an unknown method, or nothing to quantise.
    """
    src, dst = Path(src), Path(dst)
    if len(images) == 0:
        raise ValueError("static int8 needs calibration images (normal cells of the product)")
    if method not in CALIBRATION_METHODS:
        known = sorted(CALIBRATION_METHODS)
        raise ValueError(f"unknown calibration method {method!r}; one of {known}")
    candidates = _quantised_nodes(src, keep_vit_ends=False)
    nodes, outliers = _static_nodes(src, images, keep_vit_ends, outlier_ratio)
    external = needs_external_data(src)

    def write(out: Path, how: str) -> None:
        _quantize_static(src, out, images, nodes, external, how)

    used = method
    try:
        _write_via_tmp(dst, external, lambda out: write(out, method))
    except ValueError as exc:
        # numpy cannot bin a float32 tensor whose values all sit in a few ulps (a constant
        # channel of thousands); min-max has no histogram
        if method != "percentile" or "bins" not in str(exc):
            raise
        used = "minmax"
        _write_via_tmp(dst, external, lambda out: write(out, "minmax"))
    return {
        "file": dst.name,
        "method": used,
        "quantised": len(nodes),
        "kept_fp32": len(candidates) - len(nodes),
        "outlier_nodes": outliers,
    }


def _static_nodes(
    src: Path, images: np.ndarray, keep_vit_ends: bool, outlier_ratio: float | None
) -> tuple[list[str], list[str]]:
    """The encoder products to quantise statically, and those kept fp32 for their outlier
    channels (``channel_outliers`` over ``outlier_ratio``)."""
    nodes = _quantised_nodes(src, keep_vit_ends)
    outliers: list[str] = []
    if outlier_ratio is not None:
        ratios = channel_outliers(src, nodes, images)
        outliers = sorted(n for n, r in ratios.items() if r > outlier_ratio)
        nodes = [n for n in nodes if n not in set(outliers)]
    if not nodes:
        raise ValueError(f"{src}: every encoder product has outlier channels; nothing to quantise")
    return nodes, outliers


def _quantize_static(
    src: Path, out: Path, images: np.ndarray, nodes: list[str], external: bool, method: str
) -> None:
    """ONNX Runtime's QDQ quantisation of ``nodes``, calibrated on ``images`` by ``method``."""
    extra: dict[str, object] = {"MatMulConstBOnly": True}
    if method == "percentile":
        extra["CalibPercentile"] = CALIBRATION_PERCENTILE
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    quantize_static(
        src,
        out,
        ImageCalibration(images, input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
        use_external_data_format=external,
        calibrate_method=CALIBRATION_METHODS[method],
        extra_options=extra,
    )


def calibration_inputs(bundle: str | Path, data: str | Path, limit: int = 32) -> np.ndarray:
    """Up to ``limit`` normal images of ``data`` (a folder, or a dataset's train/test ``good``),
    spread evenly and preprocessed as the bundle's predictor does.

    Raises:
        ImageError: no normal images there, or one cannot be read.
    """
    recipe = load_recipe(bundle)
    paths = pick_evenly(normal_images(data, include_train=True), limit)
    return np.stack(
        [preprocess(read_image(p), recipe.input_size, recipe.bit_depth) for p in paths]
    )
