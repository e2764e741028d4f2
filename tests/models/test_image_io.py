"""Reading image files: a small file that decodes into a huge image is refused, not allocated."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

READ = (
    "import sys\n"
    "from models.image_io import ImageError, read_image\n"
    "try:\n"
    "    read_image(sys.argv[1])\n"
    "except ImageError as exc:\n"
    "    print(exc)\n"
)


# what a station process has loaded before it decodes a file, then OpenCV's own decoder
DECODE_AFTER = (
    "import importlib, sys\n"
    "importlib.import_module(sys.argv[2])\n"
    "import cv2, numpy as np\n"
    "try:\n"
    "    cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)\n"
    "    print('decoded')\n"
    "except cv2.error:\n"
    "    print('refused')\n"
)


def write_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    ok, buf = cv2.imencode(".png", np.zeros((12_000, 12_000), np.uint8))  # 144 Mpx, ~160 kB
    assert ok and len(buf) < 1_000_000
    buf.tofile(path)
    return path


def test_a_decompression_bomb_is_an_image_error_before_decoding(tmp_path):
    path = write_bomb(tmp_path)
    # a fresh interpreter, as the daemon is: the cap must be in force before cv2 loads
    proc = subprocess.run(
        [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "larger than 100,000,000 pixels" in proc.stdout


@pytest.mark.parametrize("entry", ["inspector.cli", "inspector.sources.hotfolder"])
def test_the_station_loads_opencv_under_the_cap(tmp_path, entry):
    """The cap is read when cv2 loads (``models/__init__.py`` sets it): every station process
    (the ``inspector`` command; the hot folder decodes files) must load ``models`` first."""
    path = write_bomb(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", DECODE_AFTER, str(path), entry],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "refused", f"{entry} loads cv2 before models sets its cap"
