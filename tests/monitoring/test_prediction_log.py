"""The prediction log on its own: rows written by the server that answered, shipped to a real S3 server as
write-once parquet, read back de-duplicated; nothing lost when the writer is SIGKILLed mid-segment or the bucket
is away, nothing written twice when a shipment is repeated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pandas as pd
import pytest

from spx.components.prediction_log import COLUMNS, LogUnavailable, PredictionLog, encode_rows, read_predictions
from spx.core.processes import free_port
from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore
from tests.support import ROOT

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=timezone.utc)


def rows(i: int, n: int = 1, version: str = "3") -> bytes:
    """What the transformer writes for request ``i`` naming ``n`` instruments."""
    p = [((i * 37 + k) % 100) / 100 for k in range(n)]
    return encode_rows(
        request_id=f"req-{i:05d}",
        arrived=T0.timestamp() + i,
        model_name="spx-direction",
        model_version=version,
        inference_service="spx-direction",
        namespace="spx",
        inputs=[{"instrument": f"I{k}", "ret_1": 0.001 * i, "rsi_14": 50.0 + k} for k in range(n)],
        outputs=[{"prediction": "up" if x >= 0.5 else "down", "probability": x} for x in p],
        probabilities=p,
        predictions=[float(x >= 0.5) for x in p],
        latency_ms=4.0,
        bar_times_us=[int((T0.timestamp() + i - 60) * 1e6)] * n,
    )


def _log(tmp_path, store, **kw) -> PredictionLog:
    return PredictionLog(tmp_path / "log", store_factory=lambda: store, **kw).open(background=False)


def test_rows_reach_the_bucket_once_as_parquet_and_read_back_with_their_features(store, tmp_path):
    log = _log(tmp_path, store)
    for i in range(5):
        log.write(rows(i, n=2 if i == 3 else 1), 2 if i == 3 else 1)
    log.close()
    keys = store.list("predictions/")
    assert len(keys) == 1 and keys[0].startswith("predictions/date=2026-03-02/") and keys[0].endswith(".parquet")
    assert not list((tmp_path / "log").iterdir())  # shipped segments are deleted, the empty one too
    df = read_predictions(store)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert list(df["request_id"]) == [f"req-{i:05d}" for i in (0, 1, 2, 3, 3, 4)]
    assert list(df["row_index"]) == [0, 0, 0, 0, 1, 0]
    assert df["timestamp"].iloc[0] == pd.Timestamp(T0) and str(df["timestamp"].dt.tz) == "UTC"
    assert df["bar_timestamp"].iloc[0] == pd.Timestamp(T0) - pd.Timedelta(minutes=1)
    assert df.loc[4, "instrument"] == "I1" and df.loc[4, "rsi_14"] == 51.0  # inputs flattened for drift
    assert df.loc[1, "probability"] == 0.37 and df.loc[1, "prediction"] == 0.0
    assert json.loads(df.loc[1, "outputs"]) == {"prediction": "down", "probability": 0.37}
    assert (df["model_version"] == "3").all() and (df["status"] == "ok").all() and (df["latency_ms"] == 4.0).all()
    window = read_predictions(store, start=T0 + pd.Timedelta(seconds=1), end=T0 + pd.Timedelta(seconds=2))
    assert list(window["request_id"]) == ["req-00001", "req-00002"]


def test_a_writer_sigkilled_mid_segment_loses_no_written_row(store, tmp_path):
    """A real process writes 200 rows and half of one more (a write torn by the kill), then dies by SIGKILL; while
    it lives its segment is locked and left alone; the next process seals it and ships every complete row."""
    child = textwrap.dedent(
        f"""
        import os, sys, time
        from tests.monitoring.test_prediction_log import rows
        from spx.components.prediction_log import PredictionLog
        log = PredictionLog({str(tmp_path / "log")!r}).open(background=False)
        for i in range(200):
            log.write(rows(i), 1)
        os.write(log._fd, rows(200)[:40])
        print("written", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        alive = _log(tmp_path, store)  # a second server on the same volume
        assert len(list((tmp_path / "log").glob("*.open"))) == 2  # the living writer's segment is not taken
        alive.close()
        assert store.list("predictions/") == []
    finally:
        proc.kill()
        proc.wait(timeout=30)
    after = _log(tmp_path, store)
    after.close()
    raw = read_predictions(store, raw=True, flatten=False)
    assert sorted(raw["request_id"]) == [f"req-{i:05d}" for i in range(200)]  # each once; the torn row skipped


def test_shipping_a_segment_again_writes_nothing_twice(store, tmp_path):
    """A process killed between the PUT and the delete ships the segment again on restart: same key, same bytes."""
    log = _log(tmp_path, store)
    for i in range(10):
        log.write(rows(i), 1)
    log.seal()
    (segment,) = (tmp_path / "log").glob("*.jsonl")
    kept = segment.read_bytes()
    assert log.ship() == 10
    segment.write_bytes(kept)  # as if the delete never happened
    again = _log(tmp_path, store)
    assert again.ship() == 10
    again.close()
    log.close()
    assert len(store.list("predictions/")) == 1
    assert len(read_predictions(store, raw=True)) == 10


def test_the_bucket_away_keeps_every_row_on_disk_until_it_is_back(store, tmp_path):
    away = ObjectStore(S3Settings.from_env().model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"}))
    away.client.meta.config.retries = {"max_attempts": 1}
    target = {"store": away}
    log = PredictionLog(tmp_path / "log", store_factory=lambda: target["store"]).open(background=False)
    for i in range(20):
        log.write(rows(i), 1)
        if i % 5 == 4:
            log._cycle()  # the shipping thread's cycle: seal, ship (fails), keep
    assert len(list((tmp_path / "log").glob("*.jsonl"))) == 4
    log._store, target["store"] = None, store  # the bucket is back
    log.close()
    assert sorted(read_predictions(store)["request_id"]) == [f"req-{i:05d}" for i in range(20)]


def test_a_full_log_refuses_the_row_instead_of_losing_it(store, tmp_path):
    limit = sum(len(rows(i)) for i in range(3))
    log = _log(tmp_path, store, max_bytes=limit)
    for i in range(3):
        log.write(rows(i), 1)
    with pytest.raises(LogUnavailable, match="unshipped bytes"):
        log.write(rows(3), 1)
    log.close()  # shipped: room again
    log = _log(tmp_path, store, max_bytes=limit)
    log.write(rows(3), 1)
    log.close()
    assert len(read_predictions(store)) == 4


def test_the_background_thread_ships_every_flush_interval(store, tmp_path):
    log = PredictionLog(tmp_path / "log", store_factory=lambda: store, flush_seconds=0.2).open()
    log.write(rows(0), 1)
    deadline = time.monotonic() + 20
    while not store.list("predictions/") and time.monotonic() < deadline:
        time.sleep(0.1)
    log.close()
    assert list(read_predictions(store)["request_id"]) == ["req-00000"]


def test_read_keeps_one_row_per_key_and_prefers_an_answered_one(store, tmp_path):
    """Buckets written by the former sink may hold a half row and a complete one for the same key."""
    for status, name in (("no_response", "a"), ("ok", "b"), ("ok", "c")):
        log = PredictionLog(tmp_path / name, store_factory=lambda: store).open(background=False)
        line = rows(1)
        log.write(line.replace(b'"status":"ok"', f'"status":"{status}"'.encode()), 1)
        log.close()
        shutil.rmtree(tmp_path / name)
    assert len(read_predictions(store, raw=True)) == 3
    once = read_predictions(store)
    assert len(once) == 1 and once["status"].iloc[0] == "ok"
