"""What a training task shows in the KFP UI: scalar metrics, ROC/confusion, HTML, Markdown and the Model."""

from __future__ import annotations

import json
import math

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


MODEL_METADATA = (
    "val_auc",
    "val_auc_ci_low",
    "val_auc_ci_high",
    "oot_auc",
    "oot_auc_ci_low",
    "oot_auc_ci_high",
    "baseline_majority_auc",
    "baseline_momentum_auc",
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
        "",
        "Verdict: decided by the selection task, which compares the candidates of a horizon (validation "
        "interval Bonferroni-corrected for them) and calls a model a credible edge only when that interval and "
        "the OOT interval both lie above 0.5 — see its `verdict` output.",
    ]
    return "\n".join(lines)


def emit_training_outputs(result: dict, *, metrics, roc, report, summary, model=None) -> None:
    """Fill the task's KFP outputs from what :func:`run_training` made (no picture is drawn again and nothing
    is read back from the bucket): scalar metrics, ROC + confusion matrix, the HTML report, the Markdown
    summary, and the native model file as a ``Model`` with its lineage facts as metadata."""
    m = result["metrics"]
    for key in UI_METRICS:
        if key in m and math.isfinite(m[key]):
            metrics.log_metric(key, float(m[key]))
    with open(summary.path, "w") as fh:
        fh.write(summary_markdown(result))
    made = result["_report"]
    rc = made["roc"]
    if rc is not None:
        step = max(1, len(rc["fpr"]) // 200)  # keep the UI payload small
        thresholds = [min(1.0, float(t)) for t in rc["thresholds"][::step]]
        roc.log_roc_curve(rc["fpr"][::step], rc["tpr"][::step], thresholds)
        roc.log_confusion_matrix(["down", "up"], rc["confusion_matrix"])
    with open(report.path, "w") as fh:
        fh.write(made["html"])
    # Metrics / ClassificationMetrics live in metadata; their files are written too (the same JSON), because
    # KFP's local cache (kfp 2.17, kfp/local/cache.py) treats an output artifact whose file is missing as a
    # cache miss, which would make every unchanged rerun train again
    for artifact in (metrics, roc):
        with open(artifact.path, "w") as fh:
            json.dump(artifact.metadata, fh, sort_keys=True)
    if model is not None:
        with open(model.path, "wb") as fh:
            fh.write(made["native_bytes"])
        model.metadata.update(
            {
                "framework": result["model_format"],
                "file": made["native_file"],
                "variant": result["variant"],
                "task": result["task"],
                "horizon": int(result["horizon"]),
                "native_uri": result["native_uri"],
                "mlflow_run_id": result["mlflow_run_id"],
                "mlflow_model_uri": result["model_uri"],
                "gold_uri": result.get("gold_uri", ""),
                **{k: float(m[k]) for k in MODEL_METADATA if k in m and math.isfinite(m[k])},
            }
        )
