"""The BatteryGPT-style anomaly model: encoders, decoder, prompts, memory bank, bundles.

Modules that the runtime needs without PyTorch (``recipe``, ``preprocess``, ``image_io``) do
not import torch; everything else does.
"""
