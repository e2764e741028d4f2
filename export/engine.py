"""A TensorRT engine and the machine it runs on: the sidecar written beside the engine (what it
was built for), the check that this machine can run it, and this machine's GPU and TensorRT.

An engine runs only on the GPU model and TensorRT version it was built with.
``export.tensorrt_build`` writes the sidecar; the TensorRT backend and ``engine_check`` read it
and refuse a mismatch with a message that says how to rebuild. No torch; ``tensorrt`` is
imported only by ``import_tensorrt``.

Example:
    >>> describe_gpu()                                      # doctest: +SKIP
    {'name': 'NVIDIA H100 80GB HBM3', 'compute_capability': '9.0'}
    >>> check_engine_compatible(sidecar, describe_gpu(), "10.3.0", mid, "b")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

from export.graph import INPUT_NAME


class EngineMismatchError(ValueError):
    """The engine was built for another GPU, TensorRT version or model state."""


class TensorRTMissingError(ImportError, ValueError):
    """The ``tensorrt`` package (or CUDA Python) is not installed (a user-fixable error)."""


class NoGpuError(ValueError):
    """This machine has no NVIDIA GPU that TensorRT could use."""


def import_tensorrt():
    """``import tensorrt`` with an error that says what to install."""
    try:
        import tensorrt as trt  # optional and heavy: only where an engine is built or run
    except ImportError as exc:
        raise TensorRTMissingError(
            "TensorRT is not installed: 'pip install tensorrt' on a machine with an NVIDIA GPU "
            f"and driver, or use --backend onnxruntime ({exc})"
        ) from None
    return trt


def describe_gpu(index: int | None = None) -> dict[str, str]:
    """Name and compute capability of the GPU CUDA calls device 0 (via ``nvidia-smi``).

    Returns ``{"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}``.
    """
    if index is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        index = int(visible) if visible.isdigit() else 0
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "-i",
                str(index),
                "--query-gpu=name,compute_cap",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NoGpuError(f"no NVIDIA GPU found for TensorRT (nvidia-smi: {exc})") from None
    name, cc = (part.strip() for part in out.strip().splitlines()[0].rsplit(",", 1))
    return {"name": name, "compute_capability": cc}


def engine_sidecar(
    *,
    tensorrt_version: str,
    gpu: dict[str, str],
    size: int,
    max_batch: int,
    opt_batch: int,
    precision: str,
    fp32_layers: int,
    bundle_model_id: str,
) -> dict:
    """What the engine was built for; ``check_engine_compatible`` reads it before loading.

    ``bundle_model_id`` is the model id stored in the ONNX graph the engine was built from.
    """
    return {
        "tensorrt": tensorrt_version,
        "gpu": dict(gpu),
        "input_name": INPUT_NAME,
        "input_shape": [-1, 3, size, size],
        "min_batch": 1,
        "opt_batch": opt_batch,
        "max_batch": max_batch,
        "precision": precision,
        "fp32_layers": fp32_layers,
        "model_id": bundle_model_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_engine_compatible(
    sidecar: dict, gpu: dict[str, str], tensorrt_version: str, current_model_id: str, bundle: str
) -> None:
    """Refuse an engine that this GPU, TensorRT version or bundle state cannot use.

    Args:
        sidecar: the engine's ``model.plan.json``.
        gpu: this machine's ``describe_gpu()``.
        tensorrt_version: ``tensorrt.__version__`` here.
        current_model_id: ``models.recipe.model_id`` of the bundle now.
        bundle: the bundle path, for the rebuild command in the message.

    Raises:
        EngineMismatchError: saying what differs and to rebuild.
    """
    rebuild = f"rebuild it here with 'inspector export tensorrt --bundle {bundle}'"
    built_gpu = sidecar.get("gpu", {})
    problems = []
    if sidecar.get("tensorrt") != tensorrt_version:
        problems.append(
            f"TensorRT {sidecar.get('tensorrt')} but this machine has {tensorrt_version}"
        )
    if built_gpu.get("compute_capability") != gpu.get("compute_capability") or built_gpu.get(
        "name"
    ) != gpu.get("name"):
        problems.append(
            f"GPU {built_gpu.get('name')} (sm {built_gpu.get('compute_capability')}) but this "
            f"machine has {gpu.get('name')} (sm {gpu.get('compute_capability')})"
        )
    if sidecar.get("model_id") != current_model_id:
        problems.append(f"model {sidecar.get('model_id')} but the bundle is now {current_model_id}")
    if problems:
        raise EngineMismatchError(
            "the TensorRT engine was built for " + "; ".join(problems) + f": {rebuild}"
        )
