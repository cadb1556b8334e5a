"""Drift and live performance of the champion: Evidently reports + the served hit rate.

Three comparisons, each against the champion's *training reference* (its gold feature table,
``gold/{run_id}/features.parquet``; the prediction reference is its out-of-time predictions,
``models/{run_id}/{variant}/oot_predictions.parquet`` — in-sample scores would be over-confident):

1. **served data drift** — the features the model actually received (the prediction log) vs the
   reference features;
2. **prediction drift** — the served probabilities vs the OOT probabilities;
3. **gold drift** — the newest gold table's latest window vs the reference (catches a regime change
   even when little traffic was served).

Evidently 0.7 (``evidently.Report`` / ``DataDriftPreset`` / ``ValueDrift``). The default test is
the normed Wasserstein distance (a shift measured in reference standard deviations, threshold 0.1)
rather than Evidently's size-dependent auto choice: market features are autocorrelated and the
p-value tests flag every column on large samples. ``drift_share`` is the share of drifted feature
columns.

The live hit rate joins served predictions to the realized labels ``y_up_h{h}`` of the newest gold
table (by the bar the prediction was made on), with the majority-class hit rate over the same bars
as its baseline.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from spx.core import layout

log = logging.getLogger(__name__)

PREDICTION_COLUMN = "probability"


@dataclass
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    drift_share: float | None  # share of drifted feature columns (None: not computed)
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    n_reference: int
    n_current: int
    dataset_drift: bool  # Evidently's "dataset drift": share >= drift_share_limit
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _is_pvalue(method: str) -> bool:
    return "p_value" in method.lower() or method.lower() in {
        "ks",
        "chisquare",
        "z",
        "t_test",
        "mannw",
        "anderson",
        "cramer_von_mises",
        "g_test",
        "fisher_exact",
        "es",
    }


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    feature_columns: list[str],
    *,
    prediction_column: str | None = PREDICTION_COLUMN,
    method: str = "wasserstein",
    threshold: float = 0.1,
    drift_share_limit: float = 0.5,
    prediction_method: str | None = None,
    prediction_threshold: float | None = None,
) -> tuple[DriftResult, str]:
    """Data drift over ``feature_columns`` (+ prediction drift) as a result and Evidently HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    feats = [c for c in feature_columns if c in reference.columns and c in current.columns]
    feats = [c for c in feats if reference[c].notna().any() and current[c].notna().any()]
    pred = (
        prediction_column
        if (
            prediction_column
            and prediction_column in reference.columns
            and prediction_column in current.columns
            and reference[prediction_column].notna().sum() > 1
            and current[prediction_column].notna().sum() > 1
        )
        else None
    )
    if not feats and pred is None:
        raise ValueError("nothing to compare: no feature column (or prediction) present in both datasets")
    cols = feats + ([pred] if pred else [])
    ref = reference[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    cur = current[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    dd = DataDefinition(numerical_columns=cols)
    metrics: list[Any] = []
    if feats:
        metrics.append(
            DataDriftPreset(
                columns=feats, method=method, threshold=threshold, drift_share=drift_share_limit, include_tests=False
            )
        )
    p_method = prediction_method or method
    p_threshold = threshold if prediction_threshold is None else prediction_threshold
    if pred:
        metrics.append(ValueDrift(column=pred, method=p_method, threshold=p_threshold))
    report = Report(metrics, include_tests=False)
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
    share = None
    per_col: dict[str, ColumnDrift] = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif kind.endswith("ValueDrift"):
            col = cfg["column"]
            score = float(m["value"])
            thr = float(cfg.get("threshold") if cfg.get("threshold") is not None else threshold)
            meth = str(cfg.get("method") or method)
            drifted = (score < thr) if _is_pvalue(meth) else (score >= thr)
            per_col[col] = ColumnDrift(col, meth, score, thr, bool(drifted))
    columns = [per_col[c] for c in feats if c in per_col]
    drifted = [c.column for c in columns if c.drifted]
    if feats and share is not None and abs(share - len(drifted) / len(feats)) > 1e-9:
        log.warning(
            "Evidently's drift share %.3f differs from the per-column count %d/%d", share, len(drifted), len(feats)
        )
    result = DriftResult(
        drift_share=share if feats else None,
        drifted_columns=drifted,
        columns=columns,
        prediction=per_col.get(pred) if pred else None,
        n_reference=len(ref),
        n_current=len(cur),
        dataset_drift=bool(share is not None and share >= drift_share_limit),
    )
    return result, snapshot.get_html_str(as_iframe=False)


def placeholder_html(title: str, message: str, details: dict | None = None) -> str:
    """A small self-contained page for when a comparison could not run (the artifact still opens)."""
    import html as _h

    rows = "".join(
        f"<tr><th>{_h.escape(str(k))}</th><td>{_h.escape(str(v))}</td></tr>" for k, v in (details or {}).items()
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_h.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>{_h.escape(title)}</h1>"
        f"<p>{_h.escape(message)}</p><table>{rows}</table></body></html>"
    )


# -- live hit rate ---------------------------------------------------------------------------------


def live_hit_rate(served: pd.DataFrame, gold: pd.DataFrame, horizon: int, bar_interval: str | None = None) -> dict:
    """Served predictions joined to realized labels; hit rate with its majority baseline.

    A served row is matched to the gold bar it was made on: ``bar_timestamp`` when the request
    carried one (exact match), else the last bar at or before the request time (within one
    ``bar_interval``). Only bars whose label is realized (non-null) count.
    """
    label = f"y_up_h{horizon}"
    empty = {"hit_rate": None, "n_labeled": 0, "majority_baseline": None, "up_rate": None, "horizon": horizon}
    if served.empty or label not in gold.columns:
        return empty
    s = served[served["prediction"].notna()].copy()
    if s.empty:
        return empty
    g = gold[["timestamp", label]].dropna().copy()
    g["timestamp"] = pd.to_datetime(g["timestamp"], utc=True)
    g = g.sort_values("timestamp").drop_duplicates("timestamp", keep="last")
    bar = pd.to_datetime(s["bar_timestamp"], utc=True) if "bar_timestamp" in s else pd.Series(pd.NaT, index=s.index)
    # join on int64 nanoseconds: parquet round trips may change the datetime unit (us vs ns)
    g_key = g["timestamp"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]").astype("int64")
    exact = s[bar.notna()]
    exact = exact.assign(_key=bar[bar.notna()].astype("datetime64[ns, UTC]").astype("int64").to_numpy())
    joined = exact.merge(pd.DataFrame({"_key": g_key.to_numpy(), label: g[label].to_numpy()}), on="_key", how="inner")
    rest = s[bar.isna()]
    if len(rest) and len(g):
        # as-of (backward) by request time, within one bar interval; done with searchsorted on int64
        # nanoseconds
        g_ns = g_key.to_numpy()
        t_ns = pd.to_datetime(rest["timestamp"], utc=True).astype("datetime64[ns, UTC]").astype("int64").to_numpy()
        pos = np.searchsorted(g_ns, t_ns, side="right") - 1
        ok = pos >= 0
        if bar_interval and _is_timedelta(bar_interval):
            tol = pd.Timedelta(bar_interval).value
            ok &= (t_ns - g_ns[np.clip(pos, 0, None)]) <= tol
        matched = rest[ok].assign(_bar=g["timestamp"].to_numpy()[pos[ok]], **{label: g[label].to_numpy()[pos[ok]]})
        joined = matched if joined.empty else pd.concat([joined, matched], ignore_index=True)
    if joined.empty:
        return empty
    y = joined[label].astype(int).to_numpy()
    yhat = (joined["prediction"].astype(float).to_numpy() >= 0.5).astype(int)
    up = float(y.mean())
    return {
        "hit_rate": float((y == yhat).mean()),
        "n_labeled": int(len(y)),
        "majority_baseline": max(up, 1 - up),
        "up_rate": up,
        "horizon": horizon,
    }


def _is_timedelta(text: str) -> bool:
    try:
        pd.Timedelta(text)
        return True
    except (ValueError, TypeError):
        return False


# -- reference resolution --------------------------------------------------------------------------


@dataclass
class Reference:
    run_id: str
    variant: str
    gold_key: str
    manifest_key: str
    oot_key: str | None
    feature_columns: list[str] = field(default_factory=list)
    horizon: int = 1
    bar_interval: str | None = None


def newest_gold_key(store, candidates: int = 5) -> str | None:
    """The gold table holding the newest bars, among the ``candidates`` most recently written ones
    (S3 modification times have one-second resolution, so recency alone can tie)."""
    keys = store.recent_keys(f"{layout.GOLD}/", "/features.parquet", candidates)
    best = None
    for key in keys:
        ts = store.read_parquet(key, columns=["timestamp"])["timestamp"]
        top = pd.to_datetime(ts, utc=True).max() if len(ts) else None
        if top is not None and (best is None or top > best[0]):
            best = (top, key)
    return best[1] if best else None


def _champion_from_mlflow() -> tuple[str, str] | None:
    try:
        import mlflow
        from mlflow import MlflowClient

        from spx.core.settings import settings

        cfg = settings()
        mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
        mv = MlflowClient().get_model_version_by_alias(cfg.registered_model, "champion")
        tags = mv.tags or {}
        if tags.get("run_id") and tags.get("variant"):
            return tags["run_id"], tags["variant"]
    except Exception as exc:  # noqa: BLE001 - no registry / no champion: fall back to the bucket
        log.info("no MLflow champion available (%s); using the latest selection in the bucket", exc)
    return None


def resolve_reference(store, run_id: str = "", variant: str = "") -> Reference:
    """The champion's training run: explicit, else the MLflow ``champion`` alias, else the newest
    ``selection/*/best_model_selection.json`` in the bucket."""
    if not run_id:
        found = _champion_from_mlflow()
        if found:
            run_id, variant = found[0], variant or found[1]
    if not run_id:
        key = store.latest_key(f"{layout.SELECTION}/", "best_model_selection.json")
        if key is None:
            raise FileNotFoundError(
                "no champion: no MLflow 'champion' alias and no selection/*/best_model_selection.json"
                " in the bucket; train first (spx run) or pass run_id/variant"
            )
        sel = store.get_json(key)
        run_id = sel.get("run_id") or key.split("/")[1]
        champ = sel.get("champion")
        if not variant and isinstance(champ, dict):
            variant = champ.get("variant", "")
        elif not variant and isinstance(champ, str):
            variant = champ
    if not variant:
        variants = layout.variants_in(store.list(layout.models_prefix(run_id)), run_id)
        if len(variants) != 1:
            raise ValueError(f"run {run_id}: cannot tell the champion variant among {variants}; pass variant=")
        variant = variants[0]
    gold_key, manifest_key = layout.gold_features_key(run_id), layout.gold_manifest_key(run_id)
    if not store.exists(gold_key):
        raise FileNotFoundError(f"reference gold table {store.uri(gold_key)} does not exist")
    oot_key = layout.model_key(run_id, variant, "oot_predictions.parquet")
    ref = Reference(run_id, variant, gold_key, manifest_key, oot_key if store.exists(oot_key) else None)
    manifest = store.get_json(manifest_key) if store.exists(manifest_key) else {}
    metrics_key = layout.model_key(run_id, variant, "metrics.json")
    metrics = store.get_json(metrics_key) if store.exists(metrics_key) else {}
    ref.feature_columns = list(metrics.get("features") or manifest.get("feature_columns") or [])
    horizon = metrics.get("horizon") or (manifest.get("horizons") or [1])[0]
    ref.horizon = int(horizon)
    ref.bar_interval = manifest.get("bar_interval")
    return ref


# -- the monitoring run ----------------------------------------------------------------------------


@dataclass
class MonitorConfig:
    lookback_days: float = 7.0
    gold_window_days: float = 30.0
    method: str = "wasserstein"
    threshold: float = 0.1
    drift_threshold: float = 0.5  # retrain when the drift share reaches this
    hit_rate_floor: float = 0.5  # retrain when the live hit rate falls below this …
    min_labeled: int = 100  # … measured on at least this many realized labels
    min_served_rows: int = 50  # below this, served drift is not computed
    prediction_drift_retrains: bool = False


def _reference_frame(store, ref: Reference) -> pd.DataFrame:
    gold = store.read_parquet(ref.gold_key)
    gold["timestamp"] = pd.to_datetime(gold["timestamp"], utc=True)
    if ref.oot_key:
        oot = store.read_parquet(ref.oot_key)
        if "y_prob" in oot.columns:
            oot = oot[["timestamp", "y_prob"]].rename(columns={"y_prob": PREDICTION_COLUMN})
            oot["timestamp"] = pd.to_datetime(oot["timestamp"], utc=True)
            gold = gold.merge(oot.drop_duplicates("timestamp"), on="timestamp", how="left")
    return gold


def run_monitoring(
    store,
    *,
    monitor_run_id: str,
    run_id: str = "",
    variant: str = "",
    cfg: MonitorConfig | None = None,
    now: datetime | None = None,
) -> dict:
    """Compute drift + hit rate, write ``monitoring/{monitor_run_id}/`` and return the summary.

    Writes ``drift.html`` (served data + prediction drift), ``gold_drift.html`` and
    ``summary.json`` (all numbers and the retrain decision).
    """
    from spx.components.monitoring.trigger import decide
    from spx.components.prediction_log import read_predictions

    cfg = cfg or MonitorConfig()
    now = now or datetime.now(timezone.utc)
    ref = resolve_reference(store, run_id, variant)
    reference = _reference_frame(store, ref)
    feats = ref.feature_columns or [
        c for c in reference.columns if c not in ("timestamp", "instrument") and not c.startswith("y_")
    ]
    prefix = layout.monitoring_prefix(monitor_run_id)

    served = read_predictions(store, start=now - timedelta(days=cfg.lookback_days), end=now)
    served = served[served["status"].isin(["ok"])] if len(served) else served
    summary: dict[str, Any] = {
        "monitor_run_id": monitor_run_id,
        "reference_run_id": ref.run_id,
        "variant": ref.variant,
        "horizon": ref.horizon,
        "n_served": int(len(served)),
        "window_start": (now - timedelta(days=cfg.lookback_days)).isoformat(),
        "window_end": now.isoformat(),
        "config": asdict(cfg),
    }
    if len(served) >= cfg.min_served_rows:
        res, html = evidently_drift(
            reference, served, feats, method=cfg.method, threshold=cfg.threshold, drift_share_limit=cfg.drift_threshold
        )
        summary["served_drift"] = res.to_dict()
    else:
        html = placeholder_html(
            "Served-traffic drift",
            f"Not computed: {len(served)} served predictions in the "
            f"last {cfg.lookback_days:g} days (need {cfg.min_served_rows}).",
            {"reference run": ref.run_id, "variant": ref.variant},
        )
        summary["served_drift"] = None
    drift_uri = store.put_text(prefix + "drift.html", html, content_type="text/html").uri

    # newest gold vs the reference (the part of it before the window)
    latest_gold_key = newest_gold_key(store) or ref.gold_key
    latest = store.read_parquet(latest_gold_key)
    latest["timestamp"] = pd.to_datetime(latest["timestamp"], utc=True)
    cut = latest["timestamp"].max() - pd.Timedelta(days=cfg.gold_window_days)
    current_gold = latest[latest["timestamp"] > cut]
    ref_before = reference[reference["timestamp"] <= cut]
    summary["latest_gold"] = latest_gold_key
    if len(current_gold) >= 2 and len(ref_before) >= 2:
        gres, ghtml = evidently_drift(
            ref_before,
            current_gold,
            feats,
            prediction_column=None,
            method=cfg.method,
            threshold=cfg.threshold,
            drift_share_limit=cfg.drift_threshold,
        )
        summary["gold_drift"] = gres.to_dict()
    else:
        ghtml = placeholder_html(
            "Gold drift",
            "Not computed: the newest gold window or the reference before it is too short.",
            {"window rows": len(current_gold), "reference rows": len(ref_before)},
        )
        summary["gold_drift"] = None
    gold_uri = store.put_text(prefix + "gold_drift.html", ghtml, content_type="text/html").uri

    summary["hit"] = live_hit_rate(served, latest, ref.horizon, ref.bar_interval)
    served_share = (summary["served_drift"] or {}).get("drift_share")
    gold_share = (summary["gold_drift"] or {}).get("drift_share")
    shares = [s for s in (served_share, gold_share) if s is not None]
    pred = (summary["served_drift"] or {}).get("prediction") or {}
    decision = decide(
        drift_share=max(shares) if shares else None,
        hit_rate=summary["hit"]["hit_rate"],
        n_labeled=summary["hit"]["n_labeled"],
        drift_threshold=cfg.drift_threshold,
        hit_rate_floor=cfg.hit_rate_floor,
        min_labeled=cfg.min_labeled,
        prediction_drifted=bool(pred.get("drifted")) and cfg.prediction_drift_retrains,
    )
    summary["drift_share"] = max(shares) if shares else None
    summary["served_drift_share"] = served_share
    summary["gold_drift_share"] = gold_share
    summary["prediction_drift_score"] = pred.get("score")
    summary["decision"] = decision.to_dict()
    summary["drift_html"] = drift_uri
    summary["gold_drift_html"] = gold_uri
    summary["summary_uri"] = store.uri(prefix + "summary.json")
    store.put_json(prefix + "summary.json", _jsonable(summary))
    summary["_drift_html"], summary["_gold_drift_html"] = html, ghtml
    return summary


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return obj


def summary_text(summary: dict) -> str:
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    hit = summary.get("hit") or {}
    d = summary.get("decision") or {}
    lines = [
        f"reference: run {summary['reference_run_id']} / {summary['variant']} (horizon {summary['horizon']})",
        f"served predictions in window: {summary['n_served']}",
        f"drift share: served {f(summary.get('served_drift_share'))}, gold {f(summary.get('gold_drift_share'))}"
        f"; prediction drift score {f(summary.get('prediction_drift_score'))}",
        f"live hit rate: {f(hit.get('hit_rate'))} on {hit.get('n_labeled', 0)} realized labels "
        f"(majority baseline {f(hit.get('majority_baseline'))})",
        f"retrain: {'YES' if d.get('retrain') else 'no'}"
        + (f" — {'; '.join(d.get('reasons', []))}" if d.get("reasons") else ""),
        f"reports: {summary.get('drift_html')}, {summary.get('gold_drift_html')}",
    ]
    return "\n".join(lines)


__all__ = [
    "ColumnDrift",
    "DriftResult",
    "MonitorConfig",
    "Reference",
    "evidently_drift",
    "live_hit_rate",
    "placeholder_html",
    "resolve_reference",
    "run_monitoring",
    "summary_text",
    "json",
]
