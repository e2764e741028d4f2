import numpy as np
import pytest

from models.image_io import ImageError
from models.preprocess import preprocess, resize_map


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((301, 457), np.uint8),
        np.zeros((301, 457, 1), np.uint8),
        np.zeros((3001, 4097), np.uint16),
        np.zeros((57, 33, 3), np.uint8),
        np.zeros((200, 700), np.float32),
    ],
    ids=["gray8", "gray8-1ch", "gray16-large", "bgr-small", "float"],
)
def test_any_frame_becomes_a_normalised_3x224x224_input(image):
    x = preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert np.isfinite(x).all()


def test_whole_frame_is_kept_no_centre_crop():
    image = np.zeros((100, 400), np.uint8)
    image[:, :10] = 255  # a bright tab at the far left edge
    x = preprocess(image)
    assert x[0, :, :3].mean() > 0.9  # still in view after resizing
    assert x[0, :, 10:].max() == 0.0  # and the rest stays dark: [0, 1], not normalised


def test_mono12_in_uint16_matches_8bit_when_bit_depth_is_given():
    eight = np.full((64, 64), 255, np.uint8)
    twelve = np.full((64, 64), 4095, np.uint16)
    np.testing.assert_allclose(preprocess(twelve, bit_depth=12), preprocess(eight), atol=1e-6)
    assert preprocess(twelve).mean() < preprocess(eight).mean()  # 16-bit scale without it


def test_bgr_and_rgb_orders_swap_channels():
    bgr = np.zeros((64, 64, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV order
    red_first = preprocess(bgr, channel_order="bgr")
    assert red_first[0].mean() > red_first[2].mean()
    np.testing.assert_allclose(preprocess(bgr[..., ::-1].copy(), channel_order="rgb"), red_first)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 0), np.uint8), "smaller than"),
        (np.zeros((1, 1), np.uint8), "smaller than"),
        (np.zeros((64, 64, 4), np.uint8), "1 or 3 channels"),
        (np.full((64, 64), np.nan, np.float32), "NaN"),
        (np.zeros((64, 64), np.int64), "pixel type"),
        ("not an image", "numpy array"),
    ],
)
def test_frames_that_cannot_be_inspected_say_why(frame, message):
    with pytest.raises(ImageError, match=message):
        preprocess(frame)


def test_resize_map_returns_frame_resolution():
    assert resize_map(np.zeros((224, 224), np.float32), (301, 457, 3)).shape == (301, 457)
