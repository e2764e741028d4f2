"""How far an exported graph's maps and scores are from PyTorch's on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.data.synth import DEFECTS, render
from models.detector import BatteryDetector
from models.preprocess import preprocess


def parity_inputs(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed procedural pouch cells, every second one with a defect."""
    defects = DEFECTS["pouch"]
    images = []
    for i in range(n):
        defect = defects[(i // 2) % len(defects)] if i % 2 else None
        img, _ = render("pouch", [seed, i], defect=defect)
        images.append(preprocess(img, size))
    return np.stack(images)


def max_diffs(
    maps_a: np.ndarray, scores_a: np.ndarray, maps_b: np.ndarray, scores_b: np.ndarray
) -> dict[str, float]:
    """Max and mean absolute map difference and max absolute score difference."""
    d = np.abs(maps_a.astype(np.float64) - maps_b.astype(np.float64))
    return {
        "max_abs_map_diff": float(d.max()),
        "mean_abs_map_diff": float(d.mean()),
        "max_abs_score_diff": float(np.abs(scores_a.astype(np.float64) - scores_b).max()),
    }


def _runner(onnx_path: str | Path, runtime: str):
    """``run(x) -> (maps, scores)`` for the graph in ``runtime`` on the CPU."""
    if runtime == "openvino":
        import openvino as ov  # optional (the openvino extra)

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(onnx_path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        return lambda x: tuple(compiled(x).to_tuple())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {session.get_inputs()[0].name: x})


def parity(
    detector: BatteryDetector, onnx_path: str | Path, batch: int = 2, runtime: str = "onnxruntime"
) -> dict:
    """Run PyTorch and ``runtime`` (``onnxruntime`` or ``openvino``, on the CPU) on the same
    images at batch 1 and ``batch``.

    Returns the worst differences over both batch sizes and the batch sizes checked.
    """
    run = _runner(onnx_path, runtime)
    x = parity_inputs(max(batch, 1), detector.image_size)
    worst: dict[str, float] = {}
    sizes = sorted({1, batch})
    for b in sizes:
        with torch.inference_mode():
            maps, scores = detector(torch.from_numpy(x[:b]))
        o_maps, o_scores = run(x[:b])
        for key, value in max_diffs(maps.numpy(), scores.numpy(), o_maps, o_scores).items():
            worst[key] = max(worst.get(key, 0.0), value)
    return {**worst, "batch_sizes": sizes}
