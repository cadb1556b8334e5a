"""The predictor on loopback: V2 endpoints, metadata, probabilities equal the model's own
predict_proba (tritonclient and plain HTTP), and a corpus of bad requests answered with 4xx."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as http

from spx.components.selection import champion as champ
from spx.components.serving.local import start_predictor
from spx.components.serving.predictor import find_model_file


@pytest.fixture(scope="module")
def predictors(serving_env, xgb_champion, lgb_champion):
    servers = {}
    try:
        for ch in (xgb_champion, lgb_champion):
            info = champ.resolve(version=ch.version)
            model_dir = champ.download(info, serving_env / "models" / ch.model_format)
            servers[ch.model_format] = (start_predictor(model_dir, info.name, log_dir=serving_env), ch, info)
        yield servers
    finally:
        for server, _, _ in servers.values():
            server.stop()


def test_champion_resolves_alias_and_version(serving_env, xgb_champion, lgb_champion):
    info = champ.resolve()
    assert info.version == xgb_champion.version and info.model_format == "xgboost"
    assert info.feature_columns == xgb_champion.features
    other = champ.resolve(version=lgb_champion.version)
    assert other.model_format == "lightgbm" and other.native_uri.endswith("lightgbm_test")


@pytest.mark.parametrize("fmt", ["xgboost", "lightgbm"])
def test_health_and_metadata(predictors, fmt):
    server, ch, info = predictors[fmt]
    base = server.url
    assert requests.get(f"{base}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{base}/v2/health/ready").json() == {"ready": True}
    assert requests.get(f"{base}/v2/models/{info.name}/ready").json()["ready"] is True
    client = http.InferenceServerClient(base.split("//")[1])
    assert client.is_server_live() and client.is_model_ready(info.name)
    meta = client.get_model_metadata(info.name)
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, len(ch.features)]}]
    assert meta["parameters"]["feature_names"] == ch.features
    assert meta["parameters"]["feature_count"] == len(ch.features)
    assert meta["versions"] == [ch.version]
    assert meta["outputs"][0]["name"] == "probability"


@pytest.mark.parametrize("fmt", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("binary", [True, False])
def test_probabilities_equal_predict_proba(predictors, fmt, binary):
    server, ch, info = predictors[fmt]
    rows = ch.frame[ch.features].to_numpy()[::37][:25]
    expected = ch.predict_proba(rows)
    client = http.InferenceServerClient(server.url.split("//")[1])
    tensor = http.InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows.astype(np.float64), binary_data=binary)
    out = http.InferRequestedOutput("probability", binary_data=binary)
    result = client.infer(info.name, [tensor], outputs=[out])
    got = result.as_numpy("probability")
    assert got.shape == (len(rows),)
    # same booster, same rows: identical up to float32 rounding (XGBoost predicts in float32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert result.get_response()["model_version"] == ch.version


def test_plain_http_batch_of_1000(predictors):
    server, ch, info = predictors["xgboost"]
    rows = ch.frame[ch.features].to_numpy()[:1000]
    body = {
        "id": "batch-1",
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.astype(np.float32).ravel().tolist(),
            }
        ],
    }
    resp = requests.post(f"{server.url}/v2/models/{info.name}/infer", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["id"] == "batch-1"
    got = np.asarray(doc["outputs"][0]["data"])
    np.testing.assert_allclose(got, ch.predict_proba(rows.astype(np.float32)), atol=1e-6)


BAD = [
    # (description, body bytes or json, headers, expected status, fragment of the message)
    ("non-JSON body", b"this is not json", {"content-type": "application/json"}, 400, "not valid JSON"),
    ("empty body", b"", {}, 400, "empty request body"),
    ("JSON array", b"[1, 2]", {}, 400, "JSON object"),
    ("missing inputs", {"id": "x"}, None, 400, 'missing "inputs"'),
    ("empty inputs", {"inputs": []}, None, 400, "non-empty list"),
    (
        "input lacks data",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 12]}]},
        None,
        400,
        "lacks ['data']",
    ),
    (
        "wrong datatype",
        {"inputs": [{"name": "features", "datatype": "BYTES", "shape": [1, 12], "data": ["a"] * 12}]},
        None,
        400,
        "datatype BYTES",
    ),
    (
        "integer datatype",
        {"inputs": [{"name": "features", "datatype": "INT64", "shape": [1, 12], "data": [1] * 12}]},
        None,
        400,
        "expected FP32 or FP64",
    ),
    (
        "too few features",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 11], "data": [0.1] * 11}]},
        None,
        400,
        "expected [n, 12]",
    ),
    (
        "1-D shape",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [12], "data": [0.1] * 12}]},
        None,
        400,
        "expected [n, 12]",
    ),
    (
        "shape/data mismatch",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 12], "data": [0.1] * 12}]},
        None,
        400,
        "needs 24",
    ),
    (
        "NaN as string",
        {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 12], "data": [0.1] * 11 + ["NaN"]}]},
        None,
        400,
        "NaN or infinite",
    ),
    (
        "inf as string",
        {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 12], "data": ["inf"] + [0.1] * 11}]},
        None,
        400,
        "NaN or infinite",
    ),
    (
        "NaN literal",
        b'{"inputs":[{"name":"f","datatype":"FP64","shape":[1,12],"data":[NaN,0,0,0,0,0,0,0,0,0,0,0]}]}',
        {},
        400,
        "NaN",  # KServe's parser (pydantic) reads the literal; the model refuses the value
    ),
    (
        "non-numeric data",
        {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 12], "data": ["abc"] * 12}]},
        None,
        400,
        "not numeric",
    ),
    (
        "two inputs",
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12},
                {"name": "b", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12},
            ]
        },
        None,
        400,
        "exactly 1 input",
    ),
    (
        "negative shape",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 12], "data": [0.0] * 12}]},
        None,
        400,
        "non-negative",
    ),
    ("oversized payload", b"[" + b"0.0," * 1_200_000 + b"0.0]", {}, 413, "exceeds the limit"),
]


def _post(url, body, headers):
    if isinstance(body, (dict, list)):
        return requests.post(url, json=body, timeout=30)
    return requests.post(url, data=body, headers=headers or {}, timeout=30)


@pytest.mark.parametrize("fmt", ["xgboost", "lightgbm"])
def test_bad_requests_get_4xx_and_server_keeps_serving(predictors, fmt):
    server, ch, info = predictors[fmt]
    url = f"{server.url}/v2/models/{info.name}/infer"
    for description, body, headers, status, fragment in BAD:
        resp = _post(url, body, headers)
        assert resp.status_code == status, (description, resp.status_code, resp.text)
        assert fragment in resp.json()["error"], (description, resp.text)
    # unknown model name: on infer, metadata and ready
    resp = requests.post(
        f"{server.url}/v2/models/no-such-model/infer",
        json={"inputs": [{"name": "f", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12}]},
    )
    assert resp.status_code == 404 and "does not exist" in resp.json()["error"]
    assert requests.get(f"{server.url}/v2/models/no-such-model").status_code == 404
    assert requests.get(f"{server.url}/v2/models/no-such-model/ready").status_code == 404
    # and a good request still works
    row = ch.frame[ch.features].to_numpy()[:1]
    good = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 12], "data": row.ravel().tolist()}]}
    resp = requests.post(url, json=good, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"][0] == pytest.approx(float(ch.predict_proba(row)[0]), abs=1e-6)
    assert requests.get(f"{server.url}/v2/health/ready").status_code == 200


def test_model_dir_discovery(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.bst").write_text("tree\nversion=v4\n")
    assert find_model_file(tmp_path / "a") == (tmp_path / "a" / "model.bst", "lightgbm")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.json").write_text(json.dumps({}))
    (tmp_path / "b" / "model.ubj").write_bytes(b"{")
    with pytest.raises(RuntimeError, match="more than one model file"):
        find_model_file(tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        find_model_file(tmp_path)
