"""The training pipeline's tasks as pods: the compiled IR's own executor containers (image, command, arguments,
the executor input a launcher passes) as Jobs under the pipeline's ServiceAccount with the chart's Secret and
ConfigMap (tests/node/kfp_runner.py), on the bundled data: bronze -> silver -> gold -> the variants' plan -> one
iteration of the ParallelFor (one variant) -> selection -> Feast, and the deploy step (it creates the
InferenceService through the API; tests/node/test_3_serving.py runs what that object specifies). Outputs land in the in-cluster bucket, the run in the in-cluster MLflow, the champion alias is set.

What KFP's launcher/driver would add, and this does not test, is in tests/node/kfp_runner.py's docstring (the
real Go launcher and driver, ML Metadata, caching, Argo's controller and retries, the KFP API). The launcher
stand-in does read ``kfp-launcher`` and the S3 Secret through the API as the run's ServiceAccount, as KFP's does,
so the chart's RBAC for it is exercised. News: the pods have no news file (it lives in ../shared/data, outside
the image), so the news tasks run and return "no news", and gold is built from market features alone.
"""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import TRAIN_TASK
from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]


TASK_PODS = (
    "resolve-run-id", "bronze-market", "silver-technical", "silver-microstructure", "silver-volatility",
    "news-bronze", "news-silver", "news-gold", "gold-features", "plan-variants", TRAIN_TASK, "select-champion",
    "condition-2/feast-materialize", "condition-3/deploy-op",
)  # fmt: skip


def test_the_pipeline_tasks_complete_as_pods(pipeline_run, release):
    runs = pipeline_run.runner.runs
    for key in TASK_PODS:
        assert runs[key].job is not None and runs[key].job.succeeded, key
    assert runs["resolve-run-id"].parameters["Output"] == pipeline_run.run_id
    # the ParallelFor: plan-variants planned every variant; its first item was trained, the others not
    from spx.components.training.variants import VARIANTS

    loop = runs["for-loop-1"].parameters
    assert [i["variant"] for i in loop["items"]] == [v[0] for v in VARIANTS] and loop["iterations_run"] == 1
    assert runs[TRAIN_TASK].executor_input["inputs"]["parameterValues"]["variant"] == pipeline_run.variant
    # every task ran under the pipeline's ServiceAccount, in the component image the IR names
    pods = release.node.get("pods", release.namespace, selector=f"spx.io/run={pipeline_run.runner.run_id}")["items"]
    assert len(pods) == len(TASK_PODS)
    assert {p["spec"]["serviceAccountName"] for p in pods} == {"spx-pipeline"}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {release.component_image}
    print(f"\n{len(pods)} task pods in {pipeline_run.seconds:.0f} s ({load_average()}):\n  "
          + "\n  ".join(pipeline_run.runner.summary()))  # fmt: skip


def test_outputs_are_in_the_in_cluster_bucket(pipeline_run, release):
    from tests.node.test_1_chart import _s3_from_host

    client = _s3_from_host(release)
    run, variant = pipeline_run.run_id, pipeline_run.variant
    keys = {o.object_name for o in client.list_objects("spx", recursive=True)}
    runs = pipeline_run.runner.runs
    bronze = runs["bronze-market"].parameters["Output"]
    assert bronze.startswith("s3://spx/bronze/market/") and any(k.startswith(bronze[len("s3://spx/") :]) for k in keys)
    for key in (
        f"silver/{run}/technical.parquet", f"silver/{run}/microstructure.parquet", f"silver/{run}/volatility.parquet",
        f"gold/{run}/features.parquet", f"gold/{run}/manifest.json",
        f"models/{run}/{variant}/metrics.json", f"models/{run}/{variant}/oot_predictions.parquet",
        f"selection/{run}/best_model_selection.json",
    ):  # fmt: skip
        assert key in keys, key
    assert runs["gold-features"].parameters["gold_uri"] == f"s3://spx/gold/{run}/features.parquet"
    # the typed output artifact went where a launcher puts it: under the pipeline root, uploaded from /s3/...
    ranking = runs["select-champion"].artifacts["ranking"]
    assert ranking["uri"].startswith("s3://spx/pipeline-root/spx-training/")
    text = client.get_object("spx", ranking["uri"][len("s3://spx/") :]).read().decode()
    assert variant in text and "Champion" in text
    selection = json.loads(client.get_object("spx", f"selection/{run}/best_model_selection.json").read())
    assert selection["champion"]["variant"] == variant


CHAMPION_PROBE = r"""
import json, os
from mlflow.tracking import MlflowClient
c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
name = os.environ["SPX_REGISTERED_MODEL"]
mv = c.get_model_version_by_alias(name, "champion")
run = c.get_run(mv.run_id)
print(json.dumps({"version": mv.version, "run_id": mv.run_id, "tags": mv.tags, "run_tags": run.data.tags,
                  "metrics": sorted(run.data.metrics), "experiment": c.get_experiment(run.info.experiment_id).name}))
"""


def test_the_run_is_in_the_in_cluster_mlflow_with_the_champion_alias(pipeline_run, release):
    res = release.node.pod_job(
        release.namespace, "node-champion-probe", release.component_image, ["python", "-c", CHAMPION_PROBE],
        env_from=release.task_env_from(),
    ).require()  # fmt: skip
    out = json.loads(res.logs.strip().splitlines()[-1])
    from tests.node.test_1_chart import _s3_from_host

    selection = json.loads(
        _s3_from_host(release).get_object("spx", f"selection/{pipeline_run.run_id}/best_model_selection.json").read()
    )
    assert str(selection["champion"]["model_version"]) == str(out["version"])
    assert out["metrics"], out  # the training task logged its metrics to the in-cluster server
    assert out["tags"].get("verdict") or out["run_tags"].get("verdict"), out


REDIS_PROBE = r"""
import os, redis
host, _, port = os.environ["SPX_FEAST_REDIS"].rpartition(":")
print(redis.Redis(host=host, port=int(port)).dbsize())
"""


def test_feast_materialised_into_the_in_cluster_redis(pipeline_run, release):
    summary = json.loads(pipeline_run.runner.runs["condition-2/feast-materialize"].parameters["Output"])
    assert summary, summary
    res = release.node.pod_job(
        release.namespace, "node-redis-probe", release.component_image, ["python", "-c", REDIS_PROBE],
        env_from=release.task_env_from(),
    ).require()  # fmt: skip
    assert int(res.logs.strip().splitlines()[-1]) > 0
    # and the registry the Feast step wrote loads from the bucket (helm test's feast check)
    out = release.node.helm("test", release.name, "-n", release.namespace, "--logs", timeout=600).stdout
    assert "PASS feast registry: s3://spx/feast/registry.db loads: feature views" in out, out
