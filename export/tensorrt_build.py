"""ONNX graph -> TensorRT engine for the GPU of this machine, with a JSON sidecar.

FP16 with LayerNormalization, softmax and every L2 norm (square, sum, sqrt) kept in FP32, one
optimisation profile for batch 1..N, and a timing cache beside the engine so a rebuild after
retraining takes seconds instead of minutes. ``tensorrt`` is imported only when building.

Example:
    >>> build_engine("bundles/pouch", max_batch=32)             # doctest: +SKIP
    PosixPath('bundles/pouch/model.plan')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from export.engine import describe_gpu, engine_sidecar, import_tensorrt
from export.graph import INPUT_NAME, check_export_current
from models.bundle_files import ENGINE_FILE, ONNX_FILE, SIDECAR_FILE, TIMING_CACHE_FILE
from models.recipe import load_recipe


def profile_shapes(max_batch: int, size: int, opt_batch: int | None = None) -> dict[str, tuple]:
    """Min/opt/max input shapes of the batch profile (opt defaults to the largest batch)."""
    if max_batch < 1:
        raise ValueError(f"--max-batch must be at least 1, got {max_batch}")
    opt = min(max(opt_batch or max_batch, 1), max_batch)
    return {
        "min": (1, 3, size, size),
        "opt": (opt, 3, size, size),
        "max": (max_batch, 3, size, size),
    }


def fp32_layer_indices(trt, network) -> list[int]:
    """Layers an FP16 engine must keep in FP32: normalisation, softmax, reductions, and the
    element-wise or unary layers that feed a reduction or take its result.

    TensorRT turns ONNX ReduceL2 into square -> reduce -> sqrt; pinning the reduce alone
    leaves the square in FP16, where any value above 256 overflows (the graph also divides by
    the largest magnitude before every norm, ``models.numerics.unit``; this is the second
    guard).
    """
    kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    around = {trt.LayerType.ELEMENTWISE, trt.LayerType.UNARY}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    reduce_in, reduce_out = set(), set()
    for layer in layers:
        if layer.type == trt.LayerType.REDUCE:
            reduce_in |= {layer.get_input(j).name for j in range(layer.num_inputs)}
            reduce_out |= {layer.get_output(j).name for j in range(layer.num_outputs)}
    pinned = []
    for i, layer in enumerate(layers):
        outs = {layer.get_output(j).name for j in range(layer.num_outputs)}
        ins = {layer.get_input(j).name for j in range(layer.num_inputs)}
        if layer.type in kinds or (layer.type in around and (outs & reduce_in or ins & reduce_out)):
            pinned.append(i)
    return pinned


def _keep_norms_fp32(trt, network) -> int:
    """Pin ``fp32_layer_indices`` to FP32 (precision and output types); returns how many."""
    indices = fp32_layer_indices(trt, network)
    for i in indices:
        layer = network.get_layer(i)
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
    return len(indices)


def build_engine(
    bundle: str | Path,
    max_batch: int = 32,
    opt_batch: int | None = None,
    fp16: bool = True,
    workspace_gib: float | None = None,
    step: Callable[[str], None] | None = None,
) -> Path:
    """Build ``BUNDLE/model.plan`` and ``model.plan.json`` from ``BUNDLE/model.onnx``.

    Raises:
        FileNotFoundError: the bundle has no ONNX export yet.
        StaleExportError: the ONNX export is of an older state of the bundle (checked before
            TensorRT is imported).
        TensorRTMissingError: ``tensorrt`` cannot be imported.
        RuntimeError: TensorRT could not parse the graph or build the engine.
    """
    step = step or (lambda _msg: None)
    bundle = Path(bundle)
    onnx_path = bundle / ONNX_FILE
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f"{onnx_path} is missing: run 'inspector export onnx --bundle {bundle}' first"
        )
    recipe = load_recipe(bundle)
    exported_id = check_export_current(onnx_path, bundle)
    shapes = profile_shapes(max_batch, recipe.input_size, opt_batch)
    trt = import_tensorrt()
    gpu = describe_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    step("parsing the ONNX graph")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    pinned = 0
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _keep_norms_fp32(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_path = bundle / TIMING_CACHE_FILE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    step(
        f"building the {'FP16' if fp16 else 'FP32'} engine for batch 1..{max_batch} on "
        f"{gpu['name']} (minutes; faster with a timing cache)"
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the messages above)")
    engine_path = bundle / ENGINE_FILE
    tmp = engine_path.with_suffix(".plan.tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    sidecar = engine_sidecar(
        tensorrt_version=trt.__version__,
        gpu=gpu,
        size=recipe.input_size,
        max_batch=max_batch,
        opt_batch=shapes["opt"][0],
        precision="fp16" if fp16 else "fp32",
        fp32_layers=pinned,
        bundle_model_id=exported_id,
    )
    (bundle / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
    return engine_path
