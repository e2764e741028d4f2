"""``inspector train``, ``calibrate`` and ``evaluate`` as a user runs them, offline."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from models.data.synth import write_dataset
from models.recipe import file_sha256
from tests.cli_helpers import run_inspector

elpv_dataset = pytest.importorskip(
    "elpv_dataset", reason="the dev extra (elpv-dataset) provides the real EL images"
)


def elpv_rows() -> list[tuple[Path, float]]:
    data = Path(elpv_dataset.__file__).parent / "data"
    rows = []
    for line in (data / "labels.csv").read_text().splitlines():
        name, prob, _ = line.split()
        rows.append((data / name, float(prob)))
    return rows


@pytest.fixture(scope="module")
def elpv_set(tmp_path_factory):
    """40 real solar-cell EL images in MVTec layout with image labels only (no masks):
    20 with defect probability 0 in test/good, 20 with probability 1 in test/defective,
    and 4 more normal cells in train/good for the reference bank."""
    root = tmp_path_factory.mktemp("elpv")
    rows = elpv_rows()
    good = [p for p, prob in rows if prob == 0.0][:24]
    bad = [p for p, prob in rows if prob == 1.0][:20]
    for folder, paths in (("train/good", good[20:]), ("test/good", good[:20])):
        (root / folder).mkdir(parents=True)
        for p in paths:
            shutil.copy(p, root / folder / p.name)
    (root / "test/defective").mkdir(parents=True)
    for p in bad:
        shutil.copy(p, root / "test/defective" / p.name)
    return root


def test_evaluate_on_real_grayscale_images_with_image_labels_only(elpv_set, tmp_path):
    bundle = tmp_path / "bundle"
    proc = run_inspector(
        "bundle", "create", "--product", "solar cell",
        "--reference-dir", str(elpv_set / "train/good"), "--out", str(bundle),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "effnet-lite0" in proc.stdout  # the pretrained default
    out, report = tmp_path / "metrics.json", tmp_path / "report.html"
    proc = run_inspector(
        "evaluate", "--bundle", str(bundle), "--data", str(elpv_set),
        "--json", str(out), "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert m["n_images"] == 40 and m["n_normal"] == 20 and m["n_defective"] == 20
    assert m["image_auroc"] > 0.7, m  # pretrained features see cracks (random ones: ~0.55)
    assert 0.0 < m["image_f1_max"] <= 1.0
    assert m["pixel_auroc"] is None and m["aupro"] is None
    assert "pixel AUROC   n/a (no masks)" in proc.stdout
    assert "data:image/png;base64," in report.read_text()


@pytest.fixture(scope="module")
def pouch_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_pouch") / "pouch"
    write_dataset(root, "pouch", n_train=3, n_test_good=20, n_test_defect=1, size=(240, 200))
    return root


def test_train_then_calibrate_then_evaluate(pouch_set, tmp_path):
    bundle = tmp_path / "b"
    proc = run_inspector("bundle", "create", "--product", "pouch cell", "--out", str(bundle))
    assert proc.returncode == 0, proc.stderr
    proc = run_inspector(
        "train", "--bundle", str(bundle), "--data", str(pouch_set), "--epochs", "1",
        "--batch-size", "4", "--samples-per-epoch", "8", "--seed", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 normal image(s)" in proc.stdout and "loss per epoch" in proc.stdout
    assert "run 'inspector calibrate'" in proc.stdout

    proc = run_inspector(
        "calibrate", "--bundle", str(bundle), "--data", str(pouch_set),
        "--false-reject-rate", "0.1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for text in ("pixel threshold", "min defect area", "image threshold", "held-out", "escapes"):
        assert text in proc.stdout, text
    thresholds = yaml.safe_load((bundle / "recipe.yaml").read_text())["thresholds"]
    assert thresholds["calibrated"] is True and thresholds["min_defect_area_px"] > 0

    # the lineage: every command, its parameters and the images it used, by content
    shown = run_inspector("bundle", "show", str(bundle))
    assert shown.returncode == 0, shown.stderr
    steps = re.findall(r"^  \d\. \S+  inspector (.+?)  \(software", shown.stdout, re.M)
    assert steps == ["bundle create", "train", "calibrate"]
    some_image = sorted((pouch_set / "train" / "good").iterdir())[0]
    assert f"{file_sha256(some_image)}  {some_image.name}" in shown.stdout
    assert "false_reject_rate: 0.1" in shown.stdout and "model_id    " in shown.stdout
    record = json.loads(run_inspector("bundle", "show", str(bundle), "--json").stdout)
    assert record["thresholds"] == thresholds and record["score_reference"]["n"] > 0

    out = tmp_path / "m.json"
    proc = run_inspector("evaluate", "--bundle", str(bundle), "--data", str(pouch_set),
                         "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert m["pixel_auroc"] is not None and m["at_recipe_thresholds"]["thresholds"]["calibrated"]


def test_recreating_a_bundle_then_training_trains_again(pouch_set, tmp_path):
    """'bundle create --force' leaves no checkpoint behind that training would 'resume'."""
    bundle = tmp_path / "b"
    train = (
        "train", "--bundle", str(bundle), "--data", str(pouch_set), "--epochs", "1",
        "--batch-size", "4", "--samples-per-epoch", "4",
    )  # fmt: skip
    for product in ("pouch cell", "cylindrical cell"):
        proc = run_inspector("bundle", "create", "--product", product, "--out", str(bundle),
                             "--force")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        proc = run_inspector(*train)
        assert proc.returncode == 0, proc.stderr
        assert "resumed" not in proc.stdout and "loss per epoch" in proc.stdout
        assert "run 'inspector calibrate'" in proc.stdout
    proc = run_inspector(*train)  # the same flags again: nothing left to do
    assert proc.returncode == 0, proc.stderr
    assert "resumed from epoch 2" in proc.stdout and "already trained" in proc.stdout
    assert "run 'inspector calibrate'" not in proc.stdout


def test_bad_input_gets_one_clear_line(pouch_set, tmp_path):
    proc = run_inspector("train", "--bundle", str(tmp_path / "b"), "--data", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:")
    assert "not a directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_inspector(
        "calibrate", "--bundle", str(tmp_path), "--data", str(pouch_set),
        "--false-reject-rate", "1.5",
    )  # fmt: skip
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr
    proc = run_inspector(
        "evaluate", "--bundle", str(tmp_path / "none"), "--data", str(pouch_set),
        "--json", str(tmp_path / "m.json"),
    )  # fmt: skip
    assert proc.returncode == 2 and "not a model bundle" in proc.stderr
