"""The full rollout on a real kube-apiserver, through `spx deploy` / `spx promote`, as the pipeline's own
ServiceAccount with a real token (TokenRequest API), in both serving modes; and a concurrent writer.

The stored InferenceService is read back (as admin) after every step: what the API server kept, after the
KServe v0.20.0 CRD's structural schema and strict field validation, not what the client sent.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.cluster.support import CHART, A, B, C, fullname

pytestmark = pytest.mark.cluster


@pytest.fixture()
def as_pipeline(kube, tmp_path, monkeypatch):
    """Point the kubernetes client at a kubeconfig holding the pipeline ServiceAccount's token."""
    from kubernetes.config import kube_config

    def use(namespace: str, account: str = "spx-pipeline"):
        path = kube.kubeconfig_for(account, namespace, tmp_path / f"{account}.kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(path))
        # the client reads $KUBECONFIG once, at import: what a fresh process would see
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return path

    return use


def spx(*args: str):
    from spx.cli import app

    res = CliRunner().invoke(app, list(args))
    return res


def stored(kube, ns: str) -> dict:
    return kube.get("inferenceservices.serving.kserve.io", "spx-direction", ns)


def ann(obj: dict) -> dict:
    return obj["metadata"]["annotations"]


def model(text: str | None) -> str | None:
    return json.loads(text)["native_uri"] if text else None


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_full_rollout_as_the_pipeline_service_account(kube, as_pipeline, mode):
    release, ns = f"ro-{mode}", f"ro-{mode}"
    kube.helm("install", release, str(CHART), "-n", ns, "--create-namespace", "--set", f"inferenceService.mode={mode}")
    fn = fullname(release)
    as_pipeline(ns)
    common = [
        "--namespace",
        ns,
        "--mode",
        mode,
        "--service-account",
        f"{fn}-kserve-s3",
        "--transformer-image",
        "ghcr.io/spx-kfp/spx-serving:0.1.0",
        "--transformer-env-configmap",
        f"{fn}-env",
        "--transformer-env-secret",
        f"{fn}-s3",
    ]

    def deploy(uri: str, fmt: str = "xgboost") -> str:
        res = spx("deploy", "--native-uri", uri, "--model-format", fmt, *common)
        assert res.exit_code == 0, res.output
        return res.output.split(":")[0]

    def promote(errors: int) -> dict:
        res = spx("promote", "--requests", "200", "--errors", str(errors), "--p95-latency-ms", "40", *common)
        assert res.exit_code == 0, res.output
        return json.loads(res.output.strip().splitlines()[-1])

    def serving(obj) -> tuple:
        """(predictor model, canary model, canary percent) as stored."""
        spec = obj["spec"]
        if mode == "serverless":
            p = spec["predictor"]
            return p["model"]["storageUri"], None, p.get("canaryTrafficPercent")
        canary = spec.get("canary") or []
        return (
            spec["predictor"]["model"]["storageUri"],
            canary[0]["predictor"]["model"]["storageUri"] if canary else None,
            canary[0]["trafficPercent"] if canary else None,
        )

    # 1. create
    assert deploy(A) == "create"
    obj = stored(kube, ns)
    assert serving(obj) == (A, None, None) and model(ann(obj)["spx.io/stable-model"]) == A
    assert ann(obj)["spx.io/rollout-phase"] == "stable"
    assert obj["spec"]["predictor"]["serviceAccountName"] == f"{fn}-kserve-s3"
    assert obj["spec"]["transformer"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": f"{fn}-env"}},
        {"secretRef": {"name": f"{fn}-s3"}},
    ]
    rv = obj["metadata"]["resourceVersion"]
    # 2. no-op
    assert deploy(A) == "noop" and stored(kube, ns)["metadata"]["resourceVersion"] == rv
    # 3. canary
    assert deploy(B, "lightgbm") == "patch"
    obj = stored(kube, ns)
    if mode == "serverless":
        assert serving(obj) == (B, None, 10)
    else:
        assert serving(obj) == (A, B, 10)
        canary = obj["spec"]["canary"][0]["predictor"]
        assert canary["name"] == "canary" and canary["model"]["name"] == "kserve-container"
        assert "maxReplicas" not in canary
    assert model(ann(obj)["spx.io/canary-model"]) == B and ann(obj)["spx.io/rollout-phase"] == "canary"
    rv = obj["metadata"]["resourceVersion"]
    # 4. no-op
    assert deploy(B, "lightgbm") == "noop" and stored(kube, ns)["metadata"]["resourceVersion"] == rv
    # 5. promote (healthy)
    assert promote(errors=0)["decision"] == "promote"
    obj = stored(kube, ns)
    assert serving(obj) == (B, None, None)
    assert model(ann(obj)["spx.io/stable-model"]) == B and model(ann(obj)["spx.io/previous-model"]) == A
    assert "spx.io/canary-model" not in ann(obj)
    # 6. canary
    assert deploy(C) == "patch"
    assert serving(stored(kube, ns)) == ((C, None, 10) if mode == "serverless" else (B, C, 10))
    # 7. roll back on bad health
    decision = promote(errors=60)
    assert decision["decision"] == "rollback" and any("error rate" in r for r in decision["reasons"])
    obj = stored(kube, ns)
    assert serving(obj) == ((B, None, 0) if mode == "serverless" else (B, None, None))
    assert ann(obj)["spx.io/rollout-phase"] == "rolled-back" and model(ann(obj)["spx.io/previous-model"]) == C
    assert model(ann(obj)["spx.io/stable-model"]) == B
    # 8. re-deploy of the stable model: nothing to change; with a canary in progress, it drops the canary
    assert deploy(B, "lightgbm") == "noop"
    assert deploy(C) == "patch"
    assert deploy(B, "lightgbm") == "patch"
    obj = stored(kube, ns)
    assert serving(obj) == ((B, None, 0) if mode == "serverless" else (B, None, None))
    assert "spx.io/canary-model" not in ann(obj) and ann(obj)["spx.io/rollout-phase"] == "stable"


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_concurrent_writer_gets_409_and_the_step_replans(kube, as_pipeline, mode):
    """A writer holding a stale resourceVersion is refused with 409 by the real API server; the step re-reads,
    re-plans and applies on top of the other writer's change."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from spx.components.deploy.canary import (
        ModelRef,
        ServingConfig,
        apply_action,
        custom_objects_api,
        plan_deploy,
        run_with_retries,
    )

    release, ns = f"cc-{mode}", f"cc-{mode}"
    kube.helm("install", release, str(CHART), "-n", ns, "--create-namespace", "--set", f"inferenceService.mode={mode}")
    as_pipeline(ns)
    api = custom_objects_api()
    admin = client.CustomObjectsApi(kube.api_client())
    cfg = ServingConfig(namespace=ns, name="spx-direction", mode=mode, service_account=f"{fullname(release)}-kserve-s3")
    run_with_retries(api, cfg, lambda cur: plan_deploy(cur, ModelRef(A, "xgboost"), cfg), backoff_seconds=0.01)

    # a stale plan is refused outright
    stale = api.get_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", "spx-direction")
    admin.patch_namespaced_custom_object(
        "serving.kserve.io",
        "v1beta1",
        ns,
        "inferenceservices",
        "spx-direction",
        {"metadata": {"labels": {"touched-by": "someone-else"}}},
    )
    with pytest.raises(ApiException) as err:
        apply_action(api, plan_deploy(stale, ModelRef(B, "lightgbm"), cfg))
    assert err.value.status == 409

    # the step: the other writer lands between our read and our patch; we get 409, re-read and re-plan
    calls = []

    def plan(current):
        calls.append(current["metadata"]["resourceVersion"])
        action = plan_deploy(current, ModelRef(B, "lightgbm"), cfg)
        if len(calls) == 1:
            admin.patch_namespaced_custom_object(
                "serving.kserve.io",
                "v1beta1",
                ns,
                "inferenceservices",
                "spx-direction",
                {"metadata": {"labels": {"touched-by": "again"}}},
            )
        return action

    action = run_with_retries(api, cfg, plan, backoff_seconds=0.01)
    assert action.verb == "patch" and len(calls) == 2 and calls[0] != calls[1]
    obj = stored(kube, ns)
    assert obj["metadata"]["labels"]["touched-by"] == "again"  # the other writer's change kept
    assert model(ann(obj)["spx.io/canary-model"]) == B


def test_api_server_refusal_is_one_line(kube, as_pipeline):
    """A 4xx from the API server comes out of `spx deploy` as one line naming the object and the reason, not a
    traceback (defect 12): here the pipeline account writing where it has no Role."""
    kube.kubectl("create", "namespace", "oneline")
    kube.kubectl("create", "serviceaccount", "spx-pipeline", "-n", "oneline")  # no Role bound
    as_pipeline("oneline")
    res = spx("deploy", "--native-uri", A, "--namespace", "oneline", "--mode", "raw")
    assert res.exit_code == 2
    err = res.output.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: InferenceService oneline/spx-direction: the API server answered 403 Forbidden")
    assert "cannot get resource" in err and "Traceback" not in err


def test_invalid_object_is_one_line_naming_the_field(kube, as_pipeline):
    """A 422 from the CRD schema (the raw canary without model.name that the old deploy step sent) comes out as
    one RolloutError line with the server's field error, not an ApiException traceback (defect 12)."""
    from spx.components.deploy.canary import (
        ModelRef,
        RolloutAction,
        RolloutError,
        ServingConfig,
        custom_objects_api,
        plan_deploy,
        run_with_retries,
    )

    ns = "invalid"
    kube.helm("install", ns, str(CHART), "-n", ns, "--create-namespace", "--set", "inferenceService.mode=raw")
    as_pipeline(ns)
    api = custom_objects_api()
    cfg = ServingConfig(namespace=ns, name="spx-direction", mode="raw", service_account=f"{fullname(ns)}-kserve-s3")
    run_with_retries(api, cfg, lambda cur: plan_deploy(cur, ModelRef(A, "xgboost"), cfg), backoff_seconds=0.01)

    def old_raw_canary(current):
        good = plan_deploy(current, ModelRef(B, "lightgbm"), cfg)
        predictor = good.body["spec"]["canary"][0]["predictor"]
        del predictor["model"]["name"], predictor["name"]
        return RolloutAction("patch", ns, "spx-direction", good.body, good.reason)

    with pytest.raises(RolloutError) as err:
        run_with_retries(api, cfg, old_raw_canary, backoff_seconds=0.01)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"InferenceService {ns}/spx-direction: the API server answered 422 Invalid")
    assert "spec.canary[0].predictor.model.name: Required value" in message
