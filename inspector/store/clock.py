"""The station clock: seconds of daemon running time on one database, over all its runs.

A wrong or jumping wall clock (a box without a battery-backed clock, before NTP) cannot move
it, so retention measures age by it as well as by the wall clock. It is saved in the ``meta``
table, and every result row carries its reading (``station_s``), so a crash loses little.

Example:
    >>> clock = StationClock(conn)      # doctest: +SKIP
    >>> clock.seconds()                 # doctest: +SKIP
    86412.5
"""

from __future__ import annotations

import time

from inspector.store.connection import Connection


class StationClock:
    """Reads on from where the last run of the daemon left it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._base = self._saved()
        self._t0 = time.monotonic()
        self.owner = False  # only a store that records results moves the clock on at close

    def _saved(self) -> float:
        saved = self._conn.row("SELECT value FROM meta WHERE key='station_s'")
        newest = self._conn.row(  # rows carry the clock in id order
            "SELECT station_s FROM results ORDER BY id DESC LIMIT 1"
        )
        return max(saved[0] if saved else 0.0, (newest[0] if newest else None) or 0.0)

    def seconds(self) -> float:
        """Seconds the daemon has run on this database, over all its runs."""
        return self._base + time.monotonic() - self._t0

    def save(self) -> None:
        """Keep the clock over a restart (results also carry it)."""
        with self._conn.tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('station_s', ?) ON CONFLICT(key)"
                " DO UPDATE SET value = MAX(value, excluded.value)",
                (self.seconds(),),
            )
