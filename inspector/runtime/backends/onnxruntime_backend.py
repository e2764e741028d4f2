"""ONNX Runtime backend: the bundle's exported graph, without PyTorch or training code.

Uses the CUDA execution provider where the installed ONNX Runtime has it, otherwise the CPU
with all graph optimisations and one intra-op thread per core this process may run on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from export.graph import check_export_current, export_flag
from inspector.runtime.backends.base import Backend
from models.bundle_files import ONNX_FILE, ONNX_INT8_FILE, ONNX_INT8_STATIC_FILE


def cpu_threads() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def choose_providers(available: list[str], device: str | None = None) -> list[str]:
    """Execution providers to ask for: CUDA first where present (unless ``device='cpu'``)."""
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ValueError("ONNX Runtime has no CUDA provider here; install onnxruntime-gpu")
    return ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """Runs ``BUNDLE/model.onnx`` (or ``model.int8.onnx`` with ``int8=True``, or
    ``model.int8-static.onnx`` with ``int8=True, static=True``).

    Example:
        >>> b = OnnxRuntimeBackend("bundles/pouch")                # doctest: +SKIP
        >>> maps, scores = b.infer(batch)                          # doctest: +SKIP
    """

    name = "onnxruntime"

    def __init__(
        self,
        bundle: str | Path,
        int8: bool = False,
        device: str | None = None,
        threads: int | None = None,
        static: bool = False,
    ) -> None:
        import onnxruntime as ort  # not for openvino_backend, which imports cpu_threads

        bundle = Path(bundle)
        name = ONNX_FILE
        if int8:
            name = ONNX_INT8_STATIC_FILE if static else ONNX_INT8_FILE
        path = bundle / name
        if not path.is_file():
            flag = export_flag(name)
            raise FileNotFoundError(
                f"{path} is missing: run 'inspector export onnx --bundle {bundle}{flag}' first"
            )
        check_export_current(path, bundle)  # before loading a graph that may be gigabytes
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = choose_providers(ort.get_available_providers(), device)
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.providers = self.session.get_providers()
        self.precision = "int8" if int8 else "fp32"
        if int8:
            self.name = "onnxruntime-int8-static" if static else "onnxruntime-int8"
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        maps, scores = self.session.run(None, {self.input_name: x})
        return maps, scores

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """``BUNDLE/model.int8.onnx``: the int8 variant, by name (``--backend onnxruntime-int8``)."""

    def __init__(self, bundle: str | Path, **options: object) -> None:
        super().__init__(bundle, int8=True, **options)  # type: ignore[arg-type]


class OnnxRuntimeInt8StaticBackend(OnnxRuntimeBackend):
    """``BUNDLE/model.int8-static.onnx`` (``--backend onnxruntime-int8-static``)."""

    def __init__(self, bundle: str | Path, **options: object) -> None:
        super().__init__(bundle, int8=True, static=True, **options)  # type: ignore[arg-type]
