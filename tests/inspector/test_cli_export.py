"""`inspector export onnx --int8-static`: the edge-box commands of the engineer guide."""

from __future__ import annotations

import shutil

from tests.cli_helpers import run_inspector


def test_static_int8_export_calibrates_on_the_given_normal_images(
    tmp_path, tiny_bundle, reference_dir
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    missing = run_inspector("export", "onnx", "--bundle", str(bundle), "--int8-static")
    assert missing.returncode != 0 and "--calibration-dir" in missing.stderr + missing.stdout

    proc = run_inspector(
        "export", "onnx", "--bundle", str(bundle), "--int8-static",
        "--calibration-dir", str(reference_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "model.int8-static.onnx").is_file()
    assert "4 normal image(s)" in proc.stdout
