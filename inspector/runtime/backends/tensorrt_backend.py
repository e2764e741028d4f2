"""TensorRT backend: a serialized engine built for this GPU, run with the TensorRT 10 API.

No PyTorch: device buffers come from CUDA Python (``cuda.bindings.runtime`` or the older
``cuda.cudart``). An engine runs only on the GPU model and TensorRT version it was built
with; ``export.engine.check_engine_compatible`` compares the engine's JSON sidecar with this
machine and refuses a mismatch with a message that says how to rebuild.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export.engine import (
    EngineMismatchError,
    TensorRTMissingError,
    check_engine_compatible,
    describe_gpu,
    import_tensorrt,
)
from inspector.runtime.backends.base import Backend
from models.bundle_files import ENGINE_FILE, SIDECAR_FILE
from models.recipe import load_recipe, tensors_id


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # optional: CUDA Python (the gpu extra)
    except ImportError:
        try:
            from cuda import cudart  # CUDA Python before 12.6
        except ImportError:
            raise TensorRTMissingError(
                "CUDA Python is not installed: 'pip install cuda-python' for the TensorRT backend"
            ) from None
    return cudart


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
