"""The training report and the ``spx report`` index, read as a person reads them: in headless Chromium, from
the DOM's text — the verdict, the intervals, the baselines, and the variants in rank order.

The run in the bucket is made here (OOT predictions, importance, metrics.json per variant), ranked by the real
selection rules (``rank_variants``, ``verdict_of``); what the test cannot catch: MLflow registration (the e2e
test covers it). Screenshots of both pages go to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import re
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from spx.components.monitoring.report import write_report
from spx.components.selection.select import CREDIBLE, NO_EDGE, rank_variants, verdict_of
from spx.components.selection.verdict import index_html, markdown, selection_markdown
from tests.support import screenshot_dir

from .test_html_render import _chromium, needs_chromium

ROOT = Path(__file__).resolve().parents[2]
RUN = "run-verdict"

# alphabetical order (a_, m_, z_) is not the rank order (m_best 1, z_mid 2, a_weak 3)
VARIANTS = {
    #            val AUC, val CI,          OOT AUC, OOT CI,         momentum
    "m_best": (0.561, (0.505, 0.617), 0.531, (0.504, 0.557), 0.4876),
    "z_mid": (0.548, (0.499, 0.596), 0.497, (0.470, 0.523), 0.4876),
    "a_weak": (0.521, (0.473, 0.570), 0.509, (0.480, 0.535), 0.4876),
}


def _summary(name: str, val: float, val_ci, oot: float, oot_ci, momentum: float, task="classification") -> dict:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    boot = np.clip(rng.normal(val, (val_ci[1] - val_ci[0]) / 3.92, 500), 0, 1).round(6).tolist()
    return {
        "variant": name,
        "task": task,
        "model_format": "xgboost",
        "horizon": 30,
        "native_uri": f"s3://spx/models/{RUN}/{name}/",
        "model_uri": f"models:/m-{name}",
        "mlflow_run_id": f"r-{name}",
        "features": ["f1", "f2", "f3"],
        "cost_bps": 1.0,
        "val_auc_boot": boot,
        "metrics": {
            "val_auc": val,
            "val_auc_ci_low": val_ci[0],
            "val_auc_ci_high": val_ci[1],
            "val_train_auc": val + 0.1,
            "val_overfit_gap_auc": 0.1,
            "val_ic": 0.02,
            "val_bt_sharpe": 0.4,
            "val_bh_sharpe": 0.9,
            "oot_auc": oot,
            "oot_auc_ci_low": oot_ci[0],
            "oot_auc_ci_high": oot_ci[1],
            "oot_ic": 0.01,
            "oot_rank_ic": 0.012,
            "train_auc": val + 0.1,
            "overfit_gap_auc": 0.1,
            "cv_auc_mean": 0.51,
            "cv_auc_std": 0.02,
            "baseline_majority_auc": 0.5,
            "baseline_momentum_auc": momentum,
            "bt_sharpe": 0.7,
            "bh_sharpe": 1.1,
        },
    }


def seed_ranked_run(store, variants=VARIANTS) -> dict:
    """A finished training run in the bucket: per variant its OOT predictions, importance and metrics.json, and
    the selection (ranked and judged by the real rules)."""
    rng = np.random.default_rng(7)
    n = 1200
    ts = pd.date_range("2011-03-21 14:31", periods=n, freq="1min", tz="UTC")
    y = rng.integers(0, 2, n)
    summaries = []
    for name, (val, val_ci, oot, oot_ci, momentum) in variants.items():
        prefix = f"models/{RUN}/{name}/"
        prob = np.clip(0.5 + 0.35 * (oot - 0.5) * (y - 0.5) + rng.normal(0, 0.1, n), 0, 1)  # OOT AUC near `oot`
        store.put_parquet(
            prefix + "oot_predictions.parquet",
            pd.DataFrame({"timestamp": ts, "y_true": y, "y_prob": prob, "ret": rng.normal(0.0, 0.05, n)}),
        )
        store.put_json(prefix + "importance.json", {"f1": 3.0, "f2": 2.0, "f3": 1.0})
        summary = _summary(name, val, val_ci, oot, oot_ci, momentum)
        store.put_json(prefix + "metrics.json", summary)
        summaries.append(summary)
    ranking = rank_variants(summaries, min_oot_auc=0.5, max_overfit_gap=0.35)
    champion = next(r for r in ranking if r["candidate"])
    verdict, why = verdict_of(champion)
    selection = {
        "run_id": RUN,
        "ranking": ranking,
        "verdict": verdict,
        "champion": {
            **{k: champion[k] for k in ("variant", "horizon", "val_auc", "val_auc_ci_bonferroni", "bonferroni_k")},
            **{k: champion[k] for k in ("oot_auc", "oot_auc_ci", "native_uri", "model_format", "model_uri")},
            "registered_model": "spx-direction",
            "model_version": "7",
            "verdict": verdict,
            "credible_edge": verdict == CREDIBLE,
            "verdict_detail": why,
        },
    }
    store.put_json(f"selection/{RUN}/best_model_selection.json", selection)
    return selection


class _Text(HTMLParser):
    """The text a reader sees, per element id, and the rows of the ranking table."""

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.by_id: dict[str, list[str]] = {}
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.all: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("img", "meta", "br", "link"):
            return
        a = dict(attrs)
        if tag in ("td", "th", "tr", "p", "h1", "h2", "li", "figcaption"):
            self.handle_data(" ")  # a reader sees cells and blocks apart
        self.stack.append(a.get("id"))
        if tag == "tr" and "ranking" in self.stack:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("img", "meta", "br", "link"):
            return
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(re.sub(r"\s+", " ", "".join(self._cell)).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        self.all.append(data)
        for element_id in self.stack:
            if element_id:
                self.by_id.setdefault(element_id, []).append(data)
        if self._cell is not None:
            self._cell.append(data)

    def text(self, element_id: str | None = None) -> str:
        parts = self.all if element_id is None else self.by_id.get(element_id, [])
        return re.sub(r"\s+", " ", "".join(parts)).strip()


def read_page(path: Path, tmp_path: Path) -> _Text:
    dom = _chromium(["--dump-dom", path.as_uri()], tmp_path / f"profile-{path.stem}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Text()
    page.feed(dom.stdout)
    return page


def screenshot(path: Path, tmp_path: Path, name: str, size: str) -> Path:
    shot = screenshot_dir(tmp_path) / name
    res = _chromium([f"--screenshot={shot}", f"--window-size={size}", path.as_uri()], tmp_path / f"shot-{name}")
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    return shot


@needs_chromium
def test_index_states_the_champions_verdict_intervals_and_baselines_in_rank_order(store, tmp_path):
    selection = seed_ranked_run(store)
    out = write_report(store, tmp_path / "report", run_id=RUN)
    page = read_page(Path(out["out"]) / "index.html", tmp_path)

    champ = selection["champion"]
    assert champ["variant"] == "m_best" and champ["verdict"] == NO_EDGE  # Bonferroni (k=3) widens 0.505 below 0.5
    verdict = page.text("verdict")
    lo, hi = champ["val_auc_ci_bonferroni"]
    assert "Champion m_best: no credible edge" in verdict
    assert f"[{lo:.3f}, {hi:.3f}]" in verdict  # the validation interval, Bonferroni-corrected
    assert "[0.504, 0.557]" in verdict  # the out-of-time interval
    assert "majority class 0.500" in verdict and "momentum 0.4876" in verdict  # the baselines
    assert "k = 3" in verdict and "Model version 7" in verdict

    header, *rows = page.rows
    assert header[:3] == ["h", "rank", "variant"] and "majority" in header and "momentum" in header
    assert [r[2].replace(" (champion)", "") for r in rows] == ["m_best", "z_mid", "a_weak"]  # rank, not a-z
    assert [r[1] for r in rows] == ["1", "2", "3"] and rows[0][2] == "m_best (champion)"
    assert rows[1][6] == "[0.470, 0.523]" and rows[1][7] == "0.500" and rows[1][8] == "0.4876"
    screenshot(Path(out["out"]) / "index.html", tmp_path, "report-index.png", "1200,700")


@needs_chromium
def test_training_report_pages_state_the_verdict_the_intervals_and_the_baselines(store, tmp_path):
    selection = seed_ranked_run(store)
    out = Path(write_report(store, tmp_path / "report", run_id=RUN)["out"])

    champion = read_page(out / "m_best.html", tmp_path)
    verdict = champion.text("verdict")
    assert verdict.startswith("Verdict: no credible edge")
    lo, hi = selection["champion"]["val_auc_ci_bonferroni"]
    assert f"[{lo:.3f}, {hi:.3f}]" in verdict and "[0.504, 0.557]" in verdict
    assert "at least one is not" in verdict
    edge = champion.text("edge")
    assert "validation AUC [95% CI] 0.5610 [0.505, 0.617]" in edge  # the variant's own interval
    assert "out-of-time AUC [95% CI] 0.5310 [0.504, 0.557]" in edge
    assert "majority class, OOT AUC 0.5000" in edge and "momentum (sign of last return), OOT AUC 0.4876" in edge
    for caption in ("Feature importance", "ROC curve", "Calibration", "Equity curve"):
        assert caption in champion.text()

    other = read_page(out / "a_weak.html", tmp_path)
    assert other.text("verdict").startswith("Verdict: decided by selection")  # no verdict for a non-champion
    assert "0.5090 [0.480, 0.535]" in other.text("edge")
    screenshot(out / "m_best.html", tmp_path, "training-report.png", "1200,1500")


@needs_chromium
def test_a_credible_champion_reads_credible_edge(store, tmp_path):
    seed_ranked_run(store, {"only": (0.60, (0.55, 0.65), 0.56, (0.53, 0.59), 0.49)})
    out = Path(write_report(store, tmp_path / "report", run_id=RUN)["out"])
    assert "Champion only: credible edge" in read_page(out / "index.html", tmp_path).text("verdict")
    page = read_page(out / "only.html", tmp_path)
    assert page.text("verdict").startswith("Verdict: credible edge") and "Both intervals lie above 0.5" in page.text(
        "verdict"
    )


def test_verdict_markdown_for_kfp_and_the_model_version(store):
    selection = seed_ranked_run(store)
    md = selection_markdown(selection)
    lo, hi = selection["champion"]["val_auc_ci_bonferroni"]
    assert md.startswith("**Verdict: no credible edge** — m_best (horizon 30 bars, model version 7)")
    assert f"[{lo:.3f}, {hi:.3f}] Bonferroni, k = 3" in md and "[0.504, 0.557] 95%" in md
    assert "majority class 0.500, momentum 0.4876" in md and "deploy_without_edge=true" in md
    row = {**selection["ranking"][0], "verdict": CREDIBLE}
    assert "Both intervals lie above 0.5: a credible edge." in markdown(row)
    none = selection_markdown({"run_id": "r", "champion": None, "reason": "no variant met the criteria"})
    assert none == "**No new champion** in run r: no variant met the criteria"
    assert "No new champion" in index_html("r", {"reason": "x", "ranking": []}, {}, [])
