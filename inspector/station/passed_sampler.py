"""Which passed frames the daemon keeps for feedback datasets (``feedback.keep_passed_every``).

Example:
    >>> sampler = PassedSampler(2)
    >>> [sampler.take() for _ in range(4)]
    [False, True, False, True]
"""

from __future__ import annotations

import threading


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
