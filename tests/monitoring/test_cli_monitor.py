"""`spx report` and `spx monitor` through the real CLI app against the loopback S3 server."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from spx.cli import app

from .helpers import seed_training_run


def test_spx_report_and_monitor(store, tmp_path):
    seed_training_run(store, "run-c")
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--out", str(tmp_path / "pics")])
    assert res.exit_code == 0, res.output
    assert "run run-c" in res.output and (tmp_path / "pics" / "xgb_base_h1.html").exists()

    res = runner.invoke(app, ["monitor", "--no-retrain", "--json", "--gold-window-days", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["reference_run_id"] == "run-c" and summary["n_served"] == 0
    assert summary["served_drift"] is None  # no traffic: not computed, and said so
    assert summary["gold_drift_share"] == 0.0 and summary["decision"]["retrain"] is False
    assert store.exists(summary["drift_html"]) and store.exists(summary["gold_drift_html"])
    assert set(summary["evidently"]["snapshots"]) == {"gold", "live"}  # no served snapshot without traffic
    page = store.get_bytes(summary["drift_html"]).decode()
    assert "Not computed" in page or "not computed" in page


def test_spx_report_without_runs_is_a_clear_error(store, tmp_path):
    res = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no training run" in res.output
