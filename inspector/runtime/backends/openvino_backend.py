"""OpenVINO backend: the bundle's exported ONNX graph on Intel CPUs (and iGPUs), without PyTorch.

OpenVINO reads ``model.onnx`` directly; no IR conversion step or extra file. It is compiled
with fp32 inference precision: on CPUs with bf16 or AMX, OpenVINO would otherwise run in bf16,
and the normalisations, cosines, softmax and memory-bank distances must stay fp32 (see
``export/quantize.py``). ``openvino-int8`` runs the statically quantised
``model.int8-static.onnx`` (QDQ): OpenVINO turns its QuantizeLinear/DequantizeLinear pairs
into int8 kernels and runs everything outside them in fp32.

Needs the ``openvino`` extra (``pip install 'battery-inspector[openvino]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.graph import check_export_current
from inspector.runtime.backends.base import Backend
from inspector.runtime.backends.onnxruntime_backend import cpu_threads
from models.bundle_files import ONNX_FILE, ONNX_INT8_STATIC_FILE


class OpenVinoMissingError(ImportError):
    """The ``openvino`` package is not installed."""


def import_openvino():
    """The ``openvino`` module, or ``OpenVinoMissingError`` with the install command."""
    try:
        import openvino  # optional (the openvino extra)
    except ImportError:
        raise OpenVinoMissingError(
            "OpenVINO is not installed: pip install 'battery-inspector[openvino]'"
        ) from None
    return openvino


class OpenVinoBackend(Backend):
    """Runs ``BUNDLE/model.onnx`` (or ``model.int8-static.onnx`` with ``int8=True``) in OpenVINO.

    Args:
        bundle: the bundle folder, exported with ``inspector export onnx``.
        int8: run the statically quantised graph (``inspector export onnx --int8-static``).
        device: OpenVINO device name (``CPU``, ``GPU`` for an Intel iGPU, ``AUTO``).
        threads: inference threads (default: the cores this process may run on).

    Example:
        >>> b = OpenVinoBackend("bundles/pouch")                    # doctest: +SKIP
        >>> maps, scores = b.infer(batch)                           # doctest: +SKIP
    """

    name = "openvino"

    def __init__(
        self,
        bundle: str | Path,
        int8: bool = False,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        ov = import_openvino()
        bundle = Path(bundle)
        path = bundle / (ONNX_INT8_STATIC_FILE if int8 else ONNX_FILE)
        if not path.is_file():
            flag = " --int8-static --calibration-dir NORMAL_IMAGES" if int8 else ""
            raise FileNotFoundError(
                f"{path} is missing: run 'inspector export onnx --bundle {bundle}{flag}' first"
            )
        check_export_current(path, bundle)
        self.device = (device or "CPU").upper()
        config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads or cpu_threads()
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), self.device, config)
        self.request = self.compiled.create_infer_request()
        self.outputs = list(self.compiled.outputs)
        self.precision = "int8" if int8 else "fp32"
        self.version = ov.__version__ if hasattr(ov, "__version__") else ov.get_version()
        if int8:
            self.name = "openvino-int8"

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        result = self.request.infer({0: x})
        # copies: the request's output buffers are reused by the next call
        return np.array(result[self.outputs[0]]), np.array(result[self.outputs[1]])

    def close(self) -> None:
        self.request = None  # type: ignore[assignment]
        self.compiled = None  # type: ignore[assignment]


class OpenVinoInt8Backend(OpenVinoBackend):
    """``BUNDLE/model.int8-static.onnx`` in OpenVINO, by name (``--backend openvino-int8``)."""

    def __init__(self, bundle: str | Path, **options: object) -> None:
        super().__init__(bundle, int8=True, **options)  # type: ignore[arg-type]
