"""Evidently drift on shifted vs same-distribution samples; the monitoring run end to end on a real bucket."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from spx.components.monitoring.drift import MonitorConfig, evidently_drift, live_hit_rate, run_monitoring
from spx.components.monitoring.trigger import decide
from spx.components.monitoring.workspace import open_workspace

from .helpers import GOLD_FEATURES, gold_frame, log_served, seed_training_run


def _frames(shift: dict[str, float], seed: int = 3):
    ref = gold_frame(4000, "2026-01-05", seed=seed)
    cur = gold_frame(1500, "2026-02-05", seed=seed + 100, shift=shift)
    rng = np.random.default_rng(seed)
    ref["probability"] = rng.normal(0.5, 0.05, len(ref))
    cur["probability"] = rng.normal(0.5 + 0.05 * bool(shift), 0.05, len(cur))
    return ref, cur


def test_shifted_sample_drifts_exactly_on_the_shifted_columns():
    ref, cur = _frames({"f_ret": 1.0, "f_rsi": 0.8, "f_vol": -1.0})
    res, snapshot = evidently_drift(ref, cur, GOLD_FEATURES)
    assert res.drift_share == pytest.approx(0.5)
    assert sorted(res.drifted_columns) == ["f_ret", "f_rsi", "f_vol"]
    scores = {c.column: c.score for c in res.columns}
    assert scores["f_ret"] == pytest.approx(1.0, abs=0.1)  # normed Wasserstein = shift in reference SDs
    assert scores["f_vol"] == pytest.approx(1.0, abs=0.1)
    assert scores["f_rsi"] == pytest.approx(0.8, abs=0.1)
    assert all(scores[c] < 0.1 for c in ("f_macd", "f_atr", "f_news"))
    assert (
        res.prediction is not None and res.prediction.drifted and res.prediction.score == pytest.approx(1.0, abs=0.15)
    )
    assert res.dataset_drift is True and res.n_reference == 4000 and res.n_current == 1500
    assert "f_ret" in snapshot.get_html_str(as_iframe=False)


def _axis_titles(snapshot) -> list[str]:
    """The x-axis titles of the report's rendered plots (what the report view draws)."""
    import json

    text = json.dumps([w.dict() for w in snapshot.to_snapshot_model().widgets], default=str)
    return re.findall(r'"xaxis": \{[^{}]*"title": \{"text": "([^"]*)"', text)


def test_drift_report_plots_the_current_values_against_time():
    """Issue 18: the report's drift plots read "Index binned" (no timestamp reached Evidently). The data
    definition now names the timestamp, for the features and for the prediction."""
    ref, cur = _frames({"f_ret": 1.0})
    _, snapshot = evidently_drift(ref, cur, GOLD_FEATURES)
    titles = _axis_titles(snapshot)
    assert titles and "Index binned" not in titles
    over_time = [t for t in titles if t.startswith("timestamp (")]  # e.g. "timestamp (hour)": binned by period
    assert len(over_time) == len(GOLD_FEATURES) + 1  # every feature and the prediction
    _, blind = evidently_drift(ref, cur, GOLD_FEATURES, timestamp_column=None)  # what the reports did before
    assert "Index binned" in _axis_titles(blind)


def test_same_distribution_sample_does_not_drift():
    ref, cur = _frames({})
    res, _ = evidently_drift(ref, cur, GOLD_FEATURES)
    assert res.drift_share == 0.0
    assert res.drifted_columns == []
    assert max(c.score for c in res.columns) < 0.1
    assert res.prediction is not None and not res.prediction.drifted
    assert res.dataset_drift is False


def test_pvalue_method_also_separates_the_cases():
    ref, cur = _frames({"f_ret": 1.0})
    res, _ = evidently_drift(ref, cur, GOLD_FEATURES, method="ks", threshold=0.001)
    assert res.drifted_columns == ["f_ret"] and res.drift_share == pytest.approx(1 / 6)
    assert res.columns[0].score < 1e-10  # a p-value


def test_decide_reasons():
    assert not decide(drift_share=0.1, hit_rate=0.55, n_labeled=500).retrain
    d = decide(drift_share=0.6, hit_rate=0.45, n_labeled=500)
    assert d.retrain and len(d.reasons) == 2
    assert not decide(drift_share=None, hit_rate=0.2, n_labeled=10, min_labeled=100).retrain  # too few labels
    with pytest.raises(ValueError):
        decide(drift_share=0.1, hit_rate=None, n_labeled=0, drift_threshold=0)


def test_live_hit_rate_joins_on_the_bar_and_reports_the_baseline():
    gold = gold_frame(10, "2026-01-05", seed=1)
    gold["y_up_h1"] = [1, 0, 1, 1, 0, 1, 1, 1, np.nan, 0]
    served = pd.DataFrame(
        {
            "timestamp": gold["timestamp"] + pd.Timedelta(seconds=5),
            "bar_timestamp": gold["timestamp"].copy(),
            "prediction": [1, 1, 1, 0, 0, 1, 0, 1, 1, 0],
        }
    )
    served.loc[9, "bar_timestamp"] = pd.NaT  # matched by request time instead (as-of, within a bar)
    out = live_hit_rate(served, gold, horizon=1, bar_interval="5min")
    assert out["n_labeled"] == 9  # the unrealized label (NaN) does not count
    assert out["hit_rate"] == pytest.approx(6 / 9)
    assert out["up_rate"] == pytest.approx(6 / 9) and out["majority_baseline"] == pytest.approx(6 / 9)


@pytest.mark.parametrize("scenario", ["feature_drift", "hit_rate_collapse", "healthy"])
def test_monitoring_run_end_to_end(store, tmp_path, scenario):
    ref_gold = seed_training_run(store, "run-a")
    shift = {"f_ret": 1.0, "f_rsi": 1.0, "f_vol": 1.0} if scenario == "feature_drift" else {}
    new = gold_frame(800, str(ref_gold["timestamp"].max() + pd.Timedelta(minutes=5)), seed=9, shift=shift)
    store.put_parquet("gold/run-b/features.parquet", pd.concat([ref_gold, new], ignore_index=True))
    rng = np.random.default_rng(5)
    y = new["y_up_h1"].to_numpy()
    sign = -1.0 if scenario == "hit_rate_collapse" else 1.0
    probs = np.clip(0.5 + sign * 0.05 * (y - 0.5) + rng.normal(0, 0.05, len(y)), 0, 1)
    log_served(store, tmp_path / "log", new, probs)
    now = new["timestamp"].max().to_pydatetime() + timedelta(hours=1)
    cfg = MonitorConfig(lookback_days=7, gold_window_days=2.5, min_labeled=100)
    summary = run_monitoring(store, monitor_run_id=f"m-{scenario}", cfg=cfg, now=now)

    expected_hit = float(((probs >= 0.5).astype(int) == y.astype(int)).mean())
    assert summary["reference_run_id"] == "run-a" and summary["variant"] == "xgb_base_h1"
    assert summary["n_served"] == 800
    assert summary["hit"]["n_labeled"] == 800
    assert summary["hit"]["hit_rate"] == pytest.approx(expected_hit)
    assert summary["latest_gold"] == "gold/run-b/features.parquet"
    for name in ("drift.html", "gold_drift.html", "summary.json"):
        assert store.exists(f"monitoring/m-{scenario}/{name}")
    stored = store.get_json(f"monitoring/m-{scenario}/summary.json")
    assert stored["decision"] == summary["decision"]
    # the run's snapshots are in the Evidently workspace, stamped with the run's time
    ev = summary["evidently"]
    assert set(ev["snapshots"]) == {"served", "gold", "live"} and stored["evidently"] == ev
    ws = open_workspace(ev["workspace"])
    runs = {str(s) for s in ws.list_runs(ev["project_id"])}
    assert runs == set(ev["snapshots"].values())
    for tag, sid in ev["snapshots"].items():
        model = ws.get_run(ev["project_id"], sid)
        assert model.tags == [tag] and model.timestamp.replace(tzinfo=None) == now.replace(tzinfo=None)
    # the hourly pages are small: the numbers and where the full report is, not Evidently's 4 MB bundle
    page = store.get_bytes(f"monitoring/m-{scenario}/drift.html").decode()
    assert len(page) < 20_000 and ev["snapshots"]["served"] in page and "f_ret" in page
    d = summary["decision"]
    if scenario == "feature_drift":
        assert summary["served_drift_share"] == pytest.approx(0.5)
        assert sorted(summary["served_drift"]["drifted_columns"]) == ["f_ret", "f_rsi", "f_vol"]
        assert summary["gold_drift_share"] == pytest.approx(0.5)
        assert d["retrain"] and d["reasons"] == ["drift share 0.50 >= 0.50"]
        assert expected_hit > 0.5
    elif scenario == "hit_rate_collapse":
        assert summary["served_drift_share"] == 0.0 and summary["gold_drift_share"] == 0.0
        assert expected_hit < 0.5
        assert d["retrain"] and len(d["reasons"]) == 1 and d["reasons"][0].startswith("live hit rate")
    else:
        assert summary["served_drift_share"] == 0.0 and summary["gold_drift_share"] == 0.0
        assert not d["retrain"] and d["reasons"] == []


def test_a_workspace_that_cannot_be_written_loses_nothing_else(store, tmp_path, monkeypatch):
    """The decision (and the retrain it may start) must not depend on the dashboard: with the workspace
    unwritable the run still stores its summary and pages, and says what failed."""
    ref_gold = seed_training_run(store, "run-a")
    new = gold_frame(200, str(ref_gold["timestamp"].max() + pd.Timedelta(minutes=5)), seed=9, shift={"f_ret": 2.0})
    store.put_parquet("gold/run-b/features.parquet", pd.concat([ref_gold, new], ignore_index=True))
    log_served(store, tmp_path / "log", new, np.full(len(new), 0.6))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the workspace should be")
    monkeypatch.setenv("SPX_EVIDENTLY_WORKSPACE", str(blocker / "ws"))
    now = new["timestamp"].max().to_pydatetime() + timedelta(hours=1)
    summary = run_monitoring(store, monitor_run_id="m-blocked", cfg=MonitorConfig(gold_window_days=0.5), now=now)
    assert summary["evidently"]["error"]
    stored = store.get_json("monitoring/m-blocked/summary.json")
    assert stored["decision"] == summary["decision"] and stored["served_drift_share"] > 0
    page = store.get_bytes("monitoring/m-blocked/drift.html").decode()
    assert "Not in the Evidently workspace" in page and "f_ret" in page
