"""Bursts of frames become batches; a lone frame is not held back; STOP ends cleanly."""

from __future__ import annotations

import queue
import threading

from inspector.station.batcher import STOP, next_batch


def test_a_burst_is_cut_into_batches_of_at_most_max_batch() -> None:
    q: queue.Queue = queue.Queue()
    for i in range(7):
        q.put(i)
    assert next_batch(q, max_batch=3, max_wait_s=0.0) == [0, 1, 2]
    assert next_batch(q, max_batch=3, max_wait_s=0.0) == [3, 4, 5]
    assert next_batch(q, max_batch=3, max_wait_s=0.0) == [6]


def test_with_a_wait_a_frame_arriving_soon_after_joins_the_batch() -> None:
    q: queue.Queue = queue.Queue()
    q.put("a")
    late = threading.Timer(0.01, q.put, args=("b",))  # the second frame of a burst
    late.start()
    assert next_batch(q, max_batch=2, max_wait_s=5.0) == ["a", "b"]  # full: no more waiting
    late.join()


def test_without_a_wait_a_lone_frame_goes_at_once() -> None:
    q: queue.Queue = queue.Queue()
    q.put("a")
    assert next_batch(q, max_batch=8, max_wait_s=0.0) == ["a"]


def test_stop_after_frames_returns_them_first_then_none() -> None:
    q: queue.Queue = queue.Queue()
    q.put(1)
    q.put(STOP)
    assert next_batch(q, max_batch=8, max_wait_s=1.0) == [1]
    assert next_batch(q, max_batch=8, max_wait_s=1.0) is None
    assert next_batch(q, max_batch=8, max_wait_s=1.0) is None, "STOP stays for other readers"
