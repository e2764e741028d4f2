"""Daemon overhead outside the model, grab to PUBACK, with 2448x2048 Mono8 frames.

Runs the real daemon (stages, SQLite outbox, a real Mosquitto on a free port, PUBACK
tracking) with the tiny bundle on an in-memory source, in two modes:

- latency: one frame at a time (the next after the previous PUBACK), so nothing queues;
  overhead = grab-to-PUBACK minus the backend call (and minus the whole predictor call,
  i.e. also without preprocessing the 5 MP frame and the decision);
- throughput: frames pushed as fast as the pipeline takes them; sustained frames/s compared
  with the backend's own rate in the same run (the daemon should never be the bottleneck).

Rejects (PNG of the frame and a full-size float32 map saved) are timed separately.

Usage: ``python -m bench.daemon [--frames 150] [--burst 60]``
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WIDTH, HEIGHT = 2448, 2048


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def make_bundle(folder: Path) -> Path:
    """The tiny bundle, scoring by its memory bank (plain texture passes at 0.5)."""
    from models.bundle import create_bundle
    from models.recipe import load_recipe, save_recipe
    from tests.conftest import textured

    out = folder / "bundle"
    create_bundle(
        out, "tiny", "pouch cell", reference_images=[textured(301, 457, i) for i in range(4)]
    )
    recipe = load_recipe(out)
    recipe.fusion = "memory"
    save_recipe(out, recipe)
    return out


def station_config(work: Path, bundle: Path, port: int, line: str, max_batch: int):
    """A daemon config for the benchmarks: in-memory source, local broker, no metrics port."""
    from inspector.config.station import parse_config

    return parse_config(
        {
            "station": {"line": line, "station": "S1"},
            "data_dir": str(work / "data"),
            "bundle": str(bundle),
            "source": {"kind": "video", "url": "in-memory"},
            "mqtt": {"host": "127.0.0.1", "port": port, "heartbeat_s": 5},
            "health": {"metrics_port": None, "log_format": "text", "log_level": "ERROR"},
            "pipeline": {"max_batch": max_batch},
        },
        work,
    )


def big_frames(n: int, defect: bool = False) -> list[np.ndarray]:
    import cv2

    from tests.conftest import paste_foreign, textured

    frames = []
    for i in range(n):
        small = textured(301, 457, seed=100 + i)
        if defect:
            small = paste_foreign(small, (200, 100, 60, 60))
        frames.append(cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR))
    return frames


class Timer:
    """Wraps the backend's ``infer`` to record how long each call took."""

    def __init__(self, backend) -> None:
        self.backend, self.inner, self.calls = backend, backend.infer, []
        backend.infer = self

    def __call__(self, batch):
        t = time.perf_counter()
        out = self.inner(batch)
        self.calls.append((len(batch), time.perf_counter() - t))
        return out


def run(frames: int, burst: int) -> str:
    from inspector.runtime.predictor import Predictor
    from inspector.sources.base import Frame
    from inspector.station.daemon import Daemon
    from tests.broker import Broker
    from tests.inspector.daemon_helpers import QueueSource, running

    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    broker = Broker(work / "broker").start()
    try:
        bundle = make_bundle(work)
        cfg = station_config(work, bundle, broker.port, "bench", 8)
        predictor = Predictor(bundle, "torch")
        timer = Timer(predictor.backend)
        source = QueueSource()
        grabbed: dict[str, float] = {}
        model_s: dict[str, tuple[float, float, float]] = {}  # cell -> backend, prepare, to store
        cell_of_row: dict[int, str] = {}
        acked: queue.Queue = queue.Queue()

        stored = threading.Condition()

        def on_result(row_id: int, payload: dict, frame) -> None:
            backend_s = timer.calls[-1][1] if timer.calls else 0.0
            lat_ms = payload["latency_ms"]
            with stored:  # model_s before cell_of_row: the waiter reads both once woken
                model_s[payload["cell_id"]] = (
                    backend_s,
                    lat_ms["prepare"] / 1e3,
                    lat_ms["total"] / 1e3,
                )
                cell_of_row[row_id] = payload["cell_id"]
                stored.notify_all()

        def on_delivered(row_id: int, t: float) -> None:
            acked.put((row_id, t))

        daemon = Daemon(
            cfg, source=source, predictor=predictor, on_result=on_result, on_delivered=on_delivered
        )
        original_put = daemon.frame_q.put

        def stamped_put(item, *a, **k):  # grab time = when the frame left the source
            if hasattr(item, "frame"):
                grabbed[item.frame.cell_id] = item.t_grab
            return original_put(item, *a, **k)

        daemon.frame_q.put = stamped_put
        with running(daemon):  # stopped even when a wait below times out
            assert daemon.link.wait_connected(10), "broker not reachable"

            def one_at_a_time(images: list[np.ndarray], n: int, prefix: str) -> list[dict]:
                rows = []
                for i in range(n):
                    cell = f"{prefix}-{i:05d}"
                    source.push(Frame(cell, images[i % len(images)]))
                    row_id, t_ack = acked.get(timeout=120)
                    with stored:  # the PUBACK may beat the on_result callback
                        assert stored.wait_for(lambda r=row_id: r in cell_of_row, 60)
                    c = cell_of_row[row_id]
                    backend_s, prepare_s, to_store = model_s[c]
                    total = t_ack - grabbed[c]
                    rows.append(
                        {
                            "total": total,
                            "backend": backend_s,
                            "prepare": prepare_s,
                            "pre_store": to_store - backend_s - prepare_s,
                            "post_store": total - to_store,
                        }
                    )
                return rows

            passes = big_frames(4)
            one_at_a_time(passes, 5, "warm")  # warm-up: first calls allocate
            lat = one_at_a_time(passes, frames, "lat")
            rejects = one_at_a_time(big_frames(2, defect=True), 10, "rej")

            # throughput: a burst, as fast as the pipeline takes it
            timer.calls.clear()
            t0 = time.monotonic()
            for i in range(burst):
                source.push(Frame(f"burst-{i:05d}", passes[i % len(passes)]))
            last = t0
            for _ in range(burst):
                _, last = acked.get(timeout=300)
            burst_s = last - t0
            backend_busy = sum(s for _, s in timer.calls)
            batches = [n for n, _ in timer.calls]
        verdicts = {v: daemon.counts[v] for v in ("pass", "fail", "error")}

    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    def ms(v: float) -> str:
        return f"{v * 1e3:.2f} ms"

    def row(name: str, values: list[float], bold: bool = False) -> str:
        med, p99 = ms(statistics.median(values)), ms(percentile(values, 99))
        return f"| {name} | **{med}** | **{p99}** |" if bold else f"| {name} | {med} | {p99} |"

    total = [r["total"] for r in lat]
    overhead = [r["total"] - r["backend"] - r["prepare"] for r in lat]
    outside_backend = [r["total"] - r["backend"] for r in lat]
    rej_over = [r["total"] - r["backend"] - r["prepare"] for r in rejects]
    load = os.getloadavg()
    fps = burst / burst_s
    model_fps = burst / backend_busy  # the backend's own rate on these batches
    table = "\n".join(
        [
            "| per frame | median | p99 |",
            "| --- | --- | --- |",
            row("grab -> PUBACK, total", total),
            row("backend call (the model)", [r["backend"] for r in lat]),
            row(
                "preprocessing the 5 MP frame to 224x224 (prepare stage)",
                [r["prepare"] for r in lat],
            ),
            row("**daemon overhead**: queues, decision, SQLite, MQTT, PUBACK", overhead, bold=True),
            row(
                "... of it before the store: queues, batching, decision",
                [r["pre_store"] for r in lat],
            ),
            row(
                "... of it from the store on: SQLite commit, publish, PUBACK",
                [r["post_store"] for r in lat],
            ),
            row("everything outside the backend (incl. preprocessing)", outside_backend),
            row(
                f"reject overhead (pictures saved in the background; {len(rejects)} frames)",
                rej_over,
            ),
        ]
    )
    body = f"""
Daemon: in-memory source -> prepare -> infer+decide -> SQLite outbox -> Mosquitto
(localhost) -> PUBACK; tiny bundle, torch backend on CPU, {WIDTH}x{HEIGHT} Mono8 frames.
Load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min; the
machine is shared with other jobs).

Latency mode, one frame at a time (nothing queues), {frames} pass frames:

{table}

Throughput mode, a burst of {burst} frames: **{fps:.2f} frames/s** sustained, grab to PUBACK;
the backend was busy {backend_busy:.1f} s of the {burst_s:.1f} s
({100 * backend_busy / burst_s:.0f} %), batches of {min(batches)}-{max(batches)} frames
(mean {statistics.mean(batches):.1f}). The backend's own rate on those batches is
{model_fps:.2f} frames/s, so the whole daemon delivers {100 * fps / model_fps:.0f} % of it
(preprocessing runs in its own stage, overlapping the backend). Verdicts: {verdicts}.
"""
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames in latency mode")
    parser.add_argument("--burst", type=int, default=60, help="frames in throughput mode")
    args = parser.parse_args()
    from bench.results import update_results

    body = run(args.frames, args.burst)
    print(body)
    update_results("Daemon overhead (bench/daemon.py)", body)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
