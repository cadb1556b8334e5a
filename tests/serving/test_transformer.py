"""The full chain on loopback: Feast (materialized from S3 into SQLite) -> transformer -> predictor,
called with tritonclient and plain HTTP; bad requests; stale features; every answer in the prediction log."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as http

from spx.components.feature_store import store as F
from spx.components.prediction_log import read_predictions
from spx.components.selection import champion as champ
from spx.components.serving.local import start_predictor, start_transformer


@pytest.fixture(scope="module")
def stack(serving_env, xgb_champion):
    summary = F.materialize_logic(xgb_champion.gold_uri, xgb_champion.manifest_uri, xgb_champion.run_id)
    info = champ.resolve()
    model_dir = champ.download(info, serving_env / "models" / "champion")
    predictor = start_predictor(model_dir, info.name, log_dir=serving_env)
    transformer = None
    try:
        transformer = start_transformer(
            predictor.port,
            info.name,
            log_dir=serving_env,
            max_feature_age_seconds=3600,
            prediction_log=True,
            env={"SPX_PREDICTION_LOG_FLUSH_SECONDS": "0.5"},
        )
        yield {
            "predictor": predictor,
            "transformer": transformer,
            "info": info,
            "champion": xgb_champion,
            "summary": json.loads(summary),
        }
    finally:
        if transformer is not None:
            transformer.stop()
        predictor.stop()


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _latest_rows(ch, instruments):
    latest = ch.frame.sort_values("timestamp").groupby("instrument").tail(1).set_index("instrument")
    return latest.loc[list(instruments)]


def test_endpoints_and_metadata(stack):
    base, name = stack["transformer"].url, stack["info"].name
    assert requests.get(f"{base}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{base}/v2/health/ready").json() == {"ready": True}
    assert requests.get(f"{base}/v2/models/{name}/ready").json()["ready"] is True
    meta = requests.get(f"{base}/v2/models/{name}").json()
    assert meta["inputs"][0] == {"name": "instrument", "datatype": "BYTES", "shape": [-1]}
    assert meta["parameters"]["feature_names"] == stack["champion"].features
    assert meta["parameters"]["model_version"] == stack["champion"].version
    assert {o["name"] for o in meta["outputs"]} >= {
        "prediction",
        "probability",
        "confidence",
        "signal_strength",
        "model_version",
        "features_used",
        "latency_ms",
    }


def test_tritonclient_prediction_equals_predict_proba_on_latest_features(stack):
    ch, name = stack["champion"], stack["info"].name
    instruments = ["SPX500_USD", "NAS100_USD", "US30_USD"]
    client = http.InferenceServerClient(stack["transformer"].url.split("//")[1])
    tensor = http.InferInput("instrument", [3], "BYTES")
    tensor.set_data_from_numpy(np.array([i.encode() for i in instruments], dtype=object))
    result = client.infer(name, [tensor], request_id="req-triton-1")
    rows = _latest_rows(ch, instruments)
    expected = ch.predict_proba(rows[ch.features].to_numpy())
    proba = result.as_numpy("probability")
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert _text(result.as_numpy("prediction")) == ["up" if p >= 0.5 else "down" for p in expected]
    np.testing.assert_allclose(result.as_numpy("confidence"), np.maximum(proba, 1 - proba))
    np.testing.assert_allclose(result.as_numpy("signal_strength"), np.abs(2 * proba - 1))
    assert _text(result.as_numpy("model_version")) == [ch.version] * 3
    used = [json.loads(x) for x in _text(result.as_numpy("features_used"))]
    for inst, feats in zip(instruments, used):
        assert list(feats) == ch.features
        assert feats == pytest.approx(rows.loc[inst, ch.features].astype(float).to_dict())
    times = [pd.Timestamp(x) for x in _text(result.as_numpy("feature_time"))]
    assert times == list(rows["timestamp"])
    latency = result.as_numpy("latency_ms")
    assert (latency > 0).all() and (latency < 5000).all()
    assert result.get_response()["id"] == "req-triton-1"


def test_plain_http_with_as_of(stack):
    ch, name = stack["champion"], stack["info"].name
    newest = _latest_rows(ch, ["SPX500_USD"])["timestamp"].iloc[0]
    as_of = (newest + pd.Timedelta(minutes=1)).isoformat()
    body = {
        "id": "req-http-1",
        "inputs": [
            {"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]},
            {"name": "as_of", "datatype": "BYTES", "shape": [1], "data": [as_of]},
        ],
    }
    resp = requests.post(f"{stack['transformer'].url}/v2/models/{name}/infer", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    out = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    assert out["feature_age_seconds"] == [60.0]
    expected = ch.predict_proba(_latest_rows(ch, ["SPX500_USD"])[ch.features].to_numpy())[0]
    assert out["probability"][0] == pytest.approx(float(expected), abs=1e-6)


def _transformer_bad_corpus():
    def req(*inputs, **extra):
        return {"inputs": list(inputs), **extra}

    inst = {"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}
    return [
        ("non-JSON", b"{not json", 400, "not valid JSON"),
        ("missing inputs", {"parameters": {}}, 400, 'missing "inputs"'),
        (
            "no instrument input",
            req({"name": "as_of", "datatype": "BYTES", "shape": [1], "data": ["2026-01-01T00:00:00Z"]}),
            400,
            'missing input "instrument"',
        ),
        (
            "wrong datatype",
            req({"name": "instrument", "datatype": "FP32", "shape": [1], "data": [1.0]}),
            400,
            "expected BYTES",
        ),
        (
            "wrong shape",
            req({"name": "instrument", "datatype": "BYTES", "shape": [2], "data": ["SPX500_USD"]}),
            400,
            "holds 1 values",
        ),
        (
            "unknown input",
            req(inst, {"name": "price", "datatype": "FP32", "shape": [1], "data": [1.0]}),
            400,
            "unknown inputs ['price']",
        ),
        (
            "empty instrument",
            req({"name": "instrument", "datatype": "BYTES", "shape": [1], "data": [""]}),
            400,
            "non-empty strings",
        ),
        (
            "bad as_of",
            req(inst, {"name": "as_of", "datatype": "BYTES", "shape": [1], "data": ["yesterday"]}),
            400,
            "not an ISO-8601",
        ),
        ("future as_of", req(inst, parameters={"as_of": "2999-01-01T00:00:00Z"}), 400, "in the future"),
        (
            "as_of before the features",
            req(inst, parameters={"as_of": "2020-01-01T00:00:00Z"}),
            409,
            "only holds the latest values",
        ),
        (
            "unknown instrument",
            req({"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["EUR_NOPE"]}),
            404,
            "unknown instrument 'EUR_NOPE'",
        ),
        (
            "stale features",
            req({"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["OLD_USD"]}),
            422,
            "stale features for OLD_USD",
        ),
        ("oversized", b'{"inputs": [' + b" " * (5 * 1024 * 1024) + b"]}", 413, "exceeds the limit"),
    ]


def test_bad_requests_then_a_good_one(stack):
    url = f"{stack['transformer'].url}/v2/models/{stack['info'].name}/infer"
    for description, body, status, fragment in _transformer_bad_corpus():
        if isinstance(body, bytes):
            resp = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
        else:
            resp = requests.post(url, json=body, timeout=30)
        assert resp.status_code == status, (description, resp.status_code, resp.text)
        assert fragment in resp.json()["error"], (description, resp.text)
    resp = requests.post(
        f"{stack['transformer'].url}/v2/models/unknown-model/infer",
        json={"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]},
    )
    assert resp.status_code == 404
    good = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["NAS100_USD"]}]}
    resp = requests.post(url, json=good, timeout=10)
    assert resp.status_code == 200, resp.text
    assert {o["name"]: o["data"] for o in resp.json()["outputs"]}["instrument"] == ["NAS100_USD"]


def test_each_answer_is_a_row_of_the_prediction_log(stack, serving_store):
    """The row holds what the client got: the instrument asked for, the features the model received, the
    answer, the model version, the request time and the latency (shipped within the flush interval)."""
    ch, name = stack["champion"], stack["info"].name
    url = f"{stack['transformer'].url}/v2/models/{name}/infer"
    body = {
        "id": "req-log-1",
        "inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [2], "data": ["US30_USD", "SPX500_USD"]}],
    }
    resp = requests.post(url, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    answer = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = read_predictions(serving_store)
        rows = rows[rows["request_id"] == "req-log-1"]
        if len(rows) == 2:
            break
        time.sleep(0.2)
    assert list(rows["row_index"]) == [0, 1], rows
    for k, (_, row) in enumerate(rows.iterrows()):
        assert row["instrument"] == answer["instrument"][k]
        assert {c: row[c] for c in ch.features} == json.loads(answer["features_used"][k])
        assert row["probability"] == answer["probability"][k]
        assert row["prediction"] == (1.0 if answer["prediction"][k] == "up" else 0.0)
        assert row["model_version"] == ch.version and row["model_name"] == name and row["status"] == "ok"
        assert row["bar_timestamp"] == pd.Timestamp(answer["feature_time"][k])
        assert 0 < row["latency_ms"] <= answer["latency_ms"][k] + 1
        assert json.loads(row["outputs"])["confidence"] == answer["confidence"][k]


def test_no_answer_without_its_log_row(serving_env, stack):
    """A transformer whose log cannot take a row (here: over its size limit) answers 503, never a 200 that
    is not logged (before: the logger dropped events and the prediction was answered anyway)."""
    transformer = start_transformer(
        stack["predictor"].port,
        stack["info"].name,
        log_dir=serving_env,
        max_feature_age_seconds=3600,
        prediction_log=True,
        env={"SPX_PREDICTION_LOG_MAX_BYTES": "100", "SPX_PREDICTION_LOG_DIR": str(serving_env / "tiny-log")},
    )
    try:
        url = f"{transformer.url}/v2/models/{stack['info'].name}/infer"
        body = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]}
        resp = requests.post(url, json=body, timeout=10)
        assert resp.status_code == 503 and "unshipped bytes" in resp.json()["error"], resp.text
    finally:
        transformer.stop()


def test_as_of_and_max_age_are_checked_on_every_request_while_the_row_is_cached(stack):
    """The transformer reuses an instrument's online row for a second (--feature_cache_seconds);
    the as_of and staleness checks still apply per request, against the row's own event time."""
    ch, name = stack["champion"], stack["info"].name
    url = f"{stack['transformer'].url}/v2/models/{name}/infer"
    newest = _latest_rows(ch, ["SPX500_USD"])["timestamp"].iloc[0]

    def ask(instrument, as_of=None):
        inputs = [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": [instrument]}]
        if as_of is not None:
            inputs.append({"name": "as_of", "datatype": "BYTES", "shape": [1], "data": [as_of.isoformat()]})
        return requests.post(url, json={"inputs": inputs}, timeout=10)

    answers = [
        ask("SPX500_USD", newest + pd.Timedelta(seconds=60)),  # reads Feast, caches the row
        ask("SPX500_USD", newest - pd.Timedelta(seconds=60)),  # before the row: 409
        ask("SPX500_USD", newest + pd.Timedelta(seconds=45)),
        ask("OLD_USD"),  # found (and cached), but older than the 3600 s limit: 422
        ask("OLD_USD"),  # again, from the cache: still 422
    ]
    assert [a.status_code for a in answers] == [200, 409, 200, 422, 422], [a.text for a in answers]
    ages = [
        {o["name"]: o["data"] for o in a.json()["outputs"]}["feature_age_seconds"] for a in (answers[0], answers[2])
    ]
    assert ages == [[60.0], [45.0]]
    assert "only holds the latest values" in answers[1].json()["error"]
    assert all("stale features for OLD_USD" in a.json()["error"] for a in answers[3:])


def test_no_access_log_line_per_request(stack):
    """uvicorn's access log follows SPX_TRACE_LOG_LEVEL (WARNING): no line per request in the logs."""
    url = f"{stack['transformer'].url}/v2/models/{stack['info'].name}/infer"
    body = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]}
    for _ in range(3):
        assert requests.post(url, json=body, timeout=10).status_code == 200
    for server in (stack["transformer"], stack["predictor"]):
        assert "POST /v2/models/" not in server.log_tail(200_000), server.name
