"""Reading image files: a small file that decodes into a huge image is refused, not allocated."""

import subprocess
import sys

import cv2
import numpy as np

READ = (
    "import sys\n"
    "from models.image_io import ImageError, read_image\n"
    "try:\n"
    "    read_image(sys.argv[1])\n"
    "except ImageError as exc:\n"
    "    print(exc)\n"
)


def test_a_decompression_bomb_is_an_image_error_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    ok, buf = cv2.imencode(".png", np.zeros((12_000, 12_000), np.uint8))  # 144 Mpx, ~160 kB
    assert ok and len(buf) < 1_000_000
    buf.tofile(path)
    # a fresh interpreter, as the daemon is: the cap must be in force before cv2 loads
    proc = subprocess.run(
        [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "larger than 100,000,000 pixels" in proc.stdout
