"""Latency and throughput of each backend, against the CPU's fp32 peak, with int8's accuracy cost.

For each architecture (the EfficientNet-Lite backbones with their ImageNet weights; ``tiny``
and ``vit-h-14`` with random weights: timing does not depend on their values) it makes a
bundle with a memory bank, exports it to ONNX (fp32, dynamic int8, and static int8 calibrated
on the bundle's reference images), then in this one process and on the same inputs measures
each available backend (torch eager, onnxruntime fp32 / dynamic int8 / static int8, openvino
fp32 / static int8 where it imports, tensorrt where it imports): median and p99 latency at
batch 1, throughput at batch 8 (and 32). GFLOP per image are counted with
``torch.utils.flop_counter``; achieved GFLOP/s are compared with the CPU's fp32 peak (cores x 2
FMA units x 8 lanes x 2 FLOP x clock). Each backend's map difference from torch and its
image/pixel AUROC change are measured on procedural pouch and ultrasound test sets.

Usage:
    python -m bench.latency                      # every architecture (~20 min on 2 cores)
    python -m bench.latency --arch effnet-lite0  # one (repeatable)
    python -m bench.latency --quick              # tiny only
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.results import update_results
from export.onnx_export import export_bundle, mha_fastpath_disabled
from inspector.runtime.backends import create_backend
from models.backbones import clip_loader
from models.backbones.openclip import OpenClipBackbone
from models.bundle import _make_decoder, create_bundle, encode_references, save_tensors
from models.bundle_files import ENCODER_FILE
from models.data.datasets import load_test_split, train_images
from models.data.metrics import image_auroc, pixel_auroc
from models.data.synth import write_dataset
from models.detector import BatteryDetector
from models.image_io import read_image
from models.preprocess import preprocess
from models.recipe import Prompts, Recipe, file_sha256, save_recipe

SECTION = "Latency and throughput (bench/latency.py)"


@dataclass
class Plan:
    """How many repetitions an architecture gets (ViT-H takes seconds per image on a CPU)."""

    arch: str
    shots: int
    reps_b1: int
    reps_batch: dict[int, int]
    test_good: int
    test_defect: int


PLANS = {
    "tiny": Plan("tiny", 4, 50, {8: 10, 32: 4}, 10, 3),
    "effnet-lite0": Plan("effnet-lite0", 8, 30, {8: 8}, 10, 3),
    "effnet-lite1": Plan("effnet-lite1", 4, 50, {8: 10, 32: 4}, 10, 3),
    "effnet-lite2": Plan("effnet-lite2", 4, 50, {8: 10, 32: 4}, 10, 3),
    "vit-h-14": Plan("vit-h-14", 2, 5, {8: 1, 32: 1}, 3, 1),
}


def cpu_peak() -> dict:
    """fp32 peak: cores x 2 FMA units x 8 lanes x 2 FLOP x clock (clock from /proc/cpuinfo)."""
    mhz = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    cores = len(os.sched_getaffinity(0))
    ghz = (mhz or 0.0) / 1000
    flags = Path("/proc/cpuinfo").read_text()
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX2 FMA" if "fma" in flags else "?")
    return {"cores": cores, "ghz": ghz, "gflops": cores * 2 * 8 * 2 * ghz, "isa": isa}


def count_gflop(detector: BatteryDetector, size: int) -> float:
    """GFLOP of one image's forward pass (matmuls, convolutions and attention)."""

    def sdpa(q, k, v, *args, out_shape=None, **kwargs):  # the CPU attention kernel
        b, h, l_q, e = q
        return 2 * b * h * l_q * k[-2] * e + 2 * b * h * l_q * k[-2] * v[-1]

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with mha_fastpath_disabled(), torch.inference_mode(), counter:
        detector(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def make_bundle(plan: Plan, out: Path, refs: list[np.ndarray]) -> tuple[Path, float]:
    """A bundle with random weights and a memory bank; returns it and its GFLOP per image."""
    if plan.arch != "vit-h-14":  # tiny and the pretrained CNNs build as users build them
        create_bundle(out, plan.arch, "pouch cell", reference_images=refs[: plan.shots])
        from models.bundle import load_detector

        det = load_detector(out)
    else:
        # Only the image tower is needed at inference; random init, no weights file.
        torch.manual_seed(0)
        cfg = clip_loader.model_config(plan.arch)
        from open_clip.model import _build_vision_tower

        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"]).eval()
        encoder = OpenClipBackbone(plan.arch, visual)
        text = F.normalize(torch.randn(2, cfg["embed_dim"]), dim=-1)
        bank = encode_references(encoder, refs[: plan.shots])
        det = BatteryDetector(encoder, _make_decoder(encoder, cfg["embed_dim"]), text, bank).eval()
        save_tensors(out, det, encoder=True)
        save_recipe(
            out,
            Recipe(
                arch=plan.arch,
                product="pouch cell",
                taps=encoder.taps,
                patch_grid=encoder.grid_size[0],
                prompts=Prompts(
                    normal_states=["{}"], abnormal_states=["broken {}"], templates=["{}"]
                ),
                n_reference_images=plan.shots,
                encoder_sha256=file_sha256(out / ENCODER_FILE),
            ),
        )
    gflop = count_gflop(det, det.image_size)
    del det
    gc.collect()
    return out, gflop


def _timed(backend, x: np.ndarray) -> float:
    t = time.perf_counter()
    backend.infer(x)
    return time.perf_counter() - t


def time_backends(backends: dict, x: np.ndarray, plan: Plan) -> dict[str, dict]:
    """Latency at batch 1 (median, p99, best) and throughput at larger batches, per backend.

    The backends take turns rep by rep, in a rotating order, so that load from other users of
    a shared machine falls on all of them alike and their ratios stay meaningful.
    """
    labels = list(backends)
    for label in labels:
        backends[label].infer(x[:1])  # warm-up: allocations, kernel selection
    lat: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(plan.reps_b1):
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            lat[label].append(_timed(backends[label], x[i % len(x) : i % len(x) + 1]))
    out = {
        label: {
            "median_ms": statistics.median(v) * 1e3,
            "p99_ms": float(np.percentile(v, 99)) * 1e3,
            "best_ms": min(v) * 1e3,
            "reps": len(v),
        }
        for label, v in lat.items()
    }
    for batch, reps in plan.reps_batch.items():
        xb = np.resize(x, (batch, *x.shape[1:]))
        times: dict[str, list[float]] = {label: [] for label in labels}
        for i in range(reps):
            for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
                times[label].append(_timed(backends[label], xb))
        for label in labels:
            out[label][f"ips_b{batch}"] = batch / statistics.median(times[label])
    return out


TestSet = tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]  # images, labels, masks


def accuracy(backend, sets: dict[str, TestSet]) -> dict:
    """Maps, image AUROC and pixel AUROC (None without masks) on each procedural set."""
    out = {}
    for kind, (x, labels, masks) in sets.items():
        maps, scores = [], []
        for i in range(0, len(x), 8):
            m, s = backend.infer(x[i : i + 8])
            maps.append(m)
            scores.append(s)
        maps, scores = np.concatenate(maps), np.concatenate(scores)
        out[kind] = {
            "maps": maps,
            "image_auroc": image_auroc(labels, scores),
            "pixel_auroc": pixel_auroc(masks, list(maps)) if masks is not None else None,
        }
    return out


def load_set(root: Path, size: int) -> TestSet:
    """Preprocessed test images, labels and ``size``-px masks (None when one is missing)."""
    xs, labels, masks = [], [], []
    for sample in load_test_split(root):
        img = sample.read()
        xs.append(preprocess(img, size))
        labels.append(sample.label)
        masks.append(sample.read_mask((size, size)))
    complete = all(m is not None for m in masks)
    return np.stack(xs), np.array(labels), masks if complete else None


def procedural_sets(root: Path, plan: Plan, size: int) -> tuple[dict, list[np.ndarray]]:
    """Test sets of pouch and ultrasound cells, and the pouch set's normal reference images."""
    sets, refs = {}, []
    for kind in ("pouch", "ultrasound"):
        ds = root / kind
        write_dataset(ds, kind, plan.shots, plan.test_good, plan.test_defect, seed=3)
        if kind == "pouch":
            refs = [read_image(p) for p in train_images(ds)]
        sets[kind] = load_set(ds, size)
    return sets, refs


def backend_list() -> list[tuple[str, str, dict]]:
    """(label, registry name, options) of every backend this machine can run."""
    out = [
        ("torch", "torch", {"device": "cpu"}),
        ("onnxruntime", "onnxruntime", {}),
        ("onnxruntime-int8", "onnxruntime-int8", {}),
        ("onnxruntime-int8-static", "onnxruntime-int8-static", {}),
    ]
    if importlib.util.find_spec("openvino") is not None:
        out += [("openvino", "openvino", {}), ("openvino-int8", "openvino-int8", {})]
    if importlib.util.find_spec("tensorrt") is not None:
        out.append(("tensorrt", "tensorrt", {}))
    return out


def bench_arch(plan: Plan, work: Path, peak: dict) -> dict:
    size = 224
    print(f"== {plan.arch}: data, bundle, export", flush=True)
    sets, refs = procedural_sets(work / "data", plan, size)
    bundle, gflop = make_bundle(plan, work / plan.arch, refs)
    calibration = np.stack([preprocess(r, size) for r in refs[: plan.shots]])
    t = time.perf_counter()
    report = export_bundle(
        bundle, int8=True, calibration=calibration, step=lambda m: print(f"   {m}", flush=True)
    )
    export_s = time.perf_counter() - t
    x = np.concatenate([s[0] for s in sets.values()])
    backends = backend_list()
    print(f"== {plan.arch}: loading {len(backends)} backends", flush=True)
    loaded = {label: create_backend(name, bundle, **opts) for label, name, opts in backends}
    print(f"== {plan.arch}: timing (backends take turns)", flush=True)
    rows = time_backends(loaded, x, plan)
    for label, row in rows.items():
        row["gflops"] = gflop / (row["median_ms"] / 1e3)
        print(f"   {label}: {row}", flush=True)
    acc = {label: accuracy(backend, sets) for label, backend in loaded.items()}
    for backend in loaded.values():
        backend.close()
    del loaded
    gc.collect()
    return {
        "arch": plan.arch,
        "gflop": gflop,
        "rows": rows,
        "acc": acc,
        "report": report,
        "export_s": export_s,
        "plan": plan,
        "n_images": {k: len(v[0]) for k, v in sets.items()},
        "n_calibration": len(calibration),
    }


OUTLIER_CHANNELS = (5, 37, 71)
OUTLIER_GAIN = 1000.0


def inject_outlier_channels(
    detector: BatteryDetector,
    channels: tuple[int, ...] = OUTLIER_CHANNELS,
    gain: float = OUTLIER_GAIN,
) -> None:
    """Give an OpenCLIP ViT's blocks CLIP-like outlier channels without changing its function.

    In every block, the LayerNorm gains and biases of ``channels`` are multiplied by ``gain``
    and the matching input columns of the qkv and fc1 weights divided by it: the fp32 maps
    stay the same, but the inputs of those products carry values of a few thousand in a few
    channels, as real CLIP ViTs do. Any map change after quantisation is then int8's alone.
    """
    idx = list(channels)
    with torch.no_grad():
        for block in detector.encoder.visual.transformer.resblocks:
            for norm, weight in (
                (block.ln_1, block.attn.in_proj_weight),
                (block.ln_2, block.mlp.c_fc.weight),
            ):
                norm.weight[idx] *= gain
                norm.bias[idx] *= gain
                weight[:, idx] /= gain


OUTLIER_VARIANTS = {
    "dynamic (model.int8.onnx)": None,
    "static, min-max, every block": {
        "method": "minmax",
        "keep_vit_ends": False,
        "outlier_ratio": None,
    },
    "static, percentile, every block": {"keep_vit_ends": False, "outlier_ratio": None},
    "static, percentile, first/last block fp32": {"outlier_ratio": None},
    "static, percentile, first/last fp32, outlier inputs fp32 (default)": {},
}


def vit_outlier_study(work: Path, refs: list[np.ndarray], x: np.ndarray) -> list[dict]:
    """int8 map error of the tiny ViT with and without injected outlier channels."""
    import onnxruntime as ort

    from export.onnx_export import export_detector
    from export.quantize import quantize_int8, quantize_static_int8
    from models.bundle import load_detector

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    calibration = np.stack([preprocess(r, 224) for r in refs])
    rows = []
    for gain in (1.0, OUTLIER_GAIN):
        out = work / f"outliers-{gain:g}"
        create_bundle(out, "tiny", "pouch cell", reference_images=refs)
        det = load_detector(out)
        inject_outlier_channels(det, gain=gain)
        fp32 = export_detector(det, out / "model.onnx")
        ref = run(fp32)
        for label, options in OUTLIER_VARIANTS.items():
            path = out / "int8.onnx"
            info = {}
            if options is None:
                quantize_int8(fp32, path)
            else:
                info = quantize_static_int8(fp32, path, calibration, **options)
            d = np.abs(run(path) - ref)
            rows.append(
                {
                    "gain": gain,
                    "variant": label,
                    "max": float(d.max()),
                    "mean": float(d.mean()),
                    **info,
                }
            )
            print(
                f"   outliers x{gain:g} {label}: max {d.max():.4f} mean {d.mean():.5f}", flush=True
            )
    return rows


def render_outliers(rows: list[dict], n_images: int, n_calibration: int) -> str:
    lines = [
        "### int8 and CLIP outlier channels (tiny OpenCLIP ViT)",
        "",
        f"The tiny ViT (4 blocks, width 96, random weights) with and without outlier channels "
        f"injected into channels {list(OUTLIER_CHANNELS)} of every block's qkv and fc1 inputs "
        f"(LayerNorm gain x{OUTLIER_GAIN:g}, weight columns / {OUTLIER_GAIN:g}: the fp32 map is "
        f"unchanged, the inputs carry values of a few thousand). Max / mean |map diff| from "
        f"the fp32 graph in ONNX Runtime on {n_images} pouch test images; static int8 "
        f"calibrated on {n_calibration} normal reference images.",
        "",
        "| outlier channels | int8 variant | max \\|map diff\\| | mean \\|map diff\\| "
        "| products int8 / fp32 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        kept = f"{r['quantised']} / {r['kept_fp32']}" if "quantised" in r else "all / 0"
        lines.append(
            f"| {'none' if r['gain'] == 1 else 'injected'} | {r['variant']} | {r['max']:.4f} "
            f"| {r['mean']:.5f} | {kept} |"
        )
    return "\n".join(lines)


def _change(before: float | None, after: float | None, digits: int) -> str:
    """``0.512 -> 0.515 (+0.003)``, or n/a when a metric is undefined (one class, no masks)."""
    if before is None or after is None:
        return "n/a"
    return f"{before:.{digits}f} -> {after:.{digits}f} ({after - before:+.{digits}f})"


def _batches(results: list[dict]) -> list[int]:
    return sorted({b for r in results for b in r["plan"].reps_batch})


def render_results(results: list[dict], peak: dict, load: tuple[float, ...]) -> str:
    batches = _batches(results)
    lines = [
        f"CPU fp32 peak: {peak['cores']} cores x 2 FMA x 8 lanes x 2 FLOP x {peak['ghz']:.2f} GHz "
        f"(`cpu MHz` of /proc/cpuinfo) = **{peak['gflops']:.0f} GFLOP/s** ({peak['isa']}). "
        f"torch threads: {torch.get_num_threads()}; ONNX Runtime and OpenVINO threads: "
        f"{peak['cores']}. Load average at start/end: {load[0]:.2f} / {load[1]:.2f} "
        "(the machine is shared; ratios within one run are the figures to trust).",
        "",
        "| arch | backend | GFLOP/img | b1 median ms | b1 p99 ms (reps) | b1 best ms | "
        + " | ".join(f"b{b} ms/img | img/s b{b}" for b in batches)
        + " | GFLOP/s (b1 median) | % fp32 peak | vs torch |",
        "| --- " * (10 + 2 * len(batches) - 1) + "|",
    ]
    for r in results:
        torch_ms = r["rows"]["torch"]["median_ms"]
        for label, row in r["rows"].items():
            per_batch = " | ".join(
                f"{1e3 / row[f'ips_b{b}']:.1f} | {row[f'ips_b{b}']:.2f}"
                if f"ips_b{b}" in row
                else "- | -"
                for b in batches
            )
            lines.append(
                f"| {r['arch']} | {label} | {r['gflop']:.1f} | {row['median_ms']:.1f} | "
                f"{row['p99_ms']:.1f} ({row['reps']}) | {row['best_ms']:.1f} | {per_batch} | "
                f"{row['gflops']:.1f} | {100 * row['gflops'] / peak['gflops']:.0f}% | "
                f"{torch_ms / row['median_ms']:.2f}x |"
            )
    lines += [
        "",
        "Accuracy of each backend against torch on the same images (max / mean |map diff| over "
        "both sets; image and pixel AUROC per set, with the change from torch):",
        "",
        "| arch | backend | max \\|map diff\\| | mean \\|map diff\\| | pouch image AUROC | "
        "pouch pixel AUROC | ultrasound image AUROC | ultrasound pixel AUROC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for r in results:
        ref = r["acc"]["torch"]
        for label, acc in r["acc"].items():
            diffs = np.concatenate([np.abs(acc[k]["maps"] - ref[k]["maps"]).ravel() for k in acc])
            cells = []
            for kind in ("pouch", "ultrasound"):
                a, t = acc[kind], ref[kind]
                cells.append(_change(t["image_auroc"], a["image_auroc"], 3))
                cells.append(_change(t["pixel_auroc"], a["pixel_auroc"], 4))
            lines.append(
                f"| {r['arch']} | {label} | {diffs.max():.2e} | {diffs.mean():.2e} | "
                + " | ".join(cells)
                + " |"
            )
        rep = r["report"]
        parity = ", ".join(
            f"{key} {rep[key]['max_abs_map_diff']:.1e}"
            for key in ("fp32", "openvino", "int8", "int8_static")
            if key in rep
        )
        rows = r["rows"]
        best_fp32 = min(
            rows[k]["median_ms"] for k in rows if k in ("torch", "onnxruntime", "openvino")
        )
        fastest = min(rows, key=lambda k: rows[k]["median_ms"])
        notes.append(
            f"- **{r['arch']}**: fastest at batch 1: **{fastest}** "
            f"({rows[fastest]['median_ms']:.1f} ms median; best fp32 {best_fp32:.1f} ms). "
            f"Static int8 calibrated on the bundle's {r['n_calibration']} reference images "
            f"(99.999th percentile, per-channel weights). Export ({r['export_s']:.0f} s) parity "
            f"vs PyTorch, max |map diff| at batch 1 and 2: {parity}. Test sets: "
            + ", ".join(f"{k} {n} images" for k, n in r["n_images"].items())
            + "."
        )
    lines += ["", *notes, ""]
    lines.append(
        "EfficientNet-Lite: ImageNet weights; tiny and vit-h-14: random weights (timing does "
        "not depend on their values; their AUROCs are near chance, only the change from torch "
        "matters). One bundle per arch with a memory bank of pouch references, evaluated on "
        "both procedural sets. Latency includes the host-side batch copy, not preprocessing. "
        "p99 over few reps is the maximum. The peak uses the clock /proc/cpuinfo shows, which "
        "in this KVM guest is the nominal one; the cores boost above it, so a figure near or "
        "above 100% means the true peak is higher."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny only (about a minute)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    parser.add_argument(
        "--no-outliers", action="store_true", help="skip the tiny-ViT outlier-channel study"
    )
    parser.add_argument(
        "--arch", action="append", choices=sorted(PLANS), help="only these (repeatable)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    peak = cpu_peak()
    load_start = os.getloadavg()[0]
    archs = args.arch or (["tiny"] if args.quick else list(PLANS))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for arch in archs:
            results.append(bench_arch(PLANS[arch], Path(tmp) / arch, peak))
    body = render_results(results, peak, (load_start, os.getloadavg()[0]))
    if not args.no_outliers:
        print("== tiny ViT with outlier channels: int8 variants", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-outliers-") as tmp:
            plan = PLANS["tiny"]
            sets, refs = procedural_sets(Path(tmp) / "data", plan, 224)
            x = sets["pouch"][0]
            rows = vit_outlier_study(Path(tmp), refs[: plan.shots], x)
        body += "\n\n" + render_outliers(rows, len(x), len(refs[: plan.shots]))
    print(body)
    if not args.no_write:
        update_results(SECTION, body)


if __name__ == "__main__":
    main()
