"""The monitoring run's figures that Evidently does not compute: canary vs stable health, news sentiment over
the window, and the champion's verdict. They go into the run's ``live`` snapshot (one row, one column per
figure; see :mod:`.evidently_metrics`) and its ``summary.json``.

**Canary vs stable** is measured with the canary loop's own function,
:func:`spx.components.deploy.health.health_from_prediction_log` (rows of one ``model_version`` in the
window; errors are rows whose status is not ``ok``; nearest-rank p95 of ``latency_ms``), once per role. The
roles come from the prediction log of the canary window (``canary_window_minutes``, the window the canary
step judges): when two or more model versions served in it, the canary is the newest version (registered
versions only grow) and the stable model the version that served most of the other rows; with one version
it is the stable model and there is no canary. Right after a promotion or a rollback both versions still
appear in the window for up to ``canary_window_minutes``; the canary step's decision (its KFP output and
the InferenceService annotations) is the authority on which model is which.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

import pandas as pd

from spx.components.training.kfp_outputs import MODEL_METADATA
from spx.core import layout

log = logging.getLogger(__name__)

NEWS_SENTIMENT = "news_avg_sentiment"
NEWS_COUNT = "news_article_count"
# health_from_prediction_log reads only ``model_version`` from the references it is given; the rest of a
# ModelRef (where the model file lives) is unknown from the prediction log
_LOG_ONLY_URI = "s3://prediction-log/model-version-{}"


def _version_key(version: str) -> tuple[int, float, str]:
    try:
        return (1, float(version), version)
    except ValueError:
        return (0, 0.0, version)


def serving_roles(versions: pd.Series) -> tuple[str | None, str | None]:
    """``(stable, canary)`` model versions from the versions that served rows in the canary window."""
    counts = versions.dropna().astype(str).str.strip()
    counts = counts[counts != ""].value_counts()
    if counts.empty:
        return None, None
    if len(counts) == 1:
        return str(counts.index[0]), None
    canary = max(counts.index, key=_version_key)
    stable = str(counts.drop(canary).idxmax())
    return stable, str(canary)


def serving_health(store, *, start: datetime, end: datetime, model_format: str = "xgboost") -> dict[str, Any]:
    """Error rate, p95 latency and request count of the stable model and the canary (see the module doc)."""
    from spx.components.deploy.canary import ModelRef
    from spx.components.deploy.health import health_from_prediction_log
    from spx.components.prediction_log import read_predictions

    rows = read_predictions(store, start, end, flatten=False)
    stable, canary = serving_roles(rows["model_version"]) if len(rows) else (None, None)
    out: dict[str, Any] = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "stable_version": stable,
        "canary_version": canary,
        "notes": [],
    }

    def ref(version: str):
        return ModelRef(native_uri=_LOG_ONLY_URI.format(version), model_format=model_format, model_version=version)

    for role, version, other in (("stable", stable, canary), ("canary", canary, stable)):
        if version is None:
            continue
        m = health_from_prediction_log(
            store, ref(version), start=start, end=end, stable=ref(other) if other else None
        ).to_dict()
        out[f"{role}_requests"] = m["requests"]
        out[f"{role}_errors"] = m["errors"]
        out[f"{role}_error_rate"] = m["error_rate"]
        p95 = m["p95_latency_ms"]
        out[f"{role}_p95_latency_ms"] = p95 if p95 is not None and math.isfinite(p95) else None
        out["notes"] += [f"{role}: {n}" for n in m["notes"]]
    return out


def news_sentiment(gold: pd.DataFrame, served: pd.DataFrame, lookback_days: float) -> dict[str, Any]:
    """Mean ``news_avg_sentiment`` over the newest gold bars of the last ``lookback_days`` (the market's
    news) and over the served rows (what the model received, when it uses news), with the share of those
    gold bars that had any article."""
    out: dict[str, Any] = {"news_sentiment_gold": None, "news_sentiment_served": None, "news_bars_with_articles": None}
    if NEWS_SENTIMENT in gold.columns and len(gold):
        ts = pd.to_datetime(gold["timestamp"], utc=True)
        window = gold[ts > ts.max() - pd.Timedelta(days=lookback_days)]
        values = pd.to_numeric(window[NEWS_SENTIMENT], errors="coerce").dropna()
        if len(values):
            out["news_sentiment_gold"] = float(values.mean())
        if NEWS_COUNT in window.columns and len(window):
            counts = pd.to_numeric(window[NEWS_COUNT], errors="coerce").fillna(0)
            out["news_bars_with_articles"] = float((counts > 0).mean())
    if NEWS_SENTIMENT in served.columns and len(served):
        values = pd.to_numeric(served[NEWS_SENTIMENT], errors="coerce").dropna()
        if len(values):
            out["news_sentiment_served"] = float(values.mean())
    return out


def latest_prediction(served: pd.DataFrame) -> dict[str, Any]:
    """The newest served prediction in the window (P(up) and the transformer's confidence, max(p, 1 - p)) and
    the mean confidence of all of them."""
    out: dict[str, Any] = {
        "last_served_probability": None,
        "last_served_confidence": None,
        "last_served_at": None,
        "last_served_bar": None,
        "mean_served_confidence": None,
    }
    if not len(served) or "probability" not in served.columns:
        return out
    rows = served[pd.to_numeric(served["probability"], errors="coerce").notna()]
    if not len(rows):
        return out
    prob = pd.to_numeric(rows["probability"], errors="coerce").astype(float)
    confidence = prob.where(prob >= 0.5, 1.0 - prob)
    last = pd.to_datetime(rows["timestamp"], utc=True).to_numpy().argmax()
    out["last_served_probability"] = float(prob.iloc[last])
    out["last_served_confidence"] = float(confidence.iloc[last])
    out["last_served_at"] = pd.Timestamp(rows["timestamp"].iloc[last]).isoformat()
    if "bar_timestamp" in rows.columns and pd.notna(rows["bar_timestamp"].iloc[last]):
        out["last_served_bar"] = pd.Timestamp(rows["bar_timestamp"].iloc[last]).isoformat()
    out["mean_served_confidence"] = float(confidence.mean())
    return out


def champion_verdict(store, run_id: str, variant: str) -> dict[str, Any] | None:
    """The champion's verdict as the selection step recorded it (``selection/{run_id}/best_model_selection.json``:
    validation interval (Bonferroni), out-of-time interval, baselines, "credible edge" or not), or None when
    the run has no selection record or ``variant`` is not its champion."""
    key = layout.selection_key(run_id)
    if not store.exists(key):
        return None
    selection = store.get_json(key)
    champ = selection.get("champion")
    if not isinstance(champ, dict) or champ.get("variant") != variant:
        return None
    row: dict[str, Any] = next((r for r in selection.get("ranking") or [] if r.get("variant") == variant), {})
    val_ci = champ.get("val_auc_ci_bonferroni") or [None, None]
    oot_ci = champ.get("oot_auc_ci") or [None, None]
    return {
        "run_id": run_id,
        "variant": variant,
        "registered_model": champ.get("registered_model"),
        "model_version": champ.get("model_version"),
        "verdict": champ.get("verdict"),
        "credible_edge": bool(champ.get("credible_edge")),
        "val_auc": champ.get("val_auc"),
        "val_auc_ci_low": val_ci[0],
        "val_auc_ci_high": val_ci[1],
        "bonferroni_k": champ.get("bonferroni_k"),
        "oot_auc": champ.get("oot_auc"),
        "oot_auc_ci_low": oot_ci[0],
        "oot_auc_ci_high": oot_ci[1],
        "baseline_majority_auc": row.get("baseline_majority_auc"),
        "baseline_momentum_auc": row.get("baseline_momentum_auc"),
    }


def figures_row(summary: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a monitoring summary, one entry per :data:`.evidently_metrics.FIGURES` column."""
    cfg = summary.get("config") or {}
    hit = summary.get("hit") or {}
    health = summary.get("serving_health") or {}
    news = summary.get("news") or {}
    latest = summary.get("latest_prediction") or {}
    verdict = summary.get("verdict") or {}
    decision = summary.get("decision") or {}
    values: dict[str, Any] = {
        "live_hit_rate": hit.get("hit_rate"),
        "live_majority_baseline": hit.get("majority_baseline"),
        "hit_rate_floor": cfg.get("hit_rate_floor"),
        "n_labeled": hit.get("n_labeled"),
        "n_served": summary.get("n_served"),
        "drift_share": summary.get("drift_share"),
        "drift_threshold": cfg.get("drift_threshold"),
        "feature_drift_threshold": cfg.get("threshold"),
        "retrain": 1.0 if decision.get("retrain") else 0.0,
        "max_error_rate": cfg.get("canary_max_error_rate"),
        "max_p95_latency_ms": cfg.get("canary_max_p95_latency_ms"),
        **{k: health.get(k) for k in ("canary_error_rate", "canary_p95_latency_ms", "canary_requests")},
        **{k: health.get(k) for k in ("stable_error_rate", "stable_p95_latency_ms", "stable_requests")},
        **{k: news.get(k) for k in ("news_sentiment_gold", "news_sentiment_served", "news_bars_with_articles")},
        **{k: latest.get(k) for k in ("last_served_probability", "last_served_confidence", "mean_served_confidence")},
    }
    if verdict:
        values.update({k: verdict.get(k) for k in MODEL_METADATA})  # the same figures the model carries
        values["credible_edge"] = 1.0 if verdict.get("credible_edge") else 0.0
    return {
        k: round(float(v), 4)  # what the dashboard's counters print
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


__all__ = [
    "champion_verdict",
    "figures_row",
    "latest_prediction",
    "news_sentiment",
    "serving_health",
    "serving_roles",
]
