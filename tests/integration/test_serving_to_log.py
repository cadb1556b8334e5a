"""Served predictions reach the bucket: the REAL Feast transformer + predictor (KServe model servers,
subprocesses) write each answered prediction to the transformer's local log before answering and ship it as
parquet to a real S3 server on loopback; the batches are read back with ``read_predictions`` and compared,
request by request, with what the tritonclient caller received; a transformer SIGKILLed under traffic loses
no prediction it answered."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as http

from spx.components.prediction_log import read_predictions
from spx.components.serving.local import start_transformer
from tests.integration.traffic import INSTRUMENTS, Traffic


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


def _own_bucket(monkeypatch, store, suffix: str):
    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    monkeypatch.setenv("SPX_BUCKET", f"{store.bucket}-{suffix}")
    own = ObjectStore(S3Settings.from_env())
    own.ensure_bucket()
    return own


def test_every_served_prediction_is_logged_once_with_inputs_output_version_and_time(
    integration_env, champion, predictor, tmp_path
):
    home, store = integration_env
    server, info = predictor
    transformer = start_transformer(
        server.port,
        info.name,
        log_dir=tmp_path,
        max_feature_age_seconds=3600,
        prediction_log=True,
        env={"SPX_PREDICTION_LOG_FLUSH_SECONDS": "3600", "SPX_PREDICTION_LOG_DIR": str(tmp_path / "log")},
    )
    try:
        client = http.InferenceServerClient(transformer.url.split("//", 1)[1])
        newest = champion.frame["timestamp"].max()
        started = datetime.now(timezone.utc)
        sent: dict[str, dict] = {}
        for i in range(30):
            rid = f"int-{i:03d}"
            if i % 3 == 0:  # a batch of three instruments in one request
                sent[rid] = _infer(client, info.name, rid, list(INSTRUMENTS))
            elif i % 3 == 1:  # with an explicit as_of
                sent[rid] = _infer(
                    client, info.name, rid, [INSTRUMENTS[i % 3]], as_of=(newest + pd.Timedelta(minutes=1)).isoformat()
                )
            else:
                sent[rid] = _infer(client, info.name, rid, [INSTRUMENTS[i % 3]])
            assert sent[rid]["response_id"] == rid
        ended = datetime.now(timezone.utc)
        assert read_predictions(store).empty  # nothing shipped yet (the flush interval is an hour)...
    finally:
        transformer.stop()  # ...SIGTERM ships what the transformer logged
    log = read_predictions(store, raw=True)  # what the bucket physically holds
    assert len(log) == sum(len(s["instruments"]) for s in sent.values())
    keys = store.list("predictions/")
    assert keys and all(k.startswith("predictions/date=") and k.endswith(".parquet") for k in keys)
    _assert_logged_exactly(log, sent, started, ended, info.name, champion.version)
    # the flattened view has the features as columns, ready for the drift report
    flat = read_predictions(store)
    assert set(champion.features) <= set(flat.columns)
    assert flat[champion.features].notna().all().all()
    assert not list((tmp_path / "log").iterdir())  # shipped, nothing left behind


def test_a_transformer_sigkilled_under_traffic_loses_no_answered_prediction(
    integration_env, champion, predictor, tmp_path, monkeypatch
):
    """SIGKILL the transformer while clients keep calling it, start it again on its port and volume: every
    request answered 200 (before and after the kill) is in the bucket exactly once. Before: the logger's queue
    lived in memory, and a SIGKILL lost what it held (about one batch interval). The row is written before the
    answer leaves, so a request the kill caught between the two has a row and no answer: the only rows allowed
    beyond the answered ones are requests whose client saw the connection fail, at most one per client."""
    _, store = integration_env
    store = _own_bucket(monkeypatch, store, "kill")
    server, info = predictor
    env = {"SPX_PREDICTION_LOG_FLUSH_SECONDS": "3600", "SPX_PREDICTION_LOG_DIR": str(tmp_path / "log")}
    transformer = start_transformer(
        server.port, info.name, log_dir=tmp_path, max_feature_age_seconds=3600, prediction_log=True, env=env
    )
    try:
        with Traffic(f"{transformer.url}/v2/models/{info.name}/infer", "kill", clients=4) as traffic:
            traffic.wait_answered(100)
            transformer.proc.kill()  # everything answered so far exists only in the log's open segment
            transformer.proc.wait(timeout=30)
            transformer.start(timeout=240)  # same port, same volume: seals the dead process's segment and serves
            traffic.wait_answered(100)
    finally:
        transformer.stop()
    log = read_predictions(store, raw=True, flatten=False)
    traffic.check_logged_once(log["request_id"], kills=1)
