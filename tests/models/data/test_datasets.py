"""The MVTec-layout reader, with and without masks."""

import shutil

import cv2
import numpy as np
import pytest

from models.data.datasets import (
    defect_samples,
    has_masks,
    is_mvtec,
    load_test_split,
    normal_folders,
    normal_images,
    pick_evenly,
    train_images,
)
from models.image_io import ImageError, list_images


def write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


@pytest.fixture
def dataset(tmp_path):
    img = np.full((40, 60), 100, np.uint8)
    for i in range(3):
        write(tmp_path / "train/good" / f"{i:03d}.png", img)
    write(tmp_path / "test/good/000.png", img)
    write(tmp_path / "test/good/001.png", img)
    write(tmp_path / "test/scratch/000.png", img)
    write(tmp_path / "test/scratch/001.png", img)
    write(tmp_path / "test/bubble/000.png", img)
    mask = np.zeros((20, 30), np.uint8)  # half size: must be resized to the image
    mask[5:10, 5:10] = 255
    write(tmp_path / "ground_truth/scratch/000_mask.png", mask)
    write(tmp_path / "ground_truth/scratch/001_mask.png", mask)
    write(tmp_path / "ground_truth/bubble/000_mask.png", mask)
    return tmp_path


def test_reads_labels_defect_types_and_masks(dataset):
    samples = load_test_split(dataset)
    assert [(s.defect, s.label) for s in samples] == [
        ("good", 0),
        ("good", 0),
        ("bubble", 1),
        ("scratch", 1),
        ("scratch", 1),
    ]
    assert has_masks(samples) and is_mvtec(dataset)
    mask = samples[3].read_mask((40, 60))
    assert mask.shape == (40, 60) and mask.max() == 1 and mask.sum() == 100
    assert not samples[0].read_mask((40, 60)).any()
    assert len(train_images(dataset)) == 3
    assert len(normal_images(dataset, include_train=True)) == 5
    assert [s.defect for s in defect_samples(dataset)] == ["bubble", "scratch", "scratch"]


def test_image_labels_only_is_a_valid_dataset(dataset):
    import shutil

    shutil.rmtree(dataset / "ground_truth")
    samples = load_test_split(dataset)
    assert len(samples) == 5 and not has_masks(samples)
    assert samples[-1].mask_path is None and samples[-1].read_mask((40, 60)) is None


def test_a_plain_folder_serves_as_training_images(tmp_path):
    write(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    assert [p.name for p in train_images(tmp_path)] == ["a.png"]
    assert not is_mvtec(tmp_path)
    with pytest.raises(ImageError, match="no test/ folder"):
        load_test_split(tmp_path)


def test_missing_or_empty_folders_say_so(tmp_path):
    with pytest.raises(ImageError, match="not a directory"):
        train_images(tmp_path / "nope")
    (tmp_path / "train/good").mkdir(parents=True)
    with pytest.raises(ImageError, match="contains no images"):
        train_images(tmp_path)


def test_normal_images_leave_train_good_out_unless_asked_or_needed(dataset):
    test_good, train_good = dataset / "test" / "good", dataset / "train" / "good"
    assert normal_folders(dataset) == [test_good]
    assert normal_images(dataset) == list_images(test_good)
    assert normal_folders(dataset, include_train=True) == [test_good, train_good]
    assert normal_images(dataset, include_train=True) == [
        *list_images(test_good),
        *list_images(train_good),
    ]
    shutil.rmtree(test_good)  # nothing else to calibrate on
    assert normal_folders(dataset) == [train_good]
    assert normal_images(dataset) == list_images(train_good)


def test_normal_images_of_a_plain_folder_or_of_nothing(tmp_path):
    write(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    assert normal_folders(tmp_path) == [tmp_path]
    assert [p.name for p in normal_images(tmp_path)] == ["a.png"]
    with pytest.raises(ImageError, match="not a directory"):
        normal_images(tmp_path / "missing")
    (tmp_path / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(ImageError, match="no normal images"):
        normal_images(tmp_path / "empty")


@pytest.mark.parametrize(
    ("n", "k", "picked"),
    [(10, 4, [0, 2, 5, 7]), (3, 8, [0, 1, 2]), (5, 5, [0, 1, 2, 3, 4]), (5, 0, [0, 1, 2, 3, 4])],
)
def test_pick_evenly(n, k, picked):
    assert pick_evenly(list(range(n)), k) == picked
