"""TensorRT backend: a serialized engine built for this GPU, run with the TensorRT 10 API.

No PyTorch: device buffers come from CUDA Python (``cuda.bindings.runtime`` or the older
``cuda.cudart``). An engine runs only on the GPU model and TensorRT version it was built
with; ``check_engine_compatible`` compares the engine's JSON sidecar with this machine and
refuses a mismatch with a message that says how to rebuild.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from inspector.runtime.backends.base import Backend
from models.recipe import load_recipe, tensors_id

ENGINE_FILE = "model.plan"  # written by export/tensorrt_build.py
SIDECAR_FILE = "model.plan.json"


class EngineMismatchError(ValueError):
    """The engine was built for another GPU, TensorRT version or model state."""


class TensorRTMissingError(ImportError, ValueError):
    """The ``tensorrt`` package (or CUDA Python) is not installed (a user-fixable error)."""


class NoGpuError(ValueError):
    """This machine has no NVIDIA GPU that TensorRT could use."""


def import_tensorrt():
    """``import tensorrt`` with an error that says what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTMissingError(
            "TensorRT is not installed: 'pip install tensorrt' on a machine with an NVIDIA GPU "
            f"and driver, or use --backend onnxruntime ({exc})"
        ) from None
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise TensorRTMissingError(
                "CUDA Python is not installed: 'pip install cuda-python' for the TensorRT backend"
            ) from None
    return cudart


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


def _check(result: tuple) -> object:
    """CUDA Python returns ``(error, *values)``; raise on an error, else the value(s)."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else (values or None)


class TensorRTBackend(Backend):
    """Runs ``BUNDLE/model.plan`` on the GPU; any batch from 1 to the engine's maximum."""

    name = "tensorrt"

    def __init__(self, bundle: str | Path, device: str | None = None) -> None:
        trt = import_tensorrt()
        cudart = _cudart()
        bundle = Path(bundle)
        engine_path, sidecar_path = bundle / ENGINE_FILE, bundle / SIDECAR_FILE
        if not engine_path.is_file() or not sidecar_path.is_file():
            raise FileNotFoundError(
                f"{engine_path} or its sidecar is missing: run "
                f"'inspector export tensorrt --bundle {bundle}' first"
            )
        sidecar = json.loads(sidecar_path.read_text())
        check_engine_compatible(
            sidecar,
            describe_gpu(),
            trt.__version__,
            tensors_id(bundle, load_recipe(bundle)),
            str(bundle),
        )
        self.sidecar = sidecar
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"TensorRT could not load {engine_path}: rebuild it")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.max_batch = int(sidecar["max_batch"])
        self.input_name = sidecar["input_name"]
        self.size = int(sidecar["input_shape"][-1])
        self.outputs = [
            n
            for n in (self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors))
            if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        ]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        shape = (self.max_batch, 3, self.size, self.size)
        self._alloc(self.input_name, int(np.prod(shape)) * 4)
        self.context.set_input_shape(self.input_name, shape)
        for name in self.outputs:
            n = int(np.prod(self.context.get_tensor_shape(name)))
            self._alloc(name, n * np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).itemsize)

    def _alloc(self, name: str, nbytes: int) -> None:
        ptr = _check(self._cudart.cudaMalloc(nbytes))
        self._buffers[name] = (int(ptr), nbytes)
        self.context.set_tensor_address(name, int(ptr))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        cudart, trt = self._cudart, self._trt
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.context.set_input_shape(self.input_name, x.shape)
        ptr, _ = self._buffers[self.input_name]
        _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            ptr, _ = self._buffers[name]
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream))
            out[name] = host
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        maps, scores = [], []
        for start in range(0, len(x), self.max_batch):  # bursts above the profile: in chunks
            out = self._run(x[start : start + self.max_batch])
            maps.append(out["anomaly_map"].astype(np.float32))
            scores.append(out["score"].astype(np.float32))
        return np.concatenate(maps), np.concatenate(scores)

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None
