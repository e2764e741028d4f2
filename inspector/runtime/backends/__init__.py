"""Runtime backends behind one interface; each is imported only when chosen.

``BACKENDS`` is the one list of runtime names: the config's ``backend`` values, the help of
``predict``, ``calibrate`` and ``evaluate``, and the engine check's candidates derive from it.
A new runtime is one module here and one line in ``BACKENDS``. The ONNX Runtime, OpenVINO and
TensorRT paths must not import PyTorch or training code.

Example:
    >>> backend_spec("openvino-int8").int8
    'static'
    >>> backend_names_text().endswith("openvino-int8 or tensorrt")
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inspector.runtime.backends.base import Backend


@dataclass(frozen=True)
class BackendSpec:
    """One runtime: where its class is, and which maps it gives.

    ``target`` is ``module:Class``, imported when the backend is created. ``int8`` says how
    the runtime quantises (``static`` ones run ``model.int8-static.onnx``); int8 maps come from
    the runtime's own kernels, so only that runtime reproduces a calibration made with it.
    ``auto`` makes it a candidate of ``backend: auto`` (an fp32 runtime with no training code).
    """

    target: str
    int8: Literal["dynamic", "static"] | None = None
    auto: bool = False


_HERE = "inspector.runtime.backends"
BACKENDS: dict[str, BackendSpec] = {
    "torch": BackendSpec(f"{_HERE}.torch_backend:TorchBackend"),
    "onnxruntime": BackendSpec(f"{_HERE}.onnxruntime_backend:OnnxRuntimeBackend", auto=True),
    "onnxruntime-int8": BackendSpec(
        f"{_HERE}.onnxruntime_backend:OnnxRuntimeInt8Backend", int8="dynamic"
    ),
    "onnxruntime-int8-static": BackendSpec(
        f"{_HERE}.onnxruntime_backend:OnnxRuntimeInt8StaticBackend", int8="static"
    ),
    "openvino": BackendSpec(f"{_HERE}.openvino_backend:OpenVinoBackend", auto=True),
    "openvino-int8": BackendSpec(f"{_HERE}.openvino_backend:OpenVinoInt8Backend", int8="static"),
    "tensorrt": BackendSpec(f"{_HERE}.tensorrt_backend:TensorRTBackend", auto=True),
}
#: Not a runtime: the config value that lets the engine check time the candidates here.
AUTO = "auto"


def backend_spec(name: str) -> BackendSpec:
    """The registry row of backend ``name``.

    Raises:
        ValueError: ``name`` is no backend; the message lists those there are.
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None


def backend_names_text(names: Iterable[str] | None = None, last: str = "or") -> str:
    """Backend names as help texts write them: ``torch, onnxruntime, ... or tensorrt``.

    ``names``: these (in their order) instead of every backend; ``last`` joins the last two.
    """
    *rest, final = BACKENDS if names is None else names
    return f"{', '.join(rest)} {last} {final}" if rest else final


def create_backend(name: str, bundle: str | Path, **options: object) -> Backend:
    """Instantiate backend ``name`` for ``bundle``; options go to its constructor."""
    module, cls = backend_spec(name).target.split(":")
    return getattr(importlib.import_module(module), cls)(bundle, **options)


__all__ = [
    "AUTO",
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "backend_names_text",
    "backend_spec",
    "create_backend",
]
