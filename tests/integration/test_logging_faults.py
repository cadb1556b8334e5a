"""No served prediction goes missing from the prediction log, under faults, with REAL processes: the bucket's S3
server is SIGKILLed for longer than several flush intervals while the transformer keeps answering; ``spx
serve``'s transformer is SIGKILLed under traffic (the supervisor restarts it, and it ships what its predecessor
logged). Rows are counted in the real S3 bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import requests

from spx.components.prediction_log import read_predictions
from spx.components.serving.local import REPO_ROOT, start_transformer
from spx.core.processes import NotReady, free_port, poll
from spx.core.services import LocalS3Server
from tests.integration.traffic import Traffic, infer_body


def _infer(url: str, rid: str) -> int:
    return requests.post(url, json=infer_body(rid), timeout=10).status_code


def _metric(base: str, name: str) -> float:
    for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return 0.0


def test_a_bucket_outage_longer_than_the_flush_interval_loses_nothing(predictor, tmp_path):
    """The transformer's bucket (an S3 server of its own) is SIGKILLed: it keeps answering, keeps the rows on
    disk, and ships them once the server is back on the same port and data; each row once."""
    server, info = predictor
    s3 = LocalS3Server(data_dir=tmp_path / "s3", buckets=("spx-outage",)).start()
    transformer = None
    served: list[str] = []
    try:
        env = {
            **s3.env(),
            "SPX_BUCKET": "spx-outage",
            "SPX_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
            "SPX_PREDICTION_LOG_DIR": str(tmp_path / "log"),
        }
        transformer = start_transformer(
            server.port, info.name, log_dir=tmp_path, max_feature_age_seconds=3600, prediction_log=True, env=env
        )
        url = f"{transformer.url}/v2/models/{info.name}/infer"
        for i in range(10):
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
        s3.proc.kill()
        s3.proc.wait(timeout=30)
        for i in range(10, 40):  # answered while the bucket is away, for several flush intervals
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
            time.sleep(0.1)
        failed = 'spx_prediction_log_rows_total{outcome="ship_failed"}'
        deadline = time.monotonic() + 60  # a failing shipment takes boto3's retries
        while _metric(transformer.url, failed) == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _metric(transformer.url, failed) > 0
        assert _metric(transformer.url, "spx_prediction_log_pending_bytes") > 0  # on disk, waiting
        s3.start()  # same port, same data
        for i in range(40, 45):
            assert _infer(url, f"out-{i:03d}") == 200
            served.append(f"out-{i:03d}")
        deadline = time.monotonic() + 60
        while _metric(transformer.url, "spx_prediction_log_pending_bytes") > 0 and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        if transformer is not None:
            transformer.stop()
    try:
        from pydantic import SecretStr

        from spx.core.settings import S3Settings
        from spx.core.storage import ObjectStore

        keys = {"access_key": s3.access_key, "secret_key": SecretStr(s3.secret_key)}
        store = ObjectStore(S3Settings.model_construct(endpoint_url=s3.endpoint_url, bucket="spx-outage", **keys))
        log = read_predictions(store, raw=True)
    finally:
        s3.stop()
    assert sorted(log["request_id"]) == sorted(served)  # every one, exactly once
    assert not list((tmp_path / "log").glob("*.jsonl"))  # shipped and deleted


def _pid_listening(port: int) -> int:
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_spx_serve_restarts_a_killed_transformer_and_logs_every_answered_prediction(
    integration_env, online_features, tmp_path, monkeypatch
):
    """SIGKILL spx serve's transformer under traffic: the supervisor restarts it on its port, the new process
    ships what the killed one had logged, and after spx serve exits (SIGTERM) every request answered 200 is in
    the bucket exactly once. Requests refused while it restarted were never answered and have no row; the one
    request the kill may catch between writing its row and sending its answer has a row and no answer."""
    _, store = integration_env
    monkeypatch.setenv("SPX_BUCKET", f"{store.bucket}-serve")
    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    store = ObjectStore(S3Settings.from_env())
    store.ensure_bucket()
    port, predictor_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SPX_PREDICTION_LOG_DIR=str(tmp_path / "log"))
    log_path = tmp_path / "spx-serve.log"
    cmd = [sys.executable, "-m", "spx.cli", "serve", "--port", str(port), "--predictor-port", str(predictor_port),
           "--max-feature-age", "3600"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)

    def supervising() -> None:  # spx serve supervises only once it says so; a kill before is a failed start
        if "Ctrl-C to stop." not in log_path.read_text():
            raise NotReady("spx serve is starting")

    try:
        poll(supervising, timeout=240, alive=lambda: proc.poll() is None, what="spx serve")
        url = f"http://127.0.0.1:{port}/v2/models/{os.environ['SPX_REGISTERED_MODEL']}/infer"
        with Traffic(url, "sup") as traffic:
            traffic.wait_answered(30)
            killed = _pid_listening(port)
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    if (
                        requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).ok
                        and _pid_listening(port) != killed
                    ):
                        break
                except (requests.RequestException, AssertionError):
                    pass
                time.sleep(0.3)
            else:
                raise AssertionError(f"the transformer was not restarted\n{log_path.read_text()[-3000:]}")
            traffic.wait_answered(30)
        assert proc.poll() is None, log_path.read_text()[-3000:]  # spx serve kept running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    out = log_path.read_text()
    assert "transformer exited" in out and "transformer restarted" in out, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    # a transformer stopping ships for up to 20 s; on a loaded machine what it could not ship stays in its local log
    # for the next start (PredictionLog.close): do what that start does, so the count below is the guarantee's
    left = sorted(p.name for p in (tmp_path / "log").glob("*.*"))
    if left:
        from spx.components.prediction_log.writer import PredictionLog

        PredictionLog(tmp_path / "log", store_factory=lambda: store).open(background=False).close()
    log = read_predictions(store, raw=True)
    try:
        traffic.check_logged_once(log["request_id"], kills=1)
    except AssertionError as e:
        raise AssertionError(f"{e}\nleft for the next start: {left}\n{out[-2000:]}") from None
