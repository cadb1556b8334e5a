"""The retrain trigger against a loopback KFP API, and the monitoring pipeline run by KFP's local runner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spx.components.monitoring.trigger import kfp_client, start_training_kfp
from spx.pipelines.monitoring import compile_monitoring, create_monitoring_schedule

from .kfp_recorder import PIPELINE_ID, VERSION_ID, KfpRecorder


@pytest.fixture()
def kfp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json from the machine
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))


def test_trigger_starts_the_newest_training_version_through_the_kfp_api(kfp_home):
    with KfpRecorder() as kfp:
        run_id = start_training_kfp(
            kfp_client(kfp.url), params={"granularity": "M5", "horizon_short": 6}, reason="drift share 0.60 >= 0.50"
        )
    assert run_id == "run-777"
    paths = [(c["method"], c["path"]) for c in kfp.calls]
    assert ("GET", "/apis/v2beta1/pipelines") in paths
    assert ("GET", f"/apis/v2beta1/pipelines/{PIPELINE_ID}/versions") in paths
    assert ("POST", "/apis/v2beta1/experiments") in paths
    versions = next(c for c in kfp.calls if c["path"].endswith("/versions"))
    assert versions["query"]["sort_by"] == ["created_at desc"] and versions["query"]["page_size"] == ["1"]
    (run,) = kfp.posts("/apis/v2beta1/runs")
    body = run["body"]
    assert body["pipeline_version_reference"] == {"pipeline_id": PIPELINE_ID, "pipeline_version_id": VERSION_ID}
    assert body["runtime_config"]["parameters"] == {"granularity": "M5", "horizon_short": 6}
    assert body["experiment_id"] == "exp-1"
    assert "drift share 0.60" in body["display_name"]
    (exp,) = kfp.posts("/apis/v2beta1/experiments")
    assert exp["body"]["display_name"] == "spx-retrain"


def test_trigger_fails_clearly_when_the_training_pipeline_is_not_uploaded(kfp_home):
    with KfpRecorder(pipelines={}) as kfp:
        with pytest.raises(LookupError, match="spx submit"):
            start_training_kfp(kfp_client(kfp.url))
        assert kfp.posts("/apis/v2beta1/runs") == []


def test_monitoring_recurring_run_is_created_with_a_six_field_cron(kfp_home, tmp_path):
    package = compile_monitoring(str(tmp_path / "monitoring.yaml"))
    with KfpRecorder(pipelines={}) as kfp:
        rr = create_monitoring_schedule(
            kfp_client(kfp.url), package, cron="15 * * * *", params={"drift_threshold": 0.4}
        )
    assert rr == "rr-1"
    (upload,) = kfp.posts("/apis/v2beta1/pipelines/upload")
    assert upload["content_type"].startswith("multipart/form-data") and upload["raw_len"] > 1000
    (rec,) = kfp.posts("/apis/v2beta1/recurringruns")
    b = rec["body"]
    assert b["trigger"]["cron_schedule"]["cron"] == "0 15 * * * *"
    assert int(b["max_concurrency"]) == 1 and b["no_catchup"] is True
    assert b["runtime_config"]["parameters"] == {"drift_threshold": 0.4}
    assert b["pipeline_version_reference"]["pipeline_id"] == "pl-uploaded"


def test_monitoring_pipeline_runs_locally_and_starts_training_when_drifted(store, tmp_path, kfp_home, monkeypatch):
    """KFP's SubprocessRunner runs the compiled components; drift -> dsl.If -> the KFP API call."""
    from kfp import local

    from spx.pipelines.monitoring import monitoring_pipeline

    from .helpers import gold_frame, log_served, seed_training_run

    ref = seed_training_run(store, "run-a")
    new = gold_frame(
        600,
        str(pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(days=2)),
        seed=4,
        shift={"f_ret": 1.5, "f_rsi": 1.5, "f_vol": 1.5, "f_macd": 1.5},
    )
    store.put_parquet("gold/run-b/features.parquet", pd.concat([ref, new], ignore_index=True))
    log_served(store, tmp_path / "log", new, np.full(len(new), 0.55))

    root = tmp_path / "kfp-local"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    with KfpRecorder() as kfp:
        monitoring_pipeline(kfp_host=kfp.url, gold_window_days=1.5, retrain_params_json='{"granularity": "M5"}')
    (run,) = kfp.posts("/apis/v2beta1/runs")
    assert run["body"]["runtime_config"]["parameters"] == {"granularity": "M5"}
    assert "drift share" in run["body"]["display_name"]
    # the HTML artifacts and metrics written by the drift task
    summaries = [k for k in store.list("monitoring/") if k.endswith("summary.json")]
    assert len(summaries) == 1
    summary = store.get_json(summaries[0])
    assert summary["decision"]["retrain"] is True
    assert summary["served_drift_share"] == pytest.approx(4 / 6)
    # the page in the KFP UI is small (was Evidently's 4 MB standalone report): the numbers and the way to the
    # run's full report, which the task put into the Evidently workspace
    htmls = sorted(root.rglob("drift_report"))
    page = htmls[0].read_text() if htmls else ""
    assert 1_000 < len(page) < 20_000 and summary["evidently"]["snapshots"]["served"] in page
    assert set(summary["evidently"]["snapshots"]) == {"served", "gold", "live"}
    executor_outputs = [json.loads(p.read_text()) for p in root.rglob("executor_output.json")]
    metrics = [a for out in executor_outputs for a in out.get("artifacts", {}).get("metrics", {}).get("artifacts", [])]
    assert metrics and metrics[0]["metadata"]["drift_share"] == pytest.approx(4 / 6)
    (tmp_path / "drift_report_path.txt").write_text(str(htmls[0]))
