"""The sink loses nothing when SIGKILLed mid-batch and restarted (real process, real S3 server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from spx.components.serving.prediction_log import read_predictions
from spx.core.processes import free_port, wait_http

from .helpers import event_pair

ROOT = Path(__file__).resolve().parents[2]


class SinkProcess:
    def __init__(self, wal_dir: Path, env: dict, batch_rows: int, flush_interval: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "spx.components.monitoring.sink", "--host", "127.0.0.1",
                    "--port", str(self.port), "--wal-dir", str(wal_dir), "--batch-rows", str(batch_rows),
                    "--flush-interval", str(flush_interval), "--pair-timeout", "3600"]
        self.env = env
        self.log = wal_dir.parent / "sink.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SinkProcess":
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=logf, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/healthz", timeout=60, proc=self.proc)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _env(s3_env) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _post(url: str, hdr: dict, body: bytes) -> bool:
    try:
        return requests.post(url, headers=hdr, data=body, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture()
def sink_env(store):
    return _env(store)


def test_sigkill_with_a_partly_filled_batch_and_a_half_pair_loses_nothing(store, sink_env, tmp_path):
    """Deterministic: the batch buffer holds 40 pairs and one lone request when the sink dies."""
    wal = tmp_path / "wal"
    sink = SinkProcess(wal, sink_env, batch_rows=100_000, flush_interval=3600).start()
    try:
        events = [event_pair(i) for i in range(60)]
        for i in range(40):
            for hdr, body in events[i]:
                assert _post(sink.url, hdr, body)
        assert _post(sink.url, *events[40][0])  # request only; its response comes after the crash
        assert store.list("predictions/") == []  # nothing flushed yet: all of it is "mid-batch"
        sink.kill9()

        sink = SinkProcess(wal, sink_env, batch_rows=100_000, flush_interval=3600).start()
        health = requests.get(f"{sink.url}/healthz", timeout=5).json()
        assert health["replayed"] == 81 and health["buffered"] == 40 and health["pending"] == 1
        # a retried (already accepted) event is recognised as a duplicate
        assert requests.post(sink.url, headers=events[3][0][0], data=events[3][0][1],
                             timeout=5).json()["status"] == "duplicate"
        assert _post(sink.url, *events[40][1])
        for i in range(41, 60):
            for hdr, body in events[i]:
                assert _post(sink.url, hdr, body)
        written = requests.post(f"{sink.url}/flush", timeout=60).json()["written"]
        assert written
    finally:
        sink.stop()
    raw = read_predictions(store, raw=True, flatten=False)
    assert sorted(raw["request_id"]) == [f"req-{i:05d}" for i in range(60)]  # each exactly once
    assert (raw["status"] == "ok").all()


def test_sigkill_during_concurrent_traffic_and_flushes_loses_nothing(store, sink_env, tmp_path):
    """Traffic from 4 senders while the sink flushes every 25 rows; SIGKILL at a random point.

    Senders retry an event until it is acknowledged (as KServe's logger does), so after the restart
    every event is accepted once; the de-duplicated log must hold every inference exactly once, and
    physical duplicates (only possible for the one batch whose PUT raced the kill) are bounded.
    """
    wal = tmp_path / "wal"
    n = 400
    events = [event_pair(i) for i in range(n)]
    sink = SinkProcess(wal, sink_env, batch_rows=25, flush_interval=0.2).start()
    url = {"value": sink.url}
    acked = [0]
    lock = threading.Lock()

    def sender(idx: list[int]) -> None:
        for i in idx:
            for hdr, body in events[i]:
                deadline = time.monotonic() + 120
                while not _post(url["value"], hdr, body):
                    assert time.monotonic() < deadline, "sink never came back"
                    time.sleep(0.05)
                with lock:
                    acked[0] += 1

    threads = [threading.Thread(target=sender, args=(list(range(k, n, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        # kill while traffic is flowing and after at least one batch went out (so the WAL has been
        # rotated and truncated at least once before the crash)
        deadline = time.monotonic() + 120
        while acked[0] < n // 3 or not store.list("predictions/"):
            assert time.monotonic() < deadline, "no batch was written"
            time.sleep(0.01)
        sink.kill9()
        assert acked[0] < 2 * n, "the kill came after all traffic: not a mid-stream crash"
        sink = SinkProcess(wal, sink_env, batch_rows=25, flush_interval=0.2)
        sink.port, sink.url = sink.port, url["value"]  # same address, the senders keep retrying
        sink.cmd[sink.cmd.index("--port") + 1] = url["value"].rsplit(":", 1)[1]
        sink.start()
        for t in threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in threads)
        requests.post(f"{sink.url}/flush", params={"all": "1"}, timeout=60).raise_for_status()
    finally:
        sink.stop()
    log = read_predictions(store, flatten=False)
    assert sorted(log["request_id"]) == [f"req-{i:05d}" for i in range(n)]
    assert (log["status"] == "ok").all()
    raw = read_predictions(store, raw=True, flatten=False)
    assert len(raw) - len(log) <= 25 + 4  # at most the batch in flight at the kill
