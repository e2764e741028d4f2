"""What an exported graph promises the runtimes that load it: its input and output names, and
the bundle state it was exported from (the model id in its metadata), checked before loading.

``export.onnx_export`` writes these; the ONNX Runtime and OpenVINO backends, the TensorRT
build and ``engine_check`` read them. No torch.

Example:
    >>> bundle = Path("bundles/pouch")
    >>> check_export_current(bundle / "model.onnx", bundle)    # doctest: +SKIP
    'tiny-1a2b3c4d5e6f'
"""

from __future__ import annotations

from pathlib import Path

from models.bundle_files import ONNX_INT8_FILE, ONNX_INT8_STATIC_FILE
from models.recipe import load_recipe, tensors_id

INPUT_NAME = "images"  # the graph's input: named by onnx_export, profiled by tensorrt_build
OUTPUT_NAMES = ("anomaly_map", "score")
MODEL_ID_KEY = "model_id"  # metadata_props key holding models.recipe.tensors_id at export
PROTOBUF_LIMIT = 2**31 - 1  # a single ONNX protobuf cannot exceed 2 GB
EXTERNAL_DATA_BYTES = PROTOBUF_LIMIT // 2  # weights past this go to models.bundle_files.data_file


class StaleExportError(ValueError):
    """The exported graph belongs to an older state of the bundle's tensors."""


def exported_model_id(path: str | Path) -> str | None:
    """The bundle's ``model_id`` stored in an exported graph's metadata (None when absent).

    Big graphs keep their weights in an external file, which is not read here.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not an ONNX model.
    """
    import onnx  # a second to import: only processes that check an export pay it

    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError:
        raise
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"{path}: not an ONNX model ({exc})") from None
    return {p.key: p.value for p in model.metadata_props}.get(MODEL_ID_KEY)


def check_export_current(path: Path, bundle: Path, current: str | None = None) -> str:
    """The model id ``path`` was exported from; ``StaleExportError`` unless it is the bundle's
    current one (``current``, else computed)."""
    exported = exported_model_id(path)
    current = current or tensors_id(bundle, load_recipe(bundle))
    if exported != current:
        flag = export_flag(path.name)
        raise StaleExportError(
            f"{path.name} was exported from model {exported}, but the bundle is now "
            f"{current}: run 'inspector export onnx --bundle {bundle}{flag}' again"
        )
    return exported


def export_flag(file_name: str) -> str:
    """The ``inspector export onnx`` option that writes ``file_name`` (with its leading space)."""
    return {
        ONNX_INT8_FILE: " --int8",
        ONNX_INT8_STATIC_FILE: " --int8-static --calibration-dir NORMAL_IMAGES",
    }.get(file_name, "")
