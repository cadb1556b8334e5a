"""The release's lifecycle on a real node, last in the tier: ``helm upgrade`` keeps the data and the secrets (the
stateful pods restarted afterwards still find their data and log in with the kept passwords), and ``helm
uninstall`` leaves exactly what docs/cluster.md ("Uninstall") says it leaves."""

from __future__ import annotations

import json
import time

import pytest

from tests.node.conftest import CHART, ISVC_NAME
from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]

# docs/cluster.md, "Uninstall": what `helm uninstall` leaves in the release namespace, on purpose
DOCUMENTED_LEFTOVERS = {
    ("PersistentVolumeClaim", "spx-kfp-seaweedfs"),  # the object store's data (bronze is never deleted)
    ("PersistentVolumeClaim", "data-spx-kfp-postgresql-0"),  # the StatefulSet's claim: MLflow's runs and registry
    ("PersistentVolumeClaim", "spx-kfp-prediction-log"),  # answered predictions the writer may not have shipped yet
    # `helm test`'s pod: Helm never deletes hook pods on uninstall, and the chart keeps it after a run (delete
    # policy before-hook-creation) so that `helm test --logs` and `kubectl logs` can show its lines
    ("Pod", "spx-kfp-check"),
    # created by the pipeline's deploy step, not by the chart: `spx deploy` / `spx promote` own it
    ("InferenceService", ISVC_NAME),
}
# what every namespace has, and what the tests themselves created (labelled spx.io/node-test)
NOT_THE_CHARTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


def _secrets(release) -> dict:
    node, ns, fn = release.node, release.namespace, release.fullname
    return {name: node.get("secret", ns, name)["data"] for name in (f"{fn}-s3", f"{fn}-postgresql")}


def _champion(release) -> str:
    from tests.node.test_2_pipeline import CHAMPION_PROBE

    res = release.node.pod_job(
        release.namespace, "node-champion-after", release.component_image, ["python", "-c", CHAMPION_PROBE],
        env_from=release.task_env_from(),
    ).require()  # fmt: skip
    return json.loads(res.logs.strip().splitlines()[-1])["version"]


def test_upgrade_keeps_data_and_secrets(pipeline_run, release):
    from tests.node.test_1_chart import _s3_from_host

    node, ns, fn = release.node, release.namespace, release.fullname
    secrets_before = _secrets(release)
    champion_before = _champion(release)
    client = _s3_from_host(release)
    keys_before = {o.object_name for o in client.list_objects("spx", recursive=True)}

    t0 = time.monotonic()
    node.helm(
        "upgrade", release.name, str(CHART), *release.helm_args(), "--wait", "--wait-for-jobs",
        "--timeout", "15m",
    )  # fmt: skip
    upgrade_seconds = time.monotonic() - t0
    assert _secrets(release) == secrets_before  # random passwords kept (lookup), not regenerated
    jobs = {
        j["metadata"]["name"] for j in node.get("jobs", ns, selector="app.kubernetes.io/component=buckets")["items"]
    }
    assert jobs == {f"{fn}-buckets-2"}  # the new revision's bucket Job ran; the old one is gone

    # restart every stateful pod: each must find its data on its volume and log in with the kept secrets
    for kind, name in (
        ("deployment", f"{fn}-seaweedfs"),
        ("statefulset", f"{fn}-postgresql"),
        ("deployment", f"{fn}-mlflow"),
    ):
        node.kubectl("rollout", "restart", f"{kind}/{name}", "-n", ns)
        node.kubectl("rollout", "status", f"{kind}/{name}", "-n", ns, "--timeout=300s", timeout=330)
    keys_after = {o.object_name for o in _s3_from_host(release).list_objects("spx", recursive=True)}
    assert keys_before <= keys_after, sorted(keys_before - keys_after)[:10]
    assert _champion(release) == champion_before
    print(f"\nhelm upgrade --wait: {upgrade_seconds:.0f} s ({load_average()})")


def _namespace_objects(node, ns: str) -> set[tuple[str, str]]:
    kinds = node.kubectl("api-resources", "--namespaced", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    items = json.loads(node.kubectl("get", ",".join(kinds), "-n", ns, "-o", "json").stdout)["items"]
    return {
        (o["kind"], o["metadata"]["name"])
        for o in items
        if "spx.io/node-test" not in (o["metadata"].get("labels") or {})
        and not (o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-launcher"))
        and not (o["kind"] in ("Pod", "Job") and o["metadata"].get("labels", {}).get("job-name"))
    } - NOT_THE_CHARTS


def test_uninstall_leaves_only_what_is_documented(pipeline_run, release):
    node, ns = release.node, release.namespace
    node.helm("uninstall", release.name, "-n", ns, "--wait", "--timeout", "5m")
    deadline = time.monotonic() + 120
    left = _namespace_objects(node, ns)
    while time.monotonic() < deadline and left - DOCUMENTED_LEFTOVERS:
        time.sleep(2)  # pods terminate in the background
        left = _namespace_objects(node, ns)
    assert left == DOCUMENTED_LEFTOVERS
