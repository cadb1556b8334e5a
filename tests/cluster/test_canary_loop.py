"""The canary promotion loop (components/deploy/health.py, evaluate_canary_op, the spx-monitoring pipeline).

The InferenceService lives in the loopback Kubernetes API peer (tests/cluster/conftest.py) and is created and
canaried by the real ``deploy``; the prediction log is written into the real loopback S3 server by the real
writer (``PredictionLog``, the rows a server writes per answer), then read back by the loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from spx.components.deploy.canary import (
    ANN_CANARY,
    ANN_PHASE,
    ANN_PREVIOUS,
    ANN_STABLE,
    HealthThresholds,
    ModelRef,
    RolloutError,
    ServingConfig,
    deploy,
)
from spx.components.deploy.health import canary_revision, evaluate_canary, health_from_prediction_log
from tests.support import ROOT

NS, NAME = "spx", "spx-direction"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
V1 = ModelRef("s3://spx/models/run-1/xgb_base/", "xgboost", "1", "xgb_base")
V2 = ModelRef("s3://spx/models/run-2/lgbm_news/", "lightgbm", "2", "lgbm_news")
V3 = ModelRef("s3://spx/models/run-3/xgb_news/", "xgboost", "3", "xgb_news")
TH = HealthThresholds(max_error_rate=0.05, max_p95_latency_ms=250.0, min_requests=100)
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
IMAGE = "registry.example.com/spx/spx-component:9.9.9"


def cfg(mode: str = "serverless") -> ServingConfig:
    return ServingConfig(
        namespace=NS,
        name=NAME,
        mode=mode,
        transformer_image="registry.local/spx-serving:0.1.0",
        transformer_env_configmap="spx-kfp-env",
    )


def stored(kube_api) -> dict:
    return kube_api.objects[(NS, NAME)]


def canary_in_progress(custom_api, mode: str = "serverless") -> None:
    """V1 serving at 100%, V2 canaried at 10% — through the real deploy step."""
    deploy(custom_api, V1, cfg(mode), backoff_seconds=0)
    deploy(custom_api, V2, cfg(mode), backoff_seconds=0)
    obj = custom_api.get_namespaced_custom_object("serving.kserve.io", "v1beta1", NS, "inferenceservices", NAME)
    assert json.loads(obj["metadata"]["annotations"][ANN_CANARY])["model_version"] == "2"


# -------------------------------------------------------------------------------- the prediction log


def served(
    version: str,
    n: int,
    *,
    latency_ms: float = 20.0,
    errors: int = 0,
    start: datetime | None = None,
    isvc: str = NAME,
    tag: str = "",
) -> list[dict]:
    """``n`` inferences served by the model with ``version``; the first ``errors`` answered with an error."""
    start = start or NOW - timedelta(minutes=50)
    out = []
    for i in range(n):
        out.append(
            {
                "rid": f"{isvc}-{tag or version}-{start:%H%M}-{i:05d}",
                "version": version,
                "t": start + timedelta(seconds=10 * i),
                "latency_ms": latency_ms + (i % 5),
                "error": i < errors,
                "isvc": isvc,
            }
        )
    return out


def write_log(store, tmp_path, traffic: list[dict]) -> None:
    """The rows of ``traffic`` through the real prediction-log writer into the bucket (an error row as a logger
    that marks failed answers would write it: status "error")."""
    from spx.components.prediction_log import PredictionLog, encode_rows

    log = PredictionLog(tmp_path / f"log-{time.monotonic_ns()}", store_factory=lambda: store).open(background=False)
    for row in traffic:
        log.write(
            encode_rows(
                request_id=row["rid"],
                arrived=row["t"].timestamp(),
                model_name=NAME,
                model_version=row["version"],
                inference_service=row["isvc"],
                namespace=NS,
                inputs=[{"instrument": "SPX500_USD"}],
                outputs=[{"probability": 0.56}],
                probabilities=[0.56],
                predictions=[1.0],
                latency_ms=row["latency_ms"],
                status="error" if row["error"] else "ok",
            )
        )
    log.close()
    assert [k for k in store.list("predictions/") if k.endswith(".parquet")]


def run_loop(custom_api, store, mode="serverless", **kw):
    return evaluate_canary(
        custom_api,
        cfg(mode),
        kw.pop("thresholds", TH),
        window_minutes=60,
        store=store,
        now=NOW,
        backoff_seconds=0,
        **kw,
    )


# -------------------------------------------------------------------------------- exact patch bodies


def promote_body(rv: str, mode: str) -> dict:
    annotations = {
        ANN_STABLE: V2.to_annotation(),
        ANN_CANARY: None,
        ANN_PREVIOUS: V1.to_annotation(),
        ANN_PHASE: "stable",
    }
    if mode == "serverless":
        spec = {"predictor": {"canaryTrafficPercent": None}}
    else:
        spec = {"predictor": predictor_literal(V2), "canary": None}
    return {"metadata": {"annotations": annotations, "resourceVersion": rv}, "spec": spec}


def rollback_body(rv: str, mode: str) -> dict:
    annotations = {ANN_CANARY: None, ANN_PREVIOUS: V2.to_annotation(), ANN_PHASE: "rolled-back"}
    if mode == "serverless":
        spec = {"predictor": {**predictor_literal(V1), "canaryTrafficPercent": 0}}
    else:
        spec = {"canary": None}
    return {"metadata": {"annotations": annotations, "resourceVersion": rv}, "spec": spec}


def predictor_literal(model: ModelRef) -> dict:
    """The predictor the rollout writes for ``model`` (V2 protocol, S3 account; logger on the transformer)."""
    return {
        "serviceAccountName": "spx-kfp-kserve-s3",
        "minReplicas": 1,
        "maxReplicas": 2,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "model": {
            "modelFormat": {"name": model.model_format},
            "protocolVersion": "v2",
            "storageUri": model.native_uri,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
    }


def patches(kube_api) -> list:
    return [c for c in kube_api.calls if c.method == "PATCH"]


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_healthy_canary_traffic_is_promoted_with_the_exact_patch(kube_api, custom_api, store, tmp_path, mode):
    canary_in_progress(custom_api, mode)
    write_log(store, tmp_path, served("2", 120, latency_ms=30.0, errors=2) + served("1", 250, latency_ms=25.0))
    rv = stored(kube_api)["metadata"]["resourceVersion"]
    n_patches = len(patches(kube_api))

    result = run_loop(custom_api, store, mode)

    assert result.decision == "promote" and result.target == V2 and result.canary == V2 and result.stable == V1
    m = result.measurement
    assert m.source == "prediction-log"
    assert (m.health.requests, m.health.errors) == (120, 2)
    assert m.health.p95_latency_ms == pytest.approx(34.0)  # latencies 30..34 ms, nearest-rank p95
    (patch,) = patches(kube_api)[n_patches:]
    assert patch.path == f"{PATH}/{NAME}" and patch.content_type == "application/merge-patch+json"
    assert patch.query == {"fieldValidation": ["Strict"]}
    assert patch.body == promote_body(rv, mode)
    assert result.body == patch.body
    obj = stored(kube_api)
    assert json.loads(obj["metadata"]["annotations"][ANN_STABLE]) == json.loads(V2.to_annotation())
    assert ANN_CANARY not in obj["metadata"]["annotations"]
    # the next turn finds no canary and sends nothing
    again = run_loop(custom_api, store, mode)
    assert again.decision == "no-canary" and len(patches(kube_api)) == n_patches + 1


@pytest.mark.parametrize("mode", ["serverless", "raw"])
@pytest.mark.parametrize("kind, why", [("errors", "error rate"), ("slow", "p95 latency")])
def test_unhealthy_canary_traffic_is_rolled_back_to_the_stable_model(
    kube_api, custom_api, store, tmp_path, mode, kind, why
):
    canary_in_progress(custom_api, mode)
    canary = served("2", 150, errors=30) if kind == "errors" else served("2", 150, latency_ms=900.0)
    write_log(store, tmp_path, canary + served("1", 250))
    rv = stored(kube_api)["metadata"]["resourceVersion"]

    result = run_loop(custom_api, store, mode)

    assert result.decision == "rollback" and result.target == V1
    assert any(why in r for r in result.reasons), result.reasons
    assert result.measurement.health.requests == 150
    assert result.measurement.health.errors == (30 if kind == "errors" else 0)
    patch = patches(kube_api)[-1]
    assert patch.body == rollback_body(rv, mode)
    obj = stored(kube_api)
    assert obj["metadata"]["annotations"][ANN_PHASE] == "rolled-back"
    assert obj["spec"]["predictor"]["model"]["storageUri"] == V1.native_uri
    assert "transformer" in obj["spec"]  # the rollback leaves the transformer (and its logger) alone


def test_too_few_canary_requests_hold_without_a_patch(kube_api, custom_api, store, tmp_path):
    canary_in_progress(custom_api)
    write_log(store, tmp_path, served("2", 40, latency_ms=900.0, errors=20) + served("1", 250))
    before = len(kube_api.mutating())
    calls = len(kube_api.calls)

    result = run_loop(custom_api, store)

    assert result.decision == "hold" and result.verb == "noop" and result.body is None
    assert "only 40 canary requests < min_requests 100" in result.reasons[0]
    assert len(kube_api.mutating()) == before
    assert [c.method for c in kube_api.calls[calls:]] == ["GET", "GET"]  # read, measure, re-read; no PATCH
    assert json.loads(stored(kube_api)["metadata"]["annotations"][ANN_CANARY]) == json.loads(V2.to_annotation())


class NoStore:
    """A bucket that must not be touched."""

    def __getattr__(self, name):
        raise AssertionError(f"the loop read the prediction log ({name}) although there is no canary")


def test_no_canary_means_one_get_and_nothing_else(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    calls = len(kube_api.calls)
    result = run_loop(custom_api, NoStore())
    assert result.decision == "no-canary" and result.verb == "noop" and result.body is None
    assert result.stable == V1 and result.measurement is None
    assert [(c.method, c.path) for c in kube_api.calls[calls:]] == [("GET", f"{PATH}/{NAME}")]


def test_no_inference_service_is_not_an_error(kube_api, custom_api):
    result = run_loop(custom_api, NoStore())
    assert result.decision == "no-isvc" and kube_api.mutating() == []
    assert [c.method for c in kube_api.calls] == ["GET"]


def test_stable_model_rows_are_not_canary_traffic(kube_api, custom_api, store, tmp_path):
    """A sick stable model next to a healthy canary: the canary is promoted on its own rows."""
    canary_in_progress(custom_api)
    write_log(store, tmp_path, served("2", 110, latency_ms=15.0) + served("1", 290, latency_ms=1200.0, errors=140))
    result = run_loop(custom_api, store)
    m = result.measurement
    assert (m.health.requests, m.health.errors) == (110, 0) and m.health.p95_latency_ms == pytest.approx(19.0)
    assert result.decision == "promote"
    assert "not canary traffic: 290 rows of model_version 1" in m.notes


def test_rows_outside_the_window_or_of_another_service_are_not_counted(kube_api, custom_api, store, tmp_path):
    canary_in_progress(custom_api)
    old = served("2", 300, errors=300, start=NOW - timedelta(hours=3), tag="old")  # before the window
    later = served("2", 50, errors=50, start=NOW + timedelta(minutes=5), tag="later")  # after `now`
    other = served("2", 300, errors=300, isvc="another-isvc")
    write_log(store, tmp_path, served("2", 60) + old + later + other)
    result = run_loop(custom_api, store)
    assert result.measurement.health.requests == 60 and result.measurement.health.errors == 0
    assert result.decision == "hold"


def test_rows_without_a_model_version_are_reported_not_counted(kube_api, custom_api, store, tmp_path):
    canary_in_progress(custom_api)
    unversioned = served(None, 70, errors=7, tag="nov")
    write_log(store, tmp_path, served("2", 30) + unversioned)
    result = run_loop(custom_api, store)
    assert result.decision == "hold" and result.measurement.health.requests == 30
    assert any("70 rows in the window carry no model_version (7 of them not ok)" in r for r in result.reasons)


def test_a_canary_replaced_while_measured_is_not_judged(kube_api, custom_api, store, tmp_path):
    """The nightly deploy canaries V3 between the measurement and the patch: hold, never promote V3 on V2's rows."""
    canary_in_progress(custom_api)
    write_log(store, tmp_path, served("2", 200))

    class RacingStore:
        def __getattr__(self, name):
            if name == "list":
                deploy(custom_api, V3, cfg(), backoff_seconds=0)
            return getattr(store, name)

    before = len(patches(kube_api))
    result = run_loop(custom_api, RacingStore())
    assert result.measurement.health.requests == 200
    assert result.decision == "hold" and "canary changed while it was measured" in result.reasons[0]
    assert len(patches(kube_api)) == before + 1  # only the racing deploy's own patch
    assert json.loads(stored(kube_api)["metadata"]["annotations"][ANN_CANARY])["native_uri"] == V3.native_uri


def test_dry_run_prints_the_patch_and_sends_nothing(kube_api, custom_api, store, tmp_path):
    canary_in_progress(custom_api)
    write_log(store, tmp_path, served("2", 120))
    rv = stored(kube_api)["metadata"]["resourceVersion"]
    before = len(kube_api.mutating())
    printed: list[str] = []
    result = run_loop(custom_api, store, dry_run=True, printer=printed.append)
    assert result.decision == "promote" and result.dry_run
    assert len(kube_api.mutating()) == before
    (text,) = printed
    assert text.splitlines()[1] == f"PATCH {PATH}/{NAME}"
    assert json.loads(text.split("\n\n", 1)[1]) == promote_body(rv, "serverless")


def test_canary_without_a_model_version_holds_and_says_why(kube_api, custom_api, store):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    deploy(custom_api, ModelRef("s3://spx/models/run-9/x/", "xgboost"), cfg(), backoff_seconds=0)
    before = len(kube_api.mutating())
    result = run_loop(custom_api, store)
    assert result.decision == "hold" and len(kube_api.mutating()) == before
    assert any("names no model_version" in r for r in result.reasons)


def test_health_from_prediction_log_rejects_an_empty_window(store):
    with pytest.raises(RolloutError, match="empty measurement window"):
        health_from_prediction_log(store, V2, start=NOW, end=NOW)


# ---------------------------------------------------------------------------------------- Prometheus


class FakePrometheus:
    def __init__(self, requests: str, errors: str, p95_ms: str):
        self.queries: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)["query"][0]
                outer.queries.append(q)
                v = p95_ms if q.startswith("histogram_quantile") else errors if "5xx" in q else requests
                data = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, v]}]}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


STATUS = {
    "components": {
        "predictor": {
            "latestCreatedRevision": "spx-direction-predictor-00002",
            "latestReadyRevision": "spx-direction-predictor-00002",
            "latestRolledoutRevision": "spx-direction-predictor-00001",
            "traffic": [
                {
                    "tag": "prev",
                    "revisionName": "spx-direction-predictor-00001",
                    "percent": 90,
                    "latestRevision": False,
                },
                {
                    "tag": "latest",
                    "revisionName": "spx-direction-predictor-00002",
                    "percent": 10,
                    "latestRevision": True,
                },
            ],
        }
    }
}


def test_canary_revision_comes_from_the_status():
    assert canary_revision({"status": STATUS}) == "spx-direction-predictor-00002"
    only_ready = {"components": {"predictor": {"latestReadyRevision": "r-3", "latestRolledoutRevision": "r-2"}}}
    assert canary_revision({"status": only_ready}) == "r-3"
    not_ready = {"components": {"predictor": {"latestReadyRevision": "r-2", "latestRolledoutRevision": "r-2"}}}
    assert canary_revision({"status": not_ready}) is None
    assert canary_revision({}) is None


def test_prometheus_health_of_the_canary_revision_rolls_back(kube_api, custom_api):
    canary_in_progress(custom_api)
    stored(kube_api)["status"] = STATUS
    rv = stored(kube_api)["metadata"]["resourceVersion"]
    prom = FakePrometheus(requests="400", errors="12", p95_ms="80")
    try:
        result = evaluate_canary(
            custom_api,
            cfg(),
            HealthThresholds(max_error_rate=0.01),
            window_minutes=15,
            prometheus_url=prom.url,
            store=NoStore(),
            now=NOW,
            backoff_seconds=0,
        )
    finally:
        prom.stop()
    assert result.measurement.source == "prometheus:spx-direction-predictor-00002"
    assert (result.measurement.health.requests, result.measurement.health.errors) == (400, 12)
    assert len(prom.queries) == 3
    assert all(
        'revision_name="spx-direction-predictor-00002"' in q and "[15m]" in q and f'namespace="{NS}"' in q
        for q in prom.queries
    )
    assert result.decision == "rollback"  # 3% errors > 1%
    assert patches(kube_api)[-1].body == rollback_body(rv, "serverless")


def test_prometheus_without_a_ready_canary_revision_holds(kube_api, custom_api):
    canary_in_progress(custom_api)
    stored(kube_api)["status"] = {
        "components": {"predictor": {"latestReadyRevision": "r-1", "latestRolledoutRevision": "r-1"}}
    }
    before = len(kube_api.mutating())
    result = evaluate_canary(
        custom_api,
        cfg(),
        TH,
        window_minutes=15,
        prometheus_url="http://127.0.0.1:9",
        store=NoStore(),
        now=NOW,
        backoff_seconds=0,
    )
    assert result.decision == "hold" and len(kube_api.mutating()) == before
    assert any("no ready canary revision" in r for r in result.reasons)


def test_prometheus_in_raw_mode_is_refused(kube_api, custom_api):
    canary_in_progress(custom_api, "raw")
    with pytest.raises(RolloutError, match="raw mode"):
        evaluate_canary(
            custom_api,
            cfg("raw"),
            TH,
            window_minutes=15,
            prometheus_url="http://127.0.0.1:9",
            store=NoStore(),
            now=NOW,
            backoff_seconds=0,
        )
    assert patches(kube_api)[-1].body["spec"]["canary"][0]["trafficPercent"] == 10  # the deploy's, untouched


# ------------------------------------------------------------------------------ the component itself


def _kubeconfig(tmp_path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
            }
        )
    )
    return str(path)


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")
def test_component_runs_under_the_kfp_local_runner_and_promotes(kube_api, custom_api, store, tmp_path, monkeypatch):
    """evaluate_canary_op as KFP runs it (SubprocessRunner), official client via a kubeconfig, log in S3."""
    from kfp import local

    from spx.components.deploy.component import evaluate_canary_op

    canary_in_progress(custom_api)
    now = datetime.now(timezone.utc)
    write_log(store, tmp_path, served("2", 120, start=now - timedelta(minutes=30)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path, kube_api.url))
    monkeypatch.setenv("SPX_INFERENCE_SERVICE", NAME)
    monkeypatch.setenv("SPX_INFERENCE_MODE", "serverless")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-local"), raise_on_error=True
    )
    task = evaluate_canary_op(
        namespace=NS, window_minutes=45.0, max_error_rate=0.05, max_p95_latency_ms=250.0, min_requests=100
    )
    out = json.loads(task.outputs["Output"])
    assert out["decision"] == "promote" and out["measurement"]["requests"] == 120
    # the decision as the KFP UI shows it: a Markdown output with its numbers beside the thresholds
    shown = task.outputs["decision"]
    text = Path(shown.path).read_text()
    assert text.startswith("## Canary: PROMOTE the canary to 100%")
    assert "| requests | 120 | at least 100 to judge |" in text and "| error rate | 0.0000 | at most 0.0500 |" in text
    assert '"canaryTrafficPercent": null' in text  # the exact patch that was sent
    assert shown.metadata["decision"] == "promote" and shown.metadata["requests"] == 120
    assert out["target"]["native_uri"] == V2.native_uri
    assert patches(kube_api)[-1].body == out["body"]
    assert out["body"]["spec"] == {"predictor": {"canaryTrafficPercent": None}}


def test_component_outside_a_cluster_skips_cleanly(tmp_path, monkeypatch):
    from spx.components.deploy.component import evaluate_canary_op

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    from kfp.dsl import Markdown

    shown = Markdown(name="decision", uri=str(tmp_path / "decision.md"))
    out = json.loads(evaluate_canary_op.python_func(decision=shown, namespace=NS))
    assert out["decision"] == "no-cluster" and out["body"] is None
    text = (tmp_path / "decision.md").read_text()
    assert text.startswith("## Canary: no Kubernetes API (step skipped)") and "Nothing was sent" in text
    assert shown.metadata["decision"] == "no-cluster"


# ------------------------------------------------------------------------------ the compiled pipeline


@pytest.fixture(scope="module")
def monitoring_compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("monitoring") / "spx-monitoring.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("SPX_PIPELINE_RETRIES", "SPX_COMPONENT_IMAGE")}
    code = "import sys; from spx.pipelines.monitoring import compile_monitoring; compile_monitoring(sys.argv[1], sys.argv[2])"
    subprocess.run(
        [sys.executable, "-c", code, str(out), IMAGE],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    docs = list(yaml.safe_load_all(out.read_text()))
    return {"spec": docs[0], "platform": docs[1] if len(docs) > 1 else {}}


def test_monitoring_pipeline_runs_the_canary_step_under_manage_canary(monitoring_compiled):
    spec = monitoring_compiled["spec"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["manage_canary"] == {"defaultValue": True, "isOptional": True, "parameterType": "BOOLEAN"}
    assert params["prometheus_url"]["defaultValue"] == ""
    for name in (
        "canary_window_minutes",
        "canary_max_error_rate",
        "canary_max_p95_latency_ms",
        "canary_min_requests",
        "isvc_namespace",
    ):
        assert name in params, name
    root_tasks = spec["root"]["dag"]["tasks"]
    (cond_name,) = [n for n, t in root_tasks.items() if "manage_canary" in json.dumps(t.get("triggerPolicy", {}))]
    cond = root_tasks[cond_name]
    assert "dependentTasks" not in cond  # independent of the drift step
    inner = spec["components"][cond["componentRef"]["name"]]["dag"]["tasks"]
    (task,) = inner.values()
    assert task["componentRef"]["name"] == "comp-evaluate-canary-op"
    outputs = spec["components"]["comp-evaluate-canary-op"]["outputDefinitions"]["artifacts"]
    assert outputs["decision"]["artifactType"]["schemaTitle"] == "system.Markdown"  # the decision in the KFP UI
    assert task["cachingOptions"] == {} or task["cachingOptions"].get("enableCache") is not True
    # inside dsl.If: KFP 2.5 would ignore a retry policy here; the step retries its API calls itself
    assert "retryPolicy" not in task
    args = task["inputs"]["parameters"]
    assert args["prometheus_url"]["componentInputParameter"].endswith("prometheus_url")
    assert args["min_requests"]["componentInputParameter"].endswith("canary_min_requests")
    assert args["namespace"]["componentInputParameter"].endswith("isvc_namespace")

    executor = spec["deploymentSpec"]["executors"]["exec-evaluate-canary-op"]
    assert executor["container"]["image"] == IMAGE
    assert executor["container"]["resources"]["memoryLimit"] > 0
    platform = monitoring_compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    k8s = platform["exec-evaluate-canary-op"]
    assert {kv["envVar"] for s in k8s["secretAsEnv"] for kv in s["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    env_keys = {kv["envVar"] for c in k8s["configMapAsEnv"] for kv in c["keyToEnv"]}
    assert {
        "SPX_S3_ENDPOINT",
        "SPX_BUCKET",
        "SPX_INFERENCE_SERVICE",
        "SPX_INFERENCE_MODE",
        "SPX_PREDICTION_LOG",
    } <= env_keys
    # same wiring as the drift task
    assert k8s["secretAsEnv"] == platform["exec-detect-drift"]["secretAsEnv"]
    assert k8s["configMapAsEnv"] == platform["exec-detect-drift"]["configMapAsEnv"]
