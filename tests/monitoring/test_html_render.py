"""The HTML artifacts open in a real browser (headless Chromium, no network) and show their plots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spx.components.monitoring.drift import evidently_drift
from spx.components.monitoring.report import write_report
from spx.components.training import visuals

from .helpers import GOLD_FEATURES, gold_frame, seed_training_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")


# headless, offline, no first-run or background work (tests/monitoring/cdp.py starts Chromium the same way)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
]


def _chromium(args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _training_page(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.08 * (y - 0.5) + rng.normal(0, 0.08, n), 0, 1)
    page = visuals.training_report_html(
        y,
        p,
        rng.normal(0.01, 0.3, n),
        {f"feat_{i}": float(i) for i in range(25)},
        cost_bps=1.0,
        title="xgb_base_h1",
        horizon=1,
    )
    path = tmp_path / "report.html"
    path.write_text(page)
    return path


def test_roc_and_confusion_match_kfp_shapes():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    rc = visuals.roc_and_confusion(y, p)
    assert rc["confusion_matrix"] == [[2, 1], [1, 2]]
    assert len(rc["fpr"]) == len(rc["tpr"]) == len(rc["thresholds"])
    assert all(0.0 <= t <= 1.0 for t in rc["thresholds"])  # KFP rejects the +inf sklearn threshold
    assert rc["auc"] == pytest.approx(8 / 9)  # 8 of the 9 (up, down) pairs are ordered correctly


def test_backtest_is_non_overlapping_and_pays_costs():
    prob = np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.9])
    ret = np.array([1.0, 5.0, -1.0, 7.0, 2.0, 3.0])  # percent
    bt = visuals.long_flat_backtest(prob, ret, horizon=2, cost_bps=10.0)
    assert bt["index"] == [0, 2, 4] and bt["trades"] == 3
    # long, flat, long: +1% - 10bp, 0 - 10bp (exit), +2% - 10bp (re-entry)
    expected = (1 + 0.01 - 0.001) * (1 - 0.001) * (1 + 0.02 - 0.001) - 1
    assert bt["strategy_return"] == pytest.approx(expected)
    assert bt["buy_and_hold_return"] == pytest.approx(1.01 * 0.99 * 1.02 - 1)


@needs_chromium
def test_training_report_renders_in_headless_chromium_with_its_plots(tmp_path):
    path = _training_page(tmp_path)
    dom = _chromium(["--dump-dom", path.as_uri()], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for fig in ("fig-importance", "fig-roc", "fig-calibration", "fig-equity"):
        assert f'id="{fig}"' in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == 4
    shot = tmp_path / "shot.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1200,2600", path.as_uri()], tmp_path / "profile2")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the bar/line colour of the plots (#3b6ea8) must actually be painted, in quantity
    blue = (np.abs(img - np.array([0x3B, 0x6E, 0xA8])).sum(axis=2) < 40).sum()
    red = (np.abs(img - np.array([0xC0, 0x50, 0x4D])).sum(axis=2) < 60).sum()
    assert blue > 5000 and red > 500


@needs_chromium
def test_evidently_drift_report_renders_its_plotly_charts_offline(tmp_path):
    ref = gold_frame(2000, "2026-01-05", seed=1)
    cur = gold_frame(800, "2026-02-05", seed=2, shift={"f_ret": 1.0})
    _, snapshot = evidently_drift(ref, cur, GOLD_FEATURES, prediction_column=None)
    path = tmp_path / "drift.html"
    path.write_text(snapshot.get_html_str(as_iframe=False))
    dom = _chromium(["--virtual-time-budget=20000", "--dump-dom", path.as_uri()], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the React app ran (the table of columns exists) and plotly drew its SVG charts
    assert "f_ret" in html and "Drift" in html
    assert html.count("main-svg") >= 2
    assert "Index binned" not in html and "timestamp (" in html  # plotted against time (issue 18)


def test_spx_report_writes_the_pictures_from_the_bucket(store, tmp_path):
    seed_training_run(store, "run-z", variant="lgbm_base_h1")
    out = write_report(store, tmp_path / "report")
    assert out["run_id"] == "run-z" and out["champion"] == "lgbm_base_h1"
    page = (tmp_path / "report" / "lgbm_base_h1.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "f_news" not in page[:200]
    md = (tmp_path / "report" / "lgbm_base_h1.md").read_text()
    assert "| AUC (OOT) |" in md and "| f_news |" in md
    index = (tmp_path / "report" / "index.html").read_text()
    assert "lgbm_base_h1.html" in index and "(champion)" in index
