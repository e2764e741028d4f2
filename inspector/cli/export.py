"""``inspector export onnx|tensorrt``: a bundle's detector as an ONNX graph or TensorRT engine."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors
from inspector.runtime.backends import BACKENDS, backend_names_text
from inspector.runtime.predictor import prepare_frame
from models.bundle_files import REPORT_FILE
from models.data.datasets import normal_images, pick_evenly
from models.image_io import ImageError, read_image
from models.recipe import load_recipe

export_app = typer.Typer(
    help="Export a bundle's detector for fast inference (ONNX Runtime, OpenVINO, TensorRT).",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@contextmanager
def steps(total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over the named steps of one long job; yields ``step(description)``."""
    from tqdm import tqdm  # not at --help

    bar = tqdm(total=total, unit="step", bar_format="{n_fmt}/{total_fmt} {desc} [{elapsed}]")
    started = False

    def step(message: str) -> None:
        nonlocal started
        if started:
            bar.update(1)
        started = True
        bar.set_description_str(message)

    try:
        yield step
        bar.update(bar.total - bar.n)
    finally:
        bar.close()


STATIC_INT8 = [name for name, spec in BACKENDS.items() if spec.int8 == "static"]  # --int8-static


@export_app.command("onnx")
def onnx(
    bundle: Path = typer.Option(..., help="Model bundle folder; the graph is written into it."),
    int8: bool = typer.Option(
        False, "--int8", help="Also write model.int8.onnx (dynamically quantised encoder)."
    ),
    int8_static: bool = typer.Option(
        False,
        "--int8-static",
        help="Also write model.int8-static.onnx: static int8 (QDQ) calibrated on normal images "
        f"(--calibration-dir); runs in {backend_names_text(STATIC_INT8, 'and')}.",
    ),
    calibration_dir: Path | None = typer.Option(
        None,
        help="Normal images for --int8-static: a folder, or a dataset whose train/good and "
        "test/good are used (the bundle's reference images are a good choice).",
    ),
    calibration_images: int = typer.Option(
        32, min=1, help="At most this many calibration images, spread evenly."
    ),
    opset: int = typer.Option(18, min=17, help="ONNX opset (17 or later)."),
) -> None:
    """Export encoder, decoder, prompts and memory bank as one graph: BUNDLE/model.onnx.

    Input: float32 images [batch, 3, S, S] (any batch); outputs: anomaly_map [batch, S, S] and
    score [batch]. Checks ONNX Runtime (and OpenVINO, where installed) against PyTorch and
    stores the differences in BUNDLE/export_report.json. Use it with 'inspector predict
    --backend onnxruntime' (or openvino).

    int8 files keep norms, cosines, softmax and the memory bank in fp32; calibrate the
    thresholds again with the int8 backend before using it at the line.
    """
    from export.onnx_export import export_bundle  # torch

    with user_errors():
        if int8_static and calibration_dir is None:
            raise fail("--int8-static needs --calibration-dir (normal images of the product)")
        calibration = None
        if int8_static:
            calibration = _calibration_inputs(bundle, calibration_dir, calibration_images)
    has_openvino = importlib.util.find_spec("openvino") is not None
    total = 3 + 2 * int8 + 2 * int8_static + has_openvino
    with user_errors(), steps(total) as step:
        report = export_bundle(
            bundle, opset=opset, int8=int8, step=step, calibration=calibration
        )
    for key in ("fp32", "openvino", "int8", "int8_static", "openvino_int8"):
        if key in report:
            r = report[key]
            runtime = " (OpenVINO)" if key.startswith("openvino") else ""
            typer.echo(
                f"{bundle / r['file']}{runtime}: max |map diff| {r['max_abs_map_diff']:.2e}, "
                f"max |score diff| {r['max_abs_score_diff']:.2e} vs PyTorch "
                f"(batch {', '.join(map(str, r['batch_sizes']))})"
            )
    if "int8_static" in report:
        r = report["int8_static"]
        typer.echo(
            f"static int8: {r['quantised']} encoder products int8, {r['kept_fp32']} fp32 "
            f"({len(r['outlier_nodes'])} for outlier channels); {r['method']} ranges from "
            f"{r['calibration_images']} normal image(s)"
        )
    typer.echo(f"report: {bundle / REPORT_FILE}")


@export_app.command("tensorrt")
def tensorrt(
    bundle: Path = typer.Option(..., help="Model bundle folder with model.onnx."),
    max_batch: int = typer.Option(32, min=1, help="Largest batch the engine accepts."),
    opt_batch: int | None = typer.Option(
        None, min=1, help="Batch size TensorRT tunes for (default: --max-batch)."
    ),
    fp32: bool = typer.Option(False, "--fp32", help="Build in FP32 instead of FP16."),
) -> None:
    """Build a TensorRT engine for this machine's GPU: BUNDLE/model.plan + model.plan.json.

    Needs 'inspector export onnx' first, an NVIDIA GPU and the tensorrt package. The engine
    runs only on this GPU model and TensorRT version; the backend refuses it elsewhere.
    """
    from export.tensorrt_build import build_engine  # the export step: not on the runtime path

    with user_errors(), steps(2) as step:
        path = build_engine(
            bundle, max_batch=max_batch, opt_batch=opt_batch, fp16=not fp32, step=step
        )
    typer.echo(f"engine {path} (batch 1..{max_batch}, {'FP32' if fp32 else 'FP16'})")


def _calibration_inputs(bundle: Path, data: Path, limit: int) -> np.ndarray:
    """Model inputs of up to ``limit`` normal images, prepared as the station prepares frames
    (a ROI's tiles for a tiled bundle), for static int8 calibration."""
    recipe = load_recipe(bundle)
    paths = pick_evenly(normal_images(data, include_train=True), limit)
    if not paths:
        raise ImageError(f"no normal images in {data}")
    inputs = np.concatenate([prepare_frame(recipe, read_image(p)).inputs for p in paths])
    return inputs[np.linspace(0, len(inputs) - 1, min(limit, len(inputs))).astype(int)]
