import numpy as np
import pytest

from inspector.runtime.predictor import Predictor
from models.image_io import ImageError
from tests.conftest import textured


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return Predictor(tiny_bundle, "torch")


@pytest.mark.parametrize(
    "frame",
    [
        textured(301, 457, seed=7),
        textured(201, 333, seed=7).astype(np.uint16) * 257,
        np.dstack([textured(255, 511, seed=s) for s in (1, 2, 3)]),
        textured(699, 213, seed=8)[:, :, None],
    ],
    ids=["gray8-301x457", "gray16-201x333", "bgr-255x511", "gray8-1ch-699x213"],
)
def test_map_comes_back_at_the_frames_own_resolution(predictor, frame):
    result = predictor.inspect(frame)
    full = result.full_map()
    assert full.shape == frame.shape[:2]
    assert full.dtype == np.float32 and 0.0 <= full.min() <= full.max() <= 1.0
    assert result.verdict in ("pass", "fail")


def test_a_bad_frame_in_a_batch_gets_its_error_and_the_rest_are_inspected(predictor):
    good = textured(240, 320, seed=1)
    results = predictor.inspect_batch([good, np.zeros((0, 5), np.uint8), good])
    assert isinstance(results[1], ImageError)
    assert results[0].decision.image_score == pytest.approx(results[2].decision.image_score)


def test_model_id_names_the_architecture(predictor):
    assert predictor.model_id.startswith("tiny-") and len(predictor.model_id) == 17
