"""Lock-down, protocol conformance and malformed-input handling of the REAL predictor and transformer
processes on loopback (KServe model servers): the model repository extension is refused, wrong
methods get 405, versioned paths work for the served version, requested outputs are honoured,
no ``"parameters": null``, every malformed binary-tensor request is a 4xx JSON error, and the
header/body limits and timeouts hold (raw sockets)."""

from __future__ import annotations

import json
import socket
import struct
import time

import numpy as np
import psutil
import pytest
import requests

from spx.components.feature_store import store as F
from spx.components.selection import champion as champ
from spx.components.serving.local import start_predictor, start_transformer

SHORT = ["--header_timeout", "1", "--body_timeout", "1"]


@pytest.fixture(scope="module", params=["all", "none"])
def servers(request, serving_env, xgb_champion):
    """Both servers with every speed-up (the default) and with none (KServe's FastAPI route, uvicorn's writes,
    httpx, inplace_predict): the same behaviour either way."""
    F.materialize_logic(xgb_champion.gold_uri, xgb_champion.manifest_uri, xgb_champion.run_id)
    info = champ.resolve()
    model_dir = champ.download(info, serving_env / "models" / "protocol")
    args = [*SHORT, "--speedups", "infer,client,booster" if request.param == "all" else "none"]
    predictor = start_predictor(model_dir, info.name, log_dir=serving_env, extra_args=args)
    transformer = None
    try:
        transformer = start_transformer(
            predictor.port, info.name, log_dir=serving_env, max_feature_age_seconds=3600, extra_args=args
        )
        yield {"predictor": predictor, "transformer": transformer, "info": info, "champion": xgb_champion}
    finally:
        if transformer is not None:
            transformer.stop()
        predictor.stop()


def _row_body(ch, n=1):
    rows = ch.frame[ch.features].to_numpy()[:n]
    return {
        "inputs": [{"name": "features", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}]
    }, rows


def _inst_body(*instruments):
    return {
        "inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [len(instruments)], "data": list(instruments)}]
    }


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_model_repository_extension_and_other_control_paths_are_refused(servers, which):
    server, name, ch = servers[which], servers["info"].name, servers["champion"]
    for action in ("unload", "load"):
        resp = requests.post(f"{server.url}/v2/repository/models/{name}/{action}", timeout=10)
        assert resp.status_code == 403, resp.text
        assert "repository extension" in resp.json()["error"]
    assert requests.post(f"{server.url}/v2/repository/index", timeout=10).status_code == 403
    for path in ("/docs", "/openapi.json", f"/v1/models/{name}", f"/v1/models/{name}:predict", "/v2/nothing"):
        resp = requests.get(server.url + path, timeout=10)
        assert resp.status_code == 404 and "error" in resp.json(), (path, resp.text)
    # the model still serves and is ready
    body = _row_body(ch)[0] if which == "predictor" else _inst_body("SPX500_USD")
    assert requests.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=10).status_code == 200
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).json() == {"ready": True}
    meta = requests.get(f"{server.url}/v2", timeout=10).json()
    assert "model_repository_extension" not in meta["extensions"] and meta["name"] and meta["version"]


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_wrong_methods_are_405_json(servers, which):
    server, name = servers[which], servers["info"].name
    for method, path in (
        ("PUT", f"/v2/models/{name}/infer"),
        ("GET", f"/v2/models/{name}/infer"),
        ("DELETE", f"/v2/models/{name}"),
        ("POST", "/v2/health/ready"),
    ):
        resp = requests.request(method, server.url + path, timeout=10)
        assert resp.status_code == 405, (method, path, resp.status_code, resp.text)
        assert "error" in resp.json() and resp.headers["allow"]


def test_versioned_paths_serve_the_advertised_version(servers):
    name, version = servers["info"].name, servers["champion"].version
    for which in ("predictor", "transformer"):
        base = f"{servers[which].url}/v2/models/{name}"
        meta = requests.get(base, timeout=10).json()
        assert meta["versions"] == [version]
        assert requests.get(f"{base}/versions/{version}", timeout=10).json()["name"] == name
        assert requests.get(f"{base}/versions/{version}/ready", timeout=10).json()["ready"] is True
        body = _row_body(servers["champion"])[0] if which == "predictor" else _inst_body("SPX500_USD")
        resp = requests.post(f"{base}/versions/{version}/infer", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_version"] == version
        other = requests.post(f"{base}/versions/999/infer", json=body, timeout=10)
        assert other.status_code == 404 and "version" in other.json()["error"]
        assert requests.get(f"{base}/versions/999", timeout=10).status_code == 404


def test_response_parameters_are_objects_and_requested_outputs_are_honoured(servers):
    name, ch = servers["info"].name, servers["champion"]
    body, rows = _row_body(ch, 3)
    doc = requests.post(f"{servers['predictor'].url}/v2/models/{name}/infer", json=body, timeout=10).json()
    assert "parameters" not in doc or isinstance(doc["parameters"], dict)
    for out in doc["outputs"]:
        assert "parameters" not in out or isinstance(out["parameters"], dict)
    np.testing.assert_allclose(doc["outputs"][0]["data"], ch.predict_proba(rows), atol=1e-6)

    t_url = f"{servers['transformer'].url}/v2/models/{name}/infer"
    body = dict(_inst_body("SPX500_USD", "NAS100_USD"), outputs=[{"name": "probability"}, {"name": "prediction"}])
    doc = requests.post(t_url, json=body, timeout=10).json()
    assert [o["name"] for o in doc["outputs"]] == ["probability", "prediction"]
    assert isinstance(doc["parameters"], dict) and doc["parameters"]["as_of"]
    body["outputs"] = [{"name": "no_such_output"}]
    resp = requests.post(t_url, json=body, timeout=10)
    assert resp.status_code == 400 and "no_such_output" in resp.json()["error"]
    # tritonclient asking for one output (binary) gets just that one
    import tritonclient.http as http

    client = http.InferenceServerClient(servers["transformer"].url.split("//", 1)[1])
    x = http.InferInput("instrument", [1], "BYTES")
    x.set_data_from_numpy(np.array([b"US30_USD"], dtype=object))
    result = client.infer(name, [x], outputs=[http.InferRequestedOutput("confidence", binary_data=False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["confidence"]
    assert 0.5 <= float(result.as_numpy("confidence")[0]) <= 1.0


def _binary(header: dict | bytes, tail: bytes = b"", length: str | None = None) -> tuple[bytes, dict]:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return head + tail, {
        "Inference-Header-Content-Length": length if length is not None else str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def _bytes_tensor(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def _fp32(n: int) -> bytes:
    return np.zeros(n, dtype=np.float32).tobytes()


def _malformed_binary(n_features: int) -> list[tuple[str, str, bytes, dict]]:
    """(description, server, body, headers) — each one answered 500 before."""
    f = n_features
    feat = {"name": "features", "datatype": "FP32", "shape": [1, f], "parameters": {"binary_data_size": 4 * f}}
    inst = lambda size: {
        "inputs": [
            {
                "name": "instrument",
                "datatype": "BYTES",
                "shape": [1],  # noqa: E731
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    bad_utf8 = _bytes_tensor(b"\xff\xfe\xfd")
    short_prefix = struct.pack("<I", 50) + b"SPX"
    return [
        ("non-numeric header length", "predictor", *_binary({"inputs": [feat]}, _fp32(f), length="abc")),
        ("negative header length", "predictor", *_binary({"inputs": [feat]}, _fp32(f), length="-4")),
        ("header length beyond the body", "predictor", *_binary({"inputs": [feat]}, _fp32(f), length="99999")),
        ("zero header length", "predictor", *_binary({"inputs": [feat]}, _fp32(f), length="0")),
        ("header not JSON", "predictor", *_binary(b"{not json", _fp32(f))),
        ("header without inputs", "predictor", *_binary({"id": "x"}, _fp32(f))),
        (
            "shape larger than the data",
            "predictor",
            *_binary({"inputs": [dict(feat, shape=[4, f], parameters={"binary_data_size": 4 * f})]}, _fp32(f)),
        ),
        (
            "binary size larger than the data",
            "predictor",
            *_binary({"inputs": [dict(feat, parameters={"binary_data_size": 8 * f})]}, _fp32(f)),
        ),
        (
            "binary size not an integer",
            "predictor",
            *_binary({"inputs": [dict(feat, parameters={"binary_data_size": "48"})]}, _fp32(f)),
        ),
        ("unknown datatype", "predictor", *_binary({"inputs": [dict(feat, datatype="FLOAT")]}, _fp32(f))),
        (
            "input without name",
            "predictor",
            *_binary({"inputs": [{k: v for k, v in feat.items() if k != "name"}]}, _fp32(f)),
        ),
        ("trailing bytes after the tensors", "predictor", *_binary({"inputs": [feat]}, _fp32(f) + b"xx")),
        ("BYTES with invalid UTF-8", "transformer", *_binary(inst(len(bad_utf8)), bad_utf8)),
        ("BYTES element longer than the data", "transformer", *_binary(inst(len(short_prefix)), short_prefix)),
        ("parameters not an object", "transformer", *_binary(dict(inst(len(bad_utf8)), parameters=[1, 2]), bad_utf8)),
    ]


def test_malformed_binary_tensor_requests_are_400_json(servers):
    name, ch = servers["info"].name, servers["champion"]
    for description, which, body, headers in _malformed_binary(len(ch.features)):
        resp = requests.post(f"{servers[which].url}/v2/models/{name}/infer", data=body, headers=headers, timeout=10)
        assert resp.status_code == 400, (description, resp.status_code, resp.text)
        assert resp.json()["error"], description
    # a well-formed binary request still works on both
    good, headers = _binary(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, len(ch.features)],
                    "parameters": {"binary_data_size": 4 * len(ch.features)},
                }
            ]
        },
        _fp32(len(ch.features)),
    )
    resp = requests.post(f"{servers['predictor'].url}/v2/models/{name}/infer", data=good, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    data = _bytes_tensor(b"SPX500_USD")
    good, headers = _binary(
        {
            "inputs": [
                {"name": "instrument", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(data)}}
            ]
        },
        data,
    )
    resp = requests.post(f"{servers['transformer'].url}/v2/models/{name}/infer", data=good, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("as_of", [1e20, -1e20, "99999999999999999999", 1e300])
def test_numeric_as_of_out_of_range_is_400(servers, as_of):
    url = f"{servers['transformer'].url}/v2/models/{servers['info'].name}/infer"
    body = dict(_inst_body("SPX500_USD"), parameters={"as_of": as_of})
    resp = requests.post(url, json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    assert "as_of" in resp.json()["error"]


def _raw(port: int, data: bytes, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; (everything received, whether the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return got, False
            if not chunk:
                return got, True
            got += chunk
        return got, False


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_header_limit_and_timeouts(servers, which):
    server, name = servers[which], servers["info"].name
    # a 256 KiB header block: 431 and the connection closed (before: accepted whole)
    big = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 * 1024) + b"\r\n\r\n"
    got, closed = _raw(server.port, big)
    assert got.startswith(b"HTTP/1.1 431") and closed, got[:200]
    # headers that never finish: closed after --header_timeout (1 s)
    t0 = time.monotonic()
    got, closed = _raw(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", wait=8)
    assert closed and got == b"" and time.monotonic() - t0 < 6
    # a body that never finishes: 408 with Connection: close after --body_timeout (1 s)
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n\r\n"
    ).encode()
    got, closed = _raw(server.port, head + b'{"inputs":', wait=8)
    assert got.startswith(b"HTTP/1.1 408") and b"connection: close" in got.lower() and closed, got[:300]
    # an oversized declared body: 413 at once, Connection: close, and the connection does not hang
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
    ).encode()
    got, closed = _raw(server.port, head + b"[" * 1000, wait=8)
    assert got.startswith(b"HTTP/1.1 413") and b"connection: close" in got.lower() and closed, got[:300]
    assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_local_servers_listen_on_loopback_only(servers, which):
    server = servers[which]
    listening = [
        c.laddr for c in psutil.Process(server.proc.pid).connections(kind="inet") if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


def test_transformer_readiness_follows_the_predictor(serving_env, servers):
    info = servers["info"]
    model_dir = serving_env / "models" / "protocol"
    predictor = start_predictor(model_dir, info.name, log_dir=serving_env)
    transformer = start_transformer(predictor.port, info.name, log_dir=serving_env, max_feature_age_seconds=3600)
    try:
        base = transformer.url
        assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        predictor.proc.kill()
        predictor.proc.wait(timeout=10)
        ready = requests.get(f"{base}/v2/health/ready", timeout=10)
        assert ready.status_code == 503 and "error" in ready.json()
        assert requests.get(f"{base}/v2/models/{info.name}/ready", timeout=10).status_code == 503
        assert requests.get(f"{base}/v2/health/live", timeout=10).status_code == 200  # alive, not ready
        resp = requests.post(f"{base}/v2/models/{info.name}/infer", json=_inst_body("SPX500_USD"), timeout=10)
        assert resp.status_code == 503 and resp.json()["error"]
        predictor.start()  # same port
        assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        resp = requests.post(f"{base}/v2/models/{info.name}/infer", json=_inst_body("SPX500_USD"), timeout=10)
        assert resp.status_code == 200, resp.text
    finally:
        transformer.stop()
        predictor.stop()


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_responses_go_out_whole_head_and_100_continue_included(servers, which):
    """The status line and headers are held back until the body (one write per response): a HEAD
    answer (no body) still goes out, ``100 Continue`` is not held, keep-alive requests all answer."""
    server, name = servers[which], servers["info"].name
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:  # recv raises if nothing comes
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        got = sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 ") and got.endswith(b"\r\n\r\n"), got
    body = json.dumps(_row_body(servers["champion"])[0] if which == "predictor" else _inst_body("SPX500_USD")).encode()
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100"), "100 Continue must not wait for the body"
        sock.sendall(body)
        got = b""
        while b'"outputs"' not in got or not got.endswith(b"}"):
            got += sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        for _ in range(3):  # the same connection keeps answering
            sock.sendall(head.replace(b"Expect: 100-continue\r\n", b"") + body)
            got = b""
            while not got.endswith(b"}"):
                got += sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200") and got.count(b"HTTP/1.1") == 1, got[:200]
