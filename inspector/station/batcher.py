"""Gathering frames that arrive in bursts into batches for one backend call.

The first item is waited for without limit (until ``stop``); after it, more are taken while
they are already queued or arrive within ``max_wait_s``, up to ``max_batch``. A lone frame
thus waits at most ``max_wait_s`` (0 means: only what is queued right now).
"""

from __future__ import annotations

import queue
import time
from typing import Any

STOP = object()  # put on the queue to end ``next_batch`` callers


def next_batch(
    q: queue.Queue, max_batch: int, max_wait_s: float, idle_timeout: float | None = None
) -> list[Any] | None:
    """The next batch from ``q``; None when ``STOP`` is met first (or idle timeout passes).

    A ``STOP`` met after the first item ends the batch and is put back, so the caller gets
    the frames already taken and then None.

    Example:
        >>> q = queue.Queue(); [q.put(i) for i in range(5)] and None
        >>> next_batch(q, max_batch=3, max_wait_s=0.0)
        [0, 1, 2]
    """
    try:
        first = q.get(timeout=idle_timeout)
    except queue.Empty:
        return None
    if first is STOP:
        q.put(STOP)
        return None
    batch = [first]
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_batch:
        try:
            item = q.get_nowait()
        except queue.Empty:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = q.get(timeout=left)
            except queue.Empty:
                break
        if item is STOP:
            q.put(STOP)
            break
        batch.append(item)
    return batch
