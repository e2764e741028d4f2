"""The export step: bundle -> ONNX graph -> TensorRT engine.

``export`` imports ``models``, never ``inspector``. What the exported files promise their
runtimes (``graph``: names and model id; ``engine``: the TensorRT sidecar and its check) is
torch-free, so the station's backends read it without the export's own dependencies.
"""
