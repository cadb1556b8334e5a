"""``spx report``: the KFP-UI pictures written to a local folder, from what a run left in the bucket.

Reads ``models/{run_id}/{variant}/{metrics.json, oot_predictions.parquet, importance.json}`` (and the
selection and the newest monitoring summary when present) and writes, per variant, ``{variant}.html``
(self-contained: plots embedded) and ``{variant}.md``, plus ``index.html`` with the ranking and links,
and ``monitoring/`` with the newest drift reports.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np

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
    rows = []
    for variant in variants:
        try:
            args, extra = _variant_inputs(store, run_id, variant)
        except FileNotFoundError as exc:
            log.warning("variant %s skipped: %s", variant, exc)
            continue
        page = visuals.training_report_html(**args, timestamps=extra["timestamps"])
        md = visuals.training_report_markdown(**args)
        (out / f"{variant}.html").write_text(page)
        (out / f"{variant}.md").write_text(md)
        rc = visuals.roc_and_confusion(args["y_true"], args["y_prob"])
        (out / f"{variant}.classification.json").write_text(json.dumps(rc))
        files += [f"{variant}.html", f"{variant}.md", f"{variant}.classification.json"]
        rows.append((variant, rc["auc"]))
    sel_key = layout.selection_key(run_id)
    selection = store.get_json(sel_key) if store.exists(sel_key) else {}
    champ = (selection.get("champion") or {}).get("variant") if isinstance(selection.get("champion"), dict) else None
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
    esc = html.escape
    items = "".join(
        f"<tr><td><a href='{esc(v)}.html'>{esc(v)}</a>{' (champion)' if v == champ else ''}</td>"
        f"<td>{auc:.4f}</td><td><a href='{esc(v)}.md'>markdown</a></td></tr>"
        for v, auc in rows
    )
    mon = "".join(f"<li><a href='{esc(f)}'>{esc(f)}</a></li>" for f in mon_files) or "<li>no monitoring run yet</li>"
    (out / "index.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>spx report {esc(run_id)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>Training run {esc(run_id)}</h1>"
        f"<table border='1' cellpadding='4'><tr><th>variant</th><th>OOT AUC</th><th></th></tr>{items}</table>"
        f"<h2>Monitoring</h2><ul>{mon}</ul></body></html>"
    )
    files.insert(0, "index.html")
    return {"run_id": run_id, "out": str(out), "files": files, "champion": champ}
