"""Champion selection: rank variants, write best_model_selection.json, set the MLflow alias.

Rules (in order): only classifiers are eligible (the service answers with a probability of "up");
OOT AUC must reach ``min_oot_auc``; the overfitting gap (train AUC − OOT AUC) must stay below
``max_overfit_gap``; optionally (``min_auc_ci_low`` > 0) the lower end of the 95% bootstrap interval
must exceed it — a statistically credible edge; among the eligible, the highest OOT AUC wins. With no eligible variant the
current champion stays, and the selection says why. The previous champion keeps its version and
gets the alias ``previous-champion`` (the rollback target).
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from spx.core.storage import ObjectStore

log = logging.getLogger(__name__)


def rank_variants(summaries: list[dict], *, min_oot_auc: float, max_overfit_gap: float,
                  min_auc_ci_low: float = 0.0) -> list[dict]:
    rows = []
    for s in summaries:
        m = s["metrics"]
        reasons = []
        if s["task"] != "classification":
            reasons.append("regressor: tracked for comparison, not served")
        if not m["oot_auc"] >= min_oot_auc:
            reasons.append(f"OOT AUC {m['oot_auc']:.4f} < {min_oot_auc}")
        if not m["overfit_gap_auc"] <= max_overfit_gap:
            reasons.append(f"overfit gap {m['overfit_gap_auc']:.4f} > {max_overfit_gap}")
        if min_auc_ci_low > 0 and not m["oot_auc_ci_low"] > min_auc_ci_low:
            reasons.append(f"OOT AUC 95% CI low {m['oot_auc_ci_low']:.4f} <= {min_auc_ci_low}")
        rows.append({"variant": s["variant"], "task": s["task"], "model_format": s["model_format"],
                     "horizon": s["horizon"], "oot_auc": m["oot_auc"], "oot_auc_ci": [m["oot_auc_ci_low"],
                     m["oot_auc_ci_high"]], "cv_auc_mean": m.get("cv_auc_mean"), "train_auc": m["train_auc"],
                     "overfit_gap_auc": m["overfit_gap_auc"],
                     "baseline_majority_auc": m["baseline_majority_auc"],
                     "baseline_momentum_auc": m["baseline_momentum_auc"], "eligible": not reasons,
                     "reasons": reasons, "native_uri": s["native_uri"], "model_uri": s["model_uri"],
                     "mlflow_run_id": s["mlflow_run_id"], "features": s["features"]})
    rows.sort(key=lambda r: (not r["eligible"], -r["oot_auc"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def register_champion(row: dict, *, run_id: str, registered_model: str, tracking_uri: str) -> dict:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    previous = None
    try:
        previous = client.get_model_version_by_alias(registered_model, "champion")
    except MlflowException:
        previous = None
    mv = mlflow.register_model(row["model_uri"], registered_model,
                               tags={"variant": row["variant"], "model_format": row["model_format"],
                                     "native_uri": row["native_uri"], "task": row["task"],
                                     "horizon": str(row["horizon"]), "run_id": run_id,
                                     "feature_columns": json.dumps(row["features"]),
                                     "oot_auc": f"{row['oot_auc']:.6f}"})
    client.set_registered_model_alias(registered_model, "champion", mv.version)
    if previous is not None and previous.version != mv.version:
        client.set_registered_model_alias(registered_model, "previous-champion", previous.version)
    return {"model_version": str(mv.version), "previous_version": previous.version if previous else None}


def write_model_info(store: ObjectStore, native_uri: str, registered_model: str, version: str,
                     tracking_uri: str) -> str:
    """``spx-model.json`` beside the native model (the InferenceService's storageUri): the registered name,
    version, format and feature order, so the served predictor reports the version it serves."""
    from spx.components.selection.champion import MODEL_INFO_FILE, resolve

    info = resolve(version=version, name=registered_model, tracking_uri=tracking_uri)
    return store.put_json(native_uri.rstrip("/") + "/" + MODEL_INFO_FILE, info.to_json()).uri


def select_champion(store: ObjectStore, *, run_id: str, expected_variants: list[str], min_oot_auc: float,
                    max_overfit_gap: float, registered_model: str, tracking_uri: str, min_auc_ci_low: float = 0.0,
                    progress: Callable[[str], None] = log.info) -> tuple[str, dict]:
    summaries = []
    for name in expected_variants:
        key = f"models/{run_id}/{name}/metrics.json"
        if not store.exists(key):
            raise FileNotFoundError(f"variant {name} has no {store.uri(key)}: did its training task fail?")
        summaries.append(store.get_json(key))
    ranking = rank_variants(summaries, min_oot_auc=min_oot_auc, max_overfit_gap=max_overfit_gap,
                            min_auc_ci_low=min_auc_ci_low)
    champion = next((r for r in ranking if r["eligible"]), None)
    selection = {"run_id": run_id, "criteria": {"min_oot_auc": min_oot_auc, "max_overfit_gap": max_overfit_gap,
                                                "min_auc_ci_low": min_auc_ci_low,
                                                "eligible_tasks": ["classification"]},
                 "ranking": ranking, "champion": None}
    if champion is not None:
        reg = register_champion(champion, run_id=run_id, registered_model=registered_model,
                                tracking_uri=tracking_uri)
        write_model_info(store, champion["native_uri"], registered_model, reg["model_version"], tracking_uri)
        selection["champion"] = {k: champion[k] for k in ("variant", "native_uri", "model_format", "model_uri",
                                                          "horizon", "oot_auc", "oot_auc_ci")}
        selection["champion"].update({"registered_model": registered_model, **reg})
        credible = champion["oot_auc_ci"][0] > 0.5
        progress(f"champion: {champion['variant']} (OOT AUC {champion['oot_auc']:.4f}, 95% CI "
                 f"[{champion['oot_auc_ci'][0]:.4f}, {champion['oot_auc_ci'][1]:.4f}]) -> "
                 f"{registered_model} v{reg['model_version']} @champion"
                 + ("" if credible else " — note: the CI includes 0.5, no statistically credible edge"))
    else:
        selection["reason"] = "no variant met the criteria; the current champion (if any) is kept"
        progress("champion: " + selection["reason"])
    uri = store.put_json(f"selection/{run_id}/best_model_selection.json", selection).uri
    return uri, selection


def ranking_markdown(selection: dict) -> str:
    lines = ["| rank | variant | OOT AUC | 95% CI | walk-forward AUC | train AUC | majority | momentum | eligible |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in selection["ranking"]:
        cv = r["cv_auc_mean"] if r["cv_auc_mean"] is not None else float("nan")
        lines.append(f"| {r['rank']} | {r['variant']} | {r['oot_auc']:.4f} | [{r['oot_auc_ci'][0]:.3f}, "
                     f"{r['oot_auc_ci'][1]:.3f}] | {cv:.4f} | {r['train_auc']:.4f} | "
                     f"{r['baseline_majority_auc']:.3f} | {r['baseline_momentum_auc']:.4f} | "
                     f"{'yes' if r['eligible'] else '; '.join(r['reasons'])} |")
    champ = selection.get("champion")
    lines += ["", f"**Champion:** {champ['variant']} → model version {champ['model_version']}" if champ
              else f"**No new champion:** {selection.get('reason')}"]
    return "\n".join(lines)
