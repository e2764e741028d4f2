"""Technicians' feedback on rejects and the frames it turns into a dataset.

A reject is labelled ``confirmed`` (a real defect) or ``false_reject`` (a normal cell the model
failed) on the technicians' page, over its API or on the MQTT ``feedback`` topic; the store
keeps every label with who gave it (``Store.add_feedback``). A configurable sample of passed
frames is kept as well (``feedback.keep_passed_every``). ``export_dataset`` writes all of them
as an MVTec-layout dataset per product, which ``inspector bundle update --add-normals`` and
``inspector calibrate``/``evaluate`` read:

    OUT/<product>/train/good/       false rejects: normal cells to add to the memory bank
    OUT/<product>/test/good/        the kept sample of passed frames
    OUT/<product>/test/confirmed/   confirmed rejects (labelled defects, no masks)
    OUT/<product>/feedback.csv      one row per frame: label, note, user, model_id, score, ...
"""

from __future__ import annotations

import csv
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from inspector.comms.inbound import json_object
from inspector.core.result import Result
from inspector.sources.base import CELL_ID
from inspector.store.db import LABELS

MAX_NOTE_CHARS = 1000
USER = re.compile(r"^[\w.@:+-]{1,64}$")  # a user name as the broker or a login gives it
CONFIRMED_DIR = "confirmed"
CSV_FIELDS = (
    "file", "label", "frame_id", "cell_id", "ts", "note", "user", "model_id", "image_score",
)


class FeedbackConfig(BaseModel):
    """Frames kept for feedback datasets (``inspector feedback export``)."""

    model_config = ConfigDict(extra="forbid")

    keep_passed_every: int = Field(
        0,
        ge=0,
        description="Keep the frame of every n-th passed cell (0: none), for feedback datasets; "
        "like reject pictures, not below `retention.disk_low_alarm_gb` free, and counted in "
        "`retention.max_disk_gb`.",
    )


class FeedbackError(ValueError):
    """Feedback that cannot be recorded; the message says why."""


def check_feedback(label: object, note: object) -> tuple[str, str]:
    """``(label, note)`` when they are acceptable, else ``FeedbackError``."""
    if label not in LABELS:
        raise FeedbackError(f"label must be one of {', '.join(LABELS)}, got {label!r}"[:300])
    note = "" if note is None else note
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise FeedbackError(f"note must be text of at most {MAX_NOTE_CHARS} characters")
    return str(label), note.strip()


def parse_feedback(payload: bytes) -> dict:
    """``{cell_id, label, note, user}`` of an MQTT ``feedback`` message, or ``FeedbackError``.

    Example:
        >>> parse_feedback(b'{"cell_id": "C-1", "label": "false_reject", "user": "hmi-2"}')
        {'cell_id': 'C-1', 'label': 'false_reject', 'note': '', 'user': 'hmi-2'}
    """
    data = json_object(payload, FeedbackError, "cell_id, label and user")
    cell_id, user = data.get("cell_id"), data.get("user")
    if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):
        raise FeedbackError(f"cell_id must be a cell id, got {cell_id!r}"[:300])
    if not isinstance(user, str) or not USER.fullmatch(user):
        raise FeedbackError(
            f"user must name who gave the feedback (1-64 letters, digits or . @ : + - _), "
            f"got {user!r}"[:300]
        )
    label, note = check_feedback(data.get("label"), data.get("note"))
    return {"cell_id": cell_id, "label": label, "note": note, "user": user}


class PassedSampler:
    """Says which passed frames to keep: every ``every``-th (never when ``every`` is 0)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._n = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one passed frame; True when its picture is to be kept."""
        if self.every <= 0:
            return False
        with self._lock:
            self._n += 1
            return self._n % self.every == 0


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
