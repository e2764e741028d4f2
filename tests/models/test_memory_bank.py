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
    assert np.abs(memory).max() < 1e-3


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
