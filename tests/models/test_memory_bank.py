import cv2
import numpy as np
import torch

from models.bundle import build_detector
from models.preprocess import preprocess
from tests.conftest import paste_foreign, textured


def _memory_map(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    det = build_detector("tiny", "pouch cell", reference_images=[reference], seed=0)
    with torch.no_grad():
        maps = det.maps(torch.from_numpy(preprocess(query)[None]))
    return maps.memory[0].numpy()


def test_reference_identical_to_query_scores_zero_everywhere():
    image = textured(224, 224, seed=3)
    memory = _memory_map(image, image)
    assert memory.shape == (224, 224)
    assert np.abs(memory).max() < 5e-3  # float rounding of a zero distance, on a 0-1 scale


def test_pasted_foreign_patch_raises_the_map_inside_the_patch():
    reference = textured(224, 224, seed=3)
    box = (84, 56, 56, 56)  # x, y, w, h: whole 14-px patches
    query = paste_foreign(reference, box)
    memory = _memory_map(reference, query)
    x, y, w, h = box
    inside = np.zeros_like(memory, dtype=bool)
    inside[y : y + h, x : x + w] = True
    assert memory[inside].mean() > 3 * memory[~inside].mean()
    peak_y, peak_x = np.unravel_index(memory.argmax(), memory.shape)
    assert inside[peak_y, peak_x]


def test_memory_bank_holds_every_reference_patch_below_the_coreset_minimum():
    det = build_detector("tiny", reference_images=[textured(100, 120, s) for s in range(3)])
    # 3 x 256 patches is below the coreset's minimum: all kept, the 4 taps side by side
    assert tuple(det.memory_bank.features.shape) == (3 * 256, 4 * 96)


def test_pretrained_bank_marks_the_pasted_patch_and_not_the_part():
    reference = textured(224, 224, seed=3)
    box = (84, 56, 48, 48)
    query = paste_foreign(reference, box)
    det = build_detector("effnet-lite0", "pouch cell", reference_images=[reference])
    with torch.no_grad():
        memory = det.maps(torch.from_numpy(preprocess(query)[None])).memory[0].numpy()
    x, y, w, h = box
    inside = np.zeros_like(memory, dtype=bool)
    inside[y : y + h, x : x + w] = True
    assert memory[inside].mean() > 0.5 > memory[~inside].mean()


def _peaks(weight: float) -> dict[str, float]:
    """Image scores of a normal part, the same part out of focus, and with a foreign patch."""
    refs = [textured(224, 224, seed=s) for s in (3, 4)]
    part = textured(224, 224, seed=5)
    queries = {
        "normal": part,
        "soft focus": cv2.GaussianBlur(part, (0, 0), 2.0),  # a little off everywhere
        "defect": paste_foreign(part, (84, 56, 32, 32)),  # far off in one place
    }
    det = build_detector("effnet-lite0", "pouch cell", reference_images=refs, median_weight=weight)
    with torch.no_grad():
        return {k: float(det(torch.from_numpy(preprocess(q)[None]))[1]) for k, q in queries.items()}


def test_median_weight_forgives_a_part_a_little_off_all_over_but_not_a_local_defect():
    plain, weighted = _peaks(0.0), _peaks(0.75)
    # scored as PatchCore does, the good part in soft focus is past the default threshold ...
    assert plain["soft focus"] > 0.5
    # ... scored from its own median patch it passes, and the defect stands out more
    assert weighted["soft focus"] < 0.5 < weighted["defect"]
    assert weighted["soft focus"] - weighted["normal"] < plain["soft focus"] - plain["normal"]
    assert weighted["defect"] > plain["defect"]

def test_bundles_record_the_median_weight_and_older_bundles_keep_scoring_as_before(tmp_path):
    from models.bundle import create_bundle, load_detector
    from models.recipe import load_recipe, save_recipe

    refs = [textured(120, 120, s) for s in range(2)]
    recipe = create_bundle(tmp_path, "tiny", "pouch cell", reference_images=refs)
    assert recipe.median_weight == 0.75
    assert load_detector(tmp_path).memory_bank.median_weight == 0.75
    recipe = load_recipe(tmp_path)
    raw = recipe.model_dump()
    del raw["median_weight"]  # a recipe written before the field existed
    save_recipe(tmp_path, type(recipe).model_validate(raw))
    assert load_detector(tmp_path).memory_bank.median_weight == 0.0
