"""The cluster side against a real kube-apiserver (v1.25) with the KServe v0.20.0 CRDs and KFP 2.5.0 installed.

One API server per session (``kube`` fixture, tests/cluster/apiserver.py). Every object is validated and stored
by the real control plane: built-in schemas, the CRDs' openAPIV3Schema, RBAC for every ServiceAccount, Pod
Security admission, optimistic concurrency. No controllers run (pods stay Pending, Jobs never finish).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cluster.support import CHART, ROOT, A, B, fullname

pytestmark = pytest.mark.cluster

VALUES = {"default": [], "kind": ["-f", str(CHART / "values-kind.yaml")], "k3d": ["-f", str(CHART / "values-k3d.yaml")]}


def install(kube, release: str, namespace: str, *extra: str) -> None:
    kube.helm("install", release, str(CHART), "-n", namespace, "--create-namespace", *extra)


def isvc(kube, namespace: str, name: str = "spx-direction") -> dict | None:
    return kube.get("inferenceservices.serving.kserve.io", name, namespace)


# ------------------------------------------------------------------------------------------ helm install


@pytest.mark.parametrize("mode", ["serverless", "raw"])
@pytest.mark.parametrize("canary", [False, True], ids=["stable", "canary"])
@pytest.mark.parametrize("values", ["default", "kind", "k3d"])
def test_helm_install_every_object_accepted(kube, values, canary, mode):
    """`helm install` of the chart (no --wait; nothing can become ready here) with each values file, in both
    modes, with and without a canary: every object is accepted by the real API server and the CRD schemas."""
    release = f"h-{values}-{mode[:3]}-{int(canary)}"
    ns = release
    extra = [
        *VALUES[values],
        "--set",
        f"inferenceService.mode={mode}",
        "--set",
        f"inferenceService.model.storageUri={A}",
        "--set",
        "servingRuntime.create=true",
    ]
    if canary:
        extra += [
            "--set",
            f"inferenceService.canary.storageUri={B}",
            "--set",
            "inferenceService.canary.format=lightgbm",
        ]
    install(kube, release, ns, *extra)
    try:
        manifest = kube.helm("get", "manifest", release, "-n", ns).stdout
        objs = [o for o in yaml.safe_load_all(manifest) if o]
        assert len(objs) >= 20
        stored_names = kube.kubectl("get", "-f", "-", "-o", "name", input=manifest).stdout.split()
        assert len(stored_names) == len(objs)  # every rendered object is stored
        stored = isvc(kube, ns)
        predictor = stored["spec"]["predictor"]
        assert predictor["model"]["storageUri"] == A
        assert predictor["model"]["securityContext"]["readOnlyRootFilesystem"] is True
        if canary and mode == "raw":
            (entry,) = stored["spec"]["canary"]
            assert entry["predictor"]["model"]["storageUri"] == B and entry["predictor"]["name"] == "canary"
            assert "maxReplicas" not in entry["predictor"]
        else:
            # serverless canary from values: not on install (KServe would give it 100%); applied on upgrade
            assert "canaryTrafficPercent" not in predictor and "canary" not in stored["spec"]
        if canary and mode == "serverless" and values == "default":
            kube.helm("upgrade", release, str(CHART), "-n", ns, *extra)
            upgraded = isvc(kube, ns)["spec"]["predictor"]
            assert upgraded["canaryTrafficPercent"] == 10 and upgraded["model"]["storageUri"] == B
        run_ns = "kubeflow" if values in ("kind", "k3d") else ns
        sa = f"system:serviceaccount:{run_ns}:spx-pipeline"
        assert can_i(kube, sa, "get", "configmaps/kfp-launcher", run_ns)
        assert can_i(kube, sa, "patch", "inferenceservices.serving.kserve.io", ns)
    finally:
        kube.helm("uninstall", release, "-n", ns)


def test_helm_install_needs_the_run_namespace(kube):
    """The chart writes into the run namespace (single-user KFP: "kubeflow") but does not create it: a missing
    one is a clear error before anything is written (defect 9)."""
    res = kube.helm(
        "install",
        "nons",
        str(CHART),
        "-n",
        "nons",
        "--create-namespace",
        "--set",
        "pipeline.runNamespace=kubeflow-missing",
        check=False,
    )
    assert res.returncode != 0
    assert 'pipeline.runNamespace "kubeflow-missing" does not exist' in res.stderr
    assert "install Kubeflow Pipelines first" in res.stderr


# ------------------------------------------------------------------------------------------ manifests


def test_manifests_apply_server_side(kube):
    """`kubectl apply --server-side` of every kustomization; the raw overlay's ServingRuntimes land in the
    namespace (defect 8), the ConfigMaps have every key the compiled tasks read (defect 7), and the single-user
    KFP overlay puts the pipeline's account where KFP runs the pods, as the chart does (defect 9)."""
    from spx.pipelines.k8s import ENV_CONFIGMAP_KEYS

    kustomizations = sorted(
        (p.parent for p in (ROOT / "manifests").rglob("kustomization.yaml")),
        key=lambda p: ("kfp-single-user" in str(p), str(p)),
    )  # it re-binds base's account
    assert len(kustomizations) == 5
    try:
        for path in kustomizations:
            rendered = kube.kubectl("kustomize", str(path)).stdout
            kube.kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                f"--field-manager=test-{path.name}",
                "-f",
                "-",
                input=rendered,
            )
            allowed = (
                {"kubeflow"}
                if path.name == "run-namespace"
                else ({"spx", "kubeflow"} if path.name == "kfp-single-user" else {"spx"})
            )
            for o in yaml.safe_load_all(rendered):
                if o and o["kind"] != "Namespace":
                    assert o["metadata"].get("namespace") in allowed, (path.name, o["kind"], o["metadata"]["name"])
        for name in ("spx-xgbserver", "spx-lgbserver", "spx-predictor"):
            assert kube.get("servingruntimes.serving.kserve.io", name, "spx") is not None
        for ns in ("spx", "kubeflow"):
            data = kube.get("configmap", "spx-kfp-env", ns)["data"]
            assert set(ENV_CONFIGMAP_KEYS) <= set(data), set(ENV_CONFIGMAP_KEYS) - set(data)
        user = "system:serviceaccount:kubeflow:spx-pipeline"
        assert can_i(kube, user, "patch", "inferenceservices.serving.kserve.io", "spx")
        assert can_i(kube, user, "get", "configmaps/kfp-launcher", "kubeflow")
        assert can_i(kube, user, "get", "secrets/spx-kfp-s3", "kubeflow")
        assert not can_i(kube, user, "get", "secrets/mysql-secret", "kubeflow")
    finally:  # the chart's kind/k3d releases own spx-pipeline in kubeflow
        kube.kubectl(
            "delete",
            "-n",
            "kubeflow",
            "serviceaccount/spx-pipeline",
            "role/spx-pipeline-kfp-runtime",
            "rolebinding/spx-pipeline-kfp-runtime",
            "configmap/spx-kfp-env",
            "secret/spx-kfp-s3",
            "--ignore-not-found",
        )


def storage_initializer_pod(namespace: str) -> dict:
    """A predictor pod as KServe's webhook shapes it for an s3:// storageUri: our kserve-container (restricted
    securityContext) plus the injected storage-initializer init container, which carries no securityContext
    (pkg/webhook/admission/pod/storage_initializer_injector.go)."""
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "spx-direction-predictor-00001", "namespace": namespace},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                {
                    "name": "storage-initializer",
                    "image": "kserve/storage-initializer:v0.20.0",
                    "args": ["s3://spx/models/run-1/xgb_base/", "/mnt/models"],
                    "volumeMounts": [{"name": "kserve-provision-location", "mountPath": "/mnt/models"}],
                }
            ],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "ghcr.io/spx-kfp/spx-serving:0.1.0",
                    "securityContext": restricted,
                    "volumeMounts": [
                        {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
                    ],
                }
            ],
            "volumes": [{"name": "kserve-provision-location", "emptyDir": {}}],
        },
    }


def test_pod_security_admits_the_storage_initializer(kube):
    """The manifests' namespace label set must admit a predictor pod that loads from s3:// (defect 3):
    Pod Security "restricted" refuses KServe's storage-initializer; "baseline" admits it and warns."""
    namespace = yaml.safe_load((ROOT / "manifests" / "base" / "namespace.yaml").read_text())
    namespace["metadata"]["name"] = "psa"
    kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(namespace))
    kube.kubectl("create", "serviceaccount", "default", "-n", "psa")  # no controller creates it here
    res = kube.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(storage_initializer_pod("psa")), check=False
    )
    assert res.returncode == 0, res.stderr
    assert "restricted" in res.stderr  # warned about, not refused
    strict = {
        **namespace,
        "metadata": {"name": "psa-restricted", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(strict))
    kube.kubectl("create", "serviceaccount", "default", "-n", "psa-restricted")
    refused = kube.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(storage_initializer_pod("psa-restricted")),
        check=False,
    )
    assert refused.returncode != 0 and "storage-initializer" in refused.stderr


# ------------------------------------------------------------------------------------------ RBAC


def can_i(kube, user: str, verb: str, resource: str, namespace: str) -> bool:
    res = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False)
    return res.stdout.strip() == "yes"


ROW = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def rules(kube, user: str, namespace: str) -> set[tuple[str, str, str]]:
    """`kubectl auth can-i --list` as (resource, resourceName, verb) triples, non-resource URLs left out."""
    out = kube.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={user}").stdout
    found = set()
    for line in out.splitlines()[1:]:
        m = ROW.match(line.strip())
        if not m or m.group(2):
            continue
        resource, names, verbs = m.group(1), m.group(3).split() or [""], m.group(4).split()
        found |= {(resource, n, v) for n in names for v in verbs}
    return found


@pytest.fixture(scope="module")
def release(kube):
    """A default-values release under a name other than spx-kfp, in its own namespace."""
    ns, name = "rel", "prod"
    install(kube, name, ns)
    return {"namespace": ns, "name": name, "fullname": fullname(name)}


def test_every_service_account_has_exactly_what_it_needs(kube, release):
    """`kubectl auth can-i` for every ServiceAccount the chart creates: the pipeline account may do what the
    deploy/canary code does (get/create/patch InferenceServices) and what KFP 2.5's driver/launcher and Argo's
    executor do with the run's account (defect 2), nothing more; the model server's account nothing at all."""
    ns, fn = release["namespace"], release["fullname"]
    kube.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    baseline = rules(kube, f"system:serviceaccount:{ns}:nobody", ns)  # what every authenticated user may do
    accounts = {
        o["metadata"]["name"]
        for o in yaml.safe_load_all(kube.helm("get", "manifest", "prod", "-n", ns).stdout)
        if o and o["kind"] == "ServiceAccount"
    }
    assert accounts == {"spx-pipeline", f"{fn}-kserve-s3"}
    pipeline = rules(kube, f"system:serviceaccount:{ns}:spx-pipeline", ns) - baseline
    assert pipeline == {
        ("inferenceservices.serving.kserve.io", "", "get"),
        ("inferenceservices.serving.kserve.io", "", "create"),
        ("inferenceservices.serving.kserve.io", "", "patch"),
        ("configmaps", "kfp-launcher", "get"),
        ("secrets", f"{fn}-s3", "get"),
        ("workflowtaskresults.argoproj.io", "", "create"),
        ("workflowtaskresults.argoproj.io", "", "patch"),
    }
    assert rules(kube, f"system:serviceaccount:{ns}:{fn}-kserve-s3", ns) - baseline == set()
    user = f"system:serviceaccount:{ns}:spx-pipeline"
    for verb, resource, where in [
        ("delete", "inferenceservices.serving.kserve.io", ns),
        ("list", "secrets", ns),
        ("get", f"secrets/{fn}-postgresql", ns),
        ("get", "configmaps/kfp-launcher", "kubeflow"),
        ("patch", "inferenceservices.serving.kserve.io", "default"),
    ]:
        assert not can_i(kube, user, verb, resource, where), (verb, resource, where)


def test_kfp_launcher_config_for_the_charts_object_store(kube, release):
    """KFP 2.5's launcher reads kfp-launcher in the run namespace: the chart's has the endpoint, path-style
    addressing and a secretRef to a Secret that exists and that the run's account may read (defect 13)."""
    ns, fn = release["namespace"], release["fullname"]
    data = kube.get("configmap", "kfp-launcher", ns)["data"]
    assert data["defaultPipelineRoot"] == "s3://spx/pipeline-root"
    s3 = yaml.safe_load(data["providers"])["s3"]["default"]
    assert s3["endpoint"] == f"{fn}-minio.{ns}.svc.cluster.local:9000"
    assert s3["forcePathStyle"] is True and s3["disableSSL"] is True and s3["region"] == "us-east-1"
    ref = s3["credentials"]["secretRef"]
    assert s3["credentials"]["fromEnv"] is False
    secret = kube.get("secret", ref["secretName"], ns)
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret["data"])
    assert can_i(kube, f"system:serviceaccount:{ns}:spx-pipeline", "get", f"secrets/{ref['secretName']}", ns)


def test_kfp_launcher_patch_for_kfps_own_configmap(kube):
    """Where KFP owns kfp-launcher (kind/k3d values: run namespace kubeflow) the chart prints the merge patch;
    it applies to KFP 2.5's own ConfigMap and yields the same providers block."""
    notes = kube.helm(
        "install", "notes", str(CHART), "-n", "notes", "--create-namespace", *VALUES["kind"], "--dry-run=server"
    ).stdout
    line = next(x for x in notes.splitlines() if "patch configmap kfp-launcher" in x)
    patch = re.search(r"-p '(.*)'", line).group(1)
    kube.kubectl("-n", "kubeflow", "patch", "configmap", "kfp-launcher", "--type", "merge", "-p", patch)
    providers = yaml.safe_load(kube.get("configmap", "kfp-launcher", "kubeflow")["data"]["providers"])
    assert providers["s3"]["default"]["forcePathStyle"] is True
    assert providers["s3"]["default"]["endpoint"] == "notes-spx-kfp-minio.notes.svc.cluster.local:9000"


# ------------------------------------------------------------------------------------------ pipelines


def _compiled_references(path: Path) -> tuple[set, set, dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets, maps, keys = set(), set(), {}
    for cfg in executors.values():
        for s in cfg.get("secretAsEnv", []):
            secrets.add(s["secretName"])
        for m in cfg.get("configMapAsEnv", []):
            maps.add(m["configMapName"])
            keys.setdefault(m["configMapName"], set()).update(k["configMapKey"] for k in m["keyToEnv"])
    return secrets, maps, keys


def test_compiled_pipelines_reference_what_the_release_created(kube, release, tmp_path, monkeypatch):
    """Compile both pipelines the way the release's upload Job does (its env) for a release not named spx-kfp:
    every Secret/ConfigMap/key they read and the run's ServiceAccount exist in the run namespace; the deploy
    step's names from the env ConfigMap exist too (defect 6)."""
    import subprocess
    import sys

    ns, fn = release["namespace"], release["fullname"]
    (job,) = [
        o
        for o in yaml.safe_load_all(kube.helm("get", "manifest", "prod", "-n", ns).stdout)
        if o and o["kind"] == "Job" and "kfp-upload" in o["metadata"]["name"]
    ]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    run_ns = ns
    assert kube.get("serviceaccount", env["RUN_SERVICE_ACCOUNT"], run_ns) is not None
    code = (
        "import sys; from spx.pipelines.compile import compile_pipeline; "
        "from spx.pipelines.monitoring import compile_monitoring; "
        "compile_pipeline(sys.argv[1]); compile_monitoring(sys.argv[2])"
    )
    out = [tmp_path / "training.yaml", tmp_path / "monitoring.yaml"]
    penv = {
        **kube.env(),
        "SPX_K8S_S3_SECRET": env["SPX_K8S_S3_SECRET"],
        "SPX_K8S_CONFIGMAP": env["SPX_K8S_CONFIGMAP"],
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "-c", code, *map(str, out)], cwd=ROOT, env=penv, check=True, timeout=300, capture_output=True
    )
    for path in out:
        secrets, maps, keys = _compiled_references(path)
        assert secrets == {f"{fn}-s3"} and maps == {f"{fn}-env"}, (secrets, maps)
        for name in secrets:
            assert kube.get("secret", name, run_ns) is not None
        for name in maps:
            data = kube.get("configmap", name, run_ns)["data"]
            assert keys[name] <= set(data), keys[name] - set(data)
    data = kube.get("configmap", f"{fn}-env", ns)["data"]
    for key in ("SPX_K8S_S3_SECRET", "SPX_K8S_CONFIGMAP", "SPX_KSERVE_SERVICE_ACCOUNT"):
        monkeypatch.setenv(key, data[key])
    monkeypatch.setenv("SPX_SERVING_IMAGE", "ghcr.io/spx-kfp/spx-serving:0.1.0")
    from spx.components.deploy.canary import ServingConfig

    cfg = ServingConfig.in_cluster(namespace=ns)
    assert kube.get("serviceaccount", cfg.service_account, ns) is not None
    assert kube.get("configmap", cfg.transformer_env_configmap, ns) is not None
    assert kube.get("secret", cfg.transformer_env_secret, ns) is not None
