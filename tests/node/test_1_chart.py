"""The chart on a real node: ``helm install --wait``, every workload Ready, the bucket and its policy, MLflow
answering a pod by its Service name, Redis and the Feast registry, ``helm test``.

Stand-ins (tests/node/standins; values in tests/node/values-node.yaml): PostgreSQL 15 and Redis 7.0 from Debian
bookworm instead of the official postgres:16.4 and redis:7.4-alpine images, wrapped to honour their contract
(uid 999, POSTGRES_* env, initdb on an empty volume; flags-only args run redis-server). They cannot catch a
difference of the official images' own entrypoints (init scripts, env handling beyond the variables the chart
sets), of PostgreSQL 16 vs 15 or Redis 7.4 vs 7.0, or of Alpine's musl. The object store is the chart's own
``seaweedfs`` option (the component image), not a stand-in; the chart's MinIO template is not run here (MinIO
ships no server on the registries we can reach). KFP's upload Job is off (no KFP API server on the node).
"""

from __future__ import annotations

import json

import pytest

from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]


def test_install_makes_every_workload_ready(release):
    node, ns = release.node, release.namespace
    deployments = {d["metadata"]["name"]: d for d in node.get("deployments", ns)["items"]}
    statefulsets = {s["metadata"]["name"]: s for s in node.get("statefulsets", ns)["items"]}
    jobs = {
        j["metadata"]["name"]: j for j in node.get("jobs", ns, selector="app.kubernetes.io/instance=spx-kfp")["items"]
    }
    fn = release.fullname
    assert set(deployments) == {f"{fn}-seaweedfs", f"{fn}-mlflow", f"{fn}-redis", f"{fn}-evidently-ui"}
    for name, d in deployments.items():
        assert d["status"].get("readyReplicas") == d["spec"]["replicas"], (name, d["status"])
    assert set(statefulsets) == {f"{fn}-postgresql"}
    assert statefulsets[f"{fn}-postgresql"]["status"].get("readyReplicas") == 1
    assert set(jobs) == {f"{fn}-buckets-1"}
    assert jobs[f"{fn}-buckets-1"]["status"].get("succeeded") == 1
    # the Feast feature server is off by default: nothing calls it (the transformer reads Redis via the SDK)
    assert f"{fn}-feast" not in deployments
    # every pod of the release runs non-root with a read-only root filesystem (enforced by the kubelet here)
    for pod in node.get("pods", ns, selector="app.kubernetes.io/instance=spx-kfp")["items"]:
        for c in pod["spec"]["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (pod["metadata"]["name"], c["name"])
    print(f"\nhelm install --wait --wait-for-jobs: {release.install_seconds:.0f} s; node timings {node.timings}; "
          f"{load_average()}")  # fmt: skip


def _s3_from_host(release):
    """A MinIO SDK client on the host, through the object store's ClusterIP, with the release's Secret."""
    from minio import Minio

    node = release.node
    secret = node.get("secret", release.namespace, f"{release.fullname}-s3")["data"]
    import base64

    key = {k: base64.b64decode(v).decode() for k, v in secret.items()}
    address = node.service_address(release.namespace, f"{release.fullname}-seaweedfs", "s3")
    return Minio(address, access_key=key["AWS_ACCESS_KEY_ID"], secret_key=key["AWS_SECRET_ACCESS_KEY"], secure=False)


def test_buckets_exist_and_bronze_refuses_deletes(release):
    """The bucket Job (`spx buckets`, the component image, the MinIO SDK: no `mc` image) made both buckets and the
    policy; SeaweedFS enforces it for the chart's own credential."""
    import io

    from minio.error import S3Error

    client = _s3_from_host(release)
    assert {b.name for b in client.list_buckets()} >= {"spx", "mlflow"}
    policy = json.loads(client.get_bucket_policy("spx"))
    (statement,) = [s for s in policy["Statement"] if s.get("Sid") == "SpxBronzeWriteOnce"]
    assert statement["Effect"] == "Deny"
    client.put_object("spx", "bronze/node-test/probe.txt", io.BytesIO(b"raw"), 3)
    with pytest.raises(S3Error) as refused:
        client.remove_object("spx", "bronze/node-test/probe.txt")
    assert refused.value.code == "AccessDenied"
    assert client.get_object("spx", "bronze/node-test/probe.txt").read() == b"raw"
    client.put_object("spx", "scratch/node-test.txt", io.BytesIO(b"x"), 1)
    client.remove_object("spx", "scratch/node-test.txt")  # outside bronze/, deletes work


MLFLOW_PROBE = r"""
import json, os, requests
from urllib.parse import urlparse
uri = os.environ["MLFLOW_TRACKING_URI"]
api = uri + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"  # /health skips the Host check
short = urlparse(uri).netloc.split(".")[0]
out = {"uri": uri, "health": requests.get(uri + "/health", timeout=10).status_code}
out["api by Service name"] = requests.get(api, timeout=10).status_code
for name in (short, short + ":5000", short + ".spx", "evil.example"):
    out[f"host {name}"] = requests.get(api, headers={"Host": name}, timeout=10).status_code
print(json.dumps(out))
"""


def test_mlflow_answers_a_task_pod_by_its_service_name(release):
    """MLflow >= 3.5 answers 403 "Invalid Host header" to any Host it was not told about: before the chart passed
    --allowed-hosts, a task pod calling MLFLOW_TRACKING_URI (the Service's cluster.local name) got 403 here."""
    res = release.node.pod_job(
        release.namespace, "node-mlflow-probe", release.component_image, ["python", "-c", MLFLOW_PROBE],
        env_from=release.task_env_from(),
    ).require()  # fmt: skip
    out = json.loads(res.logs.strip().splitlines()[-1])
    assert out["uri"] == f"http://{release.fullname}-mlflow.{release.namespace}.svc.cluster.local:5000"
    assert out["health"] == 200 and out["api by Service name"] == 200, out
    assert all(v == 200 for k, v in out.items() if k.startswith("host ") and "evil" not in k), out
    assert out["host evil.example"] == 403, out  # the DNS-rebinding check is still on: not "allow every host"


def test_helm_test_checks_every_service_by_the_tasks_names(release):
    """`helm test` (the chart's test hook: `spx check` in the component image) passes; its lines name each check."""
    res = release.node.helm("test", release.name, "-n", release.namespace, "--logs", timeout=600)
    out = res.stdout
    for line in (
        "PASS s3 buckets",
        "PASS s3 round trip",
        "PASS s3 bronze write-once policy: SpxBronzeWriteOnce present; enforced",
        "PASS mlflow:",
        "PASS redis:",
        "PASS feast registry:",
    ):
        assert line in out, out
    assert "FAIL" not in out, out
