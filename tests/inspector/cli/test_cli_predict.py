"""``inspector bundle create`` and ``inspector predict`` end to end, offline."""

import json

import cv2
import numpy as np
import pytest

from tests.cli_helpers import run_inspector
from tests.conftest import paste_foreign, textured


@pytest.fixture(scope="module")
def cli_bundle(tmp_path_factory, reference_dir):
    out = tmp_path_factory.mktemp("cli") / "bundle"
    proc = run_inspector(
        "bundle",
        "create",
        "--arch",
        "tiny",
        "--product",
        "pouch cell",
        "--reference-dir",
        str(reference_dir),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 reference image(s)" in proc.stdout
    return out


def test_predict_writes_json_overlay_and_map_per_image(cli_bundle, tmp_path):
    gray = paste_foreign(textured(301, 457, seed=0), (200, 100, 60, 60))
    paths = {
        "gray.png": gray,
        "gray16.png": gray.astype(np.uint16) * 257,
        "colour.png": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
    }
    for name, img in paths.items():
        cv2.imwrite(str(tmp_path / name), img)
    out = tmp_path / "out"
    proc = run_inspector(
        "predict",
        "--bundle",
        str(cli_bundle),
        *[str(tmp_path / n) for n in paths],
        "--out",
        str(out),
        "--save-map",
    )
    assert proc.returncode == 0, proc.stderr
    for name in paths:
        stem = name.removesuffix(".png")
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["verdict"] in ("pass", "fail")
        assert 0.0 <= record["image_score"] <= 1.0
        assert isinstance(record["regions"], list)
        assert record["model_id"].startswith("tiny-") and record["backend"] == "torch"
        amap = np.load(out / f"{stem}_map.npy")
        assert amap.shape == (301, 457) and amap.dtype == np.float32
        overlay = cv2.imread(str(out / f"{stem}_overlay.png"))
        assert overlay is not None and overlay.shape[1] >= 457
        # the pasted patch is where the map is highest
        assert amap[100:160, 200:260].mean() > amap.mean()
    assert "thresholds are not calibrated" in proc.stderr


def test_unreadable_file_gets_an_error_record_and_others_still_run(cli_bundle, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    cv2.imwrite(str(tmp_path / "ok.png"), textured(200, 200))
    out = tmp_path / "out"
    proc = run_inspector(
        "predict",
        "--bundle",
        str(cli_bundle),
        str(tmp_path / "broken.png"),
        str(tmp_path / "ok.png"),
        "--out",
        str(out),
    )
    assert proc.returncode == 1
    assert json.loads((out / "broken.json").read_text())["verdict"] == "error"
    assert json.loads((out / "ok.json").read_text())["verdict"] in ("pass", "fail")
    assert "1 of 2 image(s) could not be inspected" in proc.stderr


def test_bundle_create_refuses_to_overwrite_a_bundle(cli_bundle):
    proc = run_inspector("bundle", "create", "--product", "x", "--out", str(cli_bundle))
    assert proc.returncode == 2
    assert "already holds a bundle" in proc.stderr and "--force" in proc.stderr


def test_vit_h_without_weights_is_one_line_naming_the_file(tmp_path):
    proc = run_inspector(
        "bundle",
        "create",
        "--arch",
        "vit-h-14",
        "--product",
        "pouch cell",
        "--out",
        str(tmp_path / "b"),
        env={"INSPECTOR_WEIGHTS_DIR": str(tmp_path)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    expected = tmp_path / "ViT-H-14" / "open_clip_pytorch_model.bin"
    assert str(expected) in lines[0] and "--weights" in lines[0]
    assert not (tmp_path / "b" / "recipe.yaml").exists()


def test_bundle_create_defaults_to_the_pretrained_backbone_and_tiny_says_it_detects_nothing(
    tmp_path, reference_dir
):
    default = run_inspector(
        "bundle", "create", "--product", "p", "--reference-dir", str(reference_dir),
        "--out", str(tmp_path / "default"),
    )  # fmt: skip
    assert default.returncode == 0, default.stderr
    assert "effnet-lite0 at 224 px" in default.stdout and "memory bank" in default.stdout
    assert "warning" not in default.stderr
    tiny = run_inspector("bundle", "create", "--arch", "tiny", "--product", "p",
                         "--out", str(tmp_path / "tiny"))  # fmt: skip
    assert tiny.returncode == 0 and "for tests only and detects nothing" in tiny.stderr


def test_unknown_architecture_is_refused(tmp_path):
    proc = run_inspector(
        "bundle", "create", "--arch", "vit-x", "--product", "p", "--out", str(tmp_path / "b")
    )
    assert proc.returncode == 2 and "unknown architecture 'vit-x'" in proc.stderr


def test_predict_on_a_folder_inspects_it_recursively_and_keeps_the_sub_folders(
    cli_bundle, tmp_path
):
    """Two defect folders with the same file names: each output says which folder it is from."""
    data = tmp_path / "test"
    for folder, seed in (("good", 0), ("scratch", 1), ("dent/deep", 2)):
        (data / folder).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(data / folder / f"{i:04d}.png"), textured(120, 160, seed=seed + i))
    (data / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = run_inspector("predict", "--bundle", str(cli_bundle), str(data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert written == [
        f"{folder}/{i:04d}.json" for folder in ("dent/deep", "good", "scratch") for i in range(2)
    ]
    record = json.loads((out / "scratch/0001.json").read_text())
    assert record["image"] == str(data / "scratch/0001.png") and record["verdict"] != "error"
    assert (out / "dent/deep/0000_overlay.png").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_inspector("predict", "--bundle", str(cli_bundle), str(empty), "--out", str(out))
    assert proc.returncode == 2 and "no images in this folder" in proc.stderr
