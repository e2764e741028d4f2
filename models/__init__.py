"""The BatteryGPT-style anomaly model: encoders, decoder, prompts, memory bank, bundles.

Modules that the runtime needs without PyTorch (``bundle_files``, ``recipe``, ``preprocess``,
``image_io``) do not import torch; everything else does. ``models`` imports neither
``inspector`` nor ``export`` (setup.cfg's import contracts).
"""

import os

MAX_PIXELS = 100_000_000
# OpenCV reads its decoder's size cap once, when cv2 is loaded: set it before any module here
# imports cv2, so a small file that decompresses into a huge image is refused, not allocated.
# Image files are decoded by ``models.image_io.decode_image`` only, so whatever decodes has run
# this first; tests/models/test_image_io.py checks that the station's processes load cv2 after.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
