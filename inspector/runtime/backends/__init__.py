"""Runtime backends behind one interface; each is imported only when chosen.

The ONNX Runtime, OpenVINO and TensorRT paths must not import PyTorch or training code. A new
runtime is one module here and one line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from inspector.runtime.backends.base import Backend

BACKENDS: dict[str, str] = {
    "torch": "inspector.runtime.backends.torch_backend:TorchBackend",
    "onnxruntime": "inspector.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "onnxruntime-int8": "inspector.runtime.backends.onnxruntime_backend:OnnxRuntimeInt8Backend",
    "onnxruntime-int8-static": "inspector.runtime.backends.onnxruntime_backend:"
    "OnnxRuntimeInt8StaticBackend",
    "openvino": "inspector.runtime.backends.openvino_backend:OpenVinoBackend",
    "openvino-int8": "inspector.runtime.backends.openvino_backend:OpenVinoInt8Backend",
    "tensorrt": "inspector.runtime.backends.tensorrt_backend:TensorRTBackend",
}


def create_backend(name: str, bundle: str | Path, **options: object) -> Backend:
    """Instantiate backend ``name`` for ``bundle``; options go to its constructor."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(bundle, **options)


__all__ = ["BACKENDS", "Backend", "create_backend"]
