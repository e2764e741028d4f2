"""A one-file HTML report of an evaluation: metrics, ROC curve, the worst misses.

Everything is embedded (PNG/JPEG as base64), so the file can be mailed or archived as is.
Pictures are drawn with OpenCV; no plotting library needed.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_curve

from inspector.offline.evaluation import Evaluation, ImageResult
from inspector.vision.overlay import display_image, render_overlay
from models.preprocess import resize_map

PLOT = 360  # plot area side, px
MARGIN = 50


def roc_png(
    labels: np.ndarray, scores: np.ndarray, auc: float | None, title: str = "image ROC"
) -> bytes | None:
    """PNG of the ROC curve with the diagonal, titled with ``auc`` (the metrics' AUROC, not
    recomputed here); None with only one class."""
    if auc is None or labels.size == 0 or labels.min() == labels.max():
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    size = PLOT + 2 * MARGIN
    img = np.full((size, size, 3), 255, np.uint8)
    x0, y0 = MARGIN, MARGIN + PLOT  # plot origin (bottom left)

    def pt(f: float, t: float) -> tuple[int, int]:
        return int(round(x0 + f * PLOT)), int(round(y0 - t * PLOT))

    grey, black, blue = (200, 200, 200), (0, 0, 0), (180, 90, 20)
    for v in np.linspace(0, 1, 6):
        cv2.line(img, pt(v, 0), pt(v, 1), grey, 1)
        cv2.line(img, pt(0, v), pt(1, v), grey, 1)
        cv2.putText(img, f"{v:.1f}", (pt(v, 0)[0] - 10, y0 + 18), 0, 0.4, black, 1, cv2.LINE_AA)
        cv2.putText(img, f"{v:.1f}", (6, pt(0, v)[1] + 4), 0, 0.4, black, 1, cv2.LINE_AA)
    cv2.line(img, pt(0, 0), pt(1, 1), (150, 150, 150), 1, cv2.LINE_AA)
    cv2.rectangle(img, pt(0, 1), pt(1, 0), black, 1)
    points = np.array([pt(f, t) for f, t in zip(fpr, tpr, strict=True)], np.int32)
    cv2.polylines(img, [points], False, blue, 2, cv2.LINE_AA)
    cv2.putText(img, "false-positive rate", (x0 + PLOT // 2 - 70, size - 12), 0, 0.5, black, 1)
    cv2.putText(img, f"{title}, AUC {auc:.3f}", (x0, MARGIN - 15), 0, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, "TPR", (8, MARGIN - 15), 0, 0.5, black, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    return buf.tobytes() if ok else None


def _img_tag(data: bytes, mime: str, alt: str, width: int | None = None) -> str:
    src = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    w = f' width="{width}"' if width else ""
    return f'<img src="{src}" alt="{html.escape(alt)}"{w}>'


def thumbnail(result: ImageResult, side: int = 320) -> bytes:
    """JPEG of the overlay picture (heat map, regions, verdict, and the true defect outlined
    in yellow when the dataset has its mask) shrunk to ``side`` px wide."""
    frame = result.sample.read()
    shown = display_image(frame).copy()
    mask = result.sample.read_mask(frame.shape) if result.sample.label else None
    if mask is not None and mask.any():  # the true defect outlined in yellow
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thick = max(1, round(max(frame.shape[:2]) / 300))
        cv2.drawContours(shown, contours, -1, (0, 230, 255), thick, cv2.LINE_AA)
    pic = render_overlay(shown, resize_map(result.map, frame.shape), result.decision)
    h, w = pic.shape[:2]
    pic = cv2.resize(pic, (side, max(1, round(h * side / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", pic, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


def worst_misses(evaluation: Evaluation, k: int = 6) -> tuple[list, list]:
    """(defective images with the lowest scores, normal images with the highest scores)."""
    defective = sorted(
        (r for r in evaluation.results if r.sample.label == 1), key=lambda r: r.score
    )
    normal = sorted((r for r in evaluation.results if r.sample.label == 0), key=lambda r: -r.score)
    return defective[:k], normal[:k]


def _fmt(v: object) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else html.escape(str(v)))


def _gallery(title: str, note: str, results: list[ImageResult]) -> str:
    if not results:
        return ""
    cells = "".join(
        f"<figure>{_img_tag(thumbnail(r), 'image/jpeg', r.sample.path.name)}"
        f"<figcaption>{html.escape(r.sample.defect)}/{html.escape(r.sample.path.name)}: "
        f"score {r.score:.3f}, {r.verdict}</figcaption></figure>"
        for r in results
    )
    return f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p><div class=g>{cells}</div>"


def _pixel_roc_png(evaluation: Evaluation) -> bytes | None:
    """The pixel ROC from the masks and maps the metrics were computed on (None without)."""
    if evaluation.pixels is None:
        return None
    masks, maps = evaluation.pixels
    return roc_png(
        np.concatenate([x.ravel() for x in masks]).astype(np.int64),
        np.concatenate([x.ravel() for x in maps]),
        evaluation.metrics.get("pixel_auroc"),
        "pixel ROC",
    )


def write_report(evaluation: Evaluation, path: str | Path, k: int = 6) -> Path:
    """Write the HTML report; returns its path."""
    m = evaluation.metrics
    rows = "".join(
        f"<tr><th>{name}</th><td>{_fmt(m.get(key))}</td></tr>"
        for name, key in (
            ("image AUROC", "image_auroc"),
            ("pixel AUROC", "pixel_auroc"),
            ("AUPRO (FPR &le; 0.3)", "aupro"),
            ("image F1-max", "image_f1_max"),
        )
    )
    rows += f"<tr><th>images (normal / defective)</th><td>{m['n_normal']} / {m['n_defective']}"
    rows += "</td></tr>"
    at = m["at_recipe_thresholds"]
    t = at["thresholds"] or {}
    rows += (
        f"<tr><th>at the recipe's thresholds{'' if t.get('calibrated') else ' (NOT calibrated)'}"
        f"</th><td>false rejects {_fmt(at['false_reject_rate'])}, escapes "
        f"{_fmt(at['escape_rate'])}</td></tr>"
    )
    per = "".join(
        f"<tr><td>{html.escape(d)}</td><td>{v['n_images']}</td><td>{_fmt(v['image_auroc'])}</td>"
        f"<td>{_fmt(v['escape_rate'])}</td></tr>"
        for d, v in m["per_defect"].items()
    )
    roc = roc_png(evaluation.labels, evaluation.scores, m.get("image_auroc"))
    pixel_roc = _pixel_roc_png(evaluation)
    misses, alarms = worst_misses(evaluation, k)
    body = (
        f"<h1>Evaluation of {html.escape(evaluation.model_id)}</h1>"
        f"<p>bundle <code>{html.escape(str(evaluation.bundle))}</code>, data "
        f"<code>{html.escape(str(evaluation.data))}</code>, backend {evaluation.backend}. "
        "Metrics that need pixel masks show n/a when the dataset has none.</p>"
        f"<table>{rows}</table>"
        + (
            f"<h2>Per defect type</h2><table><tr><th>defect</th><th>images</th><th>image AUROC"
            f"</th><th>escape rate</th></tr>{per}</table>"
            if per
            else ""
        )
        + (f"<h2>ROC curve</h2>{_img_tag(roc, 'image/png', 'ROC curve')}" if roc else "")
        + (_img_tag(pixel_roc, "image/png", "pixel ROC curve") if pixel_roc else "")
        + _gallery(
            "Worst misses: defective cells with the lowest scores",
            "These are the defects the model is least sure of.",
            misses,
        )
        + _gallery(
            "Worst false alarms: normal cells with the highest scores",
            "These normal cells look most defective to the model.",
            alarms,
        )
    )
    if evaluation.skipped:
        body += (
            "<h2>Skipped</h2><ul>"
            + "".join(f"<li>{html.escape(s)}</li>" for s in evaluation.skipped)
            + "</ul>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
        ".g{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:320px;font-size:12px}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset=utf-8><title>Evaluation "
        f"{html.escape(evaluation.model_id)}</title><style>{style}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
