"""The explainer killed mid-job, and the broker away while it explains: no reject is left
unexplained for long, and no explanation is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inspector.store.db import Store
from tests.broker import MOSQUITTO, Broker, Collector
from tests.cli_helpers import INSPECTOR
from tests.inspector.explain.test_cli_explain import ROOT, station_yaml
from tests.inspector.explain.test_worker import record_reject
from tests.reliability.fs_wait import wait_until

CLAIM_AND_HANG = textwrap.dedent(
    """
    import sys
    from inspector.store.db import Store
    job = Store(sys.argv[1]).claim_job()
    print(job.frame_id, flush=True)
    sys.stdin.read()  # hold the claim until killed
    """
)


def test_a_job_claimed_by_a_killed_explainer_is_claimable_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    record_reject(store, "f1", (10, 10, 30, 30))
    record_reject(store, "f2", (100, 10, 30, 30))
    claimer = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_HANG, str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert claimer.stdout.readline().strip() == "f1"
        # while its explainer lives, a job stays with it
        other = store.claim_job()
        assert other.frame_id == "f2"
        store.fail_job(other.id, "given back", 0)  # f2 due again at once
        claimer.send_signal(signal.SIGKILL)
        claimer.wait(10)
        again = store.claim_job()  # not after the 600 s lease: the claimer is gone
        assert again is not None and again.frame_id == "f1"
        assert again.attempts == 2
    finally:
        if claimer.poll() is None:
            claimer.kill()
            claimer.wait(10)
        store.close()


def _explainer(config: Path, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [INSPECTOR, "explain", "--config", str(config)],
            stdout=out,
            stderr=out,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )


@pytest.mark.slow
def test_explanations_made_while_the_broker_is_down_are_published_when_it_returns(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("the mosquitto binary is missing (make test installs it)")
    broker = Broker(tmp_path / "broker")  # not started yet: the broker is down
    config = station_yaml(tmp_path, tiny_bundle, broker.port, {"poll_interval_s": 0.2})
    data, log = tmp_path / "data", tmp_path / "explain.log"
    store = Store(data)
    for i in range(3):
        record_reject(store, f"f{i}", (10 + 60 * i, 10, 30, 30))
    proc = _explainer(config, log)
    collector = None
    try:
        wait_until(
            data,
            lambda: all(store.explanation(f"f{i}") for i in range(3)),
            timeout=180,
            what="three explanations stored",
        )
        proc.send_signal(signal.SIGTERM)  # stopped before the broker is back
        assert proc.wait(60) == 0, log.read_text()
        broker.start()
        collector = Collector(broker, ROOT)
        proc = _explainer(config, log)
        got = collector.wait_for("explanation", 3, timeout=180)
        assert [m["frame_id"] for m in got] == ["f0", "f1", "f2"]
        assert got[0]["cell_id"] == "cell-f0" and got[0]["text"] == store.explanation("f0")["text"]
        wait_until(
            data,
            lambda: not store.explanations.unpublished(),
            timeout=30,
            what="explanations marked published",
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if collector is not None:
            collector.close()
        broker.stop()
        store.close()
