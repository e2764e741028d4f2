"""Training the decoder: only the projections change; an interrupted run resumes exactly."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from models.bundle import create_bundle
from models.bundle_files import CHECKPOINT_FILE, DECODER_FILE, ENCODER_FILE, TEXT_FILE
from models.recipe import file_sha256, load_recipe
from models.training.train import (
    TrainConfig,
    bundle_origin,
    load_checkpoint,
    train_bundle,
)
from tests.conftest import textured

# 16 samples in batches of 4, 2 batches per optimizer step: 2 steps per epoch
CONFIG = TrainConfig(epochs=2, batch_size=4, accumulate=2, samples_per_epoch=16, seed=5)


@pytest.fixture(scope="module")
def images():
    return [textured(120, 160, seed=10 + i) for i in range(3)]


@pytest.fixture(scope="module")
def fresh_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "fresh"
    create_bundle(out, "tiny", "pouch cell", seed=0)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fresh_bundle, images):
    out = tmp_path_factory.mktemp("train") / "straight"
    shutil.copytree(fresh_bundle, out)
    result = train_bundle(out, images, CONFIG, progress=False)
    return out, result


class Interrupt:
    def __init__(self, after: int) -> None:
        self.after = after
        self.seen: list[int] = []

    def __call__(self, step: int, loss: float) -> None:
        self.seen.append(step)
        if step == self.after:
            raise KeyboardInterrupt


def test_only_the_decoder_projections_change(fresh_bundle, trained):
    out, result = trained
    assert result.epochs_done == 2 and result.steps_done == 4 and len(result.epoch_losses) == 2
    assert file_sha256(out / ENCODER_FILE) == file_sha256(fresh_bundle / ENCODER_FILE)
    assert file_sha256(out / TEXT_FILE) == file_sha256(fresh_bundle / TEXT_FILE)
    before, after = load_file(fresh_bundle / DECODER_FILE), load_file(out / DECODER_FILE)
    assert not torch.equal(before["proj.0.weight"], after["proj.0.weight"])
    for key in ("norms.0.weight", "norms.3.bias"):  # frozen LayerNorms
        assert torch.equal(before[key], after[key])


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, fresh_bundle, images, trained):
    bundle = tmp_path / "interrupted"
    shutil.copytree(fresh_bundle, bundle)
    stop = Interrupt(after=3)  # mid second epoch
    with pytest.raises(KeyboardInterrupt):
        train_bundle(bundle, images, CONFIG, progress=False, on_step=stop)
    assert stop.seen == [1, 2, 3]
    ckpt = load_checkpoint(bundle)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1)

    resumed = Interrupt(after=-1)
    result = train_bundle(bundle, images, CONFIG, progress=False, on_step=resumed)
    assert result.resumed_from == (1, 1) and resumed.seen == [4]
    straight, straight_result = trained
    a, b = load_file(straight / DECODER_FILE), load_file(bundle / DECODER_FILE)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert result.epoch_losses == pytest.approx(straight_result.epoch_losses, rel=1e-5)


def test_a_finished_run_has_nothing_left_and_other_settings_are_refused(trained, images):
    out, _ = trained
    again = train_bundle(out, images, CONFIG, progress=False)
    assert again.resumed_from == (2, 0) and again.steps_run == 0
    other = TrainConfig(epochs=2, batch_size=8, accumulate=1, samples_per_epoch=16, seed=5)
    with pytest.raises(ValueError, match="other settings"):
        train_bundle(out, images, other, progress=False)
    assert (out / CHECKPOINT_FILE).is_file()


def test_training_marks_the_thresholds_uncalibrated(tmp_path, fresh_bundle, images):
    from models.recipe import save_recipe

    bundle = tmp_path / "calibrated"
    shutil.copytree(fresh_bundle, bundle)
    recipe = load_recipe(bundle)
    recipe.thresholds = recipe.thresholds.model_copy(update={"calibrated": True})
    save_recipe(bundle, recipe)
    cfg = TrainConfig(epochs=1, batch_size=4, samples_per_epoch=4)
    train_bundle(bundle, images, cfg, progress=False)
    assert load_recipe(bundle).thresholds.calibrated is False


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_a_recreated_bundle_trains_again(tmp_path, images):
    bundle = tmp_path / "recreated"
    create_bundle(bundle, "tiny", "pouch cell", seed=0)
    assert train_bundle(bundle, images, CONFIG, progress=False).steps_run == 4
    create_bundle(bundle, "tiny", "cylindrical cell", seed=0)  # what 'bundle create --force' does
    assert not (bundle / CHECKPOINT_FILE).exists()
    fresh = load_file(bundle / DECODER_FILE)
    again = train_bundle(bundle, images, CONFIG, progress=False)
    assert again.resumed_from is None and again.steps_run == 4 and len(again.epoch_losses) == 2
    trained = load_file(bundle / DECODER_FILE)
    assert not torch.equal(fresh["proj.0.weight"], trained["proj.0.weight"])


def test_a_checkpoint_of_another_bundle_is_refused(tmp_path, trained, images):
    out, _ = trained
    other = tmp_path / "other"
    create_bundle(other, "tiny", "cylindrical cell", seed=0)
    assert bundle_origin(other) != bundle_origin(out)
    shutil.copy(out / CHECKPOINT_FILE, other / CHECKPOINT_FILE)  # a stray copy
    with pytest.raises(ValueError, match="belongs to another bundle"):
        train_bundle(other, images, CONFIG, progress=False)


def test_the_origin_stays_while_the_decoder_trains(fresh_bundle, trained):
    out, _ = trained
    assert bundle_origin(out) == bundle_origin(fresh_bundle)
    assert load_checkpoint(out)["origin"] == bundle_origin(out)


def test_resumed_training_marks_the_thresholds_uncalibrated_only_when_it_trains(
    tmp_path, trained, images
):
    from models.recipe import save_recipe

    bundle = tmp_path / "resumed"
    shutil.copytree(trained[0], bundle)  # finished 2 epochs, then calibrated
    recipe = load_recipe(bundle)
    recipe.thresholds = recipe.thresholds.model_copy(update={"calibrated": True})
    save_recipe(bundle, recipe)
    same = train_bundle(bundle, images, CONFIG, progress=False)
    assert same.steps_run == 0 and load_recipe(bundle).thresholds.calibrated is True
    more = TrainConfig(**{**CONFIG.__dict__, "epochs": 3})
    longer = train_bundle(bundle, images, more, progress=False)
    assert longer.resumed_from == (2, 0) and longer.steps_run == 2
    assert load_recipe(bundle).thresholds.calibrated is False


def test_training_says_whether_the_head_beats_the_memory_bank(tmp_path, images):
    bundle = tmp_path / "effnet"
    create_bundle(bundle, "effnet-lite0", "pouch cell", reference_images=images[:2])
    assert load_recipe(bundle).fusion == "memory"  # an untrained CNN head means nothing
    result = train_bundle(bundle, images, CONFIG, progress=False)
    head = result.head
    assert head is not None and set(head.pixel_auroc) == {"memory", "mean", "text"}
    recipe = load_recipe(bundle)
    assert recipe.fusion == head.fusion == (
        "mean" if head.pixel_auroc["mean"] > head.pixel_auroc["memory"] else "memory"
    )
    assert recipe.text_scale == pytest.approx(head.text_scale) and head.text_scale > 0
    assert ("improves on" in head.summary()) == (head.fusion == "mean")
