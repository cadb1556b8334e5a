"""Monitoring as a pod: the monitoring pipeline's drift task, its compiled executor run as a Job (the same runner
as the training tasks), reads the logged predictions from the in-cluster bucket and writes its report and summary.

The prediction log holds what the served model's pods wrote in tests/node/test_3_serving.py (the transformer's
rows, shipped by its own writer), plus rows seeded from the host with the project's own prediction-log code
(``tests.monitoring.helpers.log_served``: the writer and parquet layout the transformer uses) on the newest real
gold bars of the run, with the champion's features, "served" in the last minutes: the pods' traffic asks for
one bar again and again (the online store holds only the latest), too little variety for a drift or hit-rate
number, and the bars it asks for have no realized label yet. What the seed cannot catch: nothing about the pods'
writing (test_3 covers it); it stands in for a day of varied traffic.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.node.node import load_average

# the first test of a session also starts the node, loads the images (minutes when they changed) and installs
pytestmark = [pytest.mark.node, pytest.mark.timeout(2400)]

N_SERVED = 240


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


def test_the_drift_task_runs_as_a_pod_on_the_logged_predictions(served, pipeline_run, release, tmp_path):
    from spx.components.prediction_log import read_predictions
    from spx.pipelines.monitoring import compile_monitoring
    from tests.node.kfp_runner import PipelineRunner

    store = release.store()
    logged = read_predictions(store, start=datetime.now(timezone.utc) - timedelta(days=1))
    by_pods = int(logged["request_id"].str.startswith("node-").sum())  # the served model's pods (test_3)
    seeded = _seed_prediction_log(store, pipeline_run.run_id, pipeline_run.variant, tmp_path / "prediction-log")
    assert len(read_predictions(store, start=datetime.now(timezone.utc) - timedelta(days=1))) == seeded + len(logged)

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
    assert summary["n_served"] == seeded + len(logged) and by_pods > 0
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


def test_the_evidently_ui_pod_serves_the_runs_snapshots(release):
    """The chart's Evidently UI (templates/evidently-ui.yaml) reads the workspace the drift task just wrote to the
    bucket (it re-reads every refreshSeconds, 30 s) and serves it read-only through its Service. Runs after the
    drift test (file order). What it cannot catch: the browser side (tests/monitoring/test_evidently_ui.py)."""
    import requests

    address = release.node.service_address(release.namespace, f"{release.fullname}-evidently-ui", "http")
    deadline, health = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        health = requests.get(f"http://{address}/healthz", timeout=10).json()
        if health.get("snapshots"):
            break
        time.sleep(3)
    assert health.get("snapshots", 0) > 0 and not health["refresh_error"], health
    assert health["workspace"].startswith("s3://spx/"), health
    projects = requests.get(f"http://{address}/api/projects", timeout=10)
    assert projects.status_code == 200 and projects.json(), projects.text[:500]
    refused = requests.post(f"http://{address}/api/projects", json={"name": "x"}, timeout=10)
    assert refused.status_code == 403  # read-only: writes never reach Evidently
