"""Turning store records into what the templates show: times, filters, region rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from inspector.core.result import Result

PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "1h": ("last hour", timedelta(hours=1)),
    "8h": ("last 8 hours", timedelta(hours=8)),
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
    "all": ("any time", None),
}


@dataclass(frozen=True)
class Filters:
    """The list's filters as the technician chose them (unknown values fall back to defaults)."""

    period: str = "all"
    product: str = ""
    station: str = ""

    @classmethod
    def parse(cls, period: str | None, product: str | None, station: str | None) -> Filters:
        return cls(
            period if period in PERIODS else "all",
            (product or "").strip()[:200],
            (station or "").strip()[:200],
        )

    def since(self, now: datetime | None = None) -> datetime | None:
        """The earliest time shown, or None for any time."""
        span = PERIODS[self.period][1]
        return None if span is None else (now or datetime.now(UTC)) - span

    @property
    def active(self) -> bool:
        return self.period != "all" or bool(self.product or self.station)


def parse_ts(value: object) -> datetime | None:
    """A stored timestamp (ISO-8601 text, epoch seconds or datetime) as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float):
        dt = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def clock(value: object) -> str:
    """``2026-11-25 09:05:53 UTC``, or the raw value if it is not a time."""
    dt = parse_ts(value)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else str(value or "")


def ago(value: object, now: datetime | None = None) -> str:
    """How long ago, in the largest sensible unit: ``just now``, ``5 min ago``, ``3 h ago``."""
    dt = parse_ts(value)
    if dt is None:
        return ""
    s = ((now or datetime.now(UTC)) - dt).total_seconds()
    if s < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return ""


def result_of(reject: dict) -> dict:
    """A reject row with its MQTT result payload folded in; the row's own columns win."""
    nested = reject.get("result")
    return {**nested, **reject} if isinstance(nested, dict) else reject


@dataclass(frozen=True)
class RegionRow:
    """One defect region with the numbers a technician reads, already formatted."""

    n: int  # the number on the overlay's box
    position: str
    bbox: str  # "w x h"
    at: str  # "x, y"
    area_px: str
    area_mm2: str
    peak: str
    mean: str


def region_rows(result: dict) -> list[RegionRow]:
    """One row per defect region of a stored result, numbered as the overlay numbers them."""
    rows = []
    for i, r in enumerate(Result.from_payload(result).regions or [], start=1):
        x, y, w, h = r.bbox
        rows.append(
            RegionRow(
                n=i,
                position=r.position,
                bbox=f"{w} x {h}",
                at=f"{x}, {y}",
                area_px=_num(r.area_px, 0),
                area_mm2=_num(r.area_mm2, 2) if r.area_mm2 is not None else "",
                peak=_num(r.peak, 2),
                mean=_num(r.mean, 2),
            )
        )
    return rows


def _num(value: object, digits: int) -> str:
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return ""
