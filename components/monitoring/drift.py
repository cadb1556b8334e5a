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
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spx.core import layout

log = logging.getLogger(__name__)

PREDICTION_COLUMN = "probability"
PREDICTION_LABEL = "prediction"  # 1 = up, 0 = down


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


def _naive_utc(ts: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (Evidently's time plots drop the zone with a warning per column otherwise)."""
    return pd.to_datetime(ts, utc=True).dt.tz_convert("UTC").dt.tz_localize(None)


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
    timestamp_column: str | None = "timestamp",
    extra_metrics: Sequence[Any] = (),
    extra_columns: Sequence[str] = (),
    timestamp: datetime | None = None,
    tags: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
) -> tuple[DriftResult, Any]:
    """Data drift over ``feature_columns`` (+ prediction drift): the numbers and Evidently's snapshot.

    The snapshot is stamped ``timestamp`` (the monitoring run's time, for the dashboard's x-axis) and, when
    both frames have ``timestamp_column``, its drift table plots the current values against that column
    (otherwise Evidently bins them by row index: "Index binned"). ``extra_metrics`` (computed on
    ``extra_columns`` too) are added to the same report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from spx.components.monitoring.evidently_metrics import PredictionDrift

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
    extra = [c for c in extra_columns if c in reference.columns and c in current.columns and c not in feats]
    cols = list(dict.fromkeys(feats + ([pred] if pred else []) + extra))
    ref = reference[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    cur = current[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    ts = timestamp_column if timestamp_column in reference.columns and timestamp_column in current.columns else None
    if ts is not None:
        ref[ts] = _naive_utc(reference[ts]).to_numpy()
        cur[ts] = _naive_utc(current[ts]).to_numpy()
    dd = DataDefinition(numerical_columns=cols, timestamp=ts)
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
        metrics.append(PredictionDrift(pred, method=p_method, threshold=p_threshold))
    metrics += list(extra_metrics)
    report = Report(metrics, include_tests=False)
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=dd),
        Dataset.from_pandas(ref, data_definition=dd),
        timestamp=timestamp,
        tags=list(tags),
        metadata=dict(metadata or {}),
        name=name,
    )
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
    return result, snapshot


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
    # canary vs stable health on the dashboard: the canary step's window and rollback limits
    canary_window_minutes: float = 60.0
    canary_max_error_rate: float = 0.01
    canary_max_p95_latency_ms: float = 250.0
    write_workspace: bool = True  # add the run's snapshots to the Evidently workspace


def _reference_frame(store, ref: Reference) -> pd.DataFrame:
    gold = store.read_parquet(ref.gold_key)
    gold["timestamp"] = pd.to_datetime(gold["timestamp"], utc=True)
    if ref.oot_key:
        oot = store.read_parquet(ref.oot_key)
        if "y_prob" in oot.columns:
            oot = oot[["timestamp", "y_prob"]].rename(columns={"y_prob": PREDICTION_COLUMN})
            oot["timestamp"] = pd.to_datetime(oot["timestamp"], utc=True)
            gold = gold.merge(oot.drop_duplicates("timestamp"), on="timestamp", how="left")
            # the reference for the served "prediction" (1 = up): the out-of-time predictions' side
            gold[PREDICTION_LABEL] = (gold[PREDICTION_COLUMN] >= 0.5).where(gold[PREDICTION_COLUMN].notna())
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
    """Compute drift, hit rate and serving health; write ``monitoring/{monitor_run_id}/`` and the Evidently
    workspace; return the summary.

    Writes ``summary.json`` (all numbers and the retrain decision) and two small pages, ``drift.html``
    (served data + prediction drift) and ``gold_drift.html``, with the numbers and the way to the run's
    reports in the Evidently UI; the run's snapshots (``served``, ``gold``, ``live``) go to the workspace
    (:mod:`.workspace`), stamped ``now``.
    """
    from evidently import Report
    from evidently.metrics import MeanValue, QuantileValue

    from spx.components.monitoring import figures
    from spx.components.monitoring.evidently_metrics import SpxFigure
    from spx.components.monitoring.trigger import decide
    from spx.components.monitoring.workspace import (
        PREDICTION_QUANTILES,
        TAG_GOLD,
        TAG_LIVE,
        TAG_SERVED,
        build_dashboard,
        record_run,
    )
    from spx.components.prediction_log import read_predictions

    cfg = cfg or MonitorConfig()
    now = now or datetime.now(timezone.utc)
    ref = resolve_reference(store, run_id, variant)
    reference = _reference_frame(store, ref)
    feats = ref.feature_columns or [
        c for c in reference.columns if c not in ("timestamp", "instrument") and not c.startswith("y_")
    ]
    prefix = layout.monitoring_prefix(monitor_run_id)
    meta = {"monitor_run_id": monitor_run_id, "reference_run_id": ref.run_id, "variant": ref.variant}
    stamp = f"{now:%Y-%m-%d %H:%M} UTC"
    snapshots: dict[str, Any] = {}

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
        res, snapshots[TAG_SERVED] = evidently_drift(
            reference,
            served,
            feats,
            method=cfg.method,
            threshold=cfg.threshold,
            drift_share_limit=cfg.drift_threshold,
            extra_columns=[PREDICTION_LABEL],
            extra_metrics=[QuantileValue(column=PREDICTION_COLUMN, quantile=q) for q in PREDICTION_QUANTILES]
            + (
                [MeanValue(column=PREDICTION_LABEL)]
                if PREDICTION_LABEL in reference.columns and PREDICTION_LABEL in served.columns
                else []
            ),
            timestamp=now,
            tags=[TAG_SERVED],
            metadata=meta,
            name=f"served traffic vs training reference, {stamp}",
        )
        summary["served_drift"] = res.to_dict()
    else:
        summary["served_drift"] = None
        summary["served_drift_note"] = (
            f"not computed: {len(served)} served predictions in the last {cfg.lookback_days:g} days "
            f"(need {cfg.min_served_rows})"
        )

    # newest gold vs the reference (the part of it before the window)
    latest_gold_key = newest_gold_key(store) or ref.gold_key
    latest = store.read_parquet(latest_gold_key)
    latest["timestamp"] = pd.to_datetime(latest["timestamp"], utc=True)
    cut = latest["timestamp"].max() - pd.Timedelta(days=cfg.gold_window_days)
    current_gold = latest[latest["timestamp"] > cut]
    ref_before = reference[reference["timestamp"] <= cut]
    summary["latest_gold"] = latest_gold_key
    if len(current_gold) >= 2 and len(ref_before) >= 2:
        gres, snapshots[TAG_GOLD] = evidently_drift(
            ref_before,
            current_gold,
            feats,
            prediction_column=None,
            method=cfg.method,
            threshold=cfg.threshold,
            drift_share_limit=cfg.drift_threshold,
            timestamp=now,
            tags=[TAG_GOLD],
            metadata=meta,
            name=f"newest gold window vs reference before it, {stamp}",
        )
        summary["gold_drift"] = gres.to_dict()
    else:
        summary["gold_drift"] = None
        summary["gold_drift_note"] = (
            f"not computed: the newest gold window ({len(current_gold)} rows) or the reference before it "
            f"({len(ref_before)} rows) is too short"
        )

    summary["hit"] = live_hit_rate(served, latest, ref.horizon, ref.bar_interval)
    try:
        summary["serving_health"] = figures.serving_health(
            store, start=now - timedelta(minutes=cfg.canary_window_minutes), end=now
        )
    except Exception as exc:  # noqa: BLE001 - e.g. a log the canary loop refuses to judge; drift still decides
        log.warning("canary vs stable health not measured: %s", exc)
        summary["serving_health"] = {"error": f"{type(exc).__name__}: {exc}"}
    summary["news"] = figures.news_sentiment(latest, served, cfg.lookback_days)
    summary["latest_prediction"] = figures.latest_prediction(served)
    summary["verdict"] = figures.champion_verdict(store, ref.run_id, ref.variant)
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
    summary["summary_uri"] = store.uri(prefix + "summary.json")
    store.put_json(prefix + "summary.json", _jsonable(summary))  # the decision first: nothing below may lose it

    row = figures.figures_row(summary)
    snapshots[TAG_LIVE] = Report([SpxFigure(column=c) for c in row], include_tests=False).run(
        pd.DataFrame([row]), None, timestamp=now, tags=[TAG_LIVE], metadata=meta, name=f"live figures, {stamp}"
    )
    summary["evidently"] = None
    if cfg.write_workspace:
        served_cols = _by_score((summary["served_drift"] or {}).get("columns") or [])
        gold_cols = _by_score((summary["gold_drift"] or {}).get("columns") or [])
        dashboard = build_dashboard(
            served_cols or feats,
            gold_cols or feats,
            summary["verdict"],
            prediction_column=PREDICTION_COLUMN,
            method=cfg.method,
            threshold=cfg.threshold,
            drift_threshold=cfg.drift_threshold,
        )
        try:
            summary["evidently"] = record_run(
                snapshots,
                dashboard=dashboard,
                run_time=now,
                gold_table=latest_gold_key,
                retrain=bool(decision.retrain),
            )
        except Exception as exc:  # noqa: BLE001 - the decision is made and stored; the dashboard must not undo it
            log.error("the run's snapshots could not be written to the Evidently workspace: %s", exc)
            summary["evidently"] = {"error": f"{type(exc).__name__}: {exc}"}
    html = run_page(
        "Served-traffic drift", summary, TAG_SERVED, summary["served_drift"], summary.get("served_drift_note")
    )
    ghtml = run_page("Gold drift", summary, TAG_GOLD, summary["gold_drift"], summary.get("gold_drift_note"))
    summary["drift_html"] = store.put_text(prefix + "drift.html", html, content_type="text/html").uri
    summary["gold_drift_html"] = store.put_text(prefix + "gold_drift.html", ghtml, content_type="text/html").uri
    store.put_json(prefix + "summary.json", _jsonable(summary))
    summary["_drift_html"], summary["_gold_drift_html"] = html, ghtml
    return summary


def _by_score(columns: list[dict]) -> list[str]:
    """Feature names, most drifted first (p-value tests: smallest first)."""
    ordered = sorted(columns, key=lambda c: c["score"] if _is_pvalue(c["method"]) else -c["score"])
    return [c["column"] for c in ordered]


def run_page(title: str, summary: dict, tag: str, drift: dict | None, note: str | None = None) -> str:
    """A small self-contained page for one comparison of a monitoring run (the KFP UI's HTML artifact and
    ``spx report``'s copy): the numbers, every feature's drift score, and the way to the full Evidently
    report of this run in the Evidently UI (a link when ``SPX_EVIDENTLY_UI_URL`` is set)."""
    import html as _h

    e = _h.escape
    ev = summary.get("evidently") or {}
    full = (ev.get("full_report") or {}).get(tag)
    sid = (ev.get("snapshots") or {}).get(tag) if full else (ev.get("latest_full_report") or {}).get(tag)
    urls = ev.get("report_urls" if full else "latest_full_report_urls") or {}
    which = "this run" if full else "the newest full report (this run kept only its values for the dashboard)"
    if sid and urls.get(tag):
        where = f"<p><a id='evidently-report' href='{e(urls[tag])}'>Open the Evidently report: {e(which)}</a></p>"
    elif sid:
        where = (
            f"<p id='evidently-report'>The Evidently report of {e(which)}: Evidently UI (<code>spx ui</code>, or "
            f"the chart's <code>evidently-ui</code> Service), project <b>{e(str(ev.get('project')))}</b>, Reports, "
            f"snapshot <code>{e(sid)}</code> (workspace <code>{e(str(ev.get('workspace')))}</code>). "
            "Set SPX_EVIDENTLY_UI_URL to get a link here.</p>"
        )
    elif ev.get("error"):
        where = f"<p id='evidently-report'>Not in the Evidently workspace: {e(ev['error'])}</p>"
    else:
        where = "<p id='evidently-report'>No Evidently report for this comparison in this run.</p>"

    def num(x: Any) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    facts = {
        "monitoring run": summary.get("monitor_run_id"),
        "reference": f"run {summary.get('reference_run_id')} / {summary.get('variant')}",
        "served window": f"{summary.get('window_start')} .. {summary.get('window_end')}",
        "served predictions": summary.get("n_served"),
        "newest gold table": summary.get("latest_gold"),
        "retrain": "yes: " + "; ".join(summary["decision"]["reasons"]) if summary["decision"]["retrain"] else "no",
    }
    body = []
    if drift is None:
        body.append(f"<p id='drift-share'>{e(note or 'not computed')}</p>")
    else:
        body.append(
            f"<p id='drift-share'>Drift share <b>{num(drift.get('drift_share'))}</b>: "
            f"{len(drift['drifted_columns'])} of {len(drift['columns'])} features drifted "
            f"({drift['n_current']} current rows vs {drift['n_reference']} reference rows).</p>"
        )
        order = {name: i for i, name in enumerate(_by_score(drift["columns"]))}
        cols = sorted(drift["columns"], key=lambda c: order[c["column"]])
        rows = "".join(
            f"<tr><td>{e(c['column'])}</td><td>{c['score']:.4f}</td><td>{c['threshold']:g}</td>"
            f"<td>{'drifted' if c['drifted'] else ''}</td></tr>"
            for c in cols
        )
        pred = drift.get("prediction")
        if pred:
            rows += (
                f"<tr><td><i>{e(pred['column'])} (prediction)</i></td><td>{pred['score']:.4f}</td>"
                f"<td>{pred['threshold']:g}</td><td>{'drifted' if pred['drifted'] else ''}</td></tr>"
            )
        method = cols[0]["method"] if cols else ""
        body.append(
            f"<table id='drift-scores' border='1' cellpadding='4'><tr><th>column</th><th>{e(method)} score</th>"
            f"<th>threshold</th><th></th></tr>{rows}</table>"
        )
    facts_html = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>{e(title)}</h1>"
        f"{where}<table>{facts_html}</table>{''.join(body)}</body></html>"
    )


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
    health = summary.get("serving_health") or {}
    verdict = summary.get("verdict") or {}
    lines = [
        f"reference: run {summary['reference_run_id']} / {summary['variant']} (horizon {summary['horizon']})",
        f"served predictions in window: {summary['n_served']}",
        f"drift share: served {f(summary.get('served_drift_share'))}, gold {f(summary.get('gold_drift_share'))}"
        f"; prediction drift score {f(summary.get('prediction_drift_score'))}",
        f"live hit rate: {f(hit.get('hit_rate'))} on {hit.get('n_labeled', 0)} realized labels "
        f"(majority baseline {f(hit.get('majority_baseline'))})",
    ]
    for role in ("stable", "canary"):
        if health.get(f"{role}_version") is not None:
            lines.append(
                f"{role} v{health[f'{role}_version']}: {health.get(f'{role}_requests', 0)} requests, error rate "
                f"{f(health.get(f'{role}_error_rate'), '{:.4f}')}, p95 {f(health.get(f'{role}_p95_latency_ms'), '{:.1f}')} ms"
            )
    if verdict:
        lines.append(
            f"champion verdict: {verdict.get('verdict')} (validation [{f(verdict.get('val_auc_ci_low'))}, "
            f"{f(verdict.get('val_auc_ci_high'))}], out-of-time [{f(verdict.get('oot_auc_ci_low'))}, "
            f"{f(verdict.get('oot_auc_ci_high'))}])"
        )
    lines += [
        f"retrain: {'YES' if d.get('retrain') else 'no'}"
        + (f" — {'; '.join(d.get('reasons', []))}" if d.get("reasons") else ""),
        f"reports: {summary.get('drift_html')}, {summary.get('gold_drift_html')}",
    ]
    ev = summary.get("evidently") or {}
    if ev.get("error"):
        lines.append(f"Evidently workspace NOT updated: {ev['error']}")
    elif ev:
        where = ev.get("dashboard_url") or f"spx ui (workspace {ev.get('workspace')})"
        lines.append(
            f"Evidently dashboard: {where}, project {ev.get('project')}, snapshots {', '.join(ev['snapshots'])}"
        )
    return "\n".join(lines)


__all__ = [
    "ColumnDrift",
    "DriftResult",
    "MonitorConfig",
    "Reference",
    "evidently_drift",
    "live_hit_rate",
    "run_page",
    "resolve_reference",
    "run_monitoring",
    "summary_text",
    "json",
]
