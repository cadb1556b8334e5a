"""deploy/promote against a loopback Kubernetes API peer, through the official kubernetes client."""

from __future__ import annotations

import json

import pytest

from spx.components.deploy.canary import (
    ANN_CANARY,
    ANN_PHASE,
    ANN_PREVIOUS,
    ANN_STABLE,
    CanaryHealth,
    HealthThresholds,
    ModelRef,
    RolloutError,
    ServingConfig,
    deploy,
    health_from_prometheus,
    health_from_records,
    inference_service,
    judge,
    load_selection,
    promote,
)
from tests.cluster.support import loggers

NS, NAME = "spx", "spx-direction"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
V1 = ModelRef("s3://spx/models/run-1/xgb_base/", "xgboost", "1", "xgb_base")
V2 = ModelRef("s3://spx/models/run-2/lgbm_news/", "lightgbm", "2", "lgbm_news")
V3 = ModelRef("s3://spx/models/run-3/xgb_news/", "xgboost", "3", "xgb_news")
HEALTHY = CanaryHealth(requests=500, errors=1, p95_latency_ms=40.0)
SICK = CanaryHealth(requests=500, errors=25, p95_latency_ms=40.0)
SLOW = CanaryHealth(requests=500, errors=0, p95_latency_ms=900.0)
TH = HealthThresholds(max_error_rate=0.01, max_p95_latency_ms=250.0, min_requests=100)


def cfg(mode="serverless", **kw) -> ServingConfig:
    kw.setdefault("transformer_image", "registry.local/spx-serving:0.1.0")
    return ServingConfig(namespace=NS, name=NAME, mode=mode, transformer_env_configmap="spx-kfp-serving-env", **kw)


def quiet(_text: str) -> None:
    pass


def stored(kube_api) -> dict:
    return kube_api.objects[(NS, NAME)]


def test_first_deploy_creates_the_inference_service(kube_api, custom_api):
    action = deploy(custom_api, V1, cfg(), backoff_seconds=0)
    assert action.verb == "create"
    assert [(c.method, c.path) for c in kube_api.calls] == [("GET", f"{PATH}/{NAME}"), ("POST", PATH)]
    post = kube_api.calls[-1]
    assert post.query == {"fieldValidation": ["Strict"]}
    body = post.body
    assert body["apiVersion"] == "serving.kserve.io/v1beta1" and body["kind"] == "InferenceService"
    predictor = body["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "spx-kfp-kserve-s3"
    assert predictor["model"] == {
        "modelFormat": {"name": "xgboost"},
        "protocolVersion": "v2",
        "storageUri": "s3://spx/models/run-1/xgb_base/",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # the only writable path
    }
    assert predictor["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "canaryTrafficPercent" not in predictor
    transformer = body["spec"]["transformer"]["containers"][0]
    assert transformer["image"] == "registry.local/spx-serving:0.1.0"
    assert transformer["command"] == ["spx-transformer"]  # the serving image's console script
    assert transformer["envFrom"] == [{"configMapRef": {"name": "spx-kfp-serving-env"}}]
    ann = body["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "Serverless"
    assert json.loads(ann[ANN_STABLE])["native_uri"] == V1.native_uri
    assert ann[ANN_PHASE] == "stable"


def test_new_champion_is_patched_in_as_a_serverless_canary(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    rv = stored(kube_api)["metadata"]["resourceVersion"]
    action = deploy(custom_api, V2, cfg(), canary_percent=10, backoff_seconds=0)
    assert action.verb == "patch"
    patch = kube_api.calls[-1]
    assert (patch.method, patch.path, patch.content_type) == ("PATCH", f"{PATH}/{NAME}", "application/merge-patch+json")
    body = patch.body
    assert body["metadata"]["resourceVersion"] == rv
    assert body["metadata"]["annotations"][ANN_PHASE] == "canary"
    assert json.loads(body["metadata"]["annotations"][ANN_CANARY])["model_version"] == "2"
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert body["spec"]["predictor"]["model"]["storageUri"] == V2.native_uri
    assert body["spec"]["predictor"]["model"]["modelFormat"] == {"name": "lightgbm"}
    assert set(body["spec"]) == {"predictor"}  # the transformer is left alone
    # the merged object: the stable model stays recorded, the canary model serves 10%
    obj = stored(kube_api)
    assert json.loads(obj["metadata"]["annotations"][ANN_STABLE])["native_uri"] == V1.native_uri
    assert obj["spec"]["transformer"]["containers"][0]["image"] == "registry.local/spx-serving:0.1.0"


def test_deploy_is_idempotent(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    assert deploy(custom_api, V1, cfg(), backoff_seconds=0).verb == "noop"
    deploy(custom_api, V2, cfg(), canary_percent=20, backoff_seconds=0)
    n = len(kube_api.mutating())
    again = deploy(custom_api, V2, cfg(), canary_percent=20, backoff_seconds=0)
    assert again.verb == "noop" and len(kube_api.mutating()) == n
    # a different percent for the same candidate is a change
    deploy(custom_api, V2, cfg(), canary_percent=30, backoff_seconds=0)
    assert kube_api.calls[-1].body["spec"]["predictor"]["canaryTrafficPercent"] == 30


def test_raw_mode_uses_spec_canary_and_keeps_the_stable_predictor(kube_api, custom_api):
    raw = cfg("raw")
    created = deploy(custom_api, V1, raw, backoff_seconds=0)
    assert created.body["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    deploy(custom_api, V2, raw, canary_percent=15, backoff_seconds=0)
    body = kube_api.calls[-1].body
    assert "predictor" not in body["spec"]
    (canary,) = body["spec"]["canary"]
    assert canary["trafficPercent"] == 15
    assert canary["predictor"]["model"]["storageUri"] == V2.native_uri
    assert stored(kube_api)["spec"]["predictor"]["model"]["storageUri"] == V1.native_uri
    # promote: candidate becomes the predictor, spec.canary removed
    decision = promote(custom_api, HEALTHY, TH, raw, backoff_seconds=0)
    assert decision.decision == "promote"
    body = kube_api.calls[-1].body
    assert body["spec"]["canary"] is None
    assert body["spec"]["predictor"]["model"]["storageUri"] == V2.native_uri
    obj = stored(kube_api)
    assert "canary" not in obj["spec"] and obj["spec"]["predictor"]["model"]["storageUri"] == V2.native_uri


def test_raw_mode_rollback_drops_the_canary(kube_api, custom_api):
    raw = cfg("raw", raw_deployment_mode="Standard")
    deploy(custom_api, V1, raw, backoff_seconds=0)
    deploy(custom_api, V2, raw, backoff_seconds=0)
    decision = promote(custom_api, SICK, TH, raw, backoff_seconds=0)
    assert decision.decision == "rollback" and decision.target == V1
    body = kube_api.calls[-1].body
    assert body["spec"] == {"canary": None}
    assert body["metadata"]["annotations"][ANN_PHASE] == "rolled-back"
    assert stored(kube_api)["spec"]["predictor"]["model"]["storageUri"] == V1.native_uri


def test_promote_healthy_canary_to_100_percent(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    deploy(custom_api, V2, cfg(), backoff_seconds=0)
    decision = promote(custom_api, HEALTHY, TH, cfg(), backoff_seconds=0)
    assert decision.decision == "promote" and decision.target == V2
    body = kube_api.calls[-1].body
    assert body["spec"] == {"predictor": {"canaryTrafficPercent": None}}
    ann = body["metadata"]["annotations"]
    assert json.loads(ann[ANN_STABLE])["native_uri"] == V2.native_uri
    assert json.loads(ann[ANN_PREVIOUS])["native_uri"] == V1.native_uri
    assert ann[ANN_CANARY] is None and ann[ANN_PHASE] == "stable"
    obj = stored(kube_api)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert ANN_CANARY not in obj["metadata"]["annotations"]
    # promoting again finds no canary and changes nothing
    n = len(kube_api.mutating())
    assert promote(custom_api, HEALTHY, TH, cfg(), backoff_seconds=0).decision == "no-canary"
    assert len(kube_api.mutating()) == n


@pytest.mark.parametrize("health, why", [(SICK, "error rate"), (SLOW, "p95 latency")])
def test_unhealthy_canary_rolls_back_to_the_previous_model(kube_api, custom_api, health, why):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    deploy(custom_api, V2, cfg(), backoff_seconds=0)
    decision = promote(custom_api, health, TH, cfg(), backoff_seconds=0)
    assert decision.decision == "rollback"
    assert any(why in r for r in decision.reasons)
    assert decision.target == V1
    body = kube_api.calls[-1].body
    predictor = body["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0  # pin all traffic to the last rolled-out revision now
    assert predictor["model"]["storageUri"] == V1.native_uri  # rollback target
    assert predictor["model"]["modelFormat"] == {"name": "xgboost"}
    assert json.loads(body["metadata"]["annotations"][ANN_PREVIOUS])["native_uri"] == V2.native_uri
    # the next champion can canary again from the rolled-back state
    deploy(custom_api, V3, cfg(), backoff_seconds=0)
    assert kube_api.calls[-1].body["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_too_little_traffic_holds(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    deploy(custom_api, V2, cfg(), backoff_seconds=0)
    n = len(kube_api.mutating())
    decision = promote(
        custom_api, CanaryHealth(requests=20, errors=0, p95_latency_ms=10.0), TH, cfg(), backoff_seconds=0
    )
    assert decision.decision == "hold" and len(kube_api.mutating()) == n


def test_dry_run_prints_the_exact_patch_and_sends_nothing(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    n = len(kube_api.mutating())
    printed: list[str] = []
    action = deploy(custom_api, V2, cfg(), canary_percent=25, dry_run=True, printer=printed.append)
    assert len(kube_api.mutating()) == n
    (text,) = printed
    header, _, payload = text.partition("\n\n")
    assert f"PATCH {PATH}/{NAME}" in header and "application/merge-patch+json" in header
    assert json.loads(payload) == action.body
    assert action.body["spec"]["predictor"]["canaryTrafficPercent"] == 25


def test_dry_run_of_first_deploy_prints_the_create_body(kube_api, custom_api):
    printed: list[str] = []
    action = deploy(custom_api, V1, cfg(), dry_run=True, printer=printed.append)
    assert kube_api.mutating() == [] and action.verb == "create"
    assert f"POST {PATH}" in printed[0]
    assert json.loads(printed[0].partition("\n\n")[2])["spec"]["predictor"]["model"]["storageUri"] == V1.native_uri


def test_retries_transient_errors_and_replans_after_conflict(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    kube_api.fail_next = [503, 409]
    action = deploy(custom_api, V2, cfg(), backoff_seconds=0)
    assert action.verb == "patch"
    patches = [c for c in kube_api.calls if c.method == "PATCH"]
    assert len(patches) == 3  # 503, 409, then applied
    assert stored(kube_api)["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_lost_reply_after_create_is_retried_safely(kube_api, custom_api):
    """The create was applied but its reply was lost: the retry re-reads, finds it done, sends nothing."""
    kube_api.lose_next_response = True
    action = deploy(custom_api, V1, cfg(), backoff_seconds=0)
    assert action.verb == "noop"
    assert [c.method for c in kube_api.mutating()] == ["POST"]
    assert stored(kube_api)["spec"]["predictor"]["model"]["storageUri"] == V1.native_uri


def test_lost_reply_after_promote_is_retried_safely(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    deploy(custom_api, V2, cfg(), backoff_seconds=0)
    kube_api.lose_next_response = True
    decision = promote(custom_api, HEALTHY, TH, cfg(), backoff_seconds=0)
    assert decision.decision == "no-canary"  # second attempt saw the promotion already applied
    assert [c.method for c in kube_api.mutating()].count("PATCH") == 2  # canary + one promote
    assert json.loads(stored(kube_api)["metadata"]["annotations"][ANN_STABLE])["native_uri"] == V2.native_uri


def test_stale_resource_version_is_rejected_then_replanned(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    # someone else changes the object between our GET and PATCH
    original_get = custom_api.get_namespaced_custom_object

    def racing_get(*args, **kwargs):
        obj = original_get(*args, **kwargs)
        if not getattr(racing_get, "done", False):
            racing_get.done = True
            other = dict(stored(kube_api))
            kube_api.put(other)  # bumps resourceVersion
        return obj

    custom_api.get_namespaced_custom_object = racing_get
    deploy(custom_api, V2, cfg(), backoff_seconds=0)
    patches = [c for c in kube_api.calls if c.method == "PATCH"]
    assert len(patches) == 2
    assert patches[0].body["metadata"]["resourceVersion"] != patches[1].body["metadata"]["resourceVersion"]


def test_deploy_refuses_bad_input():
    with pytest.raises(RolloutError, match="s3://"):
        ModelRef("/tmp/model.json", "xgboost")
    with pytest.raises(RolloutError, match="model_format"):
        ModelRef("s3://spx/m/", "pytorch")
    with pytest.raises(RolloutError, match="mode"):
        ServingConfig(namespace=NS, name=NAME, mode="knative")
    with pytest.raises(RolloutError, match="champion"):
        ModelRef.from_selection({"ranking": []})


def test_canary_percent_bounds(kube_api, custom_api):
    deploy(custom_api, V1, cfg(), backoff_seconds=0)
    with pytest.raises(RolloutError, match="canary_percent"):
        deploy(custom_api, V2, cfg(), canary_percent=100, backoff_seconds=0)


def test_selection_json_from_s3(store):
    selection = {
        "ranking": [],
        "champion": {
            "variant": "lgbm_news",
            "native_uri": V2.native_uri,
            "model_format": "lightgbm",
            "model_version": "2",
        },
    }
    store.put_json("selection/run-2/best_model_selection.json", selection)
    loaded = load_selection(store.uri("selection/run-2/best_model_selection.json"), store=store)
    assert ModelRef.from_selection(loaded) == V2


def test_judge_thresholds_are_parameters():
    assert judge(HEALTHY, TH)[0] == "promote"
    assert judge(HEALTHY, HealthThresholds(max_error_rate=0.001))[0] == "rollback"
    assert judge(HEALTHY, HealthThresholds(max_p95_latency_ms=30))[0] == "rollback"
    assert judge(HEALTHY, HealthThresholds(min_requests=1000))[0] == "hold"


def test_health_from_prediction_log_records():
    records = [{"latency_ms": float(i), "status_code": 200} for i in range(1, 101)]
    records[3]["status_code"] = 503
    records[4] = {"latency_ms": 5.0, "error": "timeout"}
    health = health_from_records(records)
    assert (health.requests, health.errors, health.p95_latency_ms) == (100, 2, 95.0)
    with pytest.raises(RolloutError, match="latency_ms"):
        health_from_records([{"status_code": 200}])


def test_health_from_prometheus():
    answers = {"requests": "400", "errors": "6", "p95": "0.180"}

    class Prom:
        def __init__(self):
            self.queries: list[str] = []

    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    prom = Prom()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            q = parse_qs(urlparse(self.path).query)["query"][0]
            prom.queries.append(q)
            if q.startswith("histogram_quantile"):
                v = "180"
            elif "5xx" in q:
                v = answers["errors"]
            else:
                v = answers["requests"]
            data = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, v]}]}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        health = health_from_prometheus(
            f"http://127.0.0.1:{srv.server_address[1]}",
            namespace=NS,
            revision="spx-direction-predictor-00002",
            window="10m",
        )
    finally:
        srv.shutdown()
        srv.server_close()
    assert (health.requests, health.errors, health.p95_latency_ms) == (400, 6, 180.0)
    assert all('revision_name="spx-direction-predictor-00002"' in q and "[10m]" in q for q in prom.queries)
    assert judge(health, TH)[0] == "rollback"  # 1.5% errors > 1%


def test_cli_deploy_and_promote(kube_api, tmp_path):
    from typer.testing import CliRunner

    from spx.cli import app

    runner = CliRunner()
    common = ["--namespace", NS, "--name", NAME, "--api-server", kube_api.url, "--mode", "raw"]
    out = runner.invoke(app, ["deploy", "--native-uri", V1.native_uri, "--model-format", "xgboost", *common])
    assert out.exit_code == 0, out.output
    assert [c.method for c in kube_api.mutating()] == ["POST"]
    out = runner.invoke(
        app,
        [
            "deploy",
            "--native-uri",
            V2.native_uri,
            "--model-format",
            "lightgbm",
            "--canary-percent",
            "5",
            "--dry-run",
            *common,
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"PATCH {PATH}/{NAME}" in out.output and '"trafficPercent": 5' in out.output
    assert [c.method for c in kube_api.mutating()] == ["POST"]  # dry run sent nothing
    runner.invoke(app, ["deploy", "--native-uri", V2.native_uri, "--model-format", "lightgbm", *common])
    log = tmp_path / "canary.jsonl"
    log.write_text("\n".join(json.dumps({"latency_ms": 900.0, "status_code": 200}) for _ in range(120)))
    out = runner.invoke(app, ["promote", "--prediction-log", str(log), *common])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["decision"] == "rollback" and summary["target"]["native_uri"] == V1.native_uri
    assert kube_api.calls[-1].body["spec"] == {"canary": None}
    bad = runner.invoke(app, ["promote", *common])
    assert bad.exit_code == 2 and "--prediction-log" in bad.output


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_only_the_transformer_logs_through_canary_promote_and_rollback(kube_api, custom_api, mode):
    """The deploy step writes the prediction log at exactly one server, by construction: the transformer (its rows
    carry the features the model received); canary patches, promotion and rollback leave spec.transformer alone.
    Before: a KServe agent logger on the transformer beside the transformer's own logger (two rows each)."""
    c = cfg(mode, prediction_log=True)
    created = deploy(custom_api, V1, c, backoff_seconds=0)
    assert loggers(created.body) == ["spec.transformer.containers[0]"]
    env = {e["name"]: e for e in created.body["spec"]["transformer"]["containers"][0]["env"]}
    assert env["SPX_INFERENCE_SERVICE"]["value"] == NAME  # what the canary loop filters the rows on
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    for step in (
        lambda: deploy(custom_api, V2, c, canary_percent=10, backoff_seconds=0),
        lambda: promote(custom_api, HEALTHY, TH, c, backoff_seconds=0),
        lambda: deploy(custom_api, V3, c, canary_percent=10, backoff_seconds=0),
        lambda: promote(custom_api, SICK, TH, c, backoff_seconds=0),
    ):
        step()
        assert "transformer" not in (kube_api.calls[-1].body or {}).get("spec", {})
        assert loggers(stored(kube_api)) == ["spec.transformer.containers[0]"]
    assert json.loads(stored(kube_api)["metadata"]["annotations"][ANN_STABLE])["native_uri"] == V2.native_uri
    assert not loggers(inference_service(V1, cfg(mode, prediction_log=False)))  # logging off: no server logs


def test_without_a_transformer_the_predictor_logs(kube_api, custom_api, monkeypatch):
    monkeypatch.setenv("SPX_PREDICTION_LOG", "true")  # the chart's env ConfigMap sets it
    c = ServingConfig(namespace=NS, name=NAME, mode="raw", runtime="spx-predictor", transformer_env_secret="spx-kfp-s3")
    assert c.prediction_log
    deploy(custom_api, V1, c, backoff_seconds=0)
    assert loggers(stored(kube_api)) == ["spec.predictor.model"]
    assert stored(kube_api)["spec"]["predictor"]["model"]["envFrom"] == [{"secretRef": {"name": "spx-kfp-s3"}}]
    deploy(custom_api, V2, c, canary_percent=10, backoff_seconds=0)  # the canary predictor logs its share
    assert loggers(stored(kube_api)) == ["spec.predictor.model", "spec.canary[0].predictor.model"]
    monkeypatch.delenv("SPX_PREDICTION_LOG")
    assert not loggers(inference_service(V1, ServingConfig(namespace=NS, name=NAME)))


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_the_log_writer_keeps_its_local_log_on_the_claim(mode):
    """Issue 15 (the node tier): the writer's local log was on the pod's /tmp emptyDir, which a deleted pod takes
    with it: a transformer pod deleted while the bucket was away lost every row it had answered and not shipped.
    With the chart's claim (SPX_PREDICTION_LOG_CLAIM) the server that writes the log keeps it there, and only it."""
    claim = "spx-kfp-prediction-log"
    isvc = inference_service(V1, cfg(mode, prediction_log=True, prediction_log_claim=claim))
    t = isvc["spec"]["transformer"]
    (c,) = t["containers"]
    assert {"name": "prediction-log", "persistentVolumeClaim": {"claimName": claim}} in t["volumes"]
    assert {"name": "prediction-log", "mountPath": "/var/lib/spx/prediction-log"} in c["volumeMounts"]
    assert {"name": "SPX_PREDICTION_LOG_DIR", "value": "/var/lib/spx/prediction-log"} in c["env"]
    assert t["securityContext"]["fsGroup"] == 10001  # the serving image's group may write the claim
    pred = isvc["spec"]["predictor"]
    assert all("persistentVolumeClaim" not in v for v in pred["volumes"])  # the predictor does not log here
    # without a transformer the predictor writes the log, so the claim goes there
    alone = inference_service(V1, cfg(mode, prediction_log=True, prediction_log_claim=claim, transformer_image=""))
    assert {"name": "prediction-log", "persistentVolumeClaim": {"claimName": claim}} in alone["spec"]["predictor"][
        "volumes"
    ]
    assert {"name": "prediction-log", "mountPath": "/var/lib/spx/prediction-log"} in alone["spec"]["predictor"][
        "model"
    ]["volumeMounts"]
    # no claim configured: the emptyDir as before (and said in docs/monitoring.md)
    plain = inference_service(V1, cfg(mode, prediction_log=True, prediction_log_claim=""))
    assert plain["spec"]["transformer"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]
