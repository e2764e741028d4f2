"""A frame's way through the daemon's stages, and the result it ends as.

``Grabbed`` is a frame from the source on its way to the model (with its inputs, its product's
bundle, or why it cannot be inspected); ``Outcome`` is the decided frame on its way to the
store, carrying its ``inspector.core.result.Result``. ``ResultMaker`` builds that result, once
per frame: who inspected it (line, station, source), what became of it and how long it took.

Example:
    >>> maker = ResultMaker("L1", "S1", "hotfolder")
    >>> g = Grabbed(Frame("C-1", None, error="corrupt file"), t_grab=0.0)
    >>> maker.error(g, "corrupt file", t0=0.0125).result.to_payload()["latency_ms"]
    {'wait': 12.5}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.core.result import Latency, Result
from inspector.core.timestamps import utc_iso
from inspector.sources.base import Frame, new_cell_id, safe_text
from inspector.vision.decision import published_thresholds

if TYPE_CHECKING:
    from inspector.runtime.predictor import Inspection, Prepared


@dataclass
class Grabbed:
    """A frame with the monotonic time it left the source."""

    frame: Frame
    t_grab: float
    input: Prepared | None = None  # the model inputs (ROI tiles), once prepared
    error: str | None = None  # why it cannot be inspected
    t_prepared: float = 0.0
    predictor: object | None = None  # the bundle of the frame's product, once resolved
    product: str | None = None  # the product as configured (or as the trigger named it)
    alarmed: bool = False  # its error already raised its own alarm (not `frame_error`)


@dataclass
class Outcome:
    """A decided frame on its way to the store."""

    result: Result
    frame: Frame
    amap: np.ndarray | None  # the full-resolution map of a reject, for its pictures
    t_grab: float
    alarmed: bool = False


def _plain_meta(meta: dict) -> dict:
    """The source's plain facts about a frame; its ``source`` name is the result's source
    kind. Text from outside (a file name) comes without control characters, quotes or angle
    brackets."""
    return {
        k: safe_text(v) if isinstance(v, str) else v
        for k, v in meta.items()
        if k != "source" and isinstance(v, str | int | float | bool)
    }


class ResultMaker:
    """Builds the result of each frame on one station.

    Args:
        line, station: where the cells are inspected (``station`` section of the config).
        source: the source's name (``pylon``, ``hotfolder``, ``video``), the results' source kind.
    """

    def __init__(self, line: str, station: str, source: str) -> None:
        self.line, self.station, self.source = line, station, source

    def _result(self, g: Grabbed, **what: object) -> Result:
        f, predictor = g.frame, g.predictor
        return Result(
            line=self.line,
            station=self.station,
            cell_id=f.cell_id,
            frame_id=new_cell_id(self.station, f.timestamp),  # the time of ts
            ts=utc_iso(f.timestamp),
            product=g.product,
            model_id=predictor.model_id if predictor is not None else None,
            backend=predictor.backend.name if predictor is not None else None,
            source_kind=self.source,
            source_meta=_plain_meta(f.meta),
            **what,
        )

    def error(self, g: Grabbed, reason: str, t0: float) -> Outcome:
        """The ``error`` result of a frame that was not inspected; ``t0``: when it failed."""
        predictor = g.predictor
        result = self._result(
            g,
            verdict="error",
            error=reason,
            thresholds=(
                published_thresholds(predictor.recipe.thresholds) if predictor is not None else None
            ),
            latency=Latency(wait=(t0 - g.t_grab) * 1e3),
        )
        return Outcome(result, g.frame, None, g.t_grab, g.alarmed)

    def decided(
        self, g: Grabbed, inspection: Inspection, amap: np.ndarray | None, times: tuple[float, ...]
    ) -> Outcome:
        """The verdict on an inspected frame. ``times``: the monotonic times the backend call
        began and ended and the decision began and ended."""
        t0, t1, t2, t3 = times
        decision, shape = inspection.decision, inspection.frame_shape
        result = self._result(
            g,
            width=int(shape[1]),
            height=int(shape[0]),
            verdict=decision.verdict,
            image_score=decision.image_score,
            defect_area_px=decision.defect_area_px,
            regions=decision.regions,
            thresholds=published_thresholds(decision.thresholds),
            latency=Latency(
                prepare=(g.t_prepared - g.t_grab) * 1e3,
                wait=(t0 - g.t_prepared) * 1e3,
                infer=(t1 - t0) * 1e3,
                decide=(t3 - t2) * 1e3,
            ),
        )
        return Outcome(result, g.frame, amap, g.t_grab)
