"""A ROI found on the frame, tiled at the inspection pitch: the same map on every path, and a
defect on a tilted, off-centre cell is found where it is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.runtime.predictor import Predictor, canvas_scale
from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from inspector.vision.tiling import cut_as_inspected, cut_frame, inspection_tiler
from models.bundle import create_bundle
from models.data.synth import pouch_frame
from models.recipe import Roi, Thresholds, load_recipe, save_recipe
from tests.cli_helpers import run_inspector
from tests.inspector.daemon_helpers import QueueSource, make_config, running

SIZE, PITCH, INSPECT = (960, 800), 0.125, 0.25  # 4 tiles of 224 px over the cell


def _tiled_bundle(path, arch: str, n_refs: int = 3):
    refs = [pouch_frame([7, i], size=SIZE, pitch_mm=PITCH)[0] for i in range(n_refs)]
    roi = Roi()
    create_bundle(
        path, arch, "pouch cell", reference_images=refs, pixel_pitch_mm=PITCH, roi=roi,
        inspect_mm_per_px=INSPECT, tiler=inspection_tiler(roi, PITCH, INSPECT, 0.25),
    )
    return path


@pytest.fixture(scope="module")
def tiled_tiny(tmp_path_factory):
    """A tiny tiled bundle that fails every frame, so the daemon keeps every map."""
    out = _tiled_bundle(tmp_path_factory.mktemp("tiled") / "tiny", "tiny")
    recipe = load_recipe(out)
    recipe.fusion = "memory"
    recipe.thresholds = Thresholds(pixel=0.0, image=0.0)
    save_recipe(out, recipe)
    return out


def test_references_are_cut_as_inspection_cuts_frames(tiled_tiny):
    frames = [pouch_frame([7, i], size=SIZE, pitch_mm=PITCH)[0] for i in range(2)]
    recipe = load_recipe(tiled_tiny)
    inspected = [
        cut_frame(f, recipe.roi, canvas_scale(recipe), recipe.input_size, recipe.tile_overlap)[0]
        for f in frames
    ]  # what Predictor scores
    tiles = cut_as_inspected(frames, recipe)
    assert len(tiles) == sum(map(len, inspected)) > len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(tiles, sum(inspected, []), strict=True))
    whole = recipe.model_copy(update={"roi": None, "inspect_mm_per_px": None})
    assert all(a is b for a, b in zip(cut_as_inspected(frames, whole), frames, strict=True))
    assert inspection_tiler(None, PITCH, None, 0.25) is None


def test_predict_and_the_daemon_give_the_same_map_for_the_same_frame(
    tiled_tiny, tmp_path, broker, collector
):
    frame, _ = pouch_frame(11, "particle", 3.0, 10.0, (60.0, -40.0), SIZE, PITCH)
    cv2.imwrite(str(tmp_path / "cell.png"), frame)
    proc = run_inspector(
        "predict", "--bundle", str(tiled_tiny), "--backend", "torch", "--save-map",
        "--out", str(tmp_path / "out"), str(tmp_path / "cell.png"),
    )
    assert proc.returncode == 0, proc.stderr
    predicted = np.load(tmp_path / "out" / "cell_map.npy")

    source = QueueSource()
    cfg = make_config(tmp_path, tiled_tiny, broker.port)
    with running(Daemon(cfg, source=source)):
        source.push(Frame("CELL-1", cv2.imread(str(tmp_path / "cell.png"), cv2.IMREAD_UNCHANGED)))
        result = collector.wait_for("result", 1)[0]
    assert result["verdict"] == "fail" and (result["width"], result["height"]) == SIZE
    store = Store(cfg.data_dir)
    job = store.claim_job()
    store.close()
    served = np.load(job.map_path)
    assert served.shape == predicted.shape == (SIZE[1], SIZE[0])
    assert np.abs(served - predicted).max() < 1e-5
    assert predicted.max() > 0 and predicted[:20, :20].max() == 0.0, "belt corner not scored"


def test_a_defect_on_a_tilted_off_centre_cell_is_found_where_it_is(tmp_path):
    bundle = _tiled_bundle(tmp_path / "effnet", "effnet-lite0", n_refs=2)
    predictor = Predictor(bundle, "torch")
    assert canvas_scale(predictor.recipe) == pytest.approx(0.5)
    frame, defect = pouch_frame(12, "particle", 3.0, 10.0, (-100.0, 60.0), SIZE, PITCH)
    result = predictor.inspect(frame)
    assert result.grid is not None and len(result.grid) >= 4
    full = result.full_map()
    ys, xs = np.nonzero(defect)
    peak_y, peak_x = np.unravel_index(np.argmax(full), full.shape)
    # the strongest anomaly is the particle (3 mm = 24 px), not a tile border or the belt
    assert abs(peak_x - xs.mean()) < 24 and abs(peak_y - ys.mean()) < 24
    roi, tiles = result.outlines()
    assert roi is not None and len(tiles) == len(result.grid)
    outside = np.ones(full.shape, np.uint8)
    cv2.fillPoly(outside, [np.round(roi).astype(np.int32)], 0)
    outside = cv2.erode(outside, np.ones((9, 9), np.uint8))  # bilinear edge: 2 map px
    assert full[outside > 0].max() == 0.0, "pixels outside the ROI are never scored"


def test_bundle_create_records_the_roi_and_pitch_and_builds_the_bank_from_tiles(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(2):
        cv2.imwrite(str(refs / f"{i}.png"), pouch_frame([8, i], size=SIZE, pitch_mm=PITCH)[0])
    args = ["bundle", "create", "--arch", "tiny", "--product", "pouch cell",
            "--reference-dir", str(refs), "--roi", "auto", "--inspect-mm-per-px", str(INSPECT)]
    proc = run_inspector(*args, "--out", str(tmp_path / "no-pitch"))
    assert proc.returncode != 0 and "--pixel-pitch-mm" in proc.stderr
    proc = run_inspector(*args, "--pixel-pitch-mm", str(PITCH), "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert "tiles at 0.25 mm/px" in proc.stdout
    recipe = load_recipe(tmp_path / "b")
    assert recipe.roi == Roi(mode="auto") and recipe.inspect_mm_per_px == INSPECT
    assert recipe.n_reference_images == 2
    assert recipe.coreset.of_total >= 2 * 4 * recipe.patch_grid**2, "the bank saw every tile"
