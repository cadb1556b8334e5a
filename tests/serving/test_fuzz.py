"""Property-based fuzz tier: requests generated from the upstream Open Inference Protocol REST spec
(``../shared/specs/open-inference-protocol/open_inference_rest.yaml``) with hypothesis, sent to the
REAL predictor and transformer processes on loopback (plain HTTP and tritonclient's binary tensor
path). Properties: never a 5xx; a 200 body validates against the spec's ``inference_response``
schema (``parameters`` an object when present); every refusal is a 4xx whose body validates against
``inference_error_response``; the servers stay live."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spx.components.feature_store import store as F
from spx.components.selection import champion as champ
from spx.components.serving.local import REPO_ROOT, start_predictor, start_transformer

SPEC = REPO_ROOT.parent / "shared" / "specs" / "open-inference-protocol" / "open_inference_rest.yaml"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _spec() -> dict:
    import yaml

    if not SPEC.is_file():
        pytest.skip(f"the Open Inference Protocol spec is not at {SPEC} (../shared/ is provided beside the project)")
    return yaml.safe_load(SPEC.read_text())


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    return schema


def from_schema(schema: dict, spec: dict, depth: int = 0) -> st.SearchStrategy:
    """A hypothesis strategy for the OpenAPI 3.0 subset the spec uses (object, array, string, number,
    integer, boolean, anyOf, $ref); recursion is cut at a small depth."""
    schema = _resolve(schema, spec)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if not ("$ref" in o and depth >= 2)]
        return st.one_of(*[from_schema(o, spec, depth + 1) for o in options])
    kind = schema.get("type")
    if kind == "string":
        return st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                [
                    "FP32",
                    "FP64",
                    "BYTES",
                    "INT64",
                    "BOOL",
                    "features",
                    "instrument",
                    "as_of",
                    "probability",
                    "2026-01-05T15:30:00Z",
                    "SPX500_USD",
                ]
            ),
        )
    if kind == "number":
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-(10**6), 10**6))
    if kind == "integer":
        return st.integers(-3, 40)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), spec, depth + 1), max_size=14)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not props:  # "parameters": any object
            return st.dictionaries(
                st.sampled_from(["as_of", "binary_data", "x", "content_type"]),
                st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                max_size=3,
            )
        req = {k: from_schema(v, spec, depth + 1) for k, v in props.items() if k in required}
        opt = {k: from_schema(v, spec, depth + 1) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(req, optional=opt)
    return st.one_of(st.none(), st.integers(), st.text(max_size=5))


@pytest.fixture(scope="module")
def spec():
    return _spec()


@pytest.fixture(scope="module")
def servers(serving_env, xgb_champion):
    F.materialize_logic(xgb_champion.gold_uri, xgb_champion.manifest_uri, xgb_champion.run_id)
    info = champ.resolve()
    model_dir = champ.download(info, serving_env / "models" / "fuzz")
    predictor = start_predictor(model_dir, info.name, log_dir=serving_env)
    transformer = None
    try:
        transformer = start_transformer(predictor.port, info.name, log_dir=serving_env, max_feature_age_seconds=3600)
        yield {
            "predictor": predictor,
            "transformer": transformer,
            "info": info,
            "champion": xgb_champion,
            "session": requests.Session(),
        }
    finally:
        if transformer is not None:
            transformer.stop()
        predictor.stop()


def _check(resp: requests.Response, spec: dict, what) -> None:
    import jsonschema

    assert resp.status_code < 500, (what, resp.status_code, resp.text[:500])
    doc = resp.json()
    if resp.status_code == 200:
        schema = dict(
            _resolve({"$ref": "#/components/schemas/inference_response"}, spec), components=spec["components"]
        )
        jsonschema.validate(doc, _inline(schema, spec))
        assert doc.get("parameters", {}) is not None and isinstance(doc.get("parameters", {}), dict)
    else:
        assert 400 <= resp.status_code < 500
        jsonschema.validate(
            doc, _inline(_resolve({"$ref": "#/components/schemas/inference_error_response"}, spec), spec)
        )
        assert isinstance(doc["error"], str) and doc["error"], (what, doc)


def _inline(schema: dict, spec: dict) -> dict:
    """The schema with ``#/components/...`` references resolvable by jsonschema."""
    out = {k: v for k, v in schema.items() if k != "components"}
    out["components"] = spec["components"]
    return out


@pytest.mark.parametrize("which", ["predictor", "transformer"])
def test_spec_generated_inference_requests(servers, spec, which):
    server, name, session = servers[which], servers["info"].name, servers["session"]
    request_schema = {"$ref": "#/components/schemas/inference_request"}

    @FUZZ
    @given(body=from_schema(request_schema, spec), versioned=st.booleans())
    def run(body, versioned):
        path = (
            f"/v2/models/{name}/infer"
            if not versioned
            else f"/v2/models/{name}/versions/{servers['champion'].version}/infer"
        )
        resp = session.post(
            server.url + path, data=json.dumps(body), headers={"content-type": "application/json"}, timeout=10
        )
        _check(resp, spec, body)

    run()
    assert session.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200


def test_well_typed_fuzzed_values(servers, spec):
    """Requests of the right structure with hostile values (NaN/inf/huge floats, odd strings, as_of)."""
    name, session, n = servers["info"].name, servers["session"], len(servers["champion"].features)

    @FUZZ
    @given(
        rows=st.integers(0, 4),
        dtype=st.sampled_from(["FP32", "FP64"]),
        values=st.lists(
            st.one_of(st.floats(width=32), st.integers(-(2**40), 2**40), st.text(max_size=3)),
            min_size=0,
            max_size=5 * n,
        ),
    )
    def predictor(rows, dtype, values):
        data = (values * (rows * n // max(len(values), 1) + 1))[: rows * n] if values else []
        body = {"inputs": [{"name": "features", "datatype": dtype, "shape": [rows, n], "data": data}]}
        resp = session.post(
            f"{servers['predictor'].url}/v2/models/{name}/infer",
            data=json.dumps(body, allow_nan=True),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        if resp.status_code == 200:
            probs = resp.json()["outputs"][0]["data"]
            assert len(probs) == rows and all(0.0 <= p <= 1.0 for p in probs)
        else:
            assert 400 <= resp.status_code < 500 and resp.json()["error"], (body, resp.text)

    @FUZZ
    @given(
        instruments=st.lists(
            st.one_of(st.sampled_from(["SPX500_USD", "NAS100_USD", "OLD_USD"]), st.text(max_size=10)),
            min_size=1,
            max_size=4,
        ),
        as_of=st.one_of(
            st.none(),
            st.text(max_size=25),
            st.floats(),
            st.integers(-(2**70), 2**70),
            st.datetimes().map(lambda d: d.isoformat()),
        ),
        where=st.sampled_from(["input", "parameter"]),
    )
    def transformer(instruments, as_of, where):
        body = {
            "inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [len(instruments)], "data": instruments}]
        }
        if as_of is not None and where == "parameter":
            body["parameters"] = {"as_of": as_of}
        elif as_of is not None:
            body["inputs"].append({"name": "as_of", "datatype": "BYTES", "shape": [1], "data": [str(as_of)]})
        resp = session.post(
            f"{servers['transformer'].url}/v2/models/{name}/infer",
            data=json.dumps(body, allow_nan=True),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        _check(resp, spec, body)

    predictor()
    transformer()


def test_metadata_and_health_paths_from_the_spec(servers, spec):
    """Every GET path of the spec, with generated model names and versions: 200 or a 4xx JSON error."""
    name, version, session = servers["info"].name, servers["champion"].version, servers["session"]
    paths = [p for p, item in spec["paths"].items() if "get" in item]

    @FUZZ
    @given(
        path=st.sampled_from(paths),
        which=st.sampled_from(["predictor", "transformer"]),
        model=st.one_of(
            st.just(name), st.text(st.characters(blacklist_characters="/?#%", codec="ascii"), min_size=1, max_size=10)
        ),
        ver=st.one_of(st.just(version), st.text("0123456789abc", min_size=1, max_size=4)),
    )
    def run(path, which, model, ver):
        url = servers[which].url + path.replace("${MODEL_NAME}", model).replace("${MODEL_VERSION}", ver)
        resp = session.get(url, timeout=10)
        assert resp.status_code < 500, (url, resp.status_code, resp.text[:300])
        if resp.status_code != 200:
            assert resp.json()["error"], (url, resp.text)
        elif "/models/" in path and not path.endswith("/ready"):
            meta = resp.json()
            assert meta["name"] == model and meta["platform"] and isinstance(meta.get("parameters", {}), dict)
        elif path == "/v2/":
            assert {"name", "version", "extensions"} <= set(resp.json())

    run()


def test_tritonclient_binary_tensors(servers):
    """tritonclient's binary tensor path with generated shapes, datatypes and values."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    name, n = servers["info"].name, len(servers["champion"].features)
    client = http.InferenceServerClient(servers["predictor"].url.split("//", 1)[1])
    tclient = http.InferenceServerClient(servers["transformer"].url.split("//", 1)[1])
    dtypes = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "UINT8": np.uint8}

    @FUZZ
    @given(
        rows=st.integers(1, 5),
        cols=st.sampled_from([n, n - 1, n + 1, 1]),
        dtype=st.sampled_from(sorted(dtypes)),
        fill=st.one_of(st.floats(width=32), st.integers(0, 100)),
        binary=st.booleans(),
    )
    def predictor(rows, cols, dtype, fill, binary):
        arr = np.full(
            (rows, cols),
            fill if dtype.startswith("FP") else int(abs(fill) if np.isfinite(fill) else 0) % 100,
            dtype=dtypes[dtype],
        )
        x = http.InferInput("features", list(arr.shape), dtype)
        x.set_data_from_numpy(arr, binary_data=binary)
        try:
            result = client.infer(name, [x], outputs=[http.InferRequestedOutput("probability", binary_data=binary)])
        except InferenceServerException as exc:
            assert exc.status() and 400 <= int(exc.status()) < 500, (exc.status(), exc.message())
            return
        probs = result.as_numpy("probability")
        assert dtype in ("FP32", "FP64") and cols == n and probs.shape == (rows,)

    @FUZZ
    @given(instruments=st.lists(st.binary(max_size=12), min_size=1, max_size=3))
    def transformer(instruments):
        x = http.InferInput("instrument", [len(instruments)], "BYTES")
        x.set_data_from_numpy(np.array(instruments, dtype=object), binary_data=True)
        try:
            result = tclient.infer(name, [x])
        except InferenceServerException as exc:
            assert exc.status() and 400 <= int(exc.status()) < 500, (instruments, exc.status(), exc.message())
            return
        assert len(result.as_numpy("probability")) == len(instruments)

    predictor()
    transformer()
    assert client.is_server_live() and tclient.is_server_live()
