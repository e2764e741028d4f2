"""The files of a model bundle, by name: the one list every writer and reader of a bundle uses.

A bundle is a folder. ``models`` writes the recipe and the tensors, ``export`` the graphs, the
report and the TensorRT engine, ``inspector calibrate`` the calibration details. No imports,
no torch: the runtime path reads bundles too.

Example:
    >>> from pathlib import Path
    >>> Path("bundles/pouch") / ONNX_FILE
    PosixPath('bundles/pouch/model.onnx')
    >>> ENGINE_FILE in BUNDLE_FILES
    True
"""

RECIPE_FILE = "recipe.yaml"
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
TEXT_FILE = "text_embeddings.safetensors"
MEMORY_FILE = "memory_bank.safetensors"
CHECKPOINT_FILE = "train_checkpoint.pt"  # training's progress; belongs to one bundle state
CALIBRATION_FILE = "calibration.json"  # how the thresholds were calibrated (backend, rates)
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"  # dynamic: weights int8, activations scaled per call
ONNX_INT8_STATIC_FILE = "model.int8-static.onnx"  # static QDQ, calibrated on normal images
REPORT_FILE = "export_report.json"  # the export's parity report, written last
ENGINE_FILE = "model.plan"  # TensorRT engine, built for one GPU and TensorRT version
SIDECAR_FILE = ENGINE_FILE + ".json"  # what the engine was built for
TIMING_CACHE_FILE = "tensorrt.timing-cache"  # makes the next engine build fast


def data_file(graph_file: str) -> str:
    """The file beside a graph that holds its weights when they pass protobuf's 2 GB limit (the
    name ONNX Runtime's quantiser gives it too)."""
    return graph_file + ".data"


MODEL_FILES = (RECIPE_FILE, ENCODER_FILE, DECODER_FILE, TEXT_FILE, MEMORY_FILE)
GRAPH_FILES = (ONNX_FILE, ONNX_INT8_FILE, ONNX_INT8_STATIC_FILE)
EXPORT_FILES = (
    *GRAPH_FILES,
    *(data_file(g) for g in GRAPH_FILES),
    REPORT_FILE,
    ENGINE_FILE,
    SIDECAR_FILE,
)
WORK_FILES = (CHECKPOINT_FILE, TIMING_CACHE_FILE)  # speed up the next step; not the model
BUNDLE_FILES = (*MODEL_FILES, CALIBRATION_FILE, *EXPORT_FILES, *WORK_FILES)
