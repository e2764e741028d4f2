"""The SQLite store: outbox order, lossless rejects, explanation jobs, chat and retention."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.store.db import Store

REPO = Path(__file__).resolve().parents[3]


def result(frame_id: str, verdict: str = "pass", **extra) -> dict:
    return {
        "frame_id": frame_id,
        "cell_id": f"cell-{frame_id}",
        "verdict": verdict,
        "product": "pouch",
        "station": "S1",
        "regions": [],
        **extra,
    }


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_results_wait_in_the_outbox_in_order_until_acknowledged(store: Store) -> None:
    rows = [store.record(result(f"f{i}"), None, None) for i in range(5)]
    assert [r["payload"]["frame_id"] for r in store.results.unpublished()] == [
        f"f{i}" for i in range(5)
    ]
    store.results.mark_published([rows[1]])
    store.results.mark_published([rows[3], rows[0]])
    assert [r["id"] for r in store.results.unpublished()] == [rows[2], rows[4]]
    assert [r["id"] for r in store.results.unpublished(after_id=rows[2])] == [rows[4]]
    assert store.backlog() == 2


CRASHING_WRITER = """
import os, sys
from inspector.store.db import Store
store = Store(sys.argv[1])
for frame_id in ("a", "b"):
    store.record({"frame_id": frame_id, "cell_id": "c", "verdict": "pass"}, None, None)
os._exit(0)  # no close, no atexit: as a killed process leaves the WAL behind
"""


def test_the_outbox_survives_a_crash(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], check=True, cwd=REPO)
    assert (tmp_path / "inspector.db-wal").exists(), "the writer left its WAL behind"
    second = Store(tmp_path)
    assert [r["payload"]["frame_id"] for r in second.results.unpublished()] == ["a", "b"]
    second.close()


def test_a_reject_is_saved_losslessly_and_becomes_one_job(store: Store) -> None:
    image = np.random.default_rng(0).integers(0, 4096, (61, 83), dtype=np.uint16)  # Mono12
    amap = np.random.default_rng(1).random((61, 83), dtype=np.float32)
    store.record(result("ok1"), image, amap)
    row = store.record(result("bad1", "fail", regions=[{"position": "centre"}]), image, amap)
    job = store.claim_job()
    assert job is not None and job.frame_id == "bad1" and job.cell_id == "cell-bad1"
    assert job.result["regions"] == [{"position": "centre"}] and job.attempts == 1
    assert np.array_equal(cv2.imread(str(job.image_path), cv2.IMREAD_UNCHANGED), image)
    assert np.array_equal(np.load(job.map_path), amap)
    assert store.claim_job() is None, "one job per reject, claimed once"
    assert store.reject("bad1")["id"] == row and store.reject("ok1") is None


def test_jobs_are_claimed_oldest_first_retried_after_back_off_and_finished(store: Store) -> None:
    for i in range(3):
        store.record(result(f"r{i}", "fail"), None, None)
    a = store.claim_job()
    store.fail_job(a.id, "llm down", retry_in_s=3600)
    b = store.claim_job()
    assert (a.frame_id, b.frame_id) == ("r0", "r1"), "a job in back-off is skipped"
    store.fail_job(b.id, "again", retry_in_s=0)
    again = store.claim_job()
    assert again.frame_id == "r1" and again.attempts == 2
    store.finish_job(again.id, "A bubble in the upper left.", "template")
    assert store.explanation("r1")["text"] == "A bubble in the upper left."
    assert store.explanation("r0") is None
    assert store.pending_jobs() == 2


def test_a_job_whose_worker_died_is_claimable_again_after_its_lease(store: Store) -> None:
    store.record(result("r0", "fail"), None, None)
    assert store.claim_job(lease_s=0.0).frame_id == "r0"
    assert store.claim_job(lease_s=3600).frame_id == "r0", "the expired lease is taken over"
    assert store.claim_job() is None


def explain_all(store: Store, text: str = "text") -> list[str]:
    """Finish every due job with ``text``; the frame ids in the order explained."""
    done = []
    while (job := store.claim_job()) is not None:
        store.finish_job(job.id, text, "template")
        done.append(job.frame_id)
    return done


def test_explanations_wait_in_their_outbox_in_order_until_acknowledged(store: Store) -> None:
    for frame_id in ("e0", "e1", "e2"):
        store.record(result(frame_id, "fail"), None, None)
    explain_all(store)
    rows = store.explanations.unpublished()
    assert [r["payload"]["frame_id"] for r in rows] == ["e0", "e1", "e2"]
    assert rows[0]["payload"] == {
        "cell_id": "cell-e0", "frame_id": "e0", "text": "text", "backend": "template"
    }
    store.explanations.mark_published([rows[1]["id"]])
    assert [r["id"] for r in store.explanations.unpublished()] == [rows[0]["id"], rows[2]["id"]]
    assert [r["id"] for r in store.explanations.unpublished(after_id=rows[0]["id"])] == [
        rows[2]["id"]
    ]
    store.record(result("e0", "fail"), None, None)  # the same frame explained again
    explain_all(store, "again")
    again = store.explanations.unpublished()
    assert [r["payload"]["frame_id"] for r in again] == ["e2", "e0"], "after the older ones"
    assert again[-1]["id"] > rows[2]["id"] and store.explanation("e0")["text"] == "again"


def test_explanations_of_an_older_release_get_ids_in_the_order_they_were_stored(
    tmp_path: Path,
) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "inspector.db")
    db.executescript(  # the table as the release before ids left it: keyed by frame_id
        """
        DROP TABLE explanations;
        CREATE TABLE explanations (frame_id TEXT PRIMARY KEY, text TEXT NOT NULL,
            backend TEXT NOT NULL, created REAL NOT NULL, published_at REAL);
        INSERT INTO explanations VALUES ('c', 'third', 'template', 3, NULL);
        INSERT INTO explanations VALUES ('a', 'first', 'template', 1, 1.5);
        INSERT INTO explanations VALUES ('b', 'second', 'template', 2, NULL);
        """
    )
    db.close()
    store = Store(tmp_path)
    try:
        rows = store.explanations.unpublished()
        assert [r["payload"]["frame_id"] for r in rows] == ["c", "b"]
        assert rows[0]["id"] < rows[1]["id"] and store.explanation("a")["text"] == "first"
        store.record(result("d", "fail"), None, None)
        explain_all(store)
        assert [r["payload"]["frame_id"] for r in store.explanations.unpublished()] == [
            "c", "b", "d"
        ]
    finally:
        store.close()


def test_rejects_filter_and_chat_history_keeps_turns_in_order(store: Store) -> None:
    store.record(result("p1", "fail", product="pouch", ts="2026-01-01T00:00:00.000Z"), None, None)
    store.record(result("u1", "fail", product="ultra", ts="2026-02-01T00:00:00.000Z"), None, None)
    store.record(result("ok", "pass"), None, None)
    assert [r["frame_id"] for r in store.rejects()] == ["u1", "p1"]
    assert [r["frame_id"] for r in store.rejects(product="pouch")] == ["p1"]
    assert [r["frame_id"] for r in store.rejects(since="2026-01-15T00:00:00Z")] == ["u1"]
    store.append_chat("p1", "user", "How big is it?")
    store.append_chat("p1", "assistant", "About 3 mm^2.")
    assert [(t["role"], t["text"]) for t in store.chat_history("p1")] == [
        ("user", "How big is it?"),
        ("assistant", "About 3 mm^2."),
    ]


def test_retention_never_deletes_unpublished_results_or_unexplained_rejects(
    store: Store,
) -> None:
    big = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    published_pass = store.record(result("old-pass"), None, None)
    store.record(result("old-unpub"), None, None)
    explained = store.record(result("old-explained", "fail"), big, None)
    unexplained = store.record(result("old-unexplained", "fail"), big, None)
    store.results.mark_published([published_pass, explained, unexplained])
    job = store.claim_job()
    assert job.frame_id == "old-explained"
    store.finish_job(job.id, "text", "template")
    explained_png = store.reject("old-explained")["image_path"]
    # everything is "old"; the explanation still waits for the broker's PUBACK
    assert store.apply_retention(max_age_s=-1, max_bytes=10**12) == 1
    assert store.reject("old-explained") is not None
    store.explanations.mark_published([r["id"] for r in store.explanations.unpublished()])

    deleted = store.apply_retention(max_age_s=-1, max_bytes=10**12)
    assert deleted == 1
    left = {r["payload"]["frame_id"] for r in store.results.unpublished()}
    assert left == {"old-unpub"}
    assert store.reject("old-unexplained") is not None
    assert store.reject("old-explained") is None and not explained_png.exists()


def test_retention_by_disk_size_removes_the_oldest_deletable_first(store: Store) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    ids = [store.record(result(f"r{i}", "fail"), noise, None) for i in range(4)]
    store.results.mark_published(ids)
    for _ in ids:
        job = store.claim_job()
        store.finish_job(job.id, "x", "template")
        store.explanations.mark_published([r["id"] for r in store.explanations.unpublished()])
    keep_one = store.disk_bytes() - sum(
        os.path.getsize(store.reject(f"r{i}")["image_path"]) for i in range(3)
    )
    store.apply_retention(max_age_s=1e9, max_bytes=keep_one + 100)
    assert [r["frame_id"] for r in store.rejects()] == ["r3"]


def test_deferred_pictures_make_the_job_claimable_once_on_disk(store: Store) -> None:
    image = np.random.default_rng(2).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    amap = np.random.default_rng(3).random((64, 80), dtype=np.float32)
    store.record(result("late", "fail"), image, amap, defer_files=True)
    store.flush_files()
    job = store.claim_job()
    assert np.array_equal(cv2.imread(str(job.image_path), cv2.IMREAD_UNCHANGED), image)
    assert np.array_equal(np.load(job.map_path), amap)


def test_a_crash_while_saving_pictures_still_leaves_a_claimable_job(tmp_path: Path) -> None:
    import sqlite3

    first = Store(tmp_path)
    first.record(result("cut", "fail"), np.zeros((20, 20), np.uint8), None)
    png = first.reject("cut")["image_path"]
    first.close()
    db = sqlite3.connect(tmp_path / "inspector.db")  # as a power cut mid-write leaves it
    db.execute("UPDATE jobs SET state='saving'")
    db.commit()
    db.close()
    png.unlink()
    second = Store(tmp_path)
    assert second.claim_job() is None, "another process must not touch a job being saved"
    assert second.recover_unsaved() == 1  # what the daemon does at start
    job = second.claim_job()
    assert job is not None and job.frame_id == "cut" and job.image_path is None
    second.close()


def test_a_database_error_while_saving_pictures_does_not_stop_later_rejects(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.zeros((32, 32), np.uint8)
    amap = np.zeros((32, 32), np.float32)
    real = store._pictures._saved
    calls: list[int] = []

    def full_once(row_id, *args):  # the first update meets a full disk
        calls.append(row_id)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(row_id, *args)

    monkeypatch.setattr(store._pictures, "_saved", full_once)
    store.record(result("bad1", "fail"), image, amap, defer_files=True)
    store.record(result("bad2", "fail"), image, amap, defer_files=True)
    store.flush_files()  # returns: the writer thread lived through the error
    job = store.claim_job()
    assert job is not None and job.frame_id == "bad2", "the second reject is saved and queued"
    assert store.recover_unsaved() == 1, "the first waits in 'saving' for the next start"
    assert store.claim_job().frame_id == "bad1"
