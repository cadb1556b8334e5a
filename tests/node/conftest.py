"""Fixtures of the ``node`` tier: a real one-node Kubernetes, the project's images in it, the chart installed.

One node and one release per session (the tests run in file order: the chart, the pipeline's tasks, monitoring,
then upgrade and uninstall). Where the node cannot run (not root, no ../shared/tools/k8s/node, images not built)
the tier is skipped with what to do; under ``CI=true`` that is a failure instead. The node is stopped at the end
of the session (its folder is kept: logs for CI, and loaded images for the next run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from spx.core.settings import kube_test_tools
from tests.node.node import NAMESPACE, RELEASE, Node, Unavailable, check_prerequisites, project_images
from tests.support import ROOT

CHART = ROOT / "helm" / "spx-kfp"
VALUES = Path(__file__).with_name("values-node.yaml")


@dataclass
class Release:
    node: Node
    name: str
    namespace: str
    image_tag: str
    install_seconds: float

    @property
    def fullname(self) -> str:
        return self.name if "spx-kfp" in self.name else f"{self.name}-spx-kfp"

    @property
    def component_image(self) -> str:
        return f"localhost/spx-component:{self.image_tag}"

    @property
    def serving_image(self) -> str:
        return f"localhost/spx-serving:{self.image_tag}"

    def helm_args(self) -> list[str]:
        return [
            "-n", self.namespace, "-f", str(VALUES),
            "--set", f"images.component.tag={self.image_tag}", "--set", f"images.serving.tag={self.image_tag}",
        ]  # fmt: skip

    def store(self):
        """The project's ObjectStore on the host, through the object store's ClusterIP, with the release's Secret."""
        import base64

        from pydantic import SecretStr

        from spx.core.settings import S3Settings
        from spx.core.storage import ObjectStore

        secret = {
            k: base64.b64decode(v).decode()
            for k, v in self.node.get("secret", self.namespace, f"{self.fullname}-s3")["data"].items()
        }
        address = self.node.service_address(self.namespace, f"{self.fullname}-seaweedfs", "s3")
        return ObjectStore(
            S3Settings.model_construct(
                endpoint_url=f"http://{address}",
                access_key=secret["AWS_ACCESS_KEY_ID"],
                secret_key=SecretStr(secret["AWS_SECRET_ACCESS_KEY"]),
                region="us-east-1",
                bucket="spx",
            )
        )

    def task_env_from(self) -> list[dict]:
        """What a pipeline task gets: the env ConfigMap and the S3 Secret (kfp-kubernetes use_*_as_env)."""
        return [
            {"configMapRef": {"name": f"{self.fullname}-env"}},
            {"secretRef": {"name": f"{self.fullname}-s3"}},
        ]


@dataclass
class PipelineRun:
    runner: object  # tests.node.kfp_runner.PipelineRunner
    run_id: str
    variant: str
    seconds: float


def _unavailable(message: str):
    tools = kube_test_tools(ROOT)
    text = f"no one-node Kubernetes for the node tier: {message}"
    if tools.ci:
        pytest.fail(text)
    pytest.skip(text)


@pytest.fixture(scope="session")
def node(kubectl_bin, helm_bin):
    tools = kube_test_tools(ROOT)
    node_sh = tools.kube_tools / "node" / "node.sh"
    images = project_images(tools.node_image_tag)
    try:
        check_prerequisites(node_sh, images)
    except Unavailable as exc:
        _unavailable(str(exc))
    tools.node_dir.mkdir(parents=True, exist_ok=True)
    the_node = Node(tools.node_dir, node_sh, kubectl_bin, helm_bin)
    try:
        the_node.start()
    except Unavailable as exc:
        _unavailable(str(exc))
    try:
        # a previous session's objects come back with the node's etcd: start from an empty namespace and PVs
        the_node.delete_namespace(NAMESPACE)
        the_node.pvs(10)
        # KServe's CRDs, as on a cluster with KServe installed (the chart renders a ServingRuntime); no KServe
        # controller runs here, so InferenceServices stay inert objects
        the_node.kubectl("apply", "--server-side", "-f", str(tools.kube_tools / "crds" / "kserve-v0.20.0"))
        the_node.kubectl("wait", "--for=condition=established", "--timeout=60s", "crd", "--all", timeout=90)
        # the serving image is loaded only by what runs it (serving_image below)
        the_node.load([i for i in images if "spx-serving" not in i])
        yield the_node
    finally:
        the_node.stop()


@pytest.fixture(scope="session")
def serving_image(node) -> str:
    """The serving image, loaded into the node on first use (the transformer/predictor pods need it)."""
    image = f"localhost/spx-serving:{kube_test_tools(ROOT).node_image_tag}"
    node.load([image])
    return image


@pytest.fixture(scope="session")
def release(node):
    """``helm install --wait --wait-for-jobs`` of the chart with the node's values, once per session."""
    tag = kube_test_tools(ROOT).node_image_tag
    rel = Release(node, RELEASE, NAMESPACE, tag, 0.0)
    node.kubectl("create", "namespace", NAMESPACE)
    t0 = time.monotonic()
    res = node.helm(
        "install", RELEASE, str(CHART), *rel.helm_args(), "--wait", "--wait-for-jobs", "--timeout", "15m",
        check=False,
    )  # fmt: skip
    rel.install_seconds = time.monotonic() - t0
    node.timings["helm install --wait"] = rel.install_seconds
    if res.returncode != 0:
        state = node.kubectl("get", "all,pvc,events", "-n", NAMESPACE, check=False).stdout
        raise AssertionError(f"helm install failed:\n{res.stderr}\n{state[-6000:]}")
    return rel


# the tasks of the training pipeline run as pods: bronze -> silver (3) and news (3, "no news" in a pod: the news
# file lives outside the image) -> gold -> plan-variants -> the ParallelFor's FIRST iteration only (one training
# variant: the node has 2 cores; the other five items are planned, not trained) -> selection (told to expect that
# one variant, what a pipeline compiled with one variant passes) -> Feast materialisation and the deploy step (raw
# mode, allowed without an edge: the bundled quarter is too little data to show one), which creates the
# InferenceService through the API as the pipeline's ServiceAccount; no KServe controller reconciles it here
# (tests/node/test_3_serving.py runs what it specifies).
PIPELINE_TASKS = {
    "resolve-run-id", "bronze-market", "silver-technical", "silver-microstructure", "silver-volatility",
    "news-bronze", "news-silver", "news-gold", "gold-features", "plan-variants", "for-loop-1", "select-champion",
    "condition-2", "condition-3",
}  # fmt: skip
ISVC_NAME = "spx-direction"
PIPELINE_PARAMS = {
    "run_id": "node-run", "isvc_name": ISVC_NAME, "n_boot": 200, "materialize_features": True,
    "deploy": True, "deploy_without_edge": True, "serving_mode": "raw", "namespace": NAMESPACE,
}  # fmt: skip
TRAIN_TASK = "for-loop-1/iteration-0/train-variant"


@pytest.fixture(scope="session")
def pipeline_run(release, tmp_path_factory):
    """The compiled training pipeline's own executors run as Jobs (tests/node/kfp_runner.py), once a session."""
    from spx.components.training.variants import VARIANTS
    from spx.pipelines.compile import compile_pipeline
    from tests.node.kfp_runner import PipelineRunner

    package = tmp_path_factory.mktemp("ir") / "spx-training.yaml"
    compile_pipeline(str(package), image=release.component_image)
    runner = PipelineRunner.from_file(
        release.node, package, namespace=release.namespace, service_account="spx-pipeline",
        pipeline_root="s3://spx/pipeline-root",
    )  # fmt: skip
    first_variant = VARIANTS[0][0]
    t0 = time.monotonic()
    runner.run(
        PIPELINE_PARAMS,
        select=PIPELINE_TASKS,
        overrides={"select-champion": {"expected_variants": [first_variant]}},
        iterations={"for-loop-1": 1},
    )
    release.node.timings["pipeline tasks as pods"] = time.monotonic() - t0
    return PipelineRun(runner, PIPELINE_PARAMS["run_id"], first_variant, time.monotonic() - t0)


@dataclass
class Served:
    isvc: dict
    objects: list
    transformer: str  # ClusterIP:80 of the transformer's Service
    predictor: str
    seconds: float


@pytest.fixture(scope="session")
def served(pipeline_run, release, serving_image):
    """The InferenceService the deploy step created, run the way KServe's controller would in raw mode
    (tests/node/kserve_emulator.py): predictor with the storage initializer, transformer, their Services."""
    from tests.node.kserve_emulator import kserve_storage_files, raw_deployment

    node, ns = release.node, release.namespace
    isvc = node.get("inferenceservice", ns, ISVC_NAME)
    runtime = node.get("servingruntime", ns, isvc["spec"]["predictor"]["model"]["runtime"])
    account = node.get("serviceaccount", ns, isvc["spec"]["predictor"]["serviceAccountName"])
    (secret_ref,) = account.get("secrets", [])
    secret = node.get("secret", ns, secret_ref["name"])
    try:
        code = kserve_storage_files(ROOT / "images" / "wheelhouse")
    except FileNotFoundError as exc:
        _unavailable(str(exc))
    objects = raw_deployment(isvc, runtime, secret, serving_image, code)
    t0 = time.monotonic()
    node.apply(*objects)
    name = isvc["metadata"]["name"]
    for component in ("predictor", "transformer"):
        res = node.kubectl(
            "rollout", "status", f"deployment/{name}-{component}", "-n", ns, "--timeout=300s", timeout=330, check=False
        )
        if res.returncode != 0:
            logs = node.kubectl(
                "logs", f"deployment/{name}-{component}", "-n", ns, "--all-containers", check=False
            ).stdout
            raise AssertionError(f"{name}-{component} not ready:\n{res.stderr}\n{logs[-4000:]}")
    seconds = time.monotonic() - t0
    node.timings["served model as pods"] = seconds
    return Served(
        isvc,
        objects,
        node.service_address(ns, f"{name}-transformer", 80),
        node.service_address(ns, f"{name}-predictor", 80),
        seconds,
    )
