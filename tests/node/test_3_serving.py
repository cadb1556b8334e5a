"""The served model as pods: the InferenceService the pipeline's deploy step created (through the API, as the
pipeline's ServiceAccount), run the way KServe's controller runs a RawDeployment (tests/node/kserve_emulator.py,
derived from the stored InferenceService, the chart's ServingRuntime and the ServiceAccount's S3 Secret): the
predictor with KServe's storage initializer fetching the champion from the in-cluster bucket, the transformer with
the prediction log, their Services. Clients call the transformer's Service with tritonclient over V2.

What this cannot catch: no KServe controller or webhook runs (their defaulting and validation, the HPA, the
ingress), no Knative (serverless revisions, the queue-proxy, scale to zero, the PodSpec features Knative refuses)
and so no canary routing (``canaryTrafficPercent`` or raw mode's ``spec.canary`` splitting traffic); the storage
initializer is KServe's download code (kserve-storage 0.21.0) on the serving image, not the kserve/storage-initializer
image. The security context, read-only root filesystem, ServiceAccount, args and env are the objects' own, enforced
by the kubelet.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.node.conftest import ISVC_NAME
from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]

INSTRUMENT = "SPX500_USD"


def _pods(release, component: str) -> list[dict]:
    return release.node.get("pods", release.namespace, selector=f"component={component}")["items"]


def _as_of(release, pipeline_run) -> str:
    """A time just after the newest bar Feast materialised (the online store holds the bundled quarter's last bar;
    the transformer refuses features older than its max age before ``as_of``)."""
    gold = release.store().read_parquet(f"gold/{pipeline_run.run_id}/features.parquet")
    ts = gold["timestamp"] if "timestamp" in gold else gold.index.to_series()
    return (ts.max() + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")


def _infer(client, name: str, rid: str, as_of: str):
    import tritonclient.http as http

    inputs = []
    for field, value in (("instrument", INSTRUMENT), ("as_of", as_of)):
        t = http.InferInput(field, [1], "BYTES")
        t.set_data_from_numpy(np.array([value.encode()], dtype=object))
        inputs.append(t)
    return client.infer(name, inputs, request_id=rid)


def test_the_deploy_step_created_the_inference_service(served, pipeline_run, release):
    isvc = served.isvc
    selection = release.store().get_json(f"selection/{pipeline_run.run_id}/best_model_selection.json")
    champion = selection["champion"]
    deploy = json.loads(pipeline_run.runner.runs["condition-3/deploy-op"].parameters["Output"])
    assert deploy["verb"] == "create", deploy
    assert isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "spx-deploy"
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == champion["native_uri"] and model["runtime"] == "spx-predictor"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_the_pods_run_as_the_objects_specify(served, release):
    """Derived, not copied: each pod's containers carry the spec's args, env, account and security context, and the
    kubelet enforced them (non-root, read-only root filesystem); the storage initializer fetched the champion."""
    fn = release.fullname
    (pred,) = _pods(release, "predictor")
    (trans,) = _pods(release, "transformer")
    assert pred["spec"]["serviceAccountName"] == f"{fn}-kserve-s3"
    (main,) = pred["spec"]["containers"]
    assert main["command"] == ["spx-predictor"] and f"--model_name={ISVC_NAME}" in main["args"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True} in main["volumeMounts"]
    init_log = release.node.kubectl(
        "logs", pred["metadata"]["name"], "-n", release.namespace, "-c", "storage-initializer"
    ).stdout
    assert "Downloaded object" in init_log or "Successfully copied" in init_log, init_log[-2000:]
    (tc,) = trans["spec"]["containers"]
    assert tc["command"] == ["spx-transformer"]
    assert tc["args"][-6:] == [
        "--model_name", ISVC_NAME, "--predictor_host", f"{ISVC_NAME}-predictor.{release.namespace}",
        "--http_port", "8080",
    ]  # fmt: skip
    env = {e["name"]: e.get("value") for e in tc["env"]}
    assert env["SPX_PREDICTION_LOG"] == "true" and env["SPX_INFERENCE_SERVICE"] == ISVC_NAME
    assert tc["securityContext"]["readOnlyRootFilesystem"] is True
    for pod in (pred, trans):
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, status
    # the uid the image runs as (10001, not root) under runAsNonRoot; / is read-only
    out = release.node.kubectl(
        "exec", trans["metadata"]["name"], "-n", release.namespace, "--",
        "python", "-c", "import os; print(os.getuid()); open('/x', 'w')",
        check=False,
    )  # fmt: skip
    assert out.stdout.split()[0] == "10001" and "Read-only file system" in out.stderr, (out.stdout, out.stderr)


def test_a_v2_request_through_the_service_gets_200(served, pipeline_run, release):
    import tritonclient.http as http

    client = http.InferenceServerClient(served.transformer, connection_timeout=10, network_timeout=30)
    deadline = time.monotonic() + 60
    while True:  # kube-proxy programs the endpoints about a second after the pod is Ready
        try:
            assert client.is_server_ready()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    result = _infer(client, ISVC_NAME, "node-first", _as_of(release, pipeline_run))
    selection = release.store().get_json(f"selection/{pipeline_run.run_id}/best_model_selection.json")
    assert result.get_response()["id"] == "node-first"
    p = float(result.as_numpy("probability")[0])
    assert 0.0 <= p <= 1.0
    version = result.as_numpy("model_version")[0]
    assert (version.decode() if isinstance(version, bytes) else str(version)) == str(
        selection["champion"]["model_version"]
    )
    features = json.loads(result.as_numpy("features_used")[0])
    metrics = release.store().get_json(f"models/{pipeline_run.run_id}/{pipeline_run.variant}/metrics.json")
    assert list(features) == metrics["features"]  # the champion's features, in its order, from Feast's Redis


class Traffic:
    """Clients calling the transformer's Service: each request id and whether it was answered 200."""

    def __init__(self, address: str, as_of: str, clients: int = 3):
        self.address, self.as_of, self.clients = address, as_of, clients
        self.answered: set[str] = set()
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(clients)]

    def _run(self, k: int) -> None:
        import tritonclient.http as http

        n = 0
        client = None
        while not self._stop.is_set():
            rid = f"node-{k}-{n}"
            n += 1
            try:
                client = client or http.InferenceServerClient(self.address, connection_timeout=5, network_timeout=10)
                _infer(client, ISVC_NAME, rid, self.as_of)
                self.answered.add(rid)
            except Exception:  # noqa: BLE001 - refused, reset, 5xx: not answered 200, and counted
                self.failed += 1
                client = None
                time.sleep(0.2)
            time.sleep(0.05)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait_answers(self, more: int, timeout: float) -> None:
        want, deadline = len(self.answered) + more, time.monotonic() + timeout
        while len(self.answered) < want:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answered, {self.failed} failed"
            time.sleep(0.2)


def test_no_prediction_answered_200_is_lost_when_the_transformer_pod_goes_while_the_bucket_is_away(
    served, pipeline_run, release
):
    """The transformer writes each row to its local log before answering and ships it later. Here the bucket's
    pod is away (SeaweedFS scaled to 0) while the transformer keeps answering, and then the transformer's pod is
    deleted under traffic: its SIGTERM cannot ship to an absent bucket, so the rows it answered live only in its
    local log volume. A replacement pod and the bucket come back; every request answered 200 must be in the bucket
    exactly once. With the log on the pod's emptyDir (deleted with the pod) this lost every row answered while
    the bucket was away."""
    from spx.components.prediction_log import read_predictions

    node, ns, fn = release.node, release.namespace, release.fullname
    store = release.store()
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    (old,) = _pods(release, "transformer")
    t0 = time.monotonic()
    with Traffic(served.transformer, _as_of(release, pipeline_run)) as traffic:
        traffic.wait_answers(30, 60)
        node.kubectl("scale", f"deployment/{fn}-seaweedfs", "-n", ns, "--replicas=0")
        node.kubectl("wait", "--for=delete", "pod", "-l", "app.kubernetes.io/component=seaweedfs", "-n", ns,
                     "--timeout=120s", timeout=150, check=False)  # fmt: skip
        during_outage = len(traffic.answered)
        traffic.wait_answers(30, 60)  # answered while the bucket is away: rows only in the local log
        during_outage = len(traffic.answered) - during_outage
        node.kubectl("delete", "pod", old["metadata"]["name"], "-n", ns, "--wait=true", timeout=120)
        node.kubectl("scale", f"deployment/{fn}-seaweedfs", "-n", ns, "--replicas=1")
        node.kubectl("rollout", "status", f"deployment/{fn}-seaweedfs", "-n", ns, "--timeout=300s", timeout=330)
        node.kubectl("rollout", "status", f"deployment/{ISVC_NAME}-transformer", "-n", ns, "--timeout=300s",
                     timeout=330)  # fmt: skip
        traffic.wait_answers(30, 120)  # the new pod answers
    answered = set(traffic.answered)
    deadline = time.monotonic() + 90  # the new pod ships the old segments and its own every flush interval (10 s)
    while True:
        log = read_predictions(store, start=started, raw=True)
        ours = log[log["request_id"].str.startswith("node-") & (log["request_id"] != "node-first")]
        missing = answered - set(ours["request_id"])
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(3)
    seconds = time.monotonic() - t0
    print(f"\n{len(answered)} answered 200 ({during_outage} while the bucket was away), {traffic.failed} not; "
          f"{len(ours)} rows in the bucket; {seconds:.0f} s ({load_average()})")  # fmt: skip
    assert during_outage >= 30
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not in the bucket"
    counts = ours.groupby(["request_id", "row_index"]).size()
    assert (counts == 1).all(), counts[counts > 1].head()  # exactly once, counted by request id
    assert (ours["inference_service"] == ISVC_NAME).all() and (ours["namespace"] == ns).all()
    (new,) = _pods(release, "transformer")
    assert new["metadata"]["name"] != old["metadata"]["name"]
