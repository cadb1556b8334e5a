"""Served predictions reach the bucket: the REAL Feast transformer + predictor (KServe model servers,
subprocesses) log KServe-logger CloudEvents to the REAL prediction-log sink (subprocess), which writes
parquet batches to a real S3 server on loopback; the batches are read back with ``read_predictions``
and compared, request by request, with what the tritonclient caller received."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as http

from spx.components.serving.local import start_transformer
from spx.components.serving.prediction_log import read_predictions
from tests.support import SinkProcess

INSTRUMENTS = ["SPX500_USD", "NAS100_USD", "US30_USD"]


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def _infer(
    client: http.InferenceServerClient, name: str, rid: str, instruments: list[str], as_of: str | None = None
) -> dict:
    tensor = http.InferInput("instrument", [len(instruments)], "BYTES")
    tensor.set_data_from_numpy(np.array([i.encode() for i in instruments], dtype=object))
    inputs = [tensor]
    if as_of is not None:
        t = http.InferInput("as_of", [1], "BYTES")
        t.set_data_from_numpy(np.array([as_of.encode()], dtype=object))
        inputs.append(t)
    result = client.infer(name, inputs, request_id=rid)
    return {
        "instruments": instruments,
        "probability": result.as_numpy("probability").astype(np.float64),
        "prediction": _text(result.as_numpy("prediction")),
        "model_version": _text(result.as_numpy("model_version")),
        "features_used": [json.loads(x) for x in _text(result.as_numpy("features_used"))],
        "feature_time": [pd.Timestamp(x) for x in _text(result.as_numpy("feature_time"))],
        "response_id": result.get_response()["id"],
    }


def _assert_logged_exactly(
    log: pd.DataFrame, sent: dict[str, dict], started: datetime, ended: datetime, name: str, version: str
) -> None:
    # every request id once per instrument row, nothing else
    assert sorted(set(log["request_id"])) == sorted(sent)
    assert not log.duplicated(["request_id", "row_index"]).any()
    for rid, got in sent.items():
        rows = log[log["request_id"] == rid].sort_values("row_index")
        n = len(got["instruments"])
        assert list(rows["row_index"]) == list(range(n)), rid
        assert (rows["status"] == "ok").all(), rows["status"].tolist()
        # the output equals what the client received
        np.testing.assert_array_equal(rows["probability"].to_numpy(), got["probability"])
        assert list(rows["prediction"]) == [1.0 if p == "up" else 0.0 for p in got["prediction"]]
        assert list(rows["model_version"]) == got["model_version"] == [version] * n
        assert (rows["model_name"] == name).all()
        # the inputs: the instrument asked for and the feature vector the model received
        for k, (_, row) in enumerate(rows.iterrows()):
            inputs = json.loads(row["inputs"])
            assert inputs["instrument"] == got["instruments"][k]
            feats = {c: inputs[c] for c in got["features_used"][k]}
            assert feats == pytest.approx(got["features_used"][k], rel=0, abs=0)
            assert row["bar_timestamp"] == got["feature_time"][k]
            assert json.loads(row["outputs"])["probability"] == got["probability"][k]
        # a timestamp: the request time, inside the test window
        ts = rows["timestamp"]
        assert ts.notna().all()
        assert (ts >= pd.Timestamp(started) - pd.Timedelta(seconds=1)).all()
        assert (ts <= pd.Timestamp(ended) + pd.Timedelta(seconds=1)).all()
        assert (rows["latency_ms"] >= 0).all()


def test_every_served_prediction_is_logged_once_with_inputs_output_version_and_time(
    integration_env, champion, predictor, tmp_path
):
    home, store = integration_env
    server, info = predictor
    sink = SinkProcess(tmp_path / "wal", tmp_path / "sink.log").start()
    transformer = None
    try:
        transformer = start_transformer(
            server.port, info.name, log_dir=tmp_path, max_feature_age_seconds=3600, logger_url=f"{sink.url}/"
        )
        client = http.InferenceServerClient(transformer.url.split("//", 1)[1])
        newest = champion.frame["timestamp"].max()
        started = datetime.now(timezone.utc)
        sent: dict[str, dict] = {}
        for i in range(30):
            rid = f"int-{i:03d}"
            if i % 3 == 0:  # a batch of three instruments in one request
                sent[rid] = _infer(client, info.name, rid, INSTRUMENTS)
            elif i % 3 == 1:  # with an explicit as_of
                sent[rid] = _infer(
                    client, info.name, rid, [INSTRUMENTS[i % 3]], as_of=(newest + pd.Timedelta(minutes=1)).isoformat()
                )
            else:
                sent[rid] = _infer(client, info.name, rid, [INSTRUMENTS[i % 3]])
            assert sent[rid]["response_id"] == rid
        ended = datetime.now(timezone.utc)
        health = sink.wait_acknowledged(2 * len(sent), include_duplicates=True)
        assert health["rejected"] == 0 and health["duplicates"] == 0, health
        assert read_predictions(store).empty  # nothing flushed yet (batch size and interval are large)
    finally:
        if transformer is not None:
            transformer.stop()
        code = sink.stop()  # SIGTERM flushes
    # uvicorn re-raises SIGTERM after a clean shutdown (the lifespan flush ran)
    assert code in (0, -15) and "Application shutdown complete" in sink.log_tail(), sink.log_tail()
    log = read_predictions(store, raw=True)  # what the bucket physically holds
    assert len(log) == sum(len(s["instruments"]) for s in sent.values())
    keys = store.list("predictions/")
    assert keys and all(k.startswith("predictions/date=") and k.endswith(".parquet") for k in keys)
    _assert_logged_exactly(log, sent, started, ended, info.name, champion.version)
    # the flattened view has the features as columns, ready for the drift report
    flat = read_predictions(store)
    assert set(champion.features) <= set(flat.columns)
    assert flat[champion.features].notna().all().all()


def test_sink_restart_under_traffic_loses_nothing(integration_env, champion, predictor, tmp_path, monkeypatch):
    """SIGKILL the sink between requests; the transformer's logger retries until the restarted sink (same
    port, same write-ahead log) acknowledges; every prediction is in the bucket exactly once."""
    _, store = integration_env
    monkeypatch.setenv("SPX_BUCKET", f"{store.bucket}-restart")  # a bucket of its own
    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    store = ObjectStore(S3Settings.from_env())
    store.ensure_bucket()
    server, info = predictor
    wal = tmp_path / "wal"
    sink = SinkProcess(wal, tmp_path / "sink.log").start()
    transformer = None
    sent: dict[str, dict] = {}
    try:
        transformer = start_transformer(
            server.port, info.name, log_dir=tmp_path, max_feature_age_seconds=3600, logger_url=sink.url
        )
        client = http.InferenceServerClient(transformer.url.split("//", 1)[1])
        started = datetime.now(timezone.utc)
        for i in range(10):
            sent[f"rs-{i:03d}"] = _infer(client, info.name, f"rs-{i:03d}", [INSTRUMENTS[i % 3]])
        sink.wait_acknowledged(20, include_duplicates=True)
        sink.kill9()  # nothing flushed: all 10 pairs live only in the WAL
        for i in range(10, 20):  # served while the sink is down: the logger keeps them and retries
            sent[f"rs-{i:03d}"] = _infer(client, info.name, f"rs-{i:03d}", INSTRUMENTS[: 1 + i % 3])
        time.sleep(1.0)
        sink = SinkProcess(wal, tmp_path / "sink.log", port=sink.port).start()
        assert sink.health()["replayed"] == 20
        for i in range(20, 25):
            sent[f"rs-{i:03d}"] = _infer(client, info.name, f"rs-{i:03d}", [INSTRUMENTS[i % 3]])
        ended = datetime.now(timezone.utc)
        sink.wait_acknowledged(2 * 15, include_duplicates=True)
    finally:
        if transformer is not None:
            transformer.stop()
        code = sink.stop()
    # uvicorn re-raises SIGTERM after a clean shutdown (the lifespan flush ran)
    assert code in (0, -15) and "Application shutdown complete" in sink.log_tail(), sink.log_tail()
    log = read_predictions(store, raw=True)
    _assert_logged_exactly(log, sent, started, ended, info.name, champion.version)
