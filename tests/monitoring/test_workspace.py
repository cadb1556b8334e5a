"""The Evidently workspace the monitoring runs write: projects, snapshots, retention, the dashboard, the figures,
and the UI's view of a workspace that changes under it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import requests
from evidently import Report
from evidently.ui.service.base import SeriesFilter

from spx.components.monitoring.drift import evidently_drift
from spx.components.monitoring.evidently_metrics import FIGURES, SpxFigure
from spx.components.monitoring.figures import champion_verdict, figures_row, serving_roles
from spx.components.monitoring.workspace import (
    TAG_LIVE,
    build_dashboard,
    compact,
    ensure_project,
    full_reports_due,
    open_workspace,
    project_id_for,
    prune,
    snapshot_time,
    verdict_text,
)
from spx.core.processes import free_port

from .helpers import GOLD_FEATURES, gold_frame


def _drift_frames():
    ref = gold_frame(3000, "2026-01-05", seed=1)
    cur = gold_frame(600, "2026-02-05", seed=2, shift={"f_ret": 1.0})
    return ref, cur


def _live_snapshot(value: float, when: datetime):
    row = {"live_hit_rate": value, "hit_rate_floor": 0.5}
    return Report([SpxFigure(column=c) for c in row]).run(pd.DataFrame([row]), None, timestamp=when, tags=[TAG_LIVE])


def _dashboard(verdict=None):
    return build_dashboard(
        GOLD_FEATURES,
        GOLD_FEATURES,
        verdict,
        prediction_column="probability",
        method="wasserstein",
        threshold=0.1,
        drift_threshold=0.5,
    )


def test_the_project_is_found_again_by_name_and_snapshots_are_written_compact(tmp_path):
    ws = open_workspace(str(tmp_path / "ws"))
    first = ensure_project(ws, "spx-monitoring")
    again = ensure_project(open_workspace(str(tmp_path / "ws")), "spx-monitoring")
    assert first.id == again.id == project_id_for("spx-monitoring")
    assert [p.id for p in ws.list_projects()] == [first.id]
    when = datetime(2026, 3, 2, 16, tzinfo=timezone.utc)
    ref = ws.add_run(first.id, _live_snapshot(0.61, when))
    model = ws.get_run(first.id, ref.id)
    assert model.timestamp.replace(tzinfo=timezone.utc) == when and model.tags == [TAG_LIVE]
    assert all(r.widget == [] for r in model.metric_results.values())  # per-metric widgets dropped
    assert sorted(r.value for r in model.metric_results.values()) == [0.5, 0.61]
    assert len(model.widgets) == 2  # the report's own counters stay


def test_full_reports_lose_only_the_plotly_theme_and_values_only_snapshots_keep_the_numbers():
    ref, cur = _drift_frames()
    _, snapshot = evidently_drift(ref, cur, GOLD_FEATURES)
    before = json.dumps(snapshot.to_snapshot_model().dict(), default=str)
    full = json.dumps(compact(snapshot.to_snapshot_model()).dict(), default=str)
    values = compact(snapshot.to_snapshot_model(), full=False)
    assert '"template"' in before and '"template"' not in full
    assert len(full) < len(before) / 2  # the theme and the per-metric plots were most of it
    assert full.count("f_ret") >= len(GOLD_FEATURES) and "timestamp (" in full  # the report's plots stay
    assert values.widgets == [] and len(json.dumps(values.dict(), default=str)) < 60_000

    def numbers(model):
        return {k: json.dumps(r.dict(exclude={"widget"}), default=str) for k, r in model.metric_results.items()}

    assert numbers(values) == numbers(snapshot.to_snapshot_model())  # what the dashboard plots


def test_a_full_report_is_kept_daily_for_served_traffic_and_per_new_gold_table():
    t = datetime(2026, 3, 2, 16, tzinfo=timezone.utc)
    due = full_reports_due({}, run_time=t, gold_table="gold/a", every_hours=24, retrain=False)
    assert due == {"served": True, "gold": True, "live": True}  # the first run keeps everything
    state = {"served": {"time": t.isoformat()}, "gold": {"time": t.isoformat(), "table": "gold/a"}}
    hourly = full_reports_due(
        state, run_time=t + timedelta(hours=1), gold_table="gold/a", every_hours=24, retrain=False
    )
    assert hourly == {"served": False, "gold": False, "live": True}
    next_day = full_reports_due(
        state, run_time=t + timedelta(hours=24), gold_table="gold/b", every_hours=24, retrain=False
    )
    assert next_day == {"served": True, "gold": True, "live": True}
    retrain = full_reports_due(
        state, run_time=t + timedelta(hours=2), gold_table="gold/a", every_hours=24, retrain=True
    )
    assert retrain["served"] and retrain["gold"]  # the evidence of a retrain is kept in full


def test_snapshot_ids_carry_their_write_time_and_retention_deletes_the_old_ones(tmp_path):
    ws = open_workspace(str(tmp_path / "ws"))
    project = ensure_project(ws, "p")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = [ws.add_run(project.id, _live_snapshot(0.5 + i / 100, before)).id for i in range(3)]
    assert all(abs(snapshot_time(i) - before) < timedelta(minutes=1) for i in ids)
    with pytest.raises(ValueError):
        snapshot_time(uuid.uuid4())
    assert prune(ws, project.id, retention_days=1) == 0
    # a day and a half later, a 1-day retention removes all three
    assert prune(ws, project.id, retention_days=1, now=before + timedelta(days=1.5)) == 3
    assert list(ws.list_runs(project.id)) == []


def test_the_dashboard_keeps_its_panel_ids_and_states_the_verdict():
    verdict = {
        "run_id": "r1",
        "variant": "lgbm_all_h30",
        "model_version": "4",
        "registered_model": "spx-direction",
        "verdict": "credible edge",
        "val_auc": 0.541,
        "val_auc_ci_low": 0.512,
        "val_auc_ci_high": 0.57,
        "bonferroni_k": 6,
        "oot_auc": 0.533,
        "oot_auc_ci_low": 0.507,
        "oot_auc_ci_high": 0.559,
        "baseline_majority_auc": 0.5,
        "baseline_momentum_auc": 0.503,
    }
    a, b = _dashboard(verdict), _dashboard(None)
    assert [p.id for p in a.panels] == [p.id for p in b.panels]  # rewritten every run, same panels
    many = build_dashboard(
        [f"x{i}" for i in range(23)],
        ["g"],
        None,
        prediction_column="p",
        method="ks",
        threshold=0.01,
        drift_threshold=0.5,
    )
    titles = [p.title for p in many.panels if p.title.startswith("Drift score per feature: served")]
    assert titles == [
        "Drift score per feature: served traffic, top 10 now",
        "Drift score per feature: served traffic, 11–20 now",
        "Drift score per feature: served traffic, 21–23 now",
    ]
    title, text = verdict_text(verdict)
    assert title == "Champion lgbm_all_h30 (run r1, spx-direction v4): CREDIBLE EDGE"
    assert "[0.5120, 0.5700] (Bonferroni, k=6)" in text and "[0.5070, 0.5590]" in text and "momentum 0.5030" in text
    assert a.panels[0].title == title and b.panels[0].title == "Champion verdict: unknown"
    # every figure a panel plots is one the runs record (the figures of a full summary)
    plotted = {v.metric_labels["column"] for p in a.panels for v in p.values if v.metric.endswith("SpxFigure")}
    assert plotted <= set(FIGURES)


@pytest.mark.parametrize(
    ("versions", "roles"),
    [
        ([], (None, None)),
        (["3", "3", None, ""], ("3", None)),
        (["3", "4", "3", "3"], ("3", "4")),
        (["10", "9", "9"], ("9", "10")),  # versions compare as numbers: 10 is newer than 9
        (["2", "3", "4", "2", "3", "3"], ("3", "4")),  # stable: the most-served of the older ones
    ],
)
def test_serving_roles_from_the_versions_in_the_window(versions, roles):
    assert serving_roles(pd.Series(versions, dtype=object)) == roles


def test_figures_keep_only_finite_numbers_and_the_verdict_as_one_or_zero():
    summary = {
        "config": {"hit_rate_floor": 0.5, "drift_threshold": 0.5, "threshold": 0.1, "canary_max_error_rate": 0.01},
        "hit": {"hit_rate": 0.53, "majority_baseline": 0.51, "n_labeled": 400},
        "n_served": 420,
        "drift_share": None,
        "decision": {"retrain": False},
        "serving_health": {"stable_error_rate": 0.0, "stable_p95_latency_ms": None, "canary_error_rate": float("nan")},
        "verdict": {"credible_edge": False, "oot_auc_ci_low": 0.49, "val_auc": None},
    }
    row = figures_row(summary)
    assert row["live_hit_rate"] == 0.53 and row["retrain"] == 0.0 and row["credible_edge"] == 0.0
    assert row["oot_auc_ci_low"] == 0.49 and row["stable_error_rate"] == 0.0
    for missing in ("drift_share", "stable_p95_latency_ms", "canary_error_rate", "val_auc"):
        assert missing not in row


def test_the_verdict_is_read_from_the_selection_record(store):
    assert champion_verdict(store, "nope", "x") is None
    store.put_json(
        "selection/r1/best_model_selection.json",
        {
            "champion": {
                "variant": "v1",
                "verdict": "no credible edge",
                "credible_edge": False,
                "val_auc_ci_bonferroni": [0.49, 0.55],
                "oot_auc_ci": [0.48, 0.53],
                "model_version": "7",
            },
            "ranking": [{"variant": "v1", "baseline_majority_auc": 0.5, "baseline_momentum_auc": 0.51}],
        },
    )
    v = champion_verdict(store, "r1", "v1")
    assert v["verdict"] == "no credible edge" and v["val_auc_ci_low"] == 0.49 and v["oot_auc_ci_high"] == 0.53
    assert v["baseline_momentum_auc"] == 0.51 and v["model_version"] == "7"
    assert champion_verdict(store, "r1", "other") is None  # not the champion of that run: no verdict claimed


@pytest.mark.integration  # starts the UI server on loopback
@pytest.mark.parametrize("where", ["directory", "bucket"])
def test_the_ui_follows_the_workspace_new_snapshots_appear_and_pruned_ones_go(where, request, tmp_path):
    """The UI starts over an empty workspace (a directory, or a prefix in the bucket as in the cluster); a
    project, its dashboard and runs are then written and one run deleted under it: the panel's series
    follows (Evidently's own watcher is off and would not see a bucket; the refresher re-reads)."""
    import uvicorn

    from spx.components.monitoring.ui import build_app

    if where == "bucket":
        store = request.getfixturevalue("store")
        path = f"s3://{store.bucket}/evidently"
    else:
        path = str(tmp_path / "ws")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(path, refresh_seconds=0.2), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    ws = open_workspace(path)
    project = ensure_project(ws, "spx-monitoring")
    ws.save_dashboard(project.id, _dashboard())
    t0 = datetime(2026, 3, 2, 16, tzinfo=timezone.utc)
    first = ws.add_run(project.id, _live_snapshot(0.55, t0)).id
    query = {
        "series_filter": [
            {
                "metric": "evidently:metric_v2:SpxFigure",
                "metric_labels": {"column": "live_hit_rate"},
                "tags": [TAG_LIVE],
                "metadata": {},
            }
        ]
    }

    def values() -> list:
        r = requests.post(f"{base}/api/v2/snapshots/{project.id}/data_series_batch", json=query, timeout=10)
        r.raise_for_status()
        series = r.json()["series"]
        return series[0]["values"] if series else []

    def wait_for(expected: list) -> None:
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = values()
                if seen == expected:
                    return
            except requests.RequestException as exc:  # not up yet, or the project not loaded yet (404)
                seen = exc
            time.sleep(0.2)
        raise AssertionError(f"series {seen} never became {expected}")

    try:
        wait_for([0.55])
        ws.add_run(project.id, _live_snapshot(0.6, t0 + timedelta(hours=1)))
        wait_for([0.55, 0.6])
        ws.delete_run(project.id, first)
        wait_for([0.6])
        health = requests.get(f"{base}/healthz", timeout=10).json()
        assert health["projects"] == 1 and health["snapshots"] == 1 and health["workspace"] == path
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_per_filter_series_answer_what_evidently_answers(tmp_path):
    """The UI asks Evidently's series store one panel series at a time (bench/evidently_ui.py: ten times less
    work for a ten-feature panel); the merged answer is Evidently's own for every panel of the dashboard."""
    import asyncio

    from evidently.ui.service.storage.local.base import InMemoryDataStorage, LocalState

    from spx.components.monitoring.ui import PerFilterDataStorage
    from spx.components.monitoring.workspace import TAG_SERVED

    path = str(tmp_path / "ws")
    ws = open_workspace(path)
    project = ensure_project(ws, "p")
    ref, cur = _drift_frames()
    t0 = datetime(2026, 3, 2, 16, tzinfo=timezone.utc)
    for hour in range(3):
        when = t0 + timedelta(hours=hour)
        _, snap = evidently_drift(ref, cur.iloc[hour * 100 :], GOLD_FEATURES, timestamp=when, tags=[TAG_SERVED])
        ws.add_run(project.id, snap)
        if hour != 1:  # a run without live figures: gaps must land in the same places
            ws.add_run(project.id, _live_snapshot(0.5 + hour / 10, when))
    state = LocalState.load(path, None)
    ours, theirs = PerFilterDataStorage(path, local_state=state), InMemoryDataStorage(path, local_state=state)

    def by_snapshot(response):
        ids = [s.snapshot_id for s in response.sources]
        return {
            (s.filter_index, tuple(sorted(s.params.items()))): {i: v for i, v in zip(ids, s.values) if v is not None}
            for s in response.series
        }

    dashboard = _dashboard()
    checked = 0
    for panel in dashboard.panels:
        if len(panel.values) < 2:
            continue
        filters = [
            SeriesFilter(tags=v.tags, metadata=v.metadata, metric=v.metric, metric_labels=v.metric_labels)
            for v in panel.values
        ]
        a = asyncio.run(ours.get_data_series(project.id, filters, None, None))
        b = asyncio.run(theirs.get_data_series(project.id, filters, None, None))
        assert by_snapshot(a) == by_snapshot(b), panel.title
        assert [s.timestamp for s in a.sources] == sorted(s.timestamp for s in a.sources)
        checked += bool(a.series)
    assert checked >= 3  # the per-feature, the predictions and the hit-rate panels had points


def test_the_workspace_is_the_bucket_in_a_pod_and_a_directory_elsewhere(monkeypatch, tmp_path):
    """The monitoring task (a KFP pod) and the chart's UI must meet in the same place without configuration;
    locally the workspace is a directory `spx ui` can serve beside `spx serve` (no second S3 server)."""
    from spx.core.settings import settings

    monkeypatch.setenv("SPX_BUCKET", "lake")
    monkeypatch.setenv("SPX_HOME", str(tmp_path))
    monkeypatch.delenv("SPX_EVIDENTLY_WORKSPACE", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert settings().evidently_workspace == str(tmp_path / "evidently")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert settings().evidently_workspace == "s3://lake/evidently"  # what templates/evidently-ui.yaml serves
    monkeypatch.setenv("SPX_EVIDENTLY_WORKSPACE", "s3://other/ws")
    assert settings().evidently_workspace == "s3://other/ws"
