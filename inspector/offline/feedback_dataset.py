"""The technicians' feedback as a dataset: labelled rejects and kept passed frames, per product.

A reject is labelled ``confirmed`` (a real defect) or ``false_reject`` (a normal cell the model
failed) on the technicians' page, over its API or on the MQTT ``feedback`` topic
(``inspector.comms.inbound``); the store keeps every label with who gave it
(``Store.add_feedback``). A configurable sample of passed frames is kept as well
(``feedback.keep_passed_every``, ``inspector.station.passed_sampler``). ``export_dataset``
writes all of them as an MVTec-layout dataset per product, which ``inspector bundle update
--add-normals`` and ``inspector calibrate``/``evaluate`` read:

    OUT/<product>/train/good/       false rejects: normal cells to add to the memory bank
    OUT/<product>/test/good/        the kept sample of passed frames
    OUT/<product>/test/confirmed/   confirmed rejects (labelled defects, no masks)
    OUT/<product>/feedback.csv      one row per frame: label, note, user, model_id, score, ...
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from inspector.core.result import Result

CONFIRMED_DIR = "confirmed"
CSV_FIELDS = (
    "file", "label", "frame_id", "cell_id", "ts", "note", "user", "model_id", "image_score",
)


def product_folder(product: str | None) -> str:
    """A folder name for a product: ``pouch cell`` -> ``pouch-cell``."""
    name = re.sub(r"[^A-Za-z0-9_.]+", "-", (product or "").strip()).strip("-.")
    return name or "unknown"


@dataclass
class ExportSummary:
    """What ``export_dataset`` wrote, per product folder and label."""

    out: Path
    written: dict[str, dict[str, int]] = field(default_factory=dict)  # folder -> label -> n
    missing: list[str] = field(default_factory=list)  # frame ids whose picture is gone

    def lines(self) -> list[str]:
        out = []
        for folder, counts in sorted(self.written.items()):
            parts = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
            out.append(f"{self.out / folder}: {parts}")
        if self.missing:
            out.append(
                f"{len(self.missing)} labelled frame(s) without a saved picture (disk low or "
                f"deleted): {', '.join(self.missing[:5])}{' ...' if len(self.missing) > 5 else ''}"
            )
        return out


_WHERE = {"false_reject": ("train", "good"), "pass": ("test", "good")}


def export_dataset(store, out: str | Path, product: str | None = None) -> ExportSummary:
    """Write the store's labelled rejects and kept passed frames as MVTec-layout datasets.

    Args:
        store: an ``inspector.store.db.Store``.
        out: the folder to write into (one subfolder per product).
        product: only this product (as results name it); default all.
    """
    out = Path(out)
    summary = ExportSummary(out)
    rows: dict[str, list[dict]] = {}
    for frame in store.labelled():
        if product is not None and frame["product"] != product:
            continue
        image = frame["image_path"]
        if image is None or not Path(image).is_file():
            summary.missing.append(frame["frame_id"])
            continue
        folder = product_folder(frame["product"])
        split, kind = _WHERE.get(frame["label"], ("test", CONFIRMED_DIR))
        target = out / folder / split / kind / Path(image).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
        counts = summary.written.setdefault(folder, {})
        counts[frame["label"]] = counts.get(frame["label"], 0) + 1
        result = Result.from_payload(frame["result"])
        rows.setdefault(folder, []).append(
            {
                "file": str(target.relative_to(out / folder)),
                "label": frame["label"],
                "frame_id": frame["frame_id"],
                "cell_id": frame["cell_id"],
                "ts": frame["ts"],
                "note": frame["note"],
                "user": frame["user"],
                "model_id": result.model_id or "",
                "image_score": "" if result.image_score is None else result.image_score,
            }
        )
    for folder, table in rows.items():
        with (out / folder / "feedback.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(table)
    return summary
