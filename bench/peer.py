"""The peer for bench/accuracy.py: anomalib's PatchCore and PaDiM on the same split, same weights.

anomalib lives in its own environment (``make peer-venv`` -> ``.venv-peer``), never in the
station's: ``run_peer`` writes the split to a spec file and runs bench/peer_anomalib.py there as
a subprocess, so that ours and the peer are measured in the same run.

    .venv/bin/python -m bench.peer --kind mono poly --size 224   # the elpv split, printed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
# glibc: large blocks by mmap, or anomalib's coreset step fragments the heap past 20 GB;
# timm's and anomalib's deprecation notices would bury a real error in the stderr tail
PEER_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "PYTHONWARNINGS": "ignore::FutureWarning"}
PEER_MODELS = ("patchcore", "padim")
ELPV_REFERENCES, ELPV_GOOD, ELPV_CRACKED = 24, 150, 150


class PeerUnavailableError(RuntimeError):
    """The peer's environment is missing or its run failed."""


def run_peer(
    references: list[Path],
    test: list[tuple[Path, int]],
    size: int,
    backbone: str = "lite0",
    models: Sequence[str] = PEER_MODELS,
    seed: int = 0,
    *,
    layers: Sequence[int] = (2, 3),
    timeout_s: float = 3600.0,
    python: Path = PEER_PYTHON,
) -> dict[str, dict]:
    """anomalib's models fitted on ``references`` and scored on ``test`` (image, label 0|1).

    Returns:
        {model: {"image_auroc", "image_auroc_anomalib", "fit_s", "ms_per_image",
        "n_references", "n_test", "scores"}}; ``scores`` in the order of ``test``.

    Raises:
        ValueError: the test set lacks normal (0) or defective (1) images or has another label,
            or a model is not one of ``PEER_MODELS``.
        FileNotFoundError: an image is not there.
        PeerUnavailableError: ``.venv-peer`` is missing ("run make peer-venv"), or the peer
            failed or ran past ``timeout_s`` (the message holds the end of its stderr).
    """
    labels = {label for _, label in test}
    if labels != {0, 1}:
        raise ValueError(f"the test set needs labels 0 and 1, has {sorted(labels)}")
    unknown = set(models) - set(PEER_MODELS)
    if unknown:
        raise ValueError(f"unknown peer model(s) {sorted(unknown)}; one of {PEER_MODELS}")
    missing = [str(p) for p in [*references, *(p for p, _ in test)] if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) not found, e.g. {missing[0]}")
    if not Path(python).is_file():
        raise PeerUnavailableError(
            f"the anomalib peer's environment is missing ({python}): run make peer-venv"
        )
    spec = {
        "size": size, "backbone": backbone, "layers": list(layers), "models": list(models),
        "references": [str(Path(p).resolve()) for p in references],
        "test": [[str(Path(p).resolve()), int(label)] for p, label in test],
        "seed": seed,
    }
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **PEER_ENV, "PYTHONPATH": pythonpath}
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        cmd = [str(python), "-m", "bench.peer_anomalib", "--spec", str(spec_file),
               "--out", str(out_file)]
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PeerUnavailableError(
                f"the anomalib peer ran past {timeout_s:.0f} s and was stopped"
            ) from None
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise PeerUnavailableError(f"the anomalib peer failed (exit {proc.returncode}):\n"
                                       f"{tail}")
        return json.loads(out_file.read_text())


def elpv_rows() -> list[tuple[Path, float, str]]:
    """(image, defect probability, mono|poly) for every cell of ``elpv-dataset``, in labels.csv
    order."""
    import elpv_dataset

    data = Path(elpv_dataset.__file__).parent / "data"
    rows = []
    for line in (data / "labels.csv").read_text().splitlines():
        name, prob, kind = line.split()
        rows.append((data / name, float(prob), kind))
    return rows


def elpv_split(kind: str, out: Path) -> tuple[list[Path], list[tuple[Path, int]]]:
    """The bench's elpv split, copied to ``out`` as PNG: references and labelled test cells.

    References: the first 24 cells of ``kind`` (mono|poly) with defect probability 0, in
    labels.csv order; test: the next 150 of those (label 0) and the first 150 with
    probability 1.0 (label 1).
    """
    rows = [(p, prob) for p, prob, k in elpv_rows() if k == kind]
    if not rows:
        raise ValueError(f"elpv has no {kind!r} cells; mono or poly")
    good = [p for p, prob in rows if prob == 0.0]
    cracked = [p for p, prob in rows if prob == 1.0][:ELPV_CRACKED]
    refs = good[:ELPV_REFERENCES]
    normal = good[ELPV_REFERENCES:ELPV_REFERENCES + ELPV_GOOD]
    out.mkdir(parents=True, exist_ok=True)

    def copy(paths: list[Path]) -> list[Path]:
        return [Path(shutil.copy(p, out / p.name)) for p in paths]

    test = [(p, 0) for p in copy(normal)] + [(p, 1) for p in copy(cracked)]
    return copy(refs), test


def main(argv: list[str] | None = None) -> None:
    """Run the peer on the elpv split of each kind and print its figures."""
    parser = argparse.ArgumentParser(description="anomalib's PatchCore/PaDiM on the elpv split")
    parser.add_argument("--kind", nargs="+", default=["mono", "poly"], choices=["mono", "poly"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--models", nargs="+", default=list(PEER_MODELS), choices=PEER_MODELS)
    parser.add_argument("--json", type=Path, help="also write all figures (with scores) here")
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    for kind in args.kind:
        with tempfile.TemporaryDirectory(prefix=f"elpv-{kind}-") as tmp:
            refs, test = elpv_split(kind, Path(tmp))
            try:
                results[kind] = run_peer(refs, test, args.size, args.backbone, args.models)
            except PeerUnavailableError as e:
                sys.exit(str(e))
        for model, r in results[kind].items():
            print(f"elpv {kind:4s} {model:9s} {args.backbone} {args.size}px: "
                  f"image AUROC {r['image_auroc']:.3f} (anomalib-normalised "
                  f"{r['image_auroc_anomalib']:.3f}), fit {r['fit_s']:.1f} s, "
                  f"{r['ms_per_image']:.0f} ms/image, {r['n_references']} refs, "
                  f"{r['n_test']} test", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
