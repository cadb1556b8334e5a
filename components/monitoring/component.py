"""Thin KFP v2 component definitions for monitoring (the logic lives in drift.py / trigger.py).

No ``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from kfp.dsl import HTML, Metrics, Output

from spx.core.component import spx_component


@spx_component
def detect_drift(
    monitor_run_id: str,
    reference_run_id: str,
    variant: str,
    lookback_days: float,
    gold_window_days: float,
    method: str,
    threshold: float,
    drift_threshold: float,
    hit_rate_floor: float,
    min_labeled: int,
    min_served_rows: int,
    drift_report: Output[HTML],
    gold_drift_report: Output[HTML],
    metrics: Output[Metrics],
    canary_window_minutes: float = 60.0,
    canary_max_error_rate: float = 0.01,
    canary_max_p95_latency_ms: float = 250.0,
) -> bool:
    """Evidently data + prediction drift of served traffic and of the newest gold data vs the champion's
    training reference; the live hit rate; canary vs stable health. The run's snapshots go to the Evidently
    workspace (its dashboard shows them over time); the KFP UI gets a small HTML page per comparison (the
    numbers, and the way to the full report in the Evidently UI) and the metrics; returns "retrain?".

    A single (``Output``) return keeps ``dsl.If`` on it working under KFP's local runner too (2.17
    resolves only ``<task>-Output`` channels in local conditions); the reasons are in
    ``monitoring/{monitor_run_id}/summary.json``."""
    from spx.components.monitoring.drift import MonitorConfig, run_monitoring, summary_text
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    stage_logging("spx.monitoring")
    cfg = MonitorConfig(
        lookback_days=lookback_days,
        gold_window_days=gold_window_days,
        method=method,
        threshold=threshold,
        drift_threshold=drift_threshold,
        hit_rate_floor=hit_rate_floor,
        min_labeled=min_labeled,
        min_served_rows=min_served_rows,
        canary_window_minutes=canary_window_minutes,
        canary_max_error_rate=canary_max_error_rate,
        canary_max_p95_latency_ms=canary_max_p95_latency_ms,
    )
    summary = run_monitoring(
        ObjectStore(), monitor_run_id=monitor_run_id, run_id=reference_run_id, variant=variant, cfg=cfg
    )
    with open(drift_report.path, "w") as fh:
        fh.write(summary["_drift_html"])
    with open(gold_drift_report.path, "w") as fh:
        fh.write(summary["_gold_drift_html"])
    for key in ("drift_share", "served_drift_share", "gold_drift_share", "prediction_drift_score"):
        if summary.get(key) is not None:
            metrics.log_metric(key, float(summary[key]))
    hit = summary["hit"]
    metrics.log_metric("n_served", float(summary["n_served"]))
    metrics.log_metric("n_labeled", float(hit["n_labeled"]))
    if hit["hit_rate"] is not None:
        metrics.log_metric("live_hit_rate", float(hit["hit_rate"]))
        metrics.log_metric("live_majority_baseline", float(hit["majority_baseline"]))
    decision = summary["decision"]
    metrics.log_metric("retrain", 1.0 if decision["retrain"] else 0.0)
    print(summary_text(summary))
    return bool(decision["retrain"])


@spx_component
def trigger_training(
    monitor_run_id: str,
    kfp_host: str,
    namespace: str,
    pipeline_name: str,
    experiment: str,
    params_json: str,
    service_account: str,
) -> str:
    """Start a run of the uploaded training pipeline through the KFP API; returns the run id."""
    import json

    from spx.components.monitoring.trigger import start_training_kfp_subprocess
    from spx.core import layout
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    stage_logging("spx.monitoring")
    store = ObjectStore()
    summary_uri = store.uri(layout.monitoring_summary_key(monitor_run_id))
    reason = "; ".join(store.get_json(summary_uri)["decision"]["reasons"]) or "monitoring decision"
    run_id = start_training_kfp_subprocess(
        host=kfp_host,
        namespace=namespace,
        pipeline_name=pipeline_name,
        experiment=experiment,
        params=json.loads(params_json or "{}"),
        service_account=service_account,
        reason=reason,
        run_name=f"retrain: {reason}"[:120],
    )
    print(f"started training run {run_id} because {reason} (see {summary_uri})")
    return run_id
