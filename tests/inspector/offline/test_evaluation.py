"""Evaluation: metrics over an MVTec-layout set, JSON, and the HTML report."""

import json
import shutil

import pytest
from sklearn.metrics import roc_auc_score

from inspector.offline.evaluation import evaluate, write_json
from inspector.offline.report import write_report
from models.data.synth import write_dataset


@pytest.fixture(scope="module")
def pouch_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "pouch"
    write_dataset(root, "pouch", n_train=0, n_test_good=4, n_test_defect=2, size=(240, 200))
    return root


@pytest.fixture(scope="module")
def evaluation(tiny_bundle, pouch_set):
    return evaluate(tiny_bundle, pouch_set, "torch", progress=False)


def test_metrics_cover_images_and_pixels(evaluation):
    m = evaluation.metrics
    assert m["n_images"] == 12 and m["n_normal"] == 4 and m["n_defective"] == 8
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["image_auroc"] == pytest.approx(
        roc_auc_score(evaluation.labels, evaluation.scores), abs=1e-4
    )
    assert set(m["per_defect"]) == {"scratch", "dent", "particle", "edge_crack"}
    assert m["at_recipe_thresholds"]["false_reject_rate"] is not None


def test_json_and_report_are_written(evaluation, tmp_path):
    path = write_json(evaluation, tmp_path / "m.json")
    body = json.loads(path.read_text())
    assert {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "n_images"} <= set(body)
    html = write_report(evaluation, tmp_path / "r.html", k=3).read_text()
    assert html.count('src="data:image/png;base64,') == 2  # image and pixel ROC curves
    assert html.count('src="data:image/jpeg;base64,') == 6  # 3 misses + 3 false alarms
    assert "Worst misses" in html and "ROC curve" in html


def test_report_reuses_the_masks_and_aucs_of_the_metrics(evaluation, tmp_path, monkeypatch):
    import inspector.offline.evaluation as evaluation_module
    import inspector.offline.report as report_module

    def reread(*_args):
        raise AssertionError("the report read every mask again")

    monkeypatch.setattr(evaluation_module, "pixel_pairs", reread)
    titles: list[tuple[str, float | None]] = []
    roc_png = report_module.roc_png
    monkeypatch.setattr(
        report_module,
        "roc_png",
        lambda labels, scores, auc, title="image ROC": (
            titles.append((title, auc)) or roc_png(labels, scores, auc, title)
        ),
    )
    html = write_report(evaluation, tmp_path / "r.html", k=1).read_text()
    assert html.count('src="data:image/png;base64,') == 2
    m = evaluation.metrics
    assert titles == [("image ROC", m["image_auroc"]), ("pixel ROC", m["pixel_auroc"])]
    masks, maps = evaluation.pixels
    assert len(masks) == len(maps) == m["n_images"]


def test_without_masks_pixel_metrics_are_null(tiny_bundle, pouch_set, tmp_path):
    root = tmp_path / "labels_only"
    shutil.copytree(pouch_set, root)
    shutil.rmtree(root / "ground_truth")
    ev = evaluate(tiny_bundle, root, "torch", progress=False)
    m = ev.metrics
    assert m["pixel_auroc"] is None and m["aupro"] is None and not m["has_masks"]
    assert m["image_auroc"] is not None and m["image_f1_max"] is not None
    assert ev.pixels is None
    html = write_report(ev, tmp_path / "r.html", k=1).read_text()
    assert html.count('src="data:image/png;base64,') == 1  # the image ROC only
