"""Detection accuracy on real images (elpv) and on the procedural sets, beside anomalib.

Real images: the electroluminescence solar cells of the ``elpv-dataset`` package, mono and
poly, split as ``bench/elpv.py`` says (draw 0 = the first 24 normal cells as references; draws
1.. = other references). The first draw: the main backbone few-shot with 1, 4 and 24
references, at each input size, the other backbones with 24, our trained head + 24; every
other draw: the main backbone with 24 references at each size. Beside them anomalib's
PatchCore and PaDiM with the SAME weights, split and input size, in the same run
(``bench/peer.py``; ``make peer-venv`` first). Procedural pouch and ultrasound sets: few-shot,
trained, trained + few-shot, with pixel metrics. Writes the "accuracy" section of
bench/RESULTS.md.

    .venv/bin/python -m bench.accuracy                 # everything (about an hour on 2 cores)
    .venv/bin/python -m bench.accuracy --quick         # one draw, lite0 at 224, no peer
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.elpv import KINDS, N_BAD, N_GOOD, N_REFS, write_split  # noqa: E402
from bench.results import update_results, wall_time_line  # noqa: E402
from inspector.offline.evaluation import evaluate  # noqa: E402
from models.bundle import DEFAULT_MEDIAN_WEIGHT, create_bundle  # noqa: E402
from models.data.datasets import pick_evenly, train_images  # noqa: E402
from models.data.synth import write_dataset  # noqa: E402
from models.image_io import read_image  # noqa: E402
from models.training.train import TrainConfig, train_bundle  # noqa: E402

SECTION = "Accuracy (bench/accuracy.py)"
KEYS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")
PRODUCTS = {"pouch": "pouch cell", "ultrasound": "pouch cell ultrasound scan"}


@dataclass
class Row:
    """One measured configuration."""

    data: str  # "elpv mono", "pouch", ...
    draw: int
    model: str  # "ours effnet-lite0", "anomalib PatchCore", ...
    variant: str  # "few-shot 24", "trained + 24", ...
    size: int
    metrics: dict = field(default_factory=dict)
    fit_s: float | None = None
    ms_per_image: float | None = None
    note: str = ""


def _ours(
    data: Path,
    arch: str,
    refs: list,
    size: int,
    product: str,
    train: TrainConfig | None,
    median_weight: float = DEFAULT_MEDIAN_WEIGHT,
) -> tuple[dict, float, float, str]:
    """Create (and train) a bundle, evaluate it: metrics, fit s, ms per test image, note."""
    work = Path(tempfile.mkdtemp(prefix="acc-bundle-"))
    try:
        t = time.perf_counter()
        create_bundle(
            work, arch, product, reference_images=refs, image_size=size,
            median_weight=median_weight,
        )
        note = ""
        if train is not None:
            images = [read_image(p) for p in train_images(data)]
            result = train_bundle(work, images, train, progress=False)
            note = result.head.summary() if result.head else ""
        fit = time.perf_counter() - t
        t = time.perf_counter()
        ev = evaluate(work, data, "torch", progress=False)
        ms = 1000 * (time.perf_counter() - t) / ev.metrics["n_images"]
        return {k: ev.metrics[k] for k in KEYS}, fit, ms, note
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _elpv_plan(args: argparse.Namespace, draw: int) -> list[tuple[str, int, int]]:
    """(arch, size, references) to run on one draw: everything on the first draw, the main
    backbone at each size with all references on the others (the spread over draws)."""
    main, first = args.archs[0], draw == args.draws[0]
    plan = [(main, args.sizes[0], k) for k in ((1, 4, N_REFS) if first else (N_REFS,))]
    plan += [(main, size, N_REFS) for size in args.sizes[1:]]
    if first:
        plan += [(arch, args.sizes[0], N_REFS) for arch in args.archs[1:]]
    return plan


def run_elpv(args: argparse.Namespace, work: Path) -> list[Row]:
    rows: list[Row] = []
    for kind in args.kinds:
        for draw in args.draws:
            split = write_split(kind, draw, work / f"elpv-{kind}-{draw}")
            refs_all = [read_image(p) for p in split.references]
            for arch, size, k in _elpv_plan(args, draw):
                m, fit, ms, _ = _ours(split.root, arch, refs_all[:k], size, "solar cell", None)
                rows.append(Row(f"elpv {kind}", draw, f"ours {arch}", f"few-shot {k}", size,
                                m, fit, ms))
                _print(rows[-1])
            # the same bank scored as PatchCore does (no median weight), beside it
            arch, size = args.archs[0], args.sizes[0]
            m, fit, ms, _ = _ours(split.root, arch, refs_all, size, "solar cell", None, 0.0)
            rows.append(Row(f"elpv {kind}", draw, f"ours {arch}", f"few-shot {N_REFS}, "
                            "median weight 0", size, m, fit, ms))
            _print(rows[-1])
            if draw == args.draws[0] and not args.quick:
                arch, size = args.archs[0], args.sizes[0]
                m, fit, ms, note = _ours(
                    split.root, arch, refs_all, size, "solar cell", _train_config(args)
                )
                rows.append(Row(f"elpv {kind}", draw, f"ours {arch}", f"trained + {N_REFS}",
                                size, m, fit, ms, note))
                _print(rows[-1])
            if not args.no_peer:
                rows += _peer_rows(f"elpv {kind}", draw, split, args)
    return rows


def _peer_rows(data: str, draw: int, split, args: argparse.Namespace) -> list[Row]:
    """anomalib on the same split: PatchCore at every size on the first draw and at the main
    size on the others, PaDiM at the main size on the first draw."""
    from bench.peer import run_peer

    first = draw == args.draws[0]
    out = []
    for size in args.sizes if first else args.sizes[:1]:
        models = ("patchcore", "padim") if first and size == args.sizes[0] else ("patchcore",)
        res = run_peer(split.references, split.test, size, "lite0", models)
        for name, r in res.items():
            label = {"patchcore": "PatchCore", "padim": "PaDiM"}[name]
            row = Row(data, draw, f"anomalib {label} lite0", f"few-shot {r['n_references']}",
                      size, {"image_auroc": r["image_auroc"]}, r["fit_s"], r["ms_per_image"])
            out.append(row)
            _print(row)
    return out


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=8, samples_per_epoch=args.samples, seed=0)


def run_procedural(args: argparse.Namespace, work: Path) -> list[Row]:
    rows: list[Row] = []
    for kind in ("pouch", "ultrasound"):
        data = work / kind
        write_dataset(data, kind, args.train, args.test_good, args.test_defect, seed=0)
        images = [read_image(p) for p in train_images(data)]
        for arch in args.archs:
            size = args.sizes[0]
            variants: list[tuple[str, list, TrainConfig | None]] = [
                (f"few-shot {k}", pick_evenly(images, k), None) for k in (4, 8)
            ]
            if arch == args.archs[0]:
                variants += [
                    ("trained", [], _train_config(args)),
                    ("trained + 8", pick_evenly(images, 8), _train_config(args)),
                ]
            for name, refs, train in variants:
                m, fit, ms, note = _ours(data, arch, refs, size, PRODUCTS[kind], train)
                rows.append(Row(kind, 0, f"ours {arch}", name, size, m, fit, ms, note))
                _print(rows[-1])
    return rows


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _print(r: Row) -> None:
    figures = " ".join(f"{k}={_fmt(r.metrics.get(k))}" for k in KEYS)
    print(f"{r.data} draw {r.draw} | {r.model} | {r.variant} | {r.size}px | {figures} "
          f"| fit {_fmt(r.fit_s, 1)} s | {_fmt(r.ms_per_image, 1)} ms/img {r.note}", flush=True)


def report(rows: list[Row], args: argparse.Namespace, elapsed: float) -> str:
    lines = [
        "Real images: elpv (`bench/elpv.py`): per kind, draw 0 = references the first "
        f"{N_REFS} normal cells in labels.csv order, test = the next {N_GOOD} normal and the "
        f"first {N_BAD} cracked (probability 1) cells; draws 1.. = the normal cells shuffled "
        "with numpy's default_rng(draw), references the first 24, test/good the next 150, the "
        "same cracked cells. 'few-shot k' uses the first k of the 24 references. The peer is "
        "anomalib 2.7 with the same EfficientNet-Lite0 ImageNet weights, layers (stride 8 and "
        "16), split and input size, in the same run (`bench/peer.py`). Procedural sets: "
        f"`models.data.synth` seed 0, {args.train} train/good, {args.test_good} test/good, "
        f"{args.test_defect} per defect type. Training: {args.epochs} epochs x {args.samples} "
        "samples (half Poisson synthetic defects), batch 8, Adam 1e-3, focal + Dice; then the "
        "head check (`models/training/head_check.py`) keeps the fusion that scores better on "
        "held-out "
        f"synthetic defects. Our bundles take {DEFAULT_MEDIAN_WEIGHT} x each image's median "
        "patch distance off its patches (`--median-weight`); 'median weight 0' is the same "
        "bank scored as PatchCore does. CPU, torch backend; ms/img = evaluation wall time per "
        "test image (reading, preprocessing, model, decision); fit = bundle creation (+ "
        "training).",
        "",
        "| data | draw | model | variant | px | image AUROC | pixel AUROC | AUPRO | F1-max "
        "| fit s | ms/img |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.metrics
        lines.append(
            f"| {r.data} | {r.draw} | {r.model} | {r.variant} | {r.size} | "
            f"{_fmt(m.get('image_auroc'))} | {_fmt(m.get('pixel_auroc'))} | "
            f"{_fmt(m.get('aupro'))} | {_fmt(m.get('image_f1_max'))} | "
            f"{_fmt(r.fit_s, 1)} | {_fmt(r.ms_per_image, 1)} |"
        )
    lines += ["", "Spread over reference draws (image AUROC: mean, min-max, n draws):", ""]
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.data.startswith("elpv") and r.metrics.get("image_auroc") is not None:
            groups.setdefault((r.data, r.model, r.variant, r.size), []).append(
                r.metrics["image_auroc"]
            )
    for (data, model, variant, size), vals in groups.items():
        if len(vals) > 1:
            lines.append(
                f"- {data}, {model}, {variant}, {size} px: {statistics.mean(vals):.3f} "
                f"({min(vals):.3f}-{max(vals):.3f}, n={len(vals)})"
            )
    notes = [f"- {r.data} {r.model} {r.variant}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "What training's head check chose:", "", *notes]
    lines += ["", wall_time_line(elapsed)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="draw 0, lite0 at 224, no peer")
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                        help="elpv cell kinds")
    parser.add_argument("--archs", nargs="+",
                        default=["effnet-lite0", "effnet-lite1", "effnet-lite2"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320],
                        help="input sizes (the first is the main one)")
    parser.add_argument("--no-peer", action="store_true", help="skip anomalib")
    parser.add_argument("--no-elpv", action="store_true", help="procedural sets only")
    parser.add_argument("--no-procedural", action="store_true", help="elpv only")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.draws, args.archs, args.sizes, args.no_peer = [0], ["effnet-lite0"], [224], True
    args.train, args.test_good, args.test_defect = (16, 12, 6)
    args.epochs, args.samples = (2, 32) if args.quick else (6, 64)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    try:
        rows = [] if args.no_elpv else run_elpv(args, work)
        rows += [] if args.no_procedural else run_procedural(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = report(rows, args, time.perf_counter() - start)
    print(body)
    if not args.no_write:
        update_results(SECTION, body)


if __name__ == "__main__":
    main()
