"""Small defects on full-resolution frames: the whole frame vs the ROI vs tiles at two pitches.

Procedural 2448 x 2048 line frames at 0.05 mm/px (``models.data.synth.pouch_frame``: a pouch cell
on a belt between fixture rails, tilted by up to 3 degrees and shifted by up to 3 %) with
particles, pinholes and scratches of 0.2, 0.5, 1, 2 and 5 mm. Ways of inspecting: the whole
frame squashed to 224 px, the ROI alone squashed, tiles at 0.2 and 0.1 mm/px (0.05 with
``--fine``). Per way of inspecting, one
effnet-lite0 bundle from the same normal reference frames, thresholds calibrated on normal
frames at a 1 % false-reject target (``inspector.offline.calibration.choose_thresholds``), false
rejects on other normal frames, recall per defect size; for tiles at 0.1 mm/px also a
position-aware memory bank (one bank per tile location) beside the shared one; and ms per
frame on each backend in ``BACKENDS``. Every inspection goes through ``Predictor`` (the
daemon's path). Writes the "Small defects" section of bench/RESULTS.md.

    .venv/bin/python -m bench.small_defects              # 15-30 min on 2 shared cores
    .venv/bin/python -m bench.small_defects --reps 1     # a quicker, coarser run
    .venv/bin/python -m bench.small_defects --fine       # also tiles at 0.05 mm/px (slow)
    # frames per second on a GPU box, one frame and 8 frames per backend call:
    .venv/bin/python -m bench.small_defects --latency-only --modes "tiles 0.1 mm/px" \
        --backends tensorrt torch --frames-per-call 1 8

Frames are cached in ``--cache`` (rendering one takes about 3 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.results import update_results, wall_time_line  # noqa: E402
from inspector.offline.calibration import choose_thresholds, region_peaks  # noqa: E402
from inspector.offline.evaluation import ImageResult, run_predictor  # noqa: E402
from inspector.runtime.backends import BACKENDS as BACKEND_NAMES  # noqa: E402
from inspector.runtime.predictor import TILE_BATCH, Predictor  # noqa: E402
from inspector.vision.tiling import inspection_tiler  # noqa: E402
from models.bundle import DEFAULT_MEDIAN_WEIGHT, create_bundle, load_detector  # noqa: E402
from models.data.datasets import Sample  # noqa: E402
from models.data.synth import FRAME_PITCH_MM, SIZED_DEFECTS, pouch_frame  # noqa: E402
from models.memory_bank import CoresetSize, MemoryBank  # noqa: E402
from models.recipe import Roi  # noqa: E402

SECTION = "Small defects"
SIZES_MM = (0.2, 0.5, 1.0, 2.0, 5.0)
BACKENDS = ("torch", "onnxruntime", "openvino")  # one name per CPU runtime
ARCH = "effnet-lite0"
TARGET_RATE = 0.01
CORESET = CoresetSize(maximum=4096)  # bounds the bank search per tile (latency)


@dataclass
class Mode:
    """One way of inspecting a frame."""

    name: str
    roi: Roi | None
    pitch: float | None  # inspection mm/px (tiles); None: one squashed model input
    latency_backends: tuple[str, ...] = ("onnxruntime",)


MODES = (
    Mode("whole frame", None, None),
    Mode("ROI only", Roi(), None),
    Mode("tiles 0.2 mm/px", Roi(), 0.2),
    Mode("tiles 0.1 mm/px", Roi(), 0.1, BACKENDS),
    Mode("tiles 0.05 mm/px", Roi(), 0.05),  # 4x the tiles of 0.1: only with --fine
)
FINE = "tiles 0.05 mm/px"
POSITION_MODE = "tiles 0.1 mm/px"


@dataclass
class Outcome:
    """What one mode (and bank) achieved."""

    mode: str
    bank: str
    tiles: float
    fit_s: float
    n_fit: int
    fit_rejects: int
    n_held: int
    held_rejects: int
    recall: dict[float, tuple[int, int]]
    by_kind: dict[str, tuple[int, int]]
    latency: dict[str, dict[str, float]] = field(default_factory=dict)


# --- frames ----------------------------------------------------------------------------------


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return path


def render_frames(cache: Path, args: argparse.Namespace) -> dict[str, list[Sample]]:
    """Reference, calibration, held-out normal and defect frames (rendered once, cached)."""
    sets: dict[str, list[Sample]] = {"refs": [], "fit": [], "held": [], "defects": []}
    plan: list[tuple[str, Path, list[int], str | None, float]] = []
    plan += [("refs", cache / f"refs/{i}.png", [0, i], None, 0) for i in range(args.refs)]
    plan += [("fit", cache / f"fit/{i}.png", [1, i], None, 0) for i in range(args.normals)]
    plan += [("held", cache / f"held/{i}.png", [2, i], None, 0) for i in range(args.held)]
    for k, kind in enumerate(SIZED_DEFECTS):
        for s, mm in enumerate(SIZES_MM):
            for r in range(args.reps):
                path = cache / f"{kind}_{mm:g}mm/{r}.png"
                plan.append(("defects", path, [3, k, s, r], kind, mm))
    todo = [p for p in plan if not p[1].is_file()]
    t0 = time.perf_counter()
    for i, (_, path, seed, kind, mm) in enumerate(todo):
        _write(path, pouch_frame(seed, kind, mm)[0])
        print(f"\rrendering frames {i + 1}/{len(todo)}", end="", flush=True)
    if todo:
        print(f" ({time.perf_counter() - t0:.0f} s)")
    for group, path, _, kind, mm in plan:
        label = 0 if kind is None else 1
        sets[group].append(Sample(path, label, "good" if kind is None else f"{kind}:{mm:g}"))
    return sets


# --- one mode --------------------------------------------------------------------------------


def build(mode: Mode, refs: list[np.ndarray], out: Path) -> tuple[Path, float]:
    """The mode's bundle (and its ONNX export); seconds to build the bundle."""
    from export.onnx_export import export_bundle

    tiler = inspection_tiler(mode.roi, FRAME_PITCH_MM, mode.pitch, 0.25)
    t0 = time.perf_counter()
    create_bundle(
        out, ARCH, "pouch cell", reference_images=refs, pixel_pitch_mm=FRAME_PITCH_MM,
        coreset=CORESET, roi=mode.roi, inspect_mm_per_px=mode.pitch, tiler=tiler,
    )
    fit_s = time.perf_counter() - t0
    export_bundle(out)
    return out, fit_s


def score(
    mode: str, bank: str, normal: list[ImageResult], held: list[ImageResult],
    defects: list[ImageResult], grid: int, tiles: float, fit_s: float,
) -> Outcome:
    """Thresholds at the target rate on ``normal``; false rejects and recall at them."""
    t, _, _ = choose_thresholds(normal, TARGET_RATE, grid)

    def failed(results: list[ImageResult]) -> np.ndarray:
        return region_peaks(results, t.pixel, t.min_defect_area_px) >= t.image

    fails = failed(defects)
    recall: dict[float, tuple[int, int]] = {}
    by_kind: dict[str, tuple[int, int]] = {}
    for r, hit in zip(defects, fails, strict=True):
        kind, mm = r.sample.defect.split(":")
        k, n = recall.get(float(mm), (0, 0))
        recall[float(mm)] = (k + int(hit), n + 1)
        k, n = by_kind.get(kind, (0, 0))
        by_kind[kind] = (k + int(hit), n + 1)
    return Outcome(
        mode, bank, tiles, fit_s, len(normal), int(failed(normal).sum()), len(held),
        int(failed(held).sum()), recall, by_kind,
    )


def latency(
    bundle: Path, backends: tuple[str, ...], frames: list[np.ndarray],
    per_call: Sequence[int] = (1,),
) -> dict[str, dict[str, float]]:
    """Median ms per frame on each backend: ROI + tiles, backend, stitching + decision.

    With ``per_call`` n > 1, n frames are prepared, handed to ``Predictor.infer`` together
    (it sends their tiles to the backend ``TILE_BATCH`` at a time) and decided one by one;
    times are per frame. ``frames[0]`` is the warm-up; one predictor call per other frame,
    each call taking the next n frames in turn.
    """
    out = {}
    pool = frames[1:] or frames
    for name in backends:
        p = Predictor(bundle, name)
        p.inspect(frames[0])  # warm-up
        for n in per_call:
            parts: dict[str, list[float]] = {k: [] for k in ("prepare", "infer", "decide", "total")}
            cpu, tiles = [], 0
            for c in range(len(pool)):
                batch = [pool[(c * n + j) % len(pool)] for j in range(n)]
                c0 = time.process_time()
                t0 = time.perf_counter()
                prepared = [p.prepare_frame(f) for f in batch]
                t1 = time.perf_counter()
                results = p.infer(prepared)
                t2 = time.perf_counter()
                for prep, (maps, scores) in zip(prepared, results, strict=True):
                    p.decide(prep, maps, scores)
                t3 = time.perf_counter()
                cpu.append((time.process_time() - c0) * 1e3 / n)
                tiles = len(prepared[0].inputs)
                for key, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    parts[key].append(v * 1e3 / n)
            label = name if n == 1 else f"{name}, {n} frames/call"
            out[label] = {k: statistics.median(v) for k, v in parts.items()} | {
                "tiles": tiles, "load": os.getloadavg()[0], "cpu": statistics.median(cpu),
            }
        p.close()
    return out


# --- a position-aware bank: one per tile location --------------------------------------------


def _centres(prepared) -> np.ndarray:
    w, h = prepared.grid.size
    return np.array([((x + bw / 2) / w, (y + bh / 2) / h) for x, y, bw, bh in prepared.grid.boxes])


@torch.no_grad()
def position_banks(det, predictor: Predictor, refs: list[np.ndarray]):
    """One bank per tile location of the first reference's grid; other references' tiles go
    to the location nearest their normalised centre (ROIs differ by a few px)."""
    preps = [predictor.prepare_frame(r) for r in refs]
    anchors = _centres(preps[0])
    groups: list[list[list[torch.Tensor]]] = [[] for _ in anchors]
    for prep in preps:
        taps = det.encoder(torch.from_numpy(prep.inputs))
        for i, c in enumerate(_centres(prep)):
            loc = int(np.argmin(((anchors - c) ** 2).sum(1)))
            groups[loc].append([t[i : i + 1] for t in taps])
    banks = [
        MemoryBank.from_taps(
            g, det.encoder.unit_taps, CORESET, grid=det.encoder.grid_size,
            median_weight=det.memory_bank.median_weight,
        )
        for g in groups
    ]
    return anchors, banks


@torch.no_grad()
def position_results(det, predictor, anchors, banks, samples) -> list[ImageResult]:
    out = []
    for s in samples:
        frame = s.read()
        prep = predictor.prepare_frame(frame)
        taps = det.encoder(torch.from_numpy(prep.inputs))
        maps = []
        for i, c in enumerate(_centres(prep)):
            bank = banks[int(np.argmin(((anchors - c) ** 2).sum(1)))]
            maps.append(det.upsample(bank([t[i : i + 1] for t in taps])))
        amap = det.smooth(torch.cat(maps)).clamp(0.0, 1.0).numpy()
        ins = predictor.decide(prep, amap, amap.reshape(len(amap), -1).max(1))
        out.append(ImageResult(s, ins.decision, ins.map, tuple(frame.shape), ins.patch_area_px))
    return out


# --- the run ---------------------------------------------------------------------------------


def _backends(mode: Mode, args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.backends) if args.backends else mode.latency_backends


def run(args: argparse.Namespace, work: Path) -> list[Outcome]:
    sets = render_frames(args.cache, args)
    refs = [s.read() for s in sets["refs"]]
    lat_frames = [s.read() for s in sets["held"][: args.latency_frames + 1]]
    outcomes = []
    if args.latency_only:
        for mode in MODES:
            if args.modes and mode.name not in args.modes:
                continue
            bundle, fit_s = build(mode, refs, work / "latency")
            o = Outcome(mode.name, "shared", 0.0, fit_s, 0, 0, 0, 0, {}, {})
            o.latency = latency(bundle, _backends(mode, args), lat_frames, args.frames_per_call)
            _print(o)
            outcomes.append(o)
        return outcomes
    for mode in MODES:
        if (args.modes and mode.name not in args.modes) or (mode.name == FINE and not args.fine):
            continue
        print(f"== {mode.name}", flush=True)
        bundle, fit_s = build(mode, refs, work / mode.name.replace(" ", "_").replace("/", ""))
        p = Predictor(bundle, "onnxruntime")
        normal, _ = run_predictor(p, sets["fit"], progress=False)
        held, _ = run_predictor(p, sets["held"], progress=False)
        bad, _ = run_predictor(p, sets["defects"], progress=False)
        tiles = float(np.mean([len(p.prepare_frame(f).inputs) for f in refs]))
        grid = p.recipe.patch_grid
        o = score(mode.name, "shared", normal, held, bad, grid, tiles, fit_s)
        o.latency = latency(bundle, _backends(mode, args), lat_frames, args.frames_per_call)
        outcomes.append(o)
        _print(o)
        if mode.name == POSITION_MODE and not args.no_position:
            det = load_detector(bundle)
            t0 = time.perf_counter()
            anchors, banks = position_banks(det, p, refs)
            pos_fit = fit_s + time.perf_counter() - t0
            res = [position_results(det, p, anchors, banks, sets[k]) for k in ("fit", "held")]
            bad_pos = position_results(det, p, anchors, banks, sets["defects"])
            o = score(mode.name, "per location", *res, bad_pos, grid, tiles, pos_fit)
            outcomes.append(o)
            _print(o)
        p.close()
    return outcomes


def _rate(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "-"


def _print(o: Outcome) -> None:
    rec = "  ".join(f"{mm:g} mm {_rate(*o.recall.get(mm, (0, 0)))}" for mm in SIZES_MM)
    print(f"{o.mode} [{o.bank}]: tiles {o.tiles:.1f}, false rejects fit "
          f"{o.fit_rejects}/{o.n_fit} held {o.held_rejects}/{o.n_held}; recall {rec}")
    for name, lat in o.latency.items():
        print(f"  {name}: {lat['total']:.0f} ms/frame, {1e3 / lat['total']:.1f} frames/s "
              f"({lat['tiles']:.0f} tiles, "
              f"{lat['infer'] / max(lat['tiles'], 1):.1f} ms/tile in the backend)")


def _small_recall(o: Outcome, up_to_mm: float = 1.0) -> tuple[int, int]:
    hits = [v for mm, v in o.recall.items() if mm <= up_to_mm]
    return sum(k for k, _ in hits), sum(n for _, n in hits)


def verdicts(outcomes: list[Outcome]) -> list[str]:
    """The sentences the table supports: 0.5 mm recall with tiles vs the whole frame, and the
    shared vs the per-location bank."""
    out = []
    by = {(o.mode, o.bank): o for o in outcomes}
    whole, tiled = by.get(("whole frame", "shared")), by.get((POSITION_MODE, "shared"))
    if whole and tiled:
        out.append(
            f"- 0.5 mm defects: recall {_rate(*tiled.recall.get(0.5, (0, 0)))} with tiles at "
            f"0.1 mm/px vs {_rate(*whole.recall.get(0.5, (0, 0)))} on the whole frame, at "
            f"{_rate(tiled.held_rejects, tiled.n_held)} vs "
            f"{_rate(whole.held_rejects, whole.n_held)} held-out false rejects."
        )
    pos = by.get((POSITION_MODE, "per location"))
    if tiled and pos:
        ks, ns = _small_recall(tiled)
        kp, np_ = _small_recall(pos)
        shared_key = (ks / max(ns, 1), -tiled.held_rejects)
        pos_key = (kp / max(np_, 1), -pos.held_rejects)
        if shared_key == pos_key:
            verdict = "the two measured the same here (the shared bank needs no registration)."
        else:
            better = "per-location" if pos_key > shared_key else "shared"
            verdict = f"the {better} bank measured better here."
        out.append(
            f"- Bank at 0.1 mm/px: shared {ks}/{ns} of the defects up to 1 mm, "
            f"{_rate(tiled.held_rejects, tiled.n_held)} held-out false rejects; one bank per "
            f"tile location {kp}/{np_}, {_rate(pos.held_rejects, pos.n_held)}: {verdict}"
        )
    return out


def report(outcomes: list[Outcome], args: argparse.Namespace, elapsed: float) -> str:
    n_def = args.reps * len(SIZED_DEFECTS)
    lines = [
        f"Frames: `models.data.synth.pouch_frame`, 2448 x 2048 px at {FRAME_PITCH_MM} mm/px, a "
        "pouch cell on a belt between fixture rails, tilted up to 3 deg and shifted up to 3 %. "
        f"{args.refs} normal reference frames, {args.normals} normal frames to calibrate on "
        f"(target {TARGET_RATE:.0%} false rejects), {args.held} other normal frames to check "
        f"the false rejects on, and per defect size {n_def} defective frames ({args.reps} each "
        f"of {', '.join(SIZED_DEFECTS)}; a scratch's size is its length, about 0.1 mm wide). "
        f"Backbone {ARCH} (ImageNet weights), memory bank only (median weight "
        f"{DEFAULT_MEDIAN_WEIGHT}, the default), coreset at most "
        f"{CORESET.maximum} patches; tiles of 224 px with 25 % overlap over the ROI found by "
        "`roi: auto`; recall and thresholds from ONNX Runtime through `Predictor` (the daemon's "
        "path; the per-location bank through PyTorch). Recall = defective frames that fail at "
        f"the calibrated thresholds. With {args.normals} calibration frames a 1 % target "
        "puts the image threshold above every one of them (0 fitted false rejects by "
        "construction): the held-out column is the honest check.",
        "",
        "| inspection | bank | tiles/frame | false rejects held-out | "
        + " | ".join(f"recall {mm:g} mm" for mm in SIZES_MM)
        + " | bank build s |",
        "|---|---|---|---|" + "---|" * len(SIZES_MM) + "---|",
    ]
    for o in outcomes:
        rec = " | ".join(_rate(*o.recall.get(mm, (0, 0))) for mm in SIZES_MM)
        lines.append(
            f"| {o.mode} | {o.bank} | {o.tiles:.1f} | {_rate(o.held_rejects, o.n_held)} | "
            f"{rec} | {o.fit_s:.0f} |"
        )
    lines += ["", *verdicts(outcomes), "", "Recall per defect kind (all sizes):", ""]
    for o in outcomes:
        kinds = ", ".join(f"{k} {_rate(*v)}" for k, v in o.by_kind.items())
        lines.append(f"- {o.mode} [{o.bank}]: {kinds}")
    lines += [
        "",
        f"Latency per 2448 x 2048 frame (median of {args.latency_frames} predictor calls "
        "after a warm-up frame; one frame per call unless the backend says 'n frames/call': "
        "then n frames' tiles go to the predictor together and times are per frame; "
        "prepare = find the ROI, deskew, cut and preprocess the tiles; decide = stitch, map "
        "back to the frame, regions; CPU ms/frame = the process's CPU time, all threads: on "
        f"an otherwise idle {os.cpu_count()}-core box a frame takes at least "
        f"1/{os.cpu_count()} of it):",
        "",
        "| inspection | backend | tiles/frame | ms/frame | frames/s | prepare ms | backend ms "
        "| ms/tile | decide ms | CPU ms/frame | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for name, lat in o.latency.items():
            lines.append(
                f"| {o.mode} | {name} | {lat['tiles']:.0f} | {lat['total']:.0f} | "
                f"{1e3 / lat['total']:.1f} | {lat['prepare']:.0f} | {lat['infer']:.0f} | "
                f"{lat['infer'] / max(lat['tiles'], 1):.1f} | {lat['decide']:.0f} | "
                f"{lat['cpu']:.0f} | {lat['load']:.1f} |"
            )
    lines += ["", wall_time_line(elapsed)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=3, help="normal reference frames")
    parser.add_argument("--normals", type=int, default=12, help="normal frames to calibrate on")
    parser.add_argument("--held", type=int, default=8, help="other normal frames")
    parser.add_argument("--reps", type=int, default=2, help="frames per defect kind and size")
    parser.add_argument("--latency-frames", type=int, default=3,
                        help="timed backend calls per backend (after one warm-up frame)")
    parser.add_argument("--backends", nargs="*", choices=sorted(BACKEND_NAMES),
                        help="time these backends (e.g. tensorrt, torch on a GPU) instead of "
                        "each mode's CPU runtimes")
    parser.add_argument("--frames-per-call", nargs="*", type=int, default=(1,),
                        help="frames handed to the predictor together, e.g. 1 8 (it sends "
                        f"their tiles to the backend {TILE_BATCH} at a time)")
    parser.add_argument("--fine", action="store_true", help="also tiles at 0.05 mm/px (slow)")
    parser.add_argument("--modes", nargs="*", help="only these (names as in the table)")
    parser.add_argument("--no-position", action="store_true", help="skip the per-location bank")
    parser.add_argument("--latency-only", action="store_true",
                        help="only ms per frame (no recall); prints, never writes RESULTS.md")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "bench-small-defects-frames")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-small-defects-"))
    try:
        outcomes = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = report(outcomes, args, time.perf_counter() - start)
    print(body)
    if not args.no_write and not args.latency_only:
        update_results(SECTION, body)


if __name__ == "__main__":
    main()
