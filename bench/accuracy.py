"""Accuracy of zero-shot, few-shot and trained bundles on procedural pouch and ultrasound sets.

Tiny architecture (random weights): the numbers show what the learning loop adds on top of
the same frozen encoder, not what ViT-H reaches. Writes the "accuracy" section of
bench/RESULTS.md.

    .venv/bin/python -m bench.accuracy            # 0.6 min on 2 idle cores, 7 when shared
    .venv/bin/python -m bench.accuracy --quick    # smaller sets, fewer epochs (smoke run)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.results import update_results  # noqa: E402
from inspector.evaluation import evaluate  # noqa: E402
from models.bundle import create_bundle  # noqa: E402
from models.datasets import pick_evenly, train_images  # noqa: E402
from models.image_io import read_image  # noqa: E402
from models.recipe import DECODER_FILE  # noqa: E402
from models.synth import write_dataset  # noqa: E402
from models.training import TrainConfig, train_bundle  # noqa: E402

PRODUCTS = {"pouch": "pouch cell", "ultrasound": "pouch cell ultrasound scan"}
SECTION = "Accuracy (bench/accuracy.py)"
KEYS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")


def run_kind(kind: str, work: Path, args: argparse.Namespace) -> dict[str, dict]:
    """All bundles of one kind -> {bundle name: metrics}."""
    data = work / kind
    t0 = time.perf_counter()
    write_dataset(data, kind, args.train, args.test_good, args.test_defect, seed=args.seed)
    images = [read_image(p) for p in train_images(data)]
    refs = pick_evenly(images, 4)
    product = PRODUCTS[kind]
    rows: dict[str, dict] = {}
    timings: dict[str, float] = {"data": time.perf_counter() - t0}

    zero = work / f"{kind}-zero"
    create_bundle(zero, "tiny", product, seed=0)
    few = work / f"{kind}-few"
    create_bundle(few, "tiny", product, reference_images=refs, seed=0)
    config = TrainConfig(
        epochs=args.epochs, batch_size=8, samples_per_epoch=args.samples, seed=args.seed
    )
    variants = [("trained", zero, config)]
    if not args.no_ablation:
        ablation = TrainConfig(**{**config.__dict__, "on_part": False})
        variants.append(("trained, defects anywhere", zero, ablation))
    for name, base, cfg in variants:
        out = work / f"{kind}-{name.replace(' ', '').replace(',', '-')}"
        shutil.copytree(base, out)
        t = time.perf_counter()
        result = train_bundle(out, images, cfg, progress=args.progress)
        timings[name] = time.perf_counter() - t
        rows[name] = {"bundle": out, "loss": result.epoch_losses}
    trained_few = work / f"{kind}-trained-few"
    shutil.copytree(few, trained_few)
    shutil.copy(rows["trained"]["bundle"] / DECODER_FILE, trained_few / DECODER_FILE)

    bundles = {
        "zero-shot": zero,
        "few-shot (4 refs)": few,
        **{name: rows[name]["bundle"] for name in rows},
        "trained + 4 refs": trained_few,
    }
    results = {}
    for name, bundle in bundles.items():
        t = time.perf_counter()
        m = evaluate(bundle, data, "torch", progress=False).metrics
        timings[f"eval {name}"] = time.perf_counter() - t
        results[name] = {k: m[k] for k in KEYS} | {"n_images": m["n_images"]}
        if name in rows:
            results[name]["loss"] = rows[name]["loss"]
        print(kind, name, {k: results[name][k] for k in KEYS}, flush=True)
    results["_timings"] = timings
    return results


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def report(all_results: dict[str, dict], args: argparse.Namespace, elapsed: float) -> str:
    lines = [
        f"Tiny architecture (random weights, seed 0); procedural sets from `models.synth` "
        f"(seed {args.seed}): {args.train} train/good, {args.test_good} test/good, "
        f"{args.test_defect} per defect type (pouch: scratch, dent, particle, edge_crack; "
        f"ultrasound: bubble, bubble_cluster). Training: {args.epochs} epochs x "
        f"{args.samples} samples (half Poisson synthetic defects), batch 8, Adam 1e-3, "
        "focal + Dice per tap, decoder projections only.",
        "",
        "| kind | bundle | image AUROC | pixel AUROC | AUPRO@0.3 | image F1-max |",
        "|---|---|---|---|---|---|",
    ]
    for kind, results in all_results.items():
        for name, m in results.items():
            if name.startswith("_"):
                continue
            lines.append(
                f"| {kind} | {name} | {fmt(m['image_auroc'])} | {fmt(m['pixel_auroc'])} | "
                f"{fmt(m['aupro'])} | {fmt(m['image_f1_max'])} |"
            )
    lines.append("")
    for kind, results in all_results.items():
        z, t = results["zero-shot"]["pixel_auroc"], results["trained"]["pixel_auroc"]
        verdict = "beats" if t > z else "does NOT beat"
        lines.append(
            f"- {kind}: trained {verdict} zero-shot on pixel AUROC by {t - z:+.3f} "
            f"({fmt(z)} -> {fmt(t)}); loss per epoch "
            + " ".join(f"{v:.3f}" for v in results["trained"]["loss"])
            + "."
        )
    load = os.getloadavg()
    lines += [
        f"- Wall time {elapsed / 60:.1f} min; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (machine shared with other work).",
        "",
        "What limits the margin, and what was tried:",
        "- The encoder is random: its LayerNorms remove each token's scale, so plain brightness "
        "changes (dents, the dark cores of bubbles) barely move the features, while texture "
        "and edges (scratches, cracks, particle rims, bubble rims) survive. Only a linear "
        "projection per tap is trained on top, so it cannot add context: a patch is judged "
        "by itself, not against its neighbours.",
        "- The zero-shot text map of a random model is below chance (the untrained "
        "projection scores textured background such as the belt higher than the smooth "
        "foil, where the defects are), so part of the margin is simply learning that the "
        "background is normal.",
        "- Synthetic defects placed anywhere teach the wrong lesson (pasted foil on the dark "
        "belt or scanner background is the biggest, easiest change, so 'texture = defect'): "
        "on the pouch set that made training worse than zero-shot; on ultrasound, where the "
        "part fills most of the frame, it helped less. Centring them on the part (Otsu "
        "foreground, `models.poisson.foreground`) is what made training pay off: compare the "
        "'defects anywhere' rows. During development a "
        "logistic-regression probe on the same frozen tap features (not run by this script) "
        "showed the same: pouch 0.49 -> 0.66, ultrasound 0.35 -> 0.59 pixel AUROC.",
        "- Synthetic Poisson patches are not the test defects (thin scratches, round "
        "bubbles); more epochs moved the loss little on these small sets. The memory bank "
        "(few-shot) uses context per patch and is complementary: see 'trained + 4 refs'.",
        "- Image-level numbers stay weak: the image score is the map's maximum, and with "
        "random features the brightest spot of a normal cell (seal edges, tabs, the scan "
        "border) competes with small defects. An image F1-max of 0.800 (pouch) or 0.667 "
        "(ultrasound) is what rejecting every cell scores on these sets, i.e. no information.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets and 2 epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ablation", action="store_true", help="skip 'defects anywhere'")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    args.train, args.test_good, args.test_defect = (8, 6, 3) if args.quick else (16, 12, 6)
    args.epochs = 2 if args.quick else 8
    args.samples = 32 if args.quick else 64
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    try:
        all_results = {kind: run_kind(kind, work, args) for kind in ("pouch", "ultrasound")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = report(all_results, args, time.perf_counter() - start)
    print(body)
    if not args.no_write:
        update_results(SECTION, body)


if __name__ == "__main__":
    main()
