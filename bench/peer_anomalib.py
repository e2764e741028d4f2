"""anomalib's PatchCore and PaDiM on a given split: the peer that bench/peer.py runs.

Runs in ``.venv-peer`` (``make peer-venv``: anomalib 2.7 beside the station's torch), never in
the station's environment. The backbone gets the same ImageNet EfficientNet-Lite weights as
ours (``models.backbones.effnet_weights``, pure torch) and the same 0.5 / 0.5 normalisation;
the split is exactly the one in the spec: the model is called directly, so no datamodule
holds part of the test set out for validation.

    PYTHONPATH=. .venv-peer/bin/python -m bench.peer_anomalib --spec SPEC.json --out OUT.json

SPEC: ``{"size": 224, "backbone": "lite0", "layers": [2, 3], "models": ["patchcore", "padim"],
"references": [png, ...], "test": [[png, 0 | 1], ...], "seed": 0}``. OUT: per model
``image_auroc`` (raw scores), ``image_auroc_anomalib`` (after anomalib's min-max/threshold
normalisation, fitted on the test set as its Engine does when validating on it), ``fit_s``,
``ms_per_image`` (batch 1, median over the test set without the first image), ``n_references``,
``n_test``, ``scores``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from anomalib.metrics import AUROC
from anomalib.models import Padim, Patchcore
from anomalib.pre_processing import PreProcessor
from lightning.pytorch import seed_everything
from PIL import Image
from sklearn.metrics import roc_auc_score
from torchvision.transforms.v2 import Compose, Normalize, Resize
from torchvision.transforms.v2.functional import to_dtype, to_image

from models.backbones.effnet_weights import timm_state_dict

MODELS = ("patchcore", "padim")
PADIM_FEATURES = 100
# glibc's M_MMAP_THRESHOLD: the coreset's large temporaries otherwise fragment the heap (>20 GB)
MMAP_THRESHOLD = 1_048_576
_M_MMAP_THRESHOLD = -3


def limit_heap_growth() -> None:
    """Serve large allocations by mmap, as ``MALLOC_MMAP_THRESHOLD_=1048576`` does.

    bench/peer.py sets the variable; this covers a direct run without it.
    """
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def load_image(path: str | Path) -> torch.Tensor:
    """A PNG as a float CHW RGB tensor in [0, 1], as anomalib's own reader gives it."""
    with Image.open(path) as im:
        return to_dtype(to_image(im.convert("RGB")), torch.float32, scale=True)


def build_model(name: str, backbone: str, layers: list[int], size: int) -> torch.nn.Module:
    """anomalib's model with the package's ImageNet weights and 0.5 / 0.5 inputs at ``size``.

    Raises:
        RuntimeError: a feature-extractor weight has no counterpart in the package's weights.
    """
    pre = PreProcessor(transform=Compose([Resize((size, size)), Normalize([0.5] * 3, [0.5] * 3)]))
    common = dict(backbone=f"tf_efficientnet_{backbone}", layers=layers, pre_trained=False,
                  pre_processor=pre, evaluator=False, visualizer=False)
    if name == "patchcore":
        module = Patchcore(**common)
    elif name == "padim":
        module = Padim(**common, n_features=PADIM_FEATURES)
    else:
        raise ValueError(f"unknown peer model {name!r}; one of {MODELS}")
    extractor = module.model.feature_extractor.feature_extractor
    result = extractor.load_state_dict(timm_state_dict(backbone), strict=False)
    if result.missing_keys:
        raise RuntimeError(f"{backbone} weights lack {len(result.missing_keys)} keys of "
                           f"anomalib's extractor, e.g. {result.missing_keys[:3]}")
    return module


def preprocess(module: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """One image as a batch of one through the pre-processor's transform.

    What anomalib's training and test loops apply (antialiased resize); the module's own
    ``forward`` would use the export variant without antialiasing.
    """
    return module.pre_processor.transform(image[None])


def fit(module: torch.nn.Module, references: list[torch.Tensor]) -> float:
    """Feed the references through the model in training mode and fit it; returns seconds."""
    t0 = time.perf_counter()
    module.train()
    for image in references:
        module.model(preprocess(module, image))
    module.on_train_epoch_end()  # the Lightning hook that fits the bank / the Gaussians
    module.eval()
    return time.perf_counter() - t0


@torch.no_grad()
def score(module: torch.nn.Module, images: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Raw image scores at batch 1 (pre-processing + model), and ms per image."""
    scores, ms = [], []
    for image in images:
        t0 = time.perf_counter()
        out = module.model(preprocess(module, image))
        ms.append((time.perf_counter() - t0) * 1000)
        scores.append(float(out.pred_score.reshape(-1)[0]))
    return scores, ms


def anomalib_auroc(module: torch.nn.Module, scores: list[float], labels: list[int]) -> float:
    """Image AUROC after anomalib's post-processing (normalisation fitted on these scores)."""
    batch = SimpleNamespace(pred_score=torch.tensor(scores), gt_label=torch.tensor(labels),
                            anomaly_map=None, gt_mask=None, pred_label=None, pred_mask=None)
    post = module.post_processor
    post.on_validation_batch_end(None, module, batch)
    post.on_validation_epoch_end(None, module)
    post.normalize_batch(batch)
    metric = AUROC(fields=["pred_score", "gt_label"])
    metric.update(batch)
    return float(metric.compute())


def run_model(name: str, spec: dict, references: list[torch.Tensor],
              test: list[torch.Tensor], labels: list[int]) -> dict:
    """One peer model on the spec's split -> its figures."""
    # numpy too: the coreset's random projection draws from numpy's global generator
    seed_everything(spec.get("seed", 0), verbose=False)
    module = build_model(name, spec.get("backbone", "lite0"), list(spec.get("layers", [2, 3])),
                         int(spec["size"]))
    fit_s = fit(module, references)
    scores, ms = score(module, test)
    return {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_auroc_anomalib": anomalib_auroc(module, scores, labels),
        "fit_s": fit_s,
        "ms_per_image": statistics.median(ms[1:] or ms),
        "n_references": len(references),
        "n_test": len(test),
        "scores": scores,
    }


def check_spec(spec: dict) -> None:
    """Refuse a spec that cannot give an AUROC, before any model is built."""
    for key in ("size", "references", "test"):
        if key not in spec:
            raise ValueError(f"spec has no {key!r}")
    if not spec["references"]:
        raise ValueError("spec has no reference image")
    labels = {int(label) for _, label in spec["test"]}
    if labels != {0, 1}:
        raise ValueError(f"the test set needs labels 0 and 1, has {sorted(labels)}")
    unknown = set(spec.get("models", MODELS)) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown peer model(s) {sorted(unknown)}; one of {MODELS}")


def main(argv: list[str] | None = None) -> None:
    """Read the spec, run each model, write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="split and settings (JSON)")
    parser.add_argument("--out", type=Path, required=True, help="where the figures go (JSON)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    limit_heap_growth()
    torch.set_num_threads(args.threads)
    spec = json.loads(args.spec.read_text())
    try:
        check_spec(spec)
    except ValueError as e:
        parser.exit(2, f"bad spec {args.spec}: {e}\n")
    references = [load_image(p) for p in spec["references"]]
    test = [load_image(p) for p, _ in spec["test"]]
    labels = [int(label) for _, label in spec["test"]]
    results = {name: run_model(name, spec, references, test, labels)
               for name in spec.get("models", MODELS)}
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
