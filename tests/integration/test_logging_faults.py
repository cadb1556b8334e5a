"""No served prediction goes missing from the prediction log, under faults, with REAL processes: the
sink is SIGKILLed for longer than the logger's retry window; ``spx serve``'s sink is SIGKILLed under
traffic (the supervisor restarts it, serving never stops); a logger that cannot even spill counts
and exposes its drops. Rows are counted in the real S3 bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import requests

from spx.components.serving.local import REPO_ROOT, start_transformer
from spx.components.serving.prediction_log import read_predictions
from spx.core.processes import free_port, wait_http
from tests.support import SinkProcess


def _own_bucket(monkeypatch, store, suffix: str):
    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    monkeypatch.setenv("SPX_BUCKET", f"{store.bucket}-{suffix}")
    own = ObjectStore(S3Settings.from_env())
    own.ensure_bucket()
    return own


def _infer(url: str, rid: str, instrument: str = "SPX500_USD") -> int:
    body = {"id": rid, "inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": [instrument]}]}
    return requests.post(url, json=body, timeout=10).status_code


def _metric(base: str, outcome: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'spx_inference_log_events_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_sink_outage_longer_than_the_retry_window_loses_nothing(
    integration_env, champion, predictor, tmp_path, monkeypatch
):
    _, store = integration_env
    store = _own_bucket(monkeypatch, store, "outage")
    server, info = predictor
    wal = tmp_path / "wal"
    sink = SinkProcess(wal, tmp_path / "sink.log").start()
    transformer = None
    served: list[str] = []
    try:
        transformer = start_transformer(
            server.port,
            info.name,
            log_dir=tmp_path,
            max_feature_age_seconds=3600,
            logger_url=f"{sink.url}/",
            extra_args=["--logger_retry_seconds", "1", "--logger_spill_dir", str(tmp_path / "spill")],
        )
        url = f"{transformer.url}/v2/models/{info.name}/infer"
        for i in range(10):
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
        sink.wait_acknowledged(20)
        sink.kill9()
        t0 = time.monotonic()
        for i in range(10, 40):  # served during an outage well past the 1 s retry window
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
        while time.monotonic() - t0 < 4.0:
            time.sleep(0.2)
        assert _metric(transformer.url, "spilled") > 0  # on disk, not dropped
        assert _metric(transformer.url, "dropped") == 0
        assert list((tmp_path / "spill").glob("spill-*.jsonl"))
        sink = SinkProcess(wal, tmp_path / "sink.log", port=sink.port).start()
        for i in range(40, 45):
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
        sink.wait_acknowledged(2 * 35)  # 20 were replayed from the sink's WAL, the rest are new
        assert _metric(transformer.url, "replayed") > 0
    finally:
        if transformer is not None:
            transformer.stop()
        sink.stop()
    log = read_predictions(store, raw=True)
    assert sorted(log["request_id"]) == sorted(served)  # every one, exactly once
    assert (log["status"] == "ok").all()
    assert not list((tmp_path / "spill").glob("spill-*.jsonl"))  # replayed and deleted


def test_a_logger_that_cannot_spill_counts_logs_and_exposes_its_drops(integration_env, predictor, tmp_path):
    server, info = predictor
    dead = f"http://127.0.0.1:{free_port()}/"
    not_a_dir = tmp_path / "spill-is-a-file"
    not_a_dir.write_text("occupied")
    transformer = start_transformer(
        server.port,
        info.name,
        log_dir=tmp_path,
        max_feature_age_seconds=3600,
        logger_url=dead,
        extra_args=["--logger_retry_seconds", "0.5", "--logger_spill_dir", str(not_a_dir / "x")],
    )
    try:
        url = f"{transformer.url}/v2/models/{info.name}/infer"
        for i in range(5):
            assert _infer(url, f"drop-{i}") == 200  # a dead sink never fails a prediction
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _metric(transformer.url, "dropped") < 10:
            time.sleep(0.3)
        assert _metric(transformer.url, "dropped") == 10
        assert _metric(transformer.url, "emitted") == 10
    finally:
        transformer.stop()
    assert "DROPPED" in transformer.log_tail(20000)


def _pid_listening(port: int) -> int:
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_spx_serve_supervises_the_sink_and_logs_every_prediction(integration_env, champion, tmp_path, monkeypatch):
    """SIGKILL spx serve's sink under traffic: every request is answered 200, the supervisor restarts
    the sink on its port, and after spx serve exits (SIGTERM) every served prediction is in the bucket."""
    _, store = integration_env
    store = _own_bucket(monkeypatch, store, "serve")
    port, predictor_port, sink_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        SPX_SINK_WAL_DIR=str(tmp_path / "wal"),
        SPX_LOGGER_SPILL_DIR=str(tmp_path / "spill"),
    )
    log_path = tmp_path / "spx-serve.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spx.cli",
            "serve",
            "--port",
            str(port),
            "--predictor-port",
            str(predictor_port),
            "--sink-port",
            str(sink_port),
            "--max-feature-age",
            "3600",
            "--sink-flush-interval",
            "3600",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    served: list[str] = []
    failed: list[tuple[str, int]] = []
    stop = threading.Event()
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=240, proc=proc)
        url = f"http://127.0.0.1:{port}/v2/models/{os.environ['SPX_REGISTERED_MODEL']}/infer"

        def traffic():
            i = 0
            while not stop.is_set():
                rid = f"sup-{i:05d}"
                code = _infer(url, rid, ("SPX500_USD", "NAS100_USD", "US30_USD")[i % 3])
                (served.append(rid) if code == 200 else failed.append((rid, code)))
                i += 1

        thread = threading.Thread(target=traffic)
        thread.start()
        time.sleep(2.0)
        sink_pid = _pid_listening(sink_port)
        os.kill(sink_pid, signal.SIGKILL)
        # the supervisor restarts it on the same port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    requests.get(f"http://127.0.0.1:{sink_port}/healthz", timeout=2).ok
                    and _pid_listening(sink_port) != sink_pid
                ):
                    break
            except (requests.RequestException, AssertionError):
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"the sink was not restarted\n{log_path.read_text()[-3000:]}")
        time.sleep(2.0)
        stop.set()
        thread.join(timeout=30)
        assert proc.poll() is None, log_path.read_text()[-3000:]  # spx serve kept running
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    out = log_path.read_text()
    assert not failed, failed[:5]
    assert len(served) > 20
    assert "sink exited" in out and "sink restarted" in out, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    log = read_predictions(store, raw=True)
    missing = sorted(set(served) - set(log["request_id"]))
    assert not missing, (len(missing), missing[:10], out[-2000:])
    assert not log.duplicated(["request_id", "row_index"]).any()
