"""Soak: the real daemon at its highest sustained rate for 20,000+ frames; does anything creep?

Runs the daemon (stages, SQLite outbox, a real Mosquitto on a free port, PUBACK tracking) with
the tiny bundle on an in-memory source of small 457x301 Mono8 frames (1 % of them rejects, so
the picture writer runs too). A closed loop keeps ``--window`` frames in flight (two full
batches), which holds the backend busy all the time: that is the highest rate the bundle
allows here. It reports:

- memory: resident set size (psutil) at the start of the timed run and at the end;
- latency grab -> PUBACK: p99 of each minute against the first minute's (must stay within 20 %);
- file descriptors and threads at the start and the end (a leak grows them).

Usage: ``python -m bench.soak [--frames 20000] [--window 16]``
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SECTION = "Soak (bench/soak.py)"
HEIGHT, WIDTH = 301, 457
REJECT_EVERY = 100


class Tracker:
    """Pairs each frame's push time with its PUBACK, whichever callback comes first."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.pushed: dict[str, float] = {}
        self.cell_of_row: dict[int, str] = {}
        self.acked_at: dict[int, float] = {}
        self.done: list[tuple[float, float]] = []  # (ack time, latency s)

    def push(self, cell: str) -> None:
        with self.lock:
            self.pushed[cell] = time.monotonic()

    def _settle(self, row_id: int) -> None:
        if row_id in self.cell_of_row and row_id in self.acked_at:
            t_ack = self.acked_at.pop(row_id)
            t_push = self.pushed.pop(self.cell_of_row.pop(row_id))
            self.done.append((t_ack, t_ack - t_push))
            self.lock.notify_all()

    def on_result(self, row_id: int, payload: dict, frame) -> None:
        with self.lock:
            self.cell_of_row[row_id] = payload["cell_id"]
            self._settle(row_id)

    def on_delivered(self, row_id: int, t: float) -> None:
        with self.lock:
            self.acked_at[row_id] = t
            self._settle(row_id)

    def wait_done(self, count: int, timeout: float = 120.0) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.done) >= count, timeout):
                raise RuntimeError(f"only {len(self.done)} of {count} frames acknowledged")


def frames() -> tuple[list[np.ndarray], np.ndarray]:
    from tests.conftest import paste_foreign, textured

    passes = [textured(HEIGHT, WIDTH, seed=100 + i) for i in range(8)]
    return passes, paste_foreign(passes[0], (200, 100, 60, 60))


def snapshot(proc, done: int = 0) -> dict:
    return {
        "done": done,
        "rss": proc.memory_info().rss,
        "fds": proc.num_fds(),
        "threads": proc.num_threads(),
        "t": time.monotonic(),
        "load": os.getloadavg()[0],
        "cpu": sum(proc.cpu_times()[:2]),  # user + system seconds of this process
    }


def run(total: int, window: int) -> tuple[str, bool]:
    import psutil
    from tqdm import tqdm

    from bench.daemon import make_bundle, station_config
    from inspector.sources.base import Frame
    from inspector.station.daemon import Daemon
    from tests.broker import Broker
    from tests.inspector.daemon_helpers import QueueSource, running

    proc = psutil.Process()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    broker = Broker(work / "broker").start()
    tracker = Tracker()
    try:
        bundle = make_bundle(work)
        cfg = station_config(work, bundle, broker.port, "soak", window // 2)
        source = QueueSource()
        daemon = Daemon(
            cfg, source=source, on_result=tracker.on_result, on_delivered=tracker.on_delivered
        )
        with running(daemon):  # stopped even when a wait below times out
            assert daemon.link.wait_connected(10), "broker not reachable"
            passes, reject = frames()

            def feed(n: int, prefix: str, bar=None) -> None:
                base = len(tracker.done)
                for i in range(n):
                    if i >= window:  # closed loop: at most `window` frames in flight
                        tracker.wait_done(base + i - window + 1)
                    image = reject if i % REJECT_EVERY == REJECT_EVERY - 1 else passes[i % 8]
                    cell = f"{prefix}-{i:06d}"
                    tracker.push(cell)
                    source.push(Frame(cell, image))
                    if bar is not None:
                        bar.update(1)
                tracker.wait_done(base + n)

            feed(200, "warm")  # first calls allocate; not counted
            warm_done = len(tracker.done)
            samples: list[dict] = []
            finished = threading.Event()

            def sample() -> None:  # the trend between start and end
                while not finished.wait(10):
                    samples.append(snapshot(proc, len(tracker.done)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = snapshot(proc, len(tracker.done))  # the sampler's thread already counted
            with tqdm(total=total, desc="soak", unit="frame", mininterval=5) as bar:
                feed(total, "soak", bar)
            daemon.store.flush_files()  # reject pictures written: their files are closed
            end = snapshot(proc, len(tracker.done))
            finished.set()
            sampler.join()
        counts = dict(daemon.counts)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    timed = tracker.done[warm_done:]
    t0 = start["t"]
    minutes: dict[int, list[float]] = {}
    for t_ack, lat in timed:
        minutes.setdefault(int((t_ack - t0) // 60), []).append(lat)
    lats = np.array([lat for _, lat in timed])
    p99 = {m: float(np.percentile(v, 99)) for m, v in sorted(minutes.items()) if len(v) >= 100}
    if not p99:
        raise SystemExit("run too short: no minute had 100 frames for a p99 (raise --frames)")
    first = p99[min(p99)]
    last_m = max(p99)
    worst_ratio = max(v / first for v in p99.values())
    elapsed = end["t"] - start["t"]
    rate = total / elapsed
    rss_growth = (end["rss"] - start["rss"]) / start["rss"]
    load = os.getloadavg()
    fds = [s["fds"] for s in samples] or [end["fds"]]
    rss_max = max([s["rss"] for s in samples] + [end["rss"]])
    # a leak grows with the frames; one descriptor open for a moment (a PNG being written,
    # a WAL checkpoint) is not one
    ok = (
        worst_ratio <= 1.2
        and rss_growth <= 0.05
        and end["fds"] <= start["fds"] + 2
        and end["threads"] <= start["threads"]
    )
    per_minute = " / ".join(f"{v * 1e3:.0f}" for v in p99.values())
    # RSS at the end of each minute: flat means it levels off, not that it ends low
    rss_by_minute: dict[int, float] = {}
    load_by_minute: dict[int, float] = {}  # other jobs on the machine show up as latency
    for smp in samples:
        rss_by_minute[int((smp["t"] - t0) // 60)] = smp["rss"] / 2**20
        minute = int((smp["t"] - t0) // 60)
        load_by_minute[minute] = max(load_by_minute.get(minute, 0.0), smp["load"])
    load_trend = " / ".join(f"{v:.1f}" for _, v in sorted(load_by_minute.items()))
    # CPU time per frame by minute: the daemon's own cost, whatever else the machine runs
    cpu_by_minute: dict[int, float] = {}
    prev = start
    for smp in [*samples, end]:
        minute = int((smp["t"] - t0) // 60)
        if smp["done"] > prev["done"] and (smp is end or minute != int((prev["t"] - t0) // 60)):
            cpu_by_minute[minute] = (smp["cpu"] - prev["cpu"]) / (smp["done"] - prev["done"])
            prev = smp
    cpu_trend = " / ".join(f"{v * 1e3:.1f}" for _, v in sorted(cpu_by_minute.items()))
    rss_trend = " / ".join(f"{v:.0f}" for _, v in sorted(rss_by_minute.items()))
    mib = 2**20
    body = f"""
Daemon at its highest sustained rate: in-memory source of {WIDTH}x{HEIGHT} Mono8 frames
(1 in {REJECT_EVERY} a reject, saved as PNG + map) -> prepare -> infer+decide (tiny bundle,
{daemon.predictor.backend.name} on CPU) -> SQLite outbox -> Mosquitto (localhost) -> PUBACK;
a closed loop keeps {window} frames in flight (two batches of {window // 2}).
Load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min; the
machine is shared with other jobs, so the rate is the rate under that load).

| | start | end |
| --- | --- | --- |
| frames (after 200 warm-up) | 0 | {total:,} |
| resident memory (RSS) | {start["rss"] / mib:.1f} MiB | {end["rss"] / mib:.1f} MiB ({100 * rss_growth:+.1f} %; peak {rss_max / mib:.1f} MiB) |
| open file descriptors | {start["fds"]} | {end["fds"]} (every 10 s: {min(fds)}-{max(fds)}) |
| threads | {start["threads"]} | {end["threads"]} |

RSS at the end of each minute (MiB): {rss_trend}.

Highest 1-minute load average in each minute: {load_trend}; CPU time of the whole process
per frame, minute by minute (ms): {cpu_trend}.

**{rate:.1f} frames/s** over {elapsed / 60:.1f} min; verdicts {counts}.
Latency grab -> PUBACK: median {np.median(lats) * 1e3:.0f} ms, p99 {np.percentile(lats, 99) * 1e3:.0f} ms
over the run. p99 per minute (ms): {per_minute}; the worst minute is
**{worst_ratio:.2f}x** the first minute's (limit 1.20x; last minute {p99[last_m] / first:.2f}x).
Verdict: **{"flat" if ok else "NOT flat"}** (RSS growth <= 5 %, p99 <= 1.2x, fds +2 at most, no new threads).
"""  # noqa: E501
    return body, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames in the timed soak")
    parser.add_argument("--window", type=int, default=16, help="frames in flight (2 batches)")
    parser.add_argument("--no-write", action="store_true", help="print only; keep RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # 200 reject alarms would drown the figures
    from bench.results import update_results

    body, ok = run(args.frames, args.window)
    print(body)
    if not args.no_write:
        update_results(SECTION, body)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
