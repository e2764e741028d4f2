"""How the decoder's map and the memory map are best fused, on the procedural sets (issue 15).

For each procedural set (pouch, ultrasound): a bundle of the default backbone with 8
references, its decoder trained briefly, then the same bundle evaluated with each fusion
(``memory``: the bank alone, as AnomalyGPT does with references; ``mean``: both maps on the
references' scale, averaged; ``text``: the decoder alone), and the fusion the head check chose
on held-out synthetic defects. Writes the "Fusion" section of bench/RESULTS.md.

    .venv/bin/python -m bench.fusion                   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.results import update_results  # noqa: E402
from inspector.offline.evaluation import evaluate  # noqa: E402
from models.bundle import create_bundle  # noqa: E402
from models.data.datasets import pick_evenly, train_images  # noqa: E402
from models.data.synth import write_dataset  # noqa: E402
from models.image_io import read_image  # noqa: E402
from models.recipe import load_recipe, save_recipe  # noqa: E402
from models.training.train import TrainConfig, train_bundle  # noqa: E402

SECTION = "Fusion (bench/fusion.py)"
KEYS = ("image_auroc", "pixel_auroc", "aupro")
PRODUCTS = {"pouch": "pouch cell", "ultrasound": "pouch cell ultrasound scan"}


def run(kind: str, work: Path, args: argparse.Namespace) -> list[tuple]:
    data = work / kind
    write_dataset(data, kind, args.train, args.test_good, args.test_defect, seed=0)
    images = [read_image(p) for p in train_images(data)]
    bundle = work / f"{kind}-bundle"
    create_bundle(bundle, args.arch, PRODUCTS[kind], reference_images=pick_evenly(images, 8))
    cfg = TrainConfig(epochs=args.epochs, samples_per_epoch=args.samples, seed=0)
    t = time.perf_counter()
    result = train_bundle(bundle, images, cfg, progress=False)
    fit = time.perf_counter() - t
    chosen = result.head.fusion if result.head else "?"
    rows = []
    for fusion in ("memory", "mean", "text"):
        recipe = load_recipe(bundle)
        recipe.fusion = fusion
        save_recipe(bundle, recipe)
        metrics = evaluate(bundle, data, "torch", progress=False).metrics
        rows.append((kind, fusion, fusion == chosen, {k: metrics[k] for k in KEYS}, fit))
        print(kind, fusion, "chosen" if fusion == chosen else "", metrics, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="effnet-lite0")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--test-good", type=int, default=10)
    parser.add_argument("--test-defect", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", default=["pouch", "ultrasound"])
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            rows += run(kind, Path(tmp), args)
    lines = [
        f"{args.arch}, 8 references, decoder trained {args.epochs} epochs of {args.samples} "
        f"samples; {args.train} training, {args.test_good} good test images and "
        f"{args.test_defect} of each defect type per set. The decoder's map is on the "
        "references' scale. \"chosen\": the fusion the head check kept on held-out "
        "synthetic defects.",
        "",
        "| set | fusion | image AUROC | pixel AUROC | AUPRO | chosen |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, fusion, chosen, m, _ in rows:
        cells = " | ".join("-" if m[k] is None else f"{m[k]:.3f}" for k in KEYS)
        lines.append(f"| {kind} | {fusion} | {cells} | {'yes' if chosen else ''} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_results(SECTION, body)


if __name__ == "__main__":
    main()
