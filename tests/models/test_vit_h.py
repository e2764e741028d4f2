"""The real ViT-H-14 classes, loaded from a local state dict (random weights saved here)."""

import json

import cv2
import numpy as np
import pytest
import torch

from tests.cli_helpers import run_inspector
from tests.conftest import textured


@pytest.mark.slow
def test_vit_h_loads_from_a_local_state_dict_and_predicts(tmp_path, reference_dir):
    import open_clip

    model = open_clip.create_model("ViT-H-14", pretrained=None, pretrained_text=False)
    weights = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, weights)  # 2 GB, not 4
    del model

    bundle = tmp_path / "bundle"
    proc = run_inspector(
        "bundle",
        "create",
        "--arch",
        "vit-h-14",
        "--weights",
        str(weights),
        "--product",
        "pouch cell",
        "--reference-dir",
        str(reference_dir),
        "--shots",
        "2",
        "--out",
        str(bundle),
    )
    assert proc.returncode == 0, proc.stderr
    weights.unlink()  # the bundle must not need it any more
    cv2.imwrite(str(tmp_path / "cell.png"), textured(301, 457, seed=5))
    proc = run_inspector(
        "predict",
        "--bundle",
        str(bundle),
        str(tmp_path / "cell.png"),
        "--out",
        str(tmp_path / "out"),
        "--save-map",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "cell.json").read_text())
    assert record["model_id"].startswith("vit-h-14-")
    assert np.load(tmp_path / "out" / "cell_map.npy").shape == (301, 457)
