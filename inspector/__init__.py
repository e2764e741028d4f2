"""battery-inspector: the line daemon and the ``inspector`` command."""

import models  # noqa: F401  (caps OpenCV's decoder before anything loads cv2)

__version__ = "0.1.0"
