"""The Evidently dashboard as a person sees it: two `spx monitor` runs write their snapshots into a workspace in
the bucket, `spx ui` serves it on loopback, headless Chromium opens the pages, and the tests read from the DOM
what the page says (the verdict and its intervals, the drift share at two times, the hit rate against its
floor, the canary slower than the stable model). The screenshots they take are the README's (docs/screenshots/).

What this cannot catch: the UI in a pod behind a Service (the chart's template is rendered and checked in
tests/cluster; a pod answering is the node tier's check).
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from typer.testing import CliRunner

from spx.cli import app
from spx.components.monitoring.ui import request_allowed
from spx.components.monitoring.workspace import open_workspace, project_id_for
from spx.core.processes import ManagedProcess, free_port
from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore
from tests.support import screenshot_dir

from .dom import panels, parse
from .helpers import GOLD_FEATURES, gold_frame, log_served, seed_training_run
from .test_html_render import _chromium, needs_chromium

T1 = datetime(2026, 3, 2, 16, 0, tzinfo=timezone.utc)  # the two monitoring runs, an hour apart
T2 = T1 + timedelta(hours=1)
VERDICT = {
    "variant": "xgb_base_h1",
    "val_auc": 0.5312,
    "val_auc_ci_bonferroni": [0.5071, 0.5553],
    "bonferroni_k": 5,
    "oot_auc": 0.5248,
    "oot_auc_ci": [0.4983, 0.5514],
    "verdict": "no credible edge",
    "credible_edge": False,
    "registered_model": "spx-direction",
    "model_version": "1",
}


def _with_news(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    has = rng.uniform(size=len(frame)) < 0.3
    frame["news_avg_sentiment"] = np.where(has, rng.normal(0.1 * (seed % 3 - 1), 0.3, len(frame)), 0.0)
    frame["news_article_count"] = np.where(has, rng.integers(1, 4, len(frame)), 0)
    return frame


def _serve(store, wal: Path, rows: pd.DataFrame, start_index: int) -> None:
    """Log served predictions with the real prediction-log writer; in the last hour before each run both models serve, the
    canary (version 2) slower than the stable model (version 1)."""
    y = rows["y_up_h1"].to_numpy()
    probs = np.clip(0.5 + 0.05 * (y - 0.5) + np.random.default_rng(start_index).normal(0, 0.05, len(y)), 0, 1)
    run_time = rows["timestamp"].max()
    recent = (rows["timestamp"] > run_time - pd.Timedelta(minutes=55)).to_numpy()
    versions = np.where(recent & (np.arange(len(rows)) % 2 == 1), "2", "1")
    latencies = np.where(versions == "2", 40.0, 3.0) + np.arange(len(rows)) % 5
    log_served(store, wal, rows, probs, start_index=start_index, versions=versions, latencies_ms=latencies)


def _monitor(as_of: datetime) -> dict:
    res = CliRunner().invoke(
        app,
        [
            "monitor",
            *("--run-id", "run-a", "--variant", "xgb_base_h1"),
            *("--lookback-days", "2", "--gold-window-days", "1"),
            *("--as-of", as_of.isoformat(), "--no-retrain", "--json"),
        ],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{") :])


@pytest.fixture(scope="module")
def dashboard(s3_server, tmp_path_factory):
    """Two monitoring runs (T1, T2) into a workspace in the bucket, and `spx ui` over it on loopback."""
    tmp = tmp_path_factory.mktemp("evidently-ui")
    bucket = f"ui-{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env().items():
            mp.setenv(key, value)
        mp.setenv("SPX_BUCKET", bucket)
        mp.setenv("SPX_HOME", str(tmp / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        workspace = f"s3://{bucket}/evidently"
        mp.setenv("SPX_EVIDENTLY_WORKSPACE", workspace)
        store = ObjectStore(S3Settings.from_env())
        store.ensure_bucket()
        ref = seed_training_run(store, "run-a")
        # the reference ends two days before the first run; the newest gold table adds the bars since
        shift = T1 - timedelta(days=2) - ref["timestamp"].max().to_pydatetime()
        ref["timestamp"] = ref["timestamp"] + shift
        _with_news(ref, 1)
        store.put_parquet("gold/run-a/features.parquet", ref)
        oot = store.read_parquet("models/run-a/xgb_base_h1/oot_predictions.parquet")
        oot["timestamp"] = pd.to_datetime(oot["timestamp"], utc=True) + shift
        store.put_parquet("models/run-a/xgb_base_h1/oot_predictions.parquet", oot)
        ranking = [{"variant": "xgb_base_h1", "baseline_majority_auc": 0.5, "baseline_momentum_auc": 0.5087}]
        store.put_json(
            "selection/run-a/best_model_selection.json",
            {"run_id": "run-a", "champion": VERDICT, "verdict": VERDICT["verdict"], "ranking": ranking},
        )
        n_new = 300
        new = gold_frame(n_new, str(T2 - timedelta(minutes=5 * (n_new - 1) + 1)), seed=11)
        _with_news(new, 2)
        later = new["timestamp"] > pd.Timestamp(T1) - pd.Timedelta(minutes=1)
        for c in ("f_ret", "f_rsi", "f_vol"):  # the traffic after the first run has moved
            new.loc[later, c] += 3.0 * new[c].std()
        # a new gold table before each run, holding the bars up to it
        store.put_parquet("gold/run-b/features.parquet", pd.concat([ref, new[~later]], ignore_index=True))
        _serve(store, tmp / "wal-1", new[~later], 0)
        first = _monitor(T1)
        store.put_parquet("gold/run-c/features.parquet", pd.concat([ref, new], ignore_index=True))
        _serve(store, tmp / "wal-2", new[later], 10_000)
        second = _monitor(T2)

        port = free_port()
        ui = ManagedProcess(
            "spx ui",
            [sys.executable, "-m", "spx.cli", "ui", "--port", str(port), "--refresh-seconds", "1"],
            log_path=tmp / "ui.log",
            ready_url=f"http://127.0.0.1:{port}/healthz",
            ready_timeout=180,
        )
        ui.start()
        try:
            yield {
                "url": f"http://127.0.0.1:{port}",
                "project_id": str(project_id_for("spx-monitoring")),
                "runs": (first, second),
                "store": store,
                "workspace": workspace,
                "tmp": tmp,
            }
        finally:
            ui.stop()
            store.delete_bucket(bucket)


def _page(dashboard, path: str, name: str, shot: str | None = None, height: int = 2600):
    """The page's DOM after its scripts ran, and (``shot``) a screenshot for the README."""
    profile = dashboard["tmp"] / f"chromium-{name}"
    url = dashboard["url"] + path
    dom = _chromium(["--virtual-time-budget=30000", "--window-size=1400,2000", "--dump-dom", url], profile)
    assert dom.returncode == 0, dom.stderr[-2000:]
    if shot:
        out = screenshot_dir(dashboard["tmp"]) / shot
        res = _chromium(
            [
                "--virtual-time-budget=30000",
                f"--window-size=1400,{height}",
                "--hide-scrollbars",
                f"--screenshot={out}",
                url,
            ],
            dashboard["tmp"] / f"chromium-{name}-shot",
        )
        assert res.returncode == 0 and out.exists(), res.stderr[-2000:]
    return parse(dom.stdout)


@needs_chromium
def test_the_dashboard_shows_both_runs_and_the_verdict(dashboard):
    first, second = dashboard["runs"]
    page = _page(
        dashboard, f"/projects/{dashboard['project_id']}", "dashboard", shot="evidently-dashboard.png", height=3700
    )
    shown = panels(page)

    # the champion's verdict, with both intervals and the baselines, as the selection recorded them
    verdict = next(p for t, p in shown.items() if t.startswith("Champion xgb_base_h1"))
    assert verdict.title.endswith("NO CREDIBLE EDGE")
    for figure in (
        "0.5312",
        "[0.5071, 0.5553]",
        "0.5248",
        "[0.4983, 0.5514]",
        "majority class 0.5000",
        "momentum 0.5087",
    ):
        assert figure in verdict.text, figure

    # drift share over time: two points, the second run's traffic drifted (3 of 6 features moved)
    assert first["served_drift_share"] < second["served_drift_share"]
    assert first["gold_drift_share"] < second["gold_drift_share"] and first["latest_gold"] != second["latest_gold"]
    served = shown["Drift share: served traffic"]
    assert served.legend == ["served vs training reference"]
    low, high = served.ys("served vs training reference")
    assert high > low
    assert "retrain when the share reaches 0.5" in served.subtitle

    # the latest served prediction with its confidence, as of the last run
    latest = shown["Latest served prediction"]
    p_up = second["latest_prediction"]["last_served_probability"]
    shown_numbers = latest.text.split()  # the counters print two decimals
    assert f"{round(p_up, 2):g}" in shown_numbers and "confidence" in shown_numbers
    assert f"{round(second['hit']['hit_rate'], 2):g}" in shown_numbers
    assert second["latest_prediction"]["last_served_confidence"] == pytest.approx(max(p_up, 1 - p_up))

    # the live hit rate against its floor and the majority-class baseline, two runs each
    hit = shown["Live hit rate vs floor"]
    assert set(hit.legend) == {"live hit rate", "floor (retrain below)", "majority class, same bars"}
    assert all(len(points) == 2 for points in hit.series.values())
    assert min(hit.ys("live hit rate")) > max(hit.ys("floor (retrain below)"))  # above its floor, as measured
    assert second["hit"]["hit_rate"] > second["config"]["hit_rate_floor"]

    # the canary answered slower than the stable model in both runs, under the rollback limit
    latency = shown["Canary vs stable: p95 latency (ms)"]
    assert set(latency.legend) == {"canary", "stable", "rollback limit"}
    assert all(len(points) == 2 for points in latency.series.values())
    for canary_y, stable_y, limit_y in zip(latency.ys("canary"), latency.ys("stable"), latency.ys("rollback limit")):
        assert stable_y < canary_y < limit_y
    health = second["serving_health"]
    assert (health["stable_version"], health["canary_version"]) == ("1", "2")
    assert health["stable_p95_latency_ms"] < health["canary_p95_latency_ms"] < 250

    # the served predictions' distribution and the news over time
    predictions = shown["Served predictions: P(up)"]
    assert {"10% quantile", "50% quantile", "90% quantile", "share predicted up"} <= set(predictions.legend)
    q10, q50, q90 = (predictions.ys(f"{q}% quantile") for q in (10, 50, 90))
    assert all(a < b < c for a, b, c in zip(q10, q50, q90))
    news = shown["News sentiment"]
    assert len(news.series["sentiment, gold bars"]) == 2 and len(news.series["bars with news"]) == 2

    # one drift line per feature, for served traffic and for the newest gold window, the most drifted first
    for what in ("served traffic", "newest gold window"):
        panel = shown[f"Drift score per feature: {what}, top 10 now"]
        assert set(panel.legend) == set(GOLD_FEATURES)
        assert all(len(points) == 2 for points in panel.series.values())
    drifted = set(second["served_drift"]["drifted_columns"])
    assert drifted == {"f_ret", "f_rsi", "f_vol"}
    served_panel = shown["Drift score per feature: served traffic, top 10 now"]
    assert set(served_panel.legend[:3]) == drifted  # ranked by the last run's score


@needs_chromium
def test_a_runs_report_opens_from_the_dashboard_with_its_drift_table(dashboard):
    """The report behind a dashboard point: Evidently's drift table for that run, plotted against time."""
    second = dashboard["runs"][1]
    sid = second["evidently"]["snapshots"]["served"]
    page = _page(
        dashboard,
        f"/projects/{dashboard['project_id']}/reports/{sid}",
        "report",
        shot="evidently-report-served.png",
        height=1800,
    )
    text = page.text()
    assert "Drift is detected for 50.0% of columns (3 out of 6)" in text
    for feature in GOLD_FEATURES:
        assert feature in text
    assert "Index binned" not in text


EXPAND_ROW = """(() => {
  const row = [...document.querySelectorAll('tr')].find(r => [...r.cells].some(c => c.textContent.trim() === '%s'));
  const button = row && row.querySelector('button');
  if (!button) return false;
  button.click();
  return true;
})()"""


@needs_chromium
def test_a_feature_drifts_over_time_in_the_report(dashboard):
    """Issue 18: the drift plot's x-axis read "Index binned". A person opens the run's report, expands the
    f_ret row and sees its values against time."""
    from .cdp import Browser
    from .test_html_render import CHROMIUM

    sid = dashboard["runs"][1]["evidently"]["snapshots"]["served"]
    with Browser(CHROMIUM, dashboard["tmp"] / "chromium-cdp", height=1500) as page:
        page.goto(f"{dashboard['url']}/projects/{dashboard['project_id']}/reports/{sid}")
        page.wait(EXPAND_ROW % "f_ret", what="the f_ret row of the drift table")
        page.wait("document.querySelectorAll('.main-svg').length > 0", what="the plot to be drawn")
        titles = page.wait(
            "(() => { const t = [...document.querySelectorAll('.xtitle')].map(e => e.textContent);"
            " return t.length ? t : null; })()",
            what="the plot's axis title",
        )
        page.eval("document.querySelector('.main-svg').scrollIntoView({block: 'center'})")
        page.screenshot(screenshot_dir(dashboard["tmp"]) / "evidently-report-feature.png")
    assert "Index binned" not in titles
    assert any(t.startswith("timestamp (") for t in titles), titles


def test_the_ui_serves_reads_and_refuses_every_write(dashboard):
    """Secure by default: no endpoint that changes state answers; Evidently's own API is read-only here."""
    base, pid = dashboard["url"], dashboard["project_id"]
    sid = dashboard["runs"][0]["evidently"]["snapshots"]["live"]
    assert requests.get(f"{base}/api/projects", timeout=30).json()[0]["name"] == "spx-monitoring"
    batch = requests.post(
        f"{base}/api/v2/snapshots/{pid}/data_series_batch",
        json={
            "series_filter": [
                {
                    "metric": "evidently:metric_v2:SpxFigure",
                    "metric_labels": {"column": "live_hit_rate"},
                    "tags": ["live"],
                    "metadata": {},
                }
            ]
        },
        timeout=30,
    )
    assert batch.status_code == 201 and len(batch.json()["series"][0]["values"]) == 2
    writes = [
        ("DELETE", f"/api/projects/{pid}"),
        ("DELETE", f"/api/projects/{pid}/{sid}"),
        ("DELETE", f"/api/v2/projects/{pid}"),
        ("POST", "/api/projects"),
        ("POST", "/api/v2/projects"),
        ("POST", f"/api/v2/snapshots/{pid}"),
        ("POST", f"/api/v2/dashboards/{pid}"),
        ("PATCH", f"/api/v2/projects/{pid}"),
        ("POST", "/api/datasets/upload"),
        ("POST", "/api/v1/traces"),
        ("POST", "/api/artifacts"),
        ("POST", "/api/prompts"),
        ("POST", "/api/llm_judges/prompt_template"),
        ("GET", f"/api/projects/{pid}/reload"),  # a GET that Evidently guards as a write: its own guard refuses
        ("GET", "/schema/swagger"),
    ]
    for method, path in writes:
        resp = requests.request(method, base + path, json={}, timeout=30)
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text[:200])
    ws = open_workspace(dashboard["workspace"])
    assert len(ws.list_runs(pid)) == 6  # nothing was deleted or added
    health = requests.get(f"{base}/healthz", timeout=30).json()
    assert health["projects"] == 1 and health["snapshots"] == 6 and not health["refresh_error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/", True),
        ("GET", "/projects/x/reports/y", True),
        ("HEAD", "/static/js/index.js", True),
        ("POST", "/api/v2/snapshots/5f1c2b8e-7a51-4c39-9c64-2d0e6f1b7a11/data_series_batch", True),
        ("POST", "/api/v2/snapshots/5f1c2b8e-7a51-4c39-9c64-2d0e6f1b7a11", False),
        ("POST", "/api/v2/snapshots/5f1c2b8e-7a51-4c39-9c64-2d0e6f1b7a11/data_series_batch/../x", False),
        ("PUT", "/api/prompts/x", False),
        ("OPTIONS", "/api/projects", False),
        ("GET", "/schema", False),
        ("GET", "/schema/openapi.json", False),
    ],
)
def test_read_only_filter(method, path, allowed):
    assert request_allowed(method, path) is allowed
