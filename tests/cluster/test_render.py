"""Offline checks of everything we ship to a cluster.

* ``helm lint`` and ``helm template`` (real helm 4 binary) with the default, kind and k3d values, in both
  serving modes, with and without a canary;
* every rendered object and every ``manifests/`` object (rendered by ``kubectl kustomize``) validated:
  core kinds with kubernetes-validate ``--strict`` against Kubernetes 1.33 schemas, KServe kinds against
  the strict schema built from the kserve SDK's models (``kserve_schema.py``);
* policy: non-root, no privilege escalation, requests/limits on every container, least-privilege RBAC.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.cluster.kserve_schema import UNVERIFIED, schema_for_object, unverified_paths
from tests.cluster.support import CHART, K8S_VERSION, ROOT, helm, loggers, render

MODEL = "s3://spx/models/run-1/xgb_base/"
CANARY = "s3://spx/models/run-2/lgbm_news/"

VALUES = {
    "default": [],
    "kind": ["-f", str(CHART / "values-kind.yaml")],
    "k3d": ["-f", str(CHART / "values-k3d.yaml")],
}
WITH_MODEL = ["--set", f"inferenceService.model.storageUri={MODEL}", "--set", "servingRuntime.create=true"]
WITH_CANARY = [
    "--set",
    f"inferenceService.canary.storageUri={CANARY}",
    "--set",
    "inferenceService.canary.format=lightgbm",
    "--set",
    "inferenceService.canary.trafficPercent=20",
]

CASES = {
    "default": VALUES["default"],
    "kind": VALUES["kind"],
    "k3d": VALUES["k3d"],
    "kind+model": VALUES["kind"] + WITH_MODEL,
    "kind+canary": VALUES["kind"] + WITH_MODEL + WITH_CANARY,
    "kind+canary-upgrade": VALUES["kind"] + WITH_MODEL + WITH_CANARY + ["--is-upgrade"],
    "k3d+model": VALUES["k3d"] + WITH_MODEL,
    "k3d+canary": VALUES["k3d"] + WITH_MODEL + WITH_CANARY,
    "external-s3": [
        "--set",
        "minio.enabled=false",
        "--set",
        "s3.endpoint=http://seaweedfs.kubeflow.svc.cluster.local:8333",
        "--set",
        "s3.existingSecret=kfp-s3",
    ]
    + WITH_MODEL,
    "seaweedfs": ["--set", "minio.enabled=false", "--set", "seaweedfs.enabled=true", "--set", "feast.enabled=true"],
    "no-log": VALUES["kind"] + WITH_MODEL + ["--set", "monitoring.predictionLog.enabled=false"],
    "no-transformer": VALUES["k3d"]
    + WITH_MODEL
    + WITH_CANARY
    + ["--set", "inferenceService.transformer.enabled=false"],
}


@pytest.fixture(scope="module")
def rendered(helm_bin) -> dict[str, list[dict]]:
    return {name: render(helm_bin, extra) for name, extra in CASES.items()}


def kustomize(kubectl_bin: str, path: Path) -> list[dict]:
    out = subprocess.run(
        [kubectl_bin, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


KUSTOMIZATIONS = sorted(p.parent for p in (ROOT / "manifests").rglob("kustomization.yaml"))


@pytest.fixture(scope="module")
def manifests(kubectl_bin) -> dict[str, list[dict]]:
    return {str(p.relative_to(ROOT)): kustomize(kubectl_bin, p) for p in KUSTOMIZATIONS}


def validate_object(obj: dict) -> None:
    schema = schema_for_object(obj)
    if schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: e.path)
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
        )
        assert not unverified_paths(obj, schema), unverified_paths(obj, schema)
        return
    assert obj["apiVersion"].split("/")[0] not in ("serving.kserve.io", "kubeflow.org"), obj["kind"]
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# ------------------------------------------------------------------------------------------ helm


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint(helm_bin, values):
    res = helm(helm_bin, "lint", str(CHART), "--strict", *VALUES[values], "--kube-version", K8S_VERSION, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_validate(rendered, case):
    objects = rendered[case]
    assert objects
    for obj in objects:
        validate_object(obj)


def test_validation_is_strict():
    """A misspelt field fails both validators (plain deserialisation would silently drop it)."""
    from spx.components.deploy.canary import ModelRef, ServingConfig, inference_service

    isvc = inference_service(ModelRef(MODEL, "xgboost"), ServingConfig(namespace="spx", name="x"))
    validate_object(isvc)
    isvc["spec"]["predictor"]["canaryTrafficPercentage"] = 10
    with pytest.raises(AssertionError, match="canaryTrafficPercentage"):
        validate_object(isvc)
    bad_pod = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(bad_pod)
    assert UNVERIFIED, "the builder should report types it could not check"


def test_deploy_component_bodies_validate():
    """What `spx deploy` creates and patches in both modes is valid KServe, canary included."""
    from spx.components.deploy.canary import ModelRef, ServingConfig, inference_service, plan_deploy

    for mode in ("serverless", "raw"):
        cfg = ServingConfig(
            namespace="spx",
            name="spx-direction",
            mode=mode,
            transformer_image="img:1",
            transformer_env_configmap="spx-kfp-env",
            transformer_env_secret="spx-kfp-s3",
        )
        current = inference_service(ModelRef(MODEL, "xgboost"), cfg)
        validate_object(current)
        action = plan_deploy(current, ModelRef(CANARY, "lightgbm"), cfg, 10)
        from tests.cluster.support import merge_patch

        validate_object(merge_patch(current, action.body))


def _kinds(objects):
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_default_install_contents(rendered):
    kinds = _kinds(rendered["default"])
    for expected in [
        ("Deployment", "spx-kfp-minio"),
        ("Job", "spx-kfp-buckets-1"),
        ("StatefulSet", "spx-kfp-postgresql"),
        ("Deployment", "spx-kfp-mlflow"),
        ("Deployment", "spx-kfp-redis"),
        ("Job", "spx-kfp-kfp-upload-1"),
        ("Role", "spx-kfp-pipeline-inferenceservices"),
        ("Role", "spx-kfp-pipeline-kfp-runtime"),
        ("ConfigMap", "kfp-launcher"),
        ("ServiceAccount", "spx-kfp-kserve-s3"),
        ("Secret", "spx-kfp-s3"),
    ]:
        assert expected in kinds, expected
    # no model yet: the deploy step creates the InferenceService from the first champion
    assert not [o for o in rendered["default"] if o["kind"] == "InferenceService"]


def test_external_s3_endpoint_is_a_value(rendered):
    objs = rendered["external-s3"]
    assert not [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("minio")]
    assert not [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "spx-kfp-s3"]
    env = _env(objs)
    assert env["SPX_S3_ENDPOINT"] == "http://seaweedfs.kubeflow.svc.cluster.local:8333"
    sa = next(o for o in objs if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "spx-kfp-kserve-s3")
    assert sa["secrets"] == [{"name": "kfp-s3"}]
    text = json.dumps(objs)
    assert "minio-service" not in text


def test_default_s3_secret_is_annotated_for_kserve(rendered):
    secret = next(o for o in rendered["default"] if o["kind"] == "Secret" and o["metadata"]["name"] == "spx-kfp-s3")
    ann = secret["metadata"]["annotations"]
    assert ann["serving.kserve.io/s3-endpoint"] == "spx-kfp-minio.spx.svc.cluster.local:9000"
    assert ann["serving.kserve.io/s3-usehttps"] == "0"
    assert set(secret["stringData"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == secret["stringData"]["MINIO_ROOT_PASSWORD"]
    assert len(secret["stringData"]["AWS_SECRET_ACCESS_KEY"]) == 32


def _isvc(objs):
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    return isvc


def _env(objs) -> dict:
    """The data of the (first) env ConfigMap: what the pods and the deploy step read (a release whose pipeline
    runs in another namespace has one there too)."""
    return next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "spx-kfp-env")["data"]


def test_inference_service_modes_and_canary(rendered):
    # serverless: KServe gives the first revision 100% whatever canaryTrafficPercent says, so on install the
    # chart creates the stable model alone (issue 11, defect 5) and applies the canary on an upgrade
    fresh = _isvc(rendered["kind+canary"])
    assert "canaryTrafficPercent" not in fresh["spec"]["predictor"]
    assert fresh["spec"]["predictor"]["model"]["storageUri"] == MODEL
    assert fresh["metadata"]["annotations"]["spx.io/rollout-phase"] == "stable"
    assert "spx.io/canary-model" not in fresh["metadata"]["annotations"]
    kind = _isvc(rendered["kind+canary-upgrade"])  # serverless, upgrade
    assert kind["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert kind["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert kind["spec"]["predictor"]["model"]["storageUri"] == CANARY
    assert "canary" not in kind["spec"]
    k3d = _isvc(rendered["k3d+canary"])  # raw
    assert k3d["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "canaryTrafficPercent" not in k3d["spec"]["predictor"]
    assert k3d["spec"]["predictor"]["model"]["storageUri"] == MODEL
    assert k3d["spec"]["canary"][0]["trafficPercent"] == 20
    canary = k3d["spec"]["canary"][0]["predictor"]
    assert canary["model"]["modelFormat"] == {"name": "lightgbm"}
    # the CRD requires model.name, KServe requires predictor.name and forbids maxReplicas (defect 1)
    assert canary["name"] == "canary" and canary["model"]["name"] == "kserve-container"
    assert "maxReplicas" not in canary
    for isvc in (kind, k3d):
        predictor = isvc["spec"]["predictor"]
        assert predictor["model"]["protocolVersion"] == "v2"
        assert predictor["serviceAccountName"] == "spx-kfp-kserve-s3"
        container = isvc["spec"]["transformer"]["containers"][0]
        assert container["command"] == ["spx-transformer"]
        assert container["image"] == "spx-serving:dev"


def test_chart_isvc_is_understood_by_the_deploy_step(rendered):
    """The chart's annotations follow the deploy step's contract, so `spx deploy` continues from it."""
    from spx.components.deploy.canary import ModelRef, ServingConfig, plan_deploy

    isvc = _isvc(rendered["k3d+model"])
    cfg = ServingConfig(namespace="spx", name="spx-direction", mode="raw")
    assert plan_deploy(isvc, ModelRef(MODEL, "xgboost"), cfg).verb == "noop"
    assert plan_deploy(isvc, ModelRef(CANARY, "lightgbm"), cfg).verb == "patch"


def test_values_schema_rejects_bad_values(helm_bin):
    for bad in (
        ["--set", "inferenceService.mode=knative"],
        ["--set", "s3.bogus=1"],
        ["--set", "inferenceService.model.storageUri=/local/path"],
        ["--set", "inferenceService.canary.trafficPercent=100"],
        ["--set", "kfp.schedule.cron=0 2 * *"],
    ):
        res = helm(helm_bin, "template", "x", str(CHART), *bad, check=False)
        assert res.returncode != 0 and "schema" in res.stderr, (bad, res.stderr)


def _pod_specs(obj):
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        yield obj["spec"]["template"]["spec"]


def _containers(obj):
    for pod in _pod_specs(obj):
        yield pod, pod.get("initContainers", []) + pod["containers"]
    if obj["kind"] == "InferenceService":
        for comp in ("predictor", "transformer"):
            spec = obj["spec"].get(comp)
            if spec:
                yield spec, [spec["model"]] if "model" in spec else spec["containers"]
        for canary in obj["spec"].get("canary", []):
            yield canary["predictor"], [canary["predictor"]["model"]]
    if obj["kind"] == "ServingRuntime":
        yield {"securityContext": {"runAsNonRoot": True}}, obj["spec"]["containers"]


@pytest.mark.parametrize("case", ["default", "kind+canary", "k3d+canary"])
def test_pod_security_and_resources_everywhere(rendered, case):
    seen = 0
    for obj in rendered[case]:
        for pod, containers in _containers(obj):
            assert pod.get("securityContext", {}).get("runAsNonRoot") is True, obj["metadata"]["name"]
            for c in containers:
                seen += 1
                sc = c.get("securityContext", {})
                name = f"{obj['kind']}/{obj['metadata']['name']}/{c.get('name', 'model')}"
                assert sc.get("allowPrivilegeEscalation") is False, name
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
                assert {"requests", "limits"} <= set(c.get("resources", {})), name
                assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
    assert seen >= 8  # minio, buckets, postgresql, mlflow, redis, evidently ui, kfp-upload, check (+ serving)


def test_pipeline_rbac_is_least_privilege(rendered, manifests):
    """The pipeline's account: InferenceServices in the release namespace; in the run namespace what KFP 2.5's
    driver/launcher and Argo's executor do with the run's account (defect 2). Checked live in test_apiserver."""
    for objs, secret in ((rendered["kind"], "spx-kfp-s3"), (manifests["manifests/base"], "spx-kfp-s3")):
        roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")]
        assert [r["kind"] for r in roles] == ["Role", "Role"]
        assert not [o for o in objs if o["kind"] == "ClusterRoleBinding"]
        rules = {r["metadata"]["name"].split("pipeline-")[-1]: r["rules"] for r in roles}
        assert rules["inferenceservices"] == [
            {
                "apiGroups": ["serving.kserve.io"],
                "resources": ["inferenceservices"],
                "verbs": ["get", "create", "patch"],
            }
        ]
        assert rules["kfp-runtime"] == [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kfp-launcher"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get"]},
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        ]
    bindings = {o["metadata"]["name"]: o for o in rendered["kind"] if o["kind"] == "RoleBinding"}
    isvc = bindings["spx-kfp-pipeline-inferenceservices"]
    assert isvc["metadata"]["namespace"] == "spx"
    assert isvc["subjects"] == [{"kind": "ServiceAccount", "name": "spx-pipeline", "namespace": "kubeflow"}]
    runtime = bindings["spx-kfp-pipeline-kfp-runtime"]
    assert runtime["metadata"]["namespace"] == "kubeflow"
    assert runtime["subjects"] == isvc["subjects"]


def test_kfp_upload_job_schedules_with_cron(rendered):
    job = next(o for o in rendered["default"] if o["kind"] == "Job" and o["metadata"]["name"] == "spx-kfp-kfp-upload-1")
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert "spx submit" in script and "--no-run" in script
    assert "spx schedule" in script and "--max-concurrency 1" in script and "--no-catchup" in script
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CRON"] == "0 2 * * *"
    # a plain release object, not a hook: Helm would block (and fail) the release on it (defect 9)
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})


def test_job_script_matches_the_cli(rendered):
    """Every flag the upload Job passes exists on the spx CLI."""
    from typer.testing import CliRunner

    from spx.cli import app

    job = next(o for o in rendered["default"] if o["kind"] == "Job" and o["metadata"]["name"] == "spx-kfp-kfp-upload-1")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    runner = CliRunner()
    for command in ("submit", "schedule"):
        help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        line = next(ln for ln in script.replace("\\\n", " ").splitlines() if f"spx {command}" in ln)
        flags = [tok for tok in line.split() if tok.startswith("--")]
        assert flags
        for flag in flags:
            assert flag in help_text, (command, flag)


LOGGED_AT = {
    "kind+model": ["spec.transformer.containers[0]"],
    "kind+canary": ["spec.transformer.containers[0]"],
    "k3d+canary": ["spec.transformer.containers[0]"],
    "external-s3": ["spec.transformer.containers[0]"],
    "no-log": [],
    "no-transformer": ["spec.predictor.model", "spec.canary[0].predictor.model"],
}


@pytest.mark.parametrize("case", sorted(LOGGED_AT))
def test_exactly_one_server_writes_the_prediction_log(rendered, case):
    """By construction one logger per InferenceService: the transformer (its rows carry the features the model
    received), else the predictor (and a raw-mode canary predictor for its share), never KServe's agent logger.
    Before: the agent logger on the transformer and the transformer's own logger both logged (two rows each),
    and with a sink token the agent's events got 401 while the transformer had no token: nothing was logged."""
    objs = rendered[case]
    isvc = _isvc(objs)
    assert loggers(isvc) == LOGGED_AT[case]
    env = _env(objs)
    assert env["SPX_PREDICTION_LOG"] == ("false" if case == "no-log" else "true")  # what the deploy step follows
    for where in LOGGED_AT[case]:
        container = isvc
        for part in where.replace("]", "").replace("[", ".").split("."):
            container = container[int(part)] if part.isdigit() else container[part]
        values = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert values["SPX_INFERENCE_SERVICE"] == isvc["metadata"]["name"]  # the canary loop filters on these
        assert values["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert refs == {"spx-kfp-env", "spx-kfp-s3" if case != "external-s3" else "kfp-s3"}  # S3 for shipping


def test_the_serving_commands_are_the_images_console_scripts_and_take_the_charts_args(rendered, monkeypatch):
    """The ServingRuntime and the transformer run spx-predictor / spx-transformer (pyproject [project.scripts]),
    whose parsers accept the args the chart gives plus those KServe appends."""
    import tomllib

    from spx.components.serving import predictor, transformer

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    objs = rendered["kind+model"]
    (runtime,) = [o for o in objs if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == "spx-predictor"]
    (c,) = runtime["spec"]["containers"]
    assert c["command"] == ["spx-predictor"] and scripts["spx-predictor"] == "spx.components.serving.predictor:main"
    seen = {}
    monkeypatch.setattr(predictor.BoosterModel, "load", lambda self: seen.update(model=self))
    monkeypatch.setattr(predictor, "serve", lambda models, args, **kw: seen.update(args=args))
    predictor.main([a.replace("{{.Name}}", "spx-direction") for a in c["args"]])
    assert seen["model"].model_dir.as_posix() == "/mnt/models" and seen["args"].http_port == 8080
    assert seen["args"].speedups == {"infer", "booster", "client"}
    (t,) = _isvc(objs)["spec"]["transformer"]["containers"]
    assert (
        t["command"] == ["spx-transformer"] and scripts["spx-transformer"] == "spx.components.serving.transformer:main"
    )
    monkeypatch.setattr(transformer.FeastTransformer, "load", lambda self: seen.update(model=self))
    monkeypatch.setattr(transformer, "serve", lambda models, args, **kw: seen.update(args=args))
    transformer.main([*t["args"], "--model_name", "spx-direction", "--predictor_host", "p:80", "--http_port", "8080"])
    assert seen["model"].predictor_host == "p:80" and seen["args"].host == "0.0.0.0"


def test_prediction_log_values_are_checked_by_the_schema(helm_bin):
    for bad in (
        ["--set", "monitoring.predictionLog.bogus=1"],
        ["--set", "monitoring.predictionLog.flushSeconds=0"],
        ["--set", "monitoring.sink.enabled=true"],  # the sink is gone: an old values file says so
    ):
        res = helm(helm_bin, "template", "x", str(CHART), *bad, check=False)
        assert res.returncode != 0 and "schema" in res.stderr, (bad, res.stderr)


# ------------------------------------------------------------------------------------------ manifests


def test_every_manifest_file_is_in_a_kustomization():
    listed = set()
    for k in KUSTOMIZATIONS:
        data = yaml.safe_load((k / "kustomization.yaml").read_text())
        for res in data.get("resources", []):
            listed.add((k / res).resolve())
    files = {p.resolve() for p in (ROOT / "manifests").rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files and files <= listed, files - listed


@pytest.mark.parametrize("kustomization", [str(p.relative_to(ROOT)) for p in KUSTOMIZATIONS])
def test_manifests_validate(manifests, kustomization):
    objects = manifests[kustomization]
    assert objects
    for obj in objects:
        validate_object(obj)


def test_raw_overlay_switches_mode(manifests):
    isvc = _isvc(manifests["manifests/overlays/raw"])
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "serving.kserve.io/enable-tag-routing" not in ann
    assert {o["metadata"]["name"] for o in manifests["manifests/overlays/raw"] if o["kind"] == "ServingRuntime"} == {
        "spx-predictor",
        "spx-xgbserver",
        "spx-lgbserver",
    }
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "spx-predictor"
    canary = _isvc(manifests["manifests/overlays/serverless-canary"])
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_manifests_wire_one_logger(manifests):
    for path in ("manifests/base", "manifests/overlays/raw", "manifests/overlays/serverless-canary"):
        objs = manifests[path]
        isvc = _isvc(objs)
        assert loggers(isvc) == ["spec.transformer.containers[0]"], path
        assert isvc["spec"]["transformer"]["containers"][0]["command"] == ["spx-transformer"]
        env = _env(objs)
        assert env["SPX_PREDICTION_LOG"] == "true" and "SPX_PREDICTION_LOGGER_URL" not in env
        runtimes = [o for o in objs if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == "spx-predictor"]
        assert [rt["spec"]["containers"][0]["command"] for rt in runtimes] == [["spx-predictor"]]


def test_read_only_root_filesystem(rendered):
    """Issue 11, defect 11: the InferenceService's and ServingRuntimes' containers run with a read-only root
    filesystem (an emptyDir on /tmp the only writable path: the prediction log lives there too)."""
    objs = rendered["k3d+canary"]
    isvc = _isvc(objs)
    containers = [
        isvc["spec"]["predictor"]["model"],
        isvc["spec"]["canary"][0]["predictor"]["model"],
        *isvc["spec"]["transformer"]["containers"],
    ]
    runtimes = [o for o in objs if o["kind"] == "ServingRuntime"]
    assert len(runtimes) == 3  # spx-predictor + the two namespaced KServe runtimes (servingRuntime.create)
    containers += [c for rt in runtimes for c in rt["spec"]["containers"]]
    for c in containers:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c.get("name")
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], c.get("name")


# ---------------------------------------------- defects a real node showed (issue 15), each checked offline too


def _images(objects) -> set[str]:
    return {c["image"] for obj in objects for _, containers in _containers(obj) for c in containers if "image" in c}


def test_the_bucket_job_runs_the_component_image_not_mc(rendered):
    """The bucket Job ran MinIO's `mc` image, one more third-party image; it is `spx buckets` (the MinIO SDK)
    in the component image now. The only third-party images left are the stores the user chooses."""
    for case in ("default", "kind", "seaweedfs"):
        objs = rendered[case]
        job = next(o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "spx-kfp-buckets-1")
        (c,) = job["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["spx", "buckets"] and c["args"] == ["--bucket=mlflow"]
        assert c["image"] == _env(objs)["SPX_COMPONENT_IMAGE"]
        assert not [i for i in _images(objs) if "/mc:" in i or i.startswith("minio/mc")], case
    third_party = {i.rsplit(":", 1)[0] for i in _images(rendered["seaweedfs"])} - {
        "ghcr.io/spx-kfp/spx-component", "ghcr.io/spx-kfp/spx-serving"
    }  # fmt: skip
    assert third_party == {"docker.io/library/postgres", "docker.io/library/redis"}


def test_the_seaweedfs_store_runs_the_component_image_and_exposes_only_s3(rendered):
    objs = rendered["seaweedfs"]
    assert not [o for o in objs if o["metadata"]["name"] == "spx-kfp-minio"]
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "spx-kfp-seaweedfs")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ghcr.io/spx-kfp/spx-component:0.1.0"
    script = c["args"][0]
    # the filer's and master's HTTP APIs are unauthenticated: only the S3 gateway listens beyond loopback
    assert "-ip.bind=127.0.0.1" in script and "-s3.ip.bind=0.0.0.0" in script
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "spx-kfp-seaweedfs")
    assert [p["port"] for p in svc["spec"]["ports"]] == [8333]
    env = _env(objs)
    assert env["SPX_S3_ENDPOINT"] == "http://spx-kfp-seaweedfs.spx.svc.cluster.local:8333"


def test_both_bundled_stores_at_once_is_refused(helm_bin):
    res = helm(helm_bin, "template", "spx-kfp", str(CHART), "--set", "seaweedfs.enabled=true", check=False)
    assert res.returncode != 0 and "pick one bundled object store" in res.stderr


def test_the_feast_server_is_not_deployed_by_default(rendered):
    """Nothing calls the Feast feature server (the transformer reads Redis through the Feast SDK): it used to be
    deployed by default; it is opt-in now (feast.enabled)."""
    for case in ("default", "kind", "k3d"):
        assert ("Deployment", "spx-kfp-feast") not in _kinds(rendered[case]), case
    assert ("Deployment", "spx-kfp-feast") in _kinds(rendered["seaweedfs"])  # still there when asked for


def _locked_version(package: str) -> str:
    import tomllib

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def test_the_kserve_runtime_copies_are_the_locked_kserve_release(rendered, manifests):
    """The chart's and the raw overlay's copies of KServe's runtimes used kserve/xgbserver:v0.15.2 while the
    README requires KServe >= 0.20; they are now the release of the kserve package in uv.lock."""
    version = _locked_version("kserve")
    assert tuple(int(x) for x in version.split(".")[:2]) >= (0, 20)
    runtimes = [
        o for o in rendered["kind+model"] + manifests["manifests/overlays/raw"] if o["kind"] == "ServingRuntime"
    ]
    images = {c["image"] for rt in runtimes for c in rt["spec"]["containers"] if "kserve/" in c["image"]}
    assert images == {f"docker.io/kserve/xgbserver:v{version}", f"docker.io/kserve/lgbserver:v{version}"}


def test_mlflow_started_the_charts_way_answers_its_service_names(rendered, tmp_path):
    """MLflow >= 3.5 refuses a Host header it was not told about (403 "Invalid Host header"). The chart started
    it without --allowed-hosts, so every task reaching it by its Service name got 403. Here the rendered command
    runs for real (backend store on SQLite, loopback): the Service's names get 200, anything else still 403."""
    import shlex

    import requests

    from spx.core.processes import ManagedProcess, free_port

    dep = next(
        o for o in rendered["default"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "spx-kfp-mlflow"
    )
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    argv = shlex.split(c["args"][0].removeprefix("exec "))
    assert argv[:2] == ["mlflow", "server"]
    port = free_port()
    replace = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1",
               "--backend-store-uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # fmt: skip
    args = [replace.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    from tests.support import venv_tool

    proc = ManagedProcess(
        "mlflow", [venv_tool("mlflow") or "mlflow", *args[1:]], tmp_path / "mlflow.log",
        ready_url=f"http://127.0.0.1:{port}/health", ready_timeout=300,  # MLflow takes 10-80 s on a busy 2-core box
    )  # fmt: skip
    proc.start()
    try:
        # an API path: /health is exempt from MLflow's Host check (so probes work by pod IP)
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        for host in ("spx-kfp-mlflow.spx.svc.cluster.local:5000", "spx-kfp-mlflow:5000", "spx-kfp-mlflow.spx",
                     "localhost:5000"):  # fmt: skip
            assert requests.get(url, headers={"Host": host}, timeout=10).status_code == 200, host
        assert requests.get(url, headers={"Host": "evil.example"}, timeout=10).status_code == 403
    finally:
        proc.stop()


def test_mlflows_backend_store_driver_is_in_the_component_image(rendered):
    """The chart gave MLflow `postgresql://…`: SQLAlchemy 2.1 maps that to psycopg 3, which the component image
    does not have, so the MLflow pod crashed with "No module named 'psycopg'" on the first real node. The URI
    names psycopg2 now; its package is in the image's locked requirements."""
    import re
    import shlex

    from sqlalchemy.engine.url import make_url

    dep = next(
        o for o in rendered["default"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "spx-kfp-mlflow"
    )
    argv = shlex.split(dep["spec"]["template"]["spec"]["containers"][0]["args"][0])
    uri = argv[argv.index("--backend-store-uri") + 1].replace("${PGUSER}", "u").replace("${PGPASSWORD}", "p")
    dialect = make_url(uri).get_dialect()
    driver_package = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg", "pg8000": "pg8000"}[dialect.driver]
    requirements = (ROOT / "images" / "component" / "requirements.txt").read_text()
    assert re.search(rf"^{re.escape(driver_package)}==", requirements, re.M), (dialect.driver, driver_package)
    dialect.import_dbapi()  # and it imports (the host venv holds the same lock)


def test_the_charts_mlflow_server_sends_no_usage_events(rendered):
    """MLflow 3's server (and the UI it serves) sends usage events to mlflow-telemetry.io unless
    MLFLOW_DISABLE_TELEMETRY is set; the chart's Deployment had no such variable."""
    dep = next(
        o for o in rendered["default"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "spx-kfp-mlflow"
    )
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_log_writer_keeps_its_local_log_on_the_charts_claim(rendered, helm_bin):
    """Issue 15 (the node tier): the transformer kept the prediction log's unshipped rows on its /tmp emptyDir; a
    pod deleted while the bucket was away took them with it. The chart now gives the one writing server a claim
    (kept on uninstall), names it in the env ConfigMap for the deploy step, and mounts it where the log lives."""
    for case, writer in (("k3d+model", "transformer"), ("no-transformer", "predictor")):
        objs = rendered[case]
        (claim,) = [
            o for o in objs if o["kind"] == "PersistentVolumeClaim" and "prediction-log" in o["metadata"]["name"]
        ]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        env = _env(objs)
        assert env["SPX_PREDICTION_LOG_CLAIM"] == claim["metadata"]["name"] == "spx-kfp-prediction-log"
        isvc = _isvc(objs)
        pod = isvc["spec"][writer]
        container = pod["containers"][0] if writer == "transformer" else pod["model"]
        assert {"name": "prediction-log", "persistentVolumeClaim": {"claimName": "spx-kfp-prediction-log"}} in pod[
            "volumes"
        ]
        assert {"name": "prediction-log", "mountPath": "/var/lib/spx/prediction-log"} in container["volumeMounts"]
        assert {"name": "SPX_PREDICTION_LOG_DIR", "value": "/var/lib/spx/prediction-log"} in container["env"]
        assert pod["securityContext"]["fsGroup"] == 10001
        # a pod of the install consumes it, so that it binds where the storage class waits for a first consumer
        # (kind, k3d, the node tier): `helm install --wait` waits for every claim to be bound
        job = next(o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "spx-kfp-buckets-1")
        assert {
            "name": "prediction-log",
            "persistentVolumeClaim": {"claimName": "spx-kfp-prediction-log", "readOnly": True},
        } in job["spec"]["template"]["spec"]["volumes"]
    # logging off, or serverless mode (Knative refuses PVCs unless its features are declared on): no claim, the
    # emptyDir; the env ConfigMap still carries the key the deploy step reads, empty
    for case in ("no-log", "kind+model"):
        objs = rendered[case]
        assert not [
            o for o in objs if o["kind"] == "PersistentVolumeClaim" and "prediction-log" in o["metadata"]["name"]
        ], case
        assert "prediction-log" not in json.dumps(_isvc(objs)["spec"]), case
        env = _env(objs)
        assert env["SPX_PREDICTION_LOG_CLAIM"] == "", case
    serverless = render(
        helm_bin, VALUES["kind"] + WITH_MODEL + ["--set", "monitoring.predictionLog.persistence.serverless=true"]
    )
    assert "spx-kfp-prediction-log" in json.dumps(_isvc(serverless)["spec"]["transformer"])


def test_the_raw_overlay_keeps_the_log_on_a_claim_as_the_chart_does(rendered, manifests):
    """The kustomize raw overlay kept the prediction log on the /tmp emptyDir (a deleted pod took its unshipped
    rows, the defect the node tier found for the chart). It now carries the chart's claim: the same transformer
    volume, mount, env and fsGroup as the chart in raw mode, and the claim named in the env ConfigMap for the
    deploy step. The base (serverless: Knative refuses PVCs by default) keeps the emptyDir and an empty name."""
    objs = manifests["manifests/overlays/raw"]
    (claim,) = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    env = _env(objs)
    assert env["SPX_PREDICTION_LOG_CLAIM"] == claim["metadata"]["name"] == "spx-kfp-prediction-log"
    assert claim["metadata"]["namespace"] == _isvc(objs)["metadata"]["namespace"] == "spx"
    ours, charts = _isvc(objs)["spec"]["transformer"], _isvc(rendered["k3d+model"])["spec"]["transformer"]
    assert ours["volumes"] == charts["volumes"]
    assert ours["securityContext"] == charts["securityContext"]
    for key in ("volumeMounts", "env"):
        assert [x for x in ours["containers"][0][key] if "prediction-log" in json.dumps(x)] == [
            x for x in charts["containers"][0][key] if "prediction-log" in json.dumps(x)
        ], key
    base = manifests["manifests/base"]
    assert "prediction-log" not in json.dumps(_isvc(base)["spec"])
    assert not [o for o in base if o["kind"] == "PersistentVolumeClaim"]
