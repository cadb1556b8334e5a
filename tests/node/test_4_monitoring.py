"""Monitoring as a pod: the monitoring pipeline's drift task, its compiled executor run as a Job (the same runner
as the training tasks), reads the logged predictions from the in-cluster bucket and writes its report and summary.

Until the served model runs as pods (issue 15, part 4), the prediction log is seeded from the host with the
project's own prediction-log code (components/serving/prediction_log.py: KServe-logger CloudEvents parsed and
turned into rows, one parquet batch under predictions/date=…/ as the sink writes it): predictions "made" in the
last minutes on the newest real gold bars of the run, with the champion's features. What that cannot catch: the
transformer's and the sink's own pods writing the log (part 4).
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]

N_SERVED = 240


def _store(release):
    from pydantic import SecretStr

    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    node = release.node
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in node.get("secret", release.namespace, f"{release.fullname}-s3")["data"].items()
    }
    address = node.service_address(release.namespace, f"{release.fullname}-seaweedfs", "s3")
    return ObjectStore(
        S3Settings.model_construct(
            endpoint_url=f"http://{address}",
            access_key=secret["AWS_ACCESS_KEY_ID"],
            secret_key=SecretStr(secret["AWS_SECRET_ACCESS_KEY"]),
            region="us-east-1",
            bucket="spx",
        )
    )


def _seed_prediction_log(store, run_id: str, variant: str, directory) -> int:
    from tests.monitoring.helpers import log_served

    gold = store.read_parquet(f"gold/{run_id}/features.parquet")
    feats = store.get_json(f"models/{run_id}/{variant}/metrics.json")["features"]
    rows = gold.tail(N_SERVED)
    now = datetime.now(timezone.utc)
    times = [now - timedelta(seconds=10 * (N_SERVED - k)) for k in range(len(rows))]  # in the drift window
    probs = np.random.default_rng(15).uniform(0.4, 0.6, len(rows))
    log_served(store, directory, rows, probs, features=feats, times=times)
    return len(rows)


def test_the_drift_task_runs_as_a_pod_on_the_logged_predictions(pipeline_run, release, tmp_path):
    from spx.components.prediction_log import read_predictions
    from spx.pipelines.monitoring import compile_monitoring
    from tests.node.kfp_runner import PipelineRunner

    store = _store(release)
    seeded = _seed_prediction_log(store, pipeline_run.run_id, pipeline_run.variant, tmp_path / "prediction-log")
    assert len(read_predictions(store, start=datetime.now(timezone.utc) - timedelta(days=1))) == seeded

    package = tmp_path / "spx-monitoring.yaml"
    compile_monitoring(str(package), image=release.component_image)
    runner = PipelineRunner.from_file(
        release.node, package, namespace=release.namespace, service_account="spx-pipeline",
        pipeline_root="s3://spx/pipeline-root",
    )  # fmt: skip
    t0 = time.monotonic()
    runs = runner.run({"manage_canary": False}, select={"detect-drift"})
    seconds = time.monotonic() - t0
    drift = runs["detect-drift"]
    assert drift.job is not None and drift.job.succeeded
    # the reference was found the way the cluster finds it: the champion alias in the in-cluster MLflow
    summary = store.get_json(f"monitoring/{runner.run_id}/summary.json")
    assert summary["reference_run_id"] == pipeline_run.run_id and summary["variant"] == pipeline_run.variant
    assert summary["n_served"] == seeded
    assert summary["served_drift"] is not None  # enough rows: Evidently ran on the served features
    assert 0.0 <= summary["drift_share"] <= 1.0
    assert summary["hit"]["n_labeled"] > 0  # served bars joined to their realized labels in the newest gold
    for name in ("drift.html", "gold_drift.html"):
        html = store.get_bytes(f"monitoring/{runner.run_id}/{name}").decode()
        assert "<html" in html.lower()
    # the task's typed outputs went where a launcher puts them, and its return value is the retrain decision
    assert drift.parameters["Output"] in (True, False, "true", "false")
    report = drift.artifacts["drift_report"]["uri"]
    assert store.exists(report) and report.startswith("s3://spx/pipeline-root/spx-monitoring/")
    print(f"\ndrift task as a pod: {seconds:.0f} s, {seeded} served rows, drift share {summary['drift_share']:.2f}, "
          f"decision {summary['decision']} ({load_average()})")  # fmt: skip
