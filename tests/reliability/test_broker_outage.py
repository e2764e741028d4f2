"""The broker stopped for 60 s in the middle of a run, with and without its persistence.

Frames keep coming during the outage. The daemon stores every result (its outbox), shows the
backlog in /metrics and raises an alarm; when the broker is back the outbox drains in order.

What "arrives" means depends on the broker. With persistence on, the subscriber's durable
session (``clean_session=False``) survives the restart and the broker queues for it even while
it is still reconnecting. With persistence off the restarted broker knows no session: a result
it accepts before the subscriber has subscribed again is acknowledged to the station and then
delivered to nobody, and no MQTT client can detect that. So the honest guarantee tested here is
"every result reaches a subscriber that is subscribed when the station publishes", and the test
holds the station's connection back (a TCP gate between daemon and broker, as a slow network
would) until the subscriber has subscribed again. Without that ordering, results can be lost
to the subscriber; a consumer that needs them must use a broker with persistence, or read the
station's database.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from inspector.sources.base import Frame
from inspector.station.daemon import Daemon
from inspector.store.db import Store
from tests.broker import Broker, Collector
from tests.inspector.daemon_helpers import TOPIC_ROOT, QueueSource, good_image, make_config, running

OUTAGE_S = 60.0
FRAMES_PER_S = 3.0


class Gate:
    """A TCP forwarder to the broker that can refuse and cut connections (a network switch)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                if not self.open.is_set():
                    raise OSError("gate closed")
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and drop the ones there are."""
        self.open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()
        self._server.close()


class SessionCollector(Collector):
    """A Collector that remembers whether the broker still had its session on each connect."""

    def __init__(self, broker: Broker, topic_root: str, client_id: str) -> None:
        self.session_present: list[bool] = []
        super().__init__(broker, topic_root, client_id)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.session_present.append(bool(flags.session_present))
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def resubscribed(self) -> threading.Event:
        """An event set by the next SUBACK."""
        self._subscribed.clear()
        return self._subscribed


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class Feeder:
    """Pushes a frame of a new cell ``FRAMES_PER_S`` times a second until stopped."""

    def __init__(self, source: QueueSource) -> None:
        self.source, self.cells = source, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        image = good_image(9)
        while not self._stop.wait(1.0 / FRAMES_PER_S):  # the line's pace
            cell = f"C-{len(self.cells):04d}"
            self.cells.append(cell)
            self.source.push(Frame(cell, image))

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return list(self.cells)


@pytest.mark.slow
@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "forgetful"])
def test_a_60_s_broker_outage_loses_nothing_and_shows_the_backlog(
    tmp_path: Path, broker: Broker, line_bundle: Path, persistence: bool, caplog
) -> None:
    if not persistence:  # the restarted broker knows nothing: no sessions, no retained status
        broker.stop()
        broker.conf.write_text(
            broker.conf.read_text().replace("persistence true", "persistence false")
        )
        broker.start()
    gate = Gate(broker.port)
    gate.open.set()
    source = QueueSource()
    cfg = make_config(
        tmp_path,
        line_bundle,
        gate.port,
        mqtt={"backlog_alarm": 20},
        health={"metrics_port": 0},
    )
    collector = SessionCollector(broker, TOPIC_ROOT, client_id=f"outage-{persistence}")
    daemon = Daemon(cfg, source=source)
    try:
        with running(daemon):
            port = daemon.metrics.port
            assert daemon.link.wait_connected(10)
            feeder = Feeder(source)
            collector.wait_for("result", 5)

            broker.stop()
            gate.cut()
            outage = threading.Event()
            outage.wait(OUTAGE_S / 2)  # the outage itself, not a synchronisation
            half = metric(port, "inspector_outbox_backlog")
            outage.wait(OUTAGE_S / 2)
            full = metric(port, "inspector_outbox_backlog")
            assert 20 < half < full, (half, full)
            assert "backlog" in daemon.faults and daemon.link.status == "degraded"
            assert any("alarm broker_backlog" in r.getMessage() for r in caplog.records)

            resubscribed = collector.resubscribed()
            broker.start()
            if persistence:
                gate.open.set()  # the station may even be first: the broker keeps the session
            assert resubscribed.wait(30), "the subscriber is back"
            gate.open.set()
            collector.wait_for("alarm", where=lambda a: a["kind"] == "broker_backlog")
            cells = feeder.stop()
            assert daemon.outbox.flush(60)
            caught_up = len([h for h in collector.on("heartbeat") if h["backlog"] == 0])
            collector.wait_for(
                "heartbeat", caught_up + 1, where=lambda h: h["backlog"] == 0, timeout=30
            )
            assert metric(port, "inspector_outbox_backlog") == 0
        # the clean stop says offline after its flush: every result was delivered before it
        collector.wait_for("status", where=lambda p: p["detail"] == "stopped", timeout=30)
        received = collector.on("result")
    finally:
        collector.close()
        gate.close()

    assert collector.session_present[-1] is persistence
    store = Store(cfg.data_dir)
    order = [r[0] for r in store._conn.rows("SELECT frame_id FROM results ORDER BY id")]
    store.close()
    first_seen = list(dict.fromkeys(r["frame_id"] for r in received))
    assert first_seen == order, "each result once per frame_id, in the order stored, none lost"
    by_cell: dict[str, set] = {}
    for r in received:
        by_cell.setdefault(r["cell_id"], set()).add(r["frame_id"])
    assert sorted(by_cell) == cells and all(len(f) == 1 for f in by_cell.values())
    print(f"{len(cells)} cells, backlog {half:.0f} -> {full:.0f}, {len(received)} deliveries")
