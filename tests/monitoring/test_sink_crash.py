"""The sink loses nothing when SIGKILLed mid-batch and restarted (real process, real S3 server)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from spx.components.serving.prediction_log import read_predictions
from spx.core.processes import free_port, wait_http
from tests.support import ROOT, SinkProcess

from .helpers import event_pair


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
    sink = SinkProcess(wal, env=sink_env, batch_rows=100_000, flush_interval=3600).start()
    try:
        events = [event_pair(i) for i in range(60)]
        for i in range(40):
            for hdr, body in events[i]:
                assert _post(sink.url, hdr, body)
        assert _post(sink.url, *events[40][0])  # request only; its response comes after the crash
        assert store.list("predictions/") == []  # nothing flushed yet: all of it is "mid-batch"
        sink.kill9()

        sink = SinkProcess(wal, env=sink_env, batch_rows=100_000, flush_interval=3600).start()
        health = requests.get(f"{sink.url}/healthz", timeout=5).json()
        assert health["replayed"] == 81 and health["buffered"] == 40 and health["pending"] == 1
        # a retried (already accepted) event is recognised as a duplicate
        assert (
            requests.post(sink.url, headers=events[3][0][0], data=events[3][0][1], timeout=5).json()["status"]
            == "duplicate"
        )
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
    sink = SinkProcess(wal, env=sink_env, batch_rows=25, flush_interval=0.2).start()
    url, old_port = {"value": sink.url}, sink.port
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
        # the same address: the senders keep retrying it
        sink = SinkProcess(wal, port=old_port, env=sink_env, batch_rows=25, flush_interval=0.2).start()
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


def _structured(hdr: dict, body: bytes) -> dict:
    """A binary-mode KServe logger event as a structured CloudEvent (cloudevents SDK)."""
    from cloudevents.conversion import to_dict
    from cloudevents.http import from_http

    return to_dict(from_http(hdr, body))


def test_writers_need_the_token_and_a_batch_is_acknowledged_once_durable(store, sink_env, tmp_path):
    """With SPX_SINK_TOKEN set, unauthenticated or wrongly authenticated posts are 401 (before: any
    local process could forge events); a CloudEvents JSON batch is acknowledged as a whole, survives a
    SIGKILL right after the 200, and re-sending it yields duplicates, not rows."""
    import json

    env = dict(sink_env, SPX_SINK_TOKEN="s3cret-token")
    wal = tmp_path / "wal"
    sink = SinkProcess(wal, env=env, batch_rows=100_000, flush_interval=3600).start()
    try:
        hdr, body = event_pair(0)[0]
        assert requests.post(sink.url, headers=hdr, data=body, timeout=5).status_code == 401
        bad = dict(hdr, Authorization="Bearer wrong")
        assert requests.post(sink.url, headers=bad, data=body, timeout=5).status_code == 401
        assert requests.post(f"{sink.url}/flush", timeout=5).status_code == 401
        assert requests.get(f"{sink.url}/healthz", timeout=5).json()["accepted"] == 0
        auth = {"Authorization": "Bearer s3cret-token"}
        assert requests.post(sink.url, headers=dict(hdr, **auth), data=body, timeout=5).json()["status"] == "accepted"
        batch = [_structured(h, b) for i in range(1, 30) for h, b in event_pair(i)] + [{"not": "an event"}]
        headers = dict(auth, **{"Content-Type": "application/cloudevents-batch+json"})
        resp = requests.post(sink.url, headers=headers, data=json.dumps(batch), timeout=10)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["accepted"] == 58 and doc["duplicates"] == 0 and [r["index"] for r in doc["rejected"]] == [58]
        sink.kill9()
        sink = SinkProcess(wal, env=env, batch_rows=100_000, flush_interval=3600).start()
        assert requests.get(f"{sink.url}/healthz", timeout=5).json()["replayed"] == 59
        again = requests.post(sink.url, headers=headers, data=json.dumps(batch[:58]), timeout=10).json()
        assert again["accepted"] == 0 and again["duplicates"] == 58
        requests.post(f"{sink.url}/flush", params={"all": "1"}, headers=auth, timeout=60).raise_for_status()
    finally:
        sink.stop()
    raw = read_predictions(store, raw=True, flatten=False)
    assert sorted(raw["request_id"]) == [f"req-{i:05d}" for i in range(30)]


def test_sink_refuses_a_public_address_without_a_token_and_keeps_its_wal_under_spx_home(sink_env, tmp_path):
    env = dict(sink_env, SPX_HOME=str(tmp_path / "home"))
    env.pop("SPX_SINK_TOKEN", None)
    env.pop("SPX_SINK_WAL_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "spx.components.monitoring.sink", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "without a writer token" in proc.stderr + proc.stdout
    # defaults: loopback and $SPX_HOME/sink-wal (the directory spx serve uses)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spx.components.monitoring.sink", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=proc)
        assert list((tmp_path / "home" / "sink-wal").glob("wal-*.jsonl"))
        import psutil

        listening = [
            c.laddr.ip for c in psutil.Process(proc.pid).connections(kind="inet") if c.status == psutil.CONN_LISTEN
        ]
        assert listening == ["127.0.0.1"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
