"""The export step: bundle -> ONNX graph -> TensorRT engine."""
