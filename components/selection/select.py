"""Champion selection: rank variants on the validation block, report the untouched out-of-time block.

Every variant was scored on two time-ordered blocks (``spx.components.training.splits.validation_split``):
a *validation* block, on which this step chooses, and a final *out-of-time* (OOT) block that no choice
looks at — its metrics are what the champion reports (table, MLflow, README).

Rules (in order): only classifiers are eligible (the service answers with a probability of "up");
**leakage guard** — a variant whose validation AUC is further than ``max_auc - 0.5`` from 0.5, whose
|IC| exceeds ``max_abs_ic`` or whose backtest Sharpe beats buy-and-hold's by more than
``max_sharpe_excess`` is refused as a leakage suspect, by name; validation AUC must reach
``min_oot_auc`` (name kept for compatibility); the overfitting gap (train − validation AUC) must stay
below ``max_overfit_gap``; optionally (``min_auc_ci_low`` > 0) the lower end of the validation AUC
interval, **Bonferroni-corrected for the k candidates compared** (level 1 − 0.05/k), must exceed it.
AUCs of different horizons (different targets, different rows) are never ranked against each other:
each horizon has its own ranking, and the champion comes from ``champion_horizon`` (default: the
shortest classifier horizon — the product's target). Among the eligible, the highest validation AUC wins.

Verdict: "credible edge" only when the champion's Bonferroni-corrected validation interval and its
OOT 95% interval both lie above 0.5; otherwise "no credible edge". A model without a credible edge is
still registered (a local demo needs something to serve) but carries the verdict in the MLflow tags,
the table and ``best_model_selection.json``, and the cluster rollout refuses to canary it unless told to.
With no eligible variant the current champion stays, and the selection says why. The previous champion
keeps its version and gets the alias ``previous-champion`` (the rollback target).

**Too little data to judge.** A verdict needs, in both the validation and the OOT block of a variant, at least
:data:`MIN_BLOCK_SESSIONS` sessions and :data:`MIN_BLOCK_WINDOWS` independent label windows (label windows that
share no bar: per session ``ceil(rows / (h + 1))``). Below that a block is one day's regime and a handful of
overlapping labels: its AUC is noise (a calendar feature acting as a day id scores "leakage"), its interval is
not given (:data:`spx.components.training.metrics.MIN_BOOT_BLOCKS`). Such a variant is marked "too little data to
judge", the leakage ceilings are not applied to it, and when no variant of the champion horizon can be judged
the run says so and registers nothing.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Callable

from spx.core.storage import ObjectStore

log = logging.getLogger(__name__)

CREDIBLE = "credible edge"
NO_EDGE = "no credible edge"
DEFAULT_MAX_AUC = 0.60  # FIELD-NOTES: above ~0.60 at a 30-minute horizon, audit for leakage
DEFAULT_MAX_ABS_IC = 0.20  # Qlib's minute-level IC is ~0.035; a leak shows 0.5+
DEFAULT_MAX_SHARPE_EXCESS = 6.0  # backtest Sharpe minus buy-and-hold's, annualised
TOO_LITTLE = "too little data to judge"
MIN_BLOCK_SESSIONS = 2  # sessions a validation / OOT block must touch (one session is one day's regime)
MIN_BLOCK_WINDOWS = 10  # independent label windows in each block (= the bootstrap's minimum number of blocks)


def data_shortfall(m: dict) -> str:
    """Why a variant's validation or OOT block is too small to judge ("" when both are big enough, or when the
    summary predates the counts)."""
    short = []
    for key, label in (("val", "validation"), ("oot", "out-of-time")):
        sessions, windows = m.get(f"n_{key}_sessions"), m.get(f"n_{key}_windows")
        if sessions is None or windows is None:
            continue
        if sessions < MIN_BLOCK_SESSIONS or windows < MIN_BLOCK_WINDOWS:
            short.append(
                f"{label} block {m.get(f'n_{key}', float('nan')):.0f} rows in {sessions:.0f} session(s), "
                f"{windows:.0f} independent label windows"
            )
    if not short:
        return ""
    return (
        "; ".join(short) + f" (a verdict needs {MIN_BLOCK_SESSIONS} sessions and {MIN_BLOCK_WINDOWS} independent "
        "label windows in each block)"
    )


def _metric(m: dict, key: str) -> float:
    """Validation metric, or the OOT one for summaries written before the validation block existed."""
    value = m.get(f"val_{key}", m.get(f"oot_{key}", float("nan")))
    return float(value) if value is not None else float("nan")


def _bonferroni(summary: dict, k: int) -> tuple[float, float]:
    from spx.components.training.metrics import bonferroni_interval

    boot = summary.get("val_auc_boot") or []
    if boot:
        return bonferroni_interval(boot, k)
    m = summary["metrics"]
    return (
        float(m.get("val_auc_ci_low", m.get("oot_auc_ci_low", float("nan")))),
        float(m.get("val_auc_ci_high", m.get("oot_auc_ci_high", float("nan")))),
    )


def suspect_reasons(m: dict, *, max_auc: float, max_abs_ic: float, max_sharpe_excess: float) -> list[str]:
    """Why a variant's validation results are implausible for short-horizon index direction (if they are)."""
    out = []
    auc = _metric(m, "auc")
    if math.isfinite(auc) and abs(auc - 0.5) > max_auc - 0.5:
        out.append(f"SUSPECT leakage: validation AUC {auc:.4f} beyond the plausible [{1 - max_auc:.2f}, {max_auc:.2f}]")
    ic = _metric(m, "ic")
    if math.isfinite(ic) and abs(ic) > max_abs_ic:
        out.append(f"SUSPECT leakage: validation IC {ic:.4f} beyond ±{max_abs_ic}")
    sharpe = m.get("val_bt_sharpe", m.get("bt_sharpe"))
    bh = m.get("val_bh_sharpe", m.get("bh_sharpe", 0.0)) or 0.0
    if sharpe is not None and math.isfinite(sharpe) and sharpe - max(0.0, bh) > max_sharpe_excess:
        out.append(
            f"SUSPECT leakage: backtest Sharpe {sharpe:.2f} beats buy-and-hold ({bh:.2f}) by more than "
            f"{max_sharpe_excess}"
        )
    return out


def rank_variants(
    summaries: list[dict],
    *,
    min_oot_auc: float,
    max_overfit_gap: float,
    min_auc_ci_low: float = 0.0,
    max_auc: float = DEFAULT_MAX_AUC,
    max_abs_ic: float = DEFAULT_MAX_ABS_IC,
    max_sharpe_excess: float = DEFAULT_MAX_SHARPE_EXCESS,
    champion_horizon: int | None = None,
) -> list[dict]:
    classifier_h = sorted({int(s["horizon"]) for s in summaries if s["task"] == "classification"})
    if champion_horizon is None or champion_horizon <= 0:
        champion_horizon = classifier_h[0] if classifier_h else None
    k = sum(1 for s in summaries if s["task"] == "classification" and int(s["horizon"]) == champion_horizon)
    rows = []
    for s in summaries:
        m = s["metrics"]
        reasons = []
        if s["task"] != "classification":
            reasons.append("regressor: tracked for comparison, not served")
        shortfall = data_shortfall(m)
        if shortfall:  # noise: no leakage ceiling is meaningful, no choice either
            reasons.append(f"{TOO_LITTLE}: {shortfall}")
            suspects = []
        else:
            suspects = suspect_reasons(m, max_auc=max_auc, max_abs_ic=max_abs_ic, max_sharpe_excess=max_sharpe_excess)
        reasons += suspects
        val_auc = _metric(m, "auc")
        gap = m.get("val_overfit_gap_auc", m.get("overfit_gap_auc"))
        if not val_auc >= min_oot_auc:
            reasons.append(f"validation AUC {val_auc:.4f} < {min_oot_auc}")
        if not gap <= max_overfit_gap:
            reasons.append(f"overfit gap {gap:.4f} > {max_overfit_gap}")
        adj = _bonferroni(s, max(1, k))
        if min_auc_ci_low > 0 and not adj[0] > min_auc_ci_low:
            reasons.append(f"validation AUC CI low {adj[0]:.4f} (Bonferroni, k={k}) <= {min_auc_ci_low}")
        other_h = int(s["horizon"]) != champion_horizon
        rows.append(
            {
                "variant": s["variant"],
                "task": s["task"],
                "model_format": s["model_format"],
                "horizon": s["horizon"],
                "val_auc": val_auc,
                "val_auc_ci_bonferroni": list(adj),
                "bonferroni_k": k,
                "val_ic": _metric(m, "ic"),
                "oot_auc": m["oot_auc"],
                "oot_auc_ci": [m["oot_auc_ci_low"], m["oot_auc_ci_high"]],
                "oot_ic": m.get("oot_ic"),
                "bt_sharpe": m.get("bt_sharpe"),
                "bh_sharpe": m.get("bh_sharpe"),
                "cv_auc_mean": m.get("cv_auc_mean"),
                "train_auc": m["train_auc"],
                "overfit_gap_auc": gap,
                "baseline_majority_auc": m["baseline_majority_auc"],
                "baseline_momentum_auc": m["baseline_momentum_auc"],
                "val_rows": m.get("n_val"),
                "val_sessions": m.get("n_val_sessions"),
                "val_windows": m.get("n_val_windows"),
                "oot_rows": m.get("n_oot"),
                "oot_sessions": m.get("n_oot_sessions"),
                "oot_windows": m.get("n_oot_windows"),
                "too_little_data": bool(shortfall),
                "notes": s.get("notes") or {},
                "eligible": not reasons,
                "candidate": not reasons and not other_h,
                "suspect": bool(suspects),
                "reasons": reasons
                + (
                    [
                        f"horizon {s['horizon']}: ranked only against its own horizon "
                        f"(champion horizon {champion_horizon})"
                    ]
                    if other_h
                    else []
                ),
                "native_uri": s["native_uri"],
                "model_uri": s["model_uri"],
                "mlflow_run_id": s["mlflow_run_id"],
                "features": s["features"],
            }
        )
    rows.sort(
        key=lambda r: (
            int(r["horizon"]) != champion_horizon,
            int(r["horizon"]),
            not r["eligible"],
            -(r["val_auc"] if math.isfinite(r["val_auc"]) else -1),
        )
    )
    per_h: dict[int, int] = {}
    for row in rows:
        per_h[int(row["horizon"])] = per_h.get(int(row["horizon"]), 0) + 1
        row["rank"] = per_h[int(row["horizon"])]
        row["champion_horizon"] = champion_horizon
    return rows


def verdict_of(row: dict) -> tuple[str, str]:
    """("credible edge" | "no credible edge", why) for a chosen variant."""
    lo_val = row["val_auc_ci_bonferroni"][0]
    lo_oot = row["oot_auc_ci"][0]
    why = (
        f"validation AUC {row['val_auc']:.4f}, Bonferroni (k={row['bonferroni_k']}) interval low "
        f"{lo_val:.4f}; out-of-time AUC {row['oot_auc']:.4f}, 95% interval low {lo_oot:.4f}"
    )
    credible = lo_val > 0.5 and lo_oot > 0.5
    return (CREDIBLE if credible else NO_EDGE), why


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
    mv = mlflow.register_model(
        row["model_uri"],
        registered_model,
        tags={
            "variant": row["variant"],
            "model_format": row["model_format"],
            "native_uri": row["native_uri"],
            "task": row["task"],
            "horizon": str(row["horizon"]),
            "run_id": run_id,
            "feature_columns": json.dumps(row["features"]),
            "oot_auc": f"{row['oot_auc']:.6f}",
            "val_auc": f"{row['val_auc']:.6f}",
            "verdict": row.get("verdict", NO_EDGE),
            "credible_edge": str(row.get("verdict") == CREDIBLE).lower(),
        },
    )
    from spx.components.selection.verdict import interval, markdown

    # the verdict where the registry shows a version: its description (Markdown) and tags
    client.update_model_version(registered_model, mv.version, description=markdown(row, version=str(mv.version)))
    for key, value in {
        "val_auc_ci_bonferroni": interval(row.get("val_auc_ci_bonferroni")),
        "bonferroni_k": str(row.get("bonferroni_k")),
        "oot_auc_ci": interval(row.get("oot_auc_ci")),
        "baseline_majority_auc": f"{row.get('baseline_majority_auc', float('nan')):.6f}",
        "baseline_momentum_auc": f"{row.get('baseline_momentum_auc', float('nan')):.6f}",
    }.items():
        client.set_model_version_tag(registered_model, mv.version, key, value)
    client.set_registered_model_alias(registered_model, "champion", mv.version)
    try:  # the verdict also on the variant's MLflow run, where the metrics are read
        client.set_tag(row["mlflow_run_id"], "verdict", row.get("verdict", NO_EDGE))
    except MlflowException:
        pass
    if previous is not None and previous.version != mv.version:
        client.set_registered_model_alias(registered_model, "previous-champion", previous.version)
    return {"model_version": str(mv.version), "previous_version": previous.version if previous else None}


def write_model_info(
    store: ObjectStore, native_uri: str, registered_model: str, version: str, tracking_uri: str
) -> str:
    """``spx-model.json`` beside the native model (the InferenceService's storageUri): the registered name,
    version, format and feature order, so the served predictor reports the version it serves."""
    from spx.components.selection.champion import MODEL_INFO_FILE, resolve

    info = resolve(version=version, name=registered_model, tracking_uri=tracking_uri)
    return store.put_json(native_uri.rstrip("/") + "/" + MODEL_INFO_FILE, info.to_json()).uri


def select_champion(
    store: ObjectStore,
    *,
    run_id: str,
    expected_variants: list[str],
    min_oot_auc: float,
    max_overfit_gap: float,
    registered_model: str,
    tracking_uri: str,
    min_auc_ci_low: float = 0.0,
    max_auc: float = DEFAULT_MAX_AUC,
    max_abs_ic: float = DEFAULT_MAX_ABS_IC,
    max_sharpe_excess: float = DEFAULT_MAX_SHARPE_EXCESS,
    champion_horizon: int = 0,
    progress: Callable[[str], None] = log.info,
) -> tuple[str, dict]:
    summaries = []
    for name in expected_variants:
        key = f"models/{run_id}/{name}/metrics.json"
        if not store.exists(key):
            raise FileNotFoundError(f"variant {name} has no {store.uri(key)}: did its training task fail?")
        summaries.append(store.get_json(key))
    ranking = rank_variants(
        summaries,
        min_oot_auc=min_oot_auc,
        max_overfit_gap=max_overfit_gap,
        min_auc_ci_low=min_auc_ci_low,
        max_auc=max_auc,
        max_abs_ic=max_abs_ic,
        max_sharpe_excess=max_sharpe_excess,
        champion_horizon=champion_horizon or None,
    )
    for r in ranking:
        if r["suspect"]:
            progress(f"REFUSED {r['variant']}: " + "; ".join(x for x in r["reasons"] if x.startswith("SUSPECT")))
    champion = next((r for r in ranking if r["candidate"]), None)
    selection = {
        "run_id": run_id,
        "criteria": {
            "min_oot_auc": min_oot_auc,
            "max_overfit_gap": max_overfit_gap,
            "min_auc_ci_low": min_auc_ci_low,
            "max_auc": max_auc,
            "max_abs_ic": max_abs_ic,
            "max_sharpe_excess": max_sharpe_excess,
            "champion_horizon": ranking[0]["champion_horizon"] if ranking else None,
            "chosen_on": "validation block",
            "reported_on": "out-of-time block (untouched by the choice)",
            "eligible_tasks": ["classification"],
        },
        "ranking": ranking,
        "champion": None,
        "verdict": None,
    }
    if champion is not None:
        verdict, why = verdict_of(champion)
        champion["verdict"] = verdict
        reg = register_champion(champion, run_id=run_id, registered_model=registered_model, tracking_uri=tracking_uri)
        write_model_info(store, champion["native_uri"], registered_model, reg["model_version"], tracking_uri)
        selection["champion"] = {
            k: champion[k]
            for k in (
                "variant",
                "native_uri",
                "model_format",
                "model_uri",
                "horizon",
                "val_auc",
                "val_auc_ci_bonferroni",
                "bonferroni_k",
                "oot_auc",
                "oot_auc_ci",
            )
        }
        selection["champion"].update(
            {
                "registered_model": registered_model,
                "verdict": verdict,
                "credible_edge": verdict == CREDIBLE,
                "verdict_detail": why,
                **reg,
            }
        )
        selection["verdict"] = verdict
        progress(
            f"champion: {champion['variant']} (chosen on validation AUC {champion['val_auc']:.4f}; "
            f"reported out-of-time AUC {champion['oot_auc']:.4f}, 95% CI [{champion['oot_auc_ci'][0]:.4f}, "
            f"{champion['oot_auc_ci'][1]:.4f}]) -> {registered_model} v{reg['model_version']} @champion — "
            f"verdict: {verdict.upper()} ({why})"
        )
    else:
        at_h = [r for r in ranking if int(r["horizon"]) == selection["criteria"]["champion_horizon"]]
        at_h = [r for r in at_h if r["task"] == "classification"] or at_h
        if at_h and all(r["too_little_data"] for r in at_h):
            why = next(x for x in at_h[0]["reasons"] if x.startswith(TOO_LITTLE))
            selection["verdict"] = TOO_LITTLE
            selection["reason"] = f"{why}; nothing is registered — give the run more sessions (--start/--end)"
        else:
            selection["reason"] = "no variant met the criteria; the current champion (if any) is kept"
        progress("champion: " + selection["reason"])
    uri = store.put_json(f"selection/{run_id}/best_model_selection.json", selection).uri
    return uri, selection


def ranking_markdown(selection: dict) -> str:
    lines = [
        "| h | rank | variant | validation AUC | Bonferroni CI | val rows (sessions) | OOT AUC | OOT 95% CI | "
        "OOT rows (sessions) | walk-forward AUC | majority | momentum | eligible |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in selection["ranking"]:
        cv = r["cv_auc_mean"] if r["cv_auc_mean"] is not None else float("nan")
        adj = r.get("val_auc_ci_bonferroni", [float("nan"), float("nan")])
        lines.append(
            f"| {r['horizon']} | {r['rank']} | {r['variant']} | {r.get('val_auc', float('nan')):.4f} | "
            f"{interval_text(adj)} | {block_text(r, 'val')} | {r['oot_auc']:.4f} | {interval_text(r['oot_auc_ci'])} | "
            f"{block_text(r, 'oot')} | {cv:.4f} | {r['baseline_majority_auc']:.3f} | "
            f"{r['baseline_momentum_auc']:.4f} | {'yes' if r['eligible'] else '; '.join(r['reasons'])} |"
        )
    champ = selection.get("champion")
    if champ:
        lines += [
            "",
            f"**Champion:** {champ['variant']} → model version {champ['model_version']} — "
            f"**{champ.get('verdict', NO_EDGE)}** ({champ.get('verdict_detail', '')})",
        ]
    else:
        lines += ["", f"**No new champion:** {selection.get('reason')}"]
    return "\n".join(lines)


def interval_text(pair) -> str:
    """``[lo, hi]``, or ``n/a`` where no interval is given (too short a block, or off-centre resamples)."""
    lo, hi = (list(pair) + [float("nan"), float("nan")])[:2] if pair else (float("nan"), float("nan"))
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:.3f}, {hi:.3f}]"


def block_text(row: dict, which: str) -> str:
    """``rows (sessions)`` of a ranking row's validation (``val``) or OOT (``oot``) block, "-" when unknown."""
    rows, sessions = row.get(f"{which}_rows"), row.get(f"{which}_sessions")
    if rows is None:
        return "-"
    return f"{rows:,.0f} ({sessions:.0f})" if sessions is not None else f"{rows:,.0f}"
