"""What a training task shows in the KFP UI: scalar metrics, ROC/confusion, HTML and Markdown."""

from __future__ import annotations

import math

import numpy as np

from spx.components.training import visuals
from spx.core.storage import ObjectStore

UI_METRICS = (
    "val_auc",
    "val_auc_ci_low",
    "val_auc_ci_high",
    "val_ic",
    "oot_auc",
    "oot_auc_ci_low",
    "oot_auc_ci_high",
    "cv_auc_mean",
    "train_auc",
    "overfit_gap_auc",
    "oot_accuracy",
    "oot_precision",
    "oot_recall",
    "oot_log_loss",
    "oot_brier",
    "oot_rmse",
    "oot_mae",
    "oot_directional_accuracy",
    "oot_ic",
    "oot_rank_ic",
    "baseline_majority_auc",
    "baseline_majority_accuracy",
    "baseline_momentum_auc",
    "baseline_momentum_accuracy",
    "bt_total_return",
    "bt_sharpe",
    "bt_max_drawdown",
    "bh_total_return",
    "bh_sharpe",
)


def _ci(m: dict, key: str, notes: dict) -> str:
    lo, hi = m.get(f"{key}_ci_low", float("nan")), m.get(f"{key}_ci_high", float("nan"))
    if math.isfinite(lo) and math.isfinite(hi):
        return f"[{lo:.4f}, {hi:.4f}]"
    return f"not given ({notes.get(f'{key}_ci') or 'no interval'})"


def summary_markdown(result: dict) -> str:
    m = result["metrics"]
    notes = result.get("notes") or {}
    lines = [
        f"### {result['variant']} ({result['model_format']}, {result['task']}, horizon {result['horizon']} bars)",
        "",
        "| metric | model | majority baseline | momentum baseline |",
        "|---|---|---|---|",
    ]
    for key in ("auc", "accuracy", "log_loss", "brier"):
        if f"oot_{key}" in m:
            lines.append(
                f"| OOT {key} | {m[f'oot_{key}']:.4f} | {m.get(f'baseline_majority_{key}', float('nan')):.4f} "
                f"| {m.get(f'baseline_momentum_{key}', float('nan')):.4f} |"
            )
    if "val_auc" in m:
        lines += [
            "",
            f"Validation block (what selection chooses on): AUC {m['val_auc']:.4f}, 95% CI "
            f"{_ci(m, 'val_auc', notes)}; the OOT block below is untouched by the choice.",
        ]
    lines += [
        "",
        f"OOT AUC 95% block-bootstrap CI: {_ci(m, 'oot_auc', notes)}"
        + (
            f" — {'excludes' if m['oot_auc_ci_low'] > 0.5 else 'includes'} 0.5."
            if math.isfinite(m.get("oot_auc_ci_low", float("nan")))
            else "."
        ),
        f"Walk-forward AUC {m.get('cv_auc_mean', float('nan')):.4f} ± {m.get('cv_auc_std', float('nan')):.4f}; "
        f"train AUC {m['train_auc']:.4f} (gap {m['overfit_gap_auc']:.4f}).",
        f"Long/flat backtest (non-overlapping {result['horizon']}-bar trades, costs included): "
        f"return {m['bt_total_return']:.2%}, Sharpe {m['bt_sharpe']:.2f}, max DD {m['bt_max_drawdown']:.2%}; "
        f"buy & hold {m['bh_total_return']:.2%}, Sharpe {m['bh_sharpe']:.2f}.",
    ]
    return "\n".join(lines)


def emit_training_outputs(store: ObjectStore, result: dict, *, metrics, roc, report, summary) -> None:
    m = result["metrics"]
    for key in UI_METRICS:
        if key in m and math.isfinite(m[key]):
            metrics.log_metric(key, float(m[key]))
    md = summary_markdown(result)
    with open(summary.path, "w") as fh:
        fh.write(md)
    prefix = result["native_uri"]
    oot = store.read_parquet(prefix + "oot_predictions.parquet")
    score_col = "y_prob" if "y_prob" in oot.columns else "y_pred"
    y_true = oot["y_true"].to_numpy(int)
    score = oot[score_col].to_numpy(float)
    prob = score if score_col == "y_prob" else 1.0 / (1.0 + np.exp(-score))
    rc = visuals.roc_and_confusion(y_true, prob)
    html = visuals.training_report_html(
        y_true,
        prob,
        oot["ret"].to_numpy(float),
        store.get_json(prefix + "importance.json"),
        cost_bps=float(result.get("cost_bps", 1.0)),
        title=result["variant"],
        horizon=int(result["horizon"]),
        timestamps=oot["timestamp"],
    )
    step = max(1, len(rc["fpr"]) // 200)  # keep the UI payload small
    thresholds = [min(1.0, float(t)) for t in rc["thresholds"][::step]]
    roc.log_roc_curve(rc["fpr"][::step], rc["tpr"][::step], thresholds)
    roc.log_confusion_matrix(["down", "up"], rc["confusion_matrix"])
    with open(report.path, "w") as fh:
        fh.write(html)
    store.put_text(prefix + "report.html", html, content_type="text/html")
