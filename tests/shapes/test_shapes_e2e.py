"""Real-world shapes through the whole pipeline, as a user runs it: ``spx run --source file`` in a subprocess
against the loopback S3 server and MLflow on SQLite (issue 19). Two runs (each costs minutes on 2 cores):

* an hourly S&P index file, stamped with bar starts, no volume, three years across a real exchange closure
  (2018-12-05) — told the truth (``--timestamps start``) it trains every variant, without the volume family;
* six sessions of a 23-hour futures-like file with quotes that miss a side now and then, ``--session all`` —
  it trains, says "too little data to judge", registers nothing, and does not point at ``spx serve``.

The first uses the real five-minute bars of ../shared/data; without them it runs on five-minute bars aggregated
from the bundled minute bars (March 2011: no closure in it) and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.shapes import builders as B

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def spx_run(tmp_path, path, *options: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "selection.json"
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "run", "--source", "file", "--market-path", str(path)]
        + ["--news-source", "none", "--n-folds", "2", "--n-boot", "200", "--no-materialize", "--json", str(out)]
        + list(options),
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=1700,
    )
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_hourly_index_stamped_with_bar_starts_across_a_real_closure_trains(store, tmp_path):
    five = B.five_minute_2018_2020()
    if five is not None:
        bars, granularity, closure = B.resample(five, "1h", stamp="start"), "H1", "2018-12-05"
    else:  # no ../shared/data: five-minute bars of the bundled March 2011, no closure in them
        march = B.regular_only(B.minute_2011())
        march = march[march["timestamp"] >= "2011-03-01"]
        bars, granularity, closure = B.resample(march, "5min", stamp="start"), "M5", None
    index = bars.assign(volume=0.0)
    path = B.write(index, tmp_path / "spx_index_h1.csv", "csv")
    # the default reading is refused before anything starts, naming the option
    proc, _ = spx_run(tmp_path, path, "--granularity", granularity)
    assert proc.returncode == 1 and "pass --timestamps start" in proc.stderr.strip().splitlines()[-1]
    proc, selection = spx_run(tmp_path, path, "--granularity", granularity, "--timestamps", "start")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "stamps read as bar starts, as written: confirmed by the data" in out
    assert "volume is 0 on every bar" in out
    run_id = selection["run_id"]
    manifest = store.get_json(f"gold/{run_id}/manifest.json")
    assert "/bronze/market/file-spx-index-h1-" in manifest["bronze_prefix"]
    assert set(manifest["dropped_features"]) >= {"volume_ratio", "amihud_illiquidity_log", "price_impact"}
    gold = store.read_parquet(f"gold/{run_id}/features.parquet")
    ny = pd.DatetimeIndex(gold["timestamp"]).tz_convert(B.NY)
    if closure:
        assert manifest["sessions"] >= 750 and not (ny.normalize() == pd.Timestamp(closure, tz=B.NY)).any()
        # bar starts read as ends used to move every bar an hour early and lose the 15:00-16:00 bar each day
        assert (ny.hour == 16).sum() >= 700
    assert len(selection["ranking"]) == 6
    for row in selection["ranking"]:
        assert row["val_sessions"] >= 2 and row["oot_rows"] > 0 and not row["too_little_data"]
        lo, hi = row["oot_auc_ci"]
        assert (lo is None or pd.isna(lo)) or lo <= row["oot_auc"] <= hi
    assert "val rows (sess)" in out and "OOT rows (sess)" in out
    if selection["champion"]:
        assert "next: spx serve" in out
    else:
        assert "spx serve" not in out.split("next:")[-1]


def test_six_sessions_of_futures_with_quote_gaps_are_too_little_to_judge(store, tmp_path):
    futures = B.futures_like(B.first_sessions(B.january(B.minute_2011()), 6))
    path = B.write(B.with_quotes(futures, missing_share=0.0013), tmp_path / "es_m1.parquet")
    proc, selection = spx_run(tmp_path, path, "--session", "all")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "under the minimum for a verdict" in out  # said before the tasks start
    assert selection["verdict"] == "too little data to judge" and selection["champion"] is None
    assert all(r["too_little_data"] and not r["suspect"] for r in selection["ranking"])
    last = [line for line in out.splitlines() if line.startswith("next:")][-1]
    assert "more sessions" in last and "spx serve" not in last
    manifest = store.get_json(f"gold/{selection['run_id']}/manifest.json")
    assert manifest["label_cross_close"] is False and "trading halt" in manifest["label_breaks"]
    silver_log = (Path(selection["run_dir"]) / "silver-microstructure.log").read_text()
    assert "the Corwin-Schultz estimate on the other" in silver_log and "spread: quoted on" in silver_log
    # nothing registered in MLflow
    import mlflow
    from mlflow import MlflowClient

    from spx.core.settings import settings

    mlflow.set_tracking_uri(settings().mlflow_tracking_uri)
    assert not MlflowClient().search_registered_models()
