"""Retention after the wall clock jumped: a box without a battery-backed clock boots in the
year 2000, stores results, then NTP sets the real time. Real SQLite files; the rows are
stamped the way a daemon under the wrong clock leaves them.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.store.db import Store

DAY = 86400.0
Y2000 = 946713600.0  # 2000-01-01 08:00:00 UTC, the clock before NTP
MAX_AGE = 30 * DAY


def result(frame_id: str, verdict: str = "pass") -> dict:
    return {"frame_id": frame_id, "cell_id": frame_id, "verdict": verdict}


def run_under_wrong_clock(data_dir: Path) -> dict[str, Path]:
    """One daemon run while the clock said 2000: published results and an explained reject."""
    store = Store(data_dir)
    picture = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    ids = [store.record(result(f"Y2K-{i}"), None, None) for i in range(5)]
    ids.append(store.record(result("Y2K-REJECT", "fail"), picture, picture.astype(np.float32)))
    store.results.mark_published(ids)
    job = store.claim_job()
    store.finish_job(job.id, "two bubbles, upper left", "template")
    files = {k: store.reject("Y2K-REJECT")[k] for k in ("image_path", "map_path")}
    store.close()
    with sqlite3.connect(data_dir / "inspector.db") as db:  # what the wrong clock wrote
        db.execute("UPDATE results SET created = ? + id", (Y2000,))
        db.execute("UPDATE explanations SET created = ?", (Y2000,))
    db.close()
    return files


def count_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "inspector.db") as db:
        n = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    db.close()
    return n


def test_a_clock_that_jumped_forward_deletes_nothing_young(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = run_under_wrong_clock(tmp_path)
    caplog.set_level("INFO", logger="inspector")
    store = Store(tmp_path)  # the restart at the real time
    deleted = store.apply_retention(MAX_AGE, 10**12)
    assert deleted == 0, "26 years old by the wall clock, seconds old by the station's"
    assert len(store.rejects()) == 1 and store.explanation("Y2K-REJECT") is not None
    assert all(p.exists() for p in files.values())
    store.close()
    assert count_rows(tmp_path) == 6
    assert "retention: deleted" not in caplog.text


def test_results_old_by_both_clocks_are_deleted_and_logged_unpublished_ones_never(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_under_wrong_clock(tmp_path)
    store = Store(tmp_path)
    published = [store.record(result(f"OLD-{i}"), None, None) for i in range(3)]
    store.results.mark_published(published)
    store.record(result("OLD-UNPUBLISHED"), None, None)
    store.close()
    now = time.time()
    with sqlite3.connect(tmp_path / "inspector.db") as db:
        # a station that has run 41 days: OLD-* stored 40 days ago, by both clocks; the
        # year-2000 rows a minute ago by the station clock
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('station_s', ?)", (41 * DAY,))
        db.execute(
            "UPDATE results SET created = ?, station_s = ? WHERE frame_id LIKE 'OLD-%'",
            (now - 40 * DAY, 1 * DAY),
        )
        db.execute("UPDATE results SET station_s = ? WHERE frame_id LIKE 'Y2K-%'", (41 * DAY - 60,))
    db.close()
    caplog.set_level("INFO", logger="inspector")
    store = Store(tmp_path)
    assert store.apply_retention(MAX_AGE, 10**12) == 3
    left = {r["payload"]["frame_id"] for r in store.results.unpublished()}
    assert left == {"OLD-UNPUBLISHED"}, "never deleted before the broker has it"
    store.close()
    with sqlite3.connect(tmp_path / "inspector.db") as db:
        kept = {r[0] for r in db.execute("SELECT frame_id FROM results")}
    db.close()
    assert kept == {f"Y2K-{i}" for i in range(5)} | {"Y2K-REJECT", "OLD-UNPUBLISHED"}
    assert "retention: deleted 3 result(s) older than 30 days (retention.max_age_days)" in (
        caplog.text
    )
