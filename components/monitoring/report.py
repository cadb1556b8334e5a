"""``spx report``: the KFP-UI pictures written to a local folder, from what a run left in the bucket.

Reads ``models/{run_id}/{variant}/{metrics.json, oot_predictions.parquet, importance.json}`` (and the
selection and the newest monitoring summary when present) and writes, per variant, ``{variant}.html``
(self-contained: plots embedded; every page states the validation and out-of-time intervals and the
baselines, the champion's the selection's verdict) and ``{variant}.md``, plus ``index.html`` — the champion's
verdict, then every variant in the selection's rank order with its intervals and baselines, linked to its page
— and ``monitoring/`` with the newest drift reports.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from spx.components.selection.verdict import champion_row, facts, index_html, interval, markdown
from spx.components.training import visuals
from spx.core import layout

log = logging.getLogger(__name__)


def latest_run_id(store) -> str:
    key = store.latest_key(f"{layout.SELECTION}/", "best_model_selection.json") or store.latest_key(
        f"{layout.MODELS}/", "metrics.json"
    )
    if key is None:
        raise FileNotFoundError(f"no training run in {store.uri('')}: no selection/ or models/ objects (train first)")
    return key.split("/")[1]


def _variant_inputs(store, run_id: str, variant: str) -> tuple[dict, dict]:
    prefix = layout.models_prefix(run_id, variant)
    metrics = store.get_json(prefix + "metrics.json")
    oot = store.read_parquet(prefix + "oot_predictions.parquet")
    importance = store.get_json(prefix + "importance.json") if store.exists(prefix + "importance.json") else {}
    if "y_prob" in oot.columns:
        prob, note = oot["y_prob"].to_numpy(float), ""
    else:  # a regression variant: its score mapped monotonically into (0, 1); the ROC is unaffected
        score = oot["y_pred"].to_numpy(float)
        scale = float(np.std(score)) or 1.0
        prob, note = 1.0 / (1.0 + np.exp(-score / scale)), " (regression score mapped to (0,1))"
    args = dict(
        y_true=oot["y_true"].to_numpy(int),
        y_prob=prob,
        returns=oot["ret"].to_numpy(float),
        importance=importance,
        cost_bps=float(metrics.get("cost_bps", 1.0)),
        title=f"{variant} — run {run_id}{note}",
        horizon=int(metrics.get("horizon", 1)),
    )
    return args, {"timestamps": oot["timestamp"].to_numpy() if "timestamp" in oot.columns else None}


def _ranked_line(row: dict) -> str:
    return (
        f"Rank {row.get('rank')} at horizon {row.get('horizon')}: validation AUC {row.get('val_auc', float('nan')):.4f} "
        f"{interval(row.get('val_auc_ci_bonferroni'))} (Bonferroni), out-of-time AUC "
        f"{row.get('oot_auc', float('nan')):.4f} {interval(row.get('oot_auc_ci'))}; "
        + ("eligible" if row.get("eligible") else "not eligible: " + "; ".join(row.get("reasons") or []))
    )


def write_report(store, out_dir: str | Path, run_id: str = "") -> dict:
    """Write the report folder; returns ``{"run_id", "files": [...]}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or latest_run_id(store)
    variants = layout.variants_in(
        [k for k in store.list(layout.models_prefix(run_id)) if k.endswith("/metrics.json")], run_id
    )
    if not variants:
        raise FileNotFoundError(f"run {run_id} has no models/{run_id}/*/metrics.json")
    files: list[str] = []
    sel_key = layout.selection_key(run_id)
    selection = store.get_json(sel_key) if store.exists(sel_key) else {}
    ranked = {r.get("variant"): r for r in selection.get("ranking") or []}
    champ_row = champion_row(selection)
    champ = champ_row.get("variant") if champ_row else None
    links: dict[str, str] = {}
    for variant in variants:
        try:
            args, extra = _variant_inputs(store, run_id, variant)
        except FileNotFoundError as exc:
            log.warning("variant %s skipped: %s", variant, exc)
            continue
        metrics = store.get_json(layout.model_key(run_id, variant, "metrics.json")).get("metrics") or {}
        # every page states the validation and OOT intervals and the baselines; the champion's, the verdict
        verdict = facts(champ_row) if variant == champ and champ_row else None
        page = visuals.training_report_html(**args, timestamps=extra["timestamps"], metrics=metrics, verdict=verdict)
        md = visuals.training_report_markdown(**args)
        if verdict is not None:
            md = markdown(champ_row) + "\n\n" + md
        elif variant in ranked:
            md = _ranked_line(ranked[variant]) + "\n\n" + md
        (out / f"{variant}.html").write_text(page)
        (out / f"{variant}.md").write_text(md)
        rc = visuals.roc_and_confusion(args["y_true"], args["y_prob"])
        (out / f"{variant}.classification.json").write_text(json.dumps(rc))
        files += [f"{variant}.html", f"{variant}.md", f"{variant}.classification.json"]
        links[variant] = f"{variant}.html"
    mon_files = []
    mon_key = store.latest_key(f"{layout.MONITORING}/", "summary.json")
    if mon_key is not None:
        mdir = out / "monitoring"
        mdir.mkdir(exist_ok=True)
        prefix = mon_key.rsplit("/", 1)[0] + "/"
        for name in ("summary.json", "drift.html", "gold_drift.html"):
            if store.exists(prefix + name):
                (mdir / name).write_bytes(store.get_bytes(prefix + name))
                mon_files.append(f"{layout.MONITORING}/{name}")
        files += mon_files
    (out / "index.html").write_text(index_html(run_id, selection, links, mon_files))
    files.insert(0, "index.html")
    return {"run_id": run_id, "out": str(out), "files": files, "champion": champ}
