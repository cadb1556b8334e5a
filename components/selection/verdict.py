"""The verdict as people read it: the same words and numbers wherever a chosen model is shown.

The selection (``select.py``) decides; this module only presents its decision — for the KFP ``Markdown``
output of the selection task, the MLflow model version's description, the champion's HTML report and the
``spx report`` index — so each shows, for the champion: the validation AUC with its interval
Bonferroni-corrected for the k candidates compared, the out-of-time AUC with its 95% interval, the
baselines on the same OOT rows (majority class, momentum), and "credible edge" or "no credible edge".
"""

from __future__ import annotations

import html
import math
from typing import Any

from spx.components.selection.select import CREDIBLE, NO_EDGE


def _f(x: Any, spec: str = ".4f") -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return format(value, spec) if math.isfinite(value) else "n/a"


def interval(ci: Any) -> str:
    lo, hi = (list(ci) + [None, None])[:2] if ci else (None, None)
    return f"[{_f(lo, '.3f')}, {_f(hi, '.3f')}]"


def champion_row(selection: dict) -> dict | None:
    """The champion's ranking row (baselines, reasons, intervals) merged with its selection entry (verdict,
    registered version); ``None`` when the run chose no champion."""
    champ = selection.get("champion")
    if not isinstance(champ, dict):
        return None
    row = next((r for r in selection.get("ranking") or [] if r.get("variant") == champ.get("variant")), {})
    return {**row, **champ}


def facts(row: dict) -> dict[str, Any]:
    """What every page states about a chosen model."""
    verdict = row.get("verdict") or NO_EDGE
    return {
        "variant": row.get("variant"),
        "horizon": row.get("horizon"),
        "verdict": verdict,
        "credible_edge": verdict == CREDIBLE,
        "val_auc": row.get("val_auc"),
        "val_auc_ci_bonferroni": row.get("val_auc_ci_bonferroni"),
        "bonferroni_k": row.get("bonferroni_k"),
        "oot_auc": row.get("oot_auc"),
        "oot_auc_ci": row.get("oot_auc_ci"),
        "baseline_majority_auc": row.get("baseline_majority_auc"),
        "baseline_momentum_auc": row.get("baseline_momentum_auc"),
    }


def markdown(row: dict, *, version: str | None = None) -> str:
    """The verdict on one chosen model, in Markdown (the KFP output and the MLflow model version)."""
    f = facts(row)
    title = f"**Verdict: {f['verdict']}** — {f['variant']} (horizon {f['horizon']} bars"
    title += f", model version {version})" if version else ")"
    lines = [
        title,
        "",
        "| | AUC | interval | baselines on the same out-of-time rows |",
        "|---|---|---|---|",
        f"| validation (chosen on) | {_f(f['val_auc'])} | {interval(f['val_auc_ci_bonferroni'])} Bonferroni, "
        f"k = {f['bonferroni_k']} | |",
        f"| out of time (reported) | {_f(f['oot_auc'])} | {interval(f['oot_auc_ci'])} 95% | majority class "
        f"{_f(f['baseline_majority_auc'], '.3f')}, momentum {_f(f['baseline_momentum_auc'])} |",
        "",
        (
            "Both intervals lie above 0.5: a credible edge."
            if f["credible_edge"]
            else "A credible edge needs both intervals above 0.5; at least one is not. Registered for the local "
            "demo only: the cluster rollout refuses it unless `deploy_without_edge=true`."
        ),
    ]
    return "\n".join(lines)


def selection_markdown(selection: dict) -> str:
    """The selection task's ``verdict`` output: the champion's verdict, or why there is none."""
    row = champion_row(selection)
    if row is None:
        return f"**No new champion** in run {selection.get('run_id')}: {selection.get('reason', 'none chose')}"
    return markdown(row, version=str(row.get("model_version") or "") or None)


def index_rows(selection: dict) -> list[dict]:
    """The ranking in the order selection ranked it (champion horizon first, then rank), for the index."""
    return list(selection.get("ranking") or [])


def index_html(run_id: str, selection: dict, links: dict[str, str], monitoring: list[str]) -> str:
    """``spx report``'s ``index.html``: the champion's verdict, then every variant in rank order with its
    validation interval, OOT interval and baselines; ``links`` maps a variant to its page."""
    esc = html.escape
    row = champion_row(selection)
    if row is not None:
        f = facts(row)
        head = (
            f"<section id='verdict' class='verdict {'edge' if f['credible_edge'] else 'noedge'}'>"
            f"<h2>Champion {esc(str(f['variant']))}: <span class='verdict-text'>{esc(f['verdict'])}</span></h2>"
            f"<p>Validation AUC {_f(f['val_auc'])}, Bonferroni interval (k = {esc(str(f['bonferroni_k']))}) "
            f"<span class='val-ci-bonferroni'>{interval(f['val_auc_ci_bonferroni'])}</span>; out-of-time AUC "
            f"{_f(f['oot_auc'])}, 95% interval <span class='oot-ci'>{interval(f['oot_auc_ci'])}</span>; "
            f"baselines on the same rows: majority class {_f(f['baseline_majority_auc'], '.3f')}, momentum "
            f"{_f(f['baseline_momentum_auc'])}. Model version {esc(str(row.get('model_version', '?')))}.</p>"
            "</section>"
        )
    elif selection:
        head = (
            "<section id='verdict' class='verdict noedge'><h2>No new champion</h2>"
            f"<p>{esc(str(selection.get('reason', '')))}</p></section>"
        )
    else:
        head = "<section id='verdict' class='verdict'><h2>No selection for this run</h2></section>"
    champ = row.get("variant") if row else None
    body = []
    for r in index_rows(selection):
        v = str(r.get("variant"))
        name = f"<a href='{esc(links[v])}'>{esc(v)}</a>" if v in links else esc(v)
        body.append(
            f"<tr class='variant{' champion' if v == champ else ''}' data-variant='{esc(v)}'>"
            f"<td>{esc(str(r.get('horizon')))}</td><td>{esc(str(r.get('rank')))}</td>"
            f"<td>{name}{' (champion)' if v == champ else ''}</td>"
            f"<td>{_f(r.get('val_auc'))}</td><td>{interval(r.get('val_auc_ci_bonferroni'))}</td>"
            f"<td>{_f(r.get('oot_auc'))}</td><td>{interval(r.get('oot_auc_ci'))}</td>"
            f"<td>{_f(r.get('baseline_majority_auc'), '.3f')}</td><td>{_f(r.get('baseline_momentum_auc'))}</td>"
            f"<td>{'yes' if r.get('eligible') else esc('; '.join(r.get('reasons') or []))}</td></tr>"
        )
    extra = [v for v in links if v not in {str(r.get("variant")) for r in index_rows(selection)}]
    for v in extra:  # pages for variants the selection did not rank (e.g. a run that stopped before it)
        body.append(
            f"<tr class='variant{' champion' if v == champ else ''}' data-variant='{esc(v)}'><td></td><td></td>"
            f"<td><a href='{esc(links[v])}'>{esc(v)}</a>{' (champion)' if v == champ else ''}</td>"
            "<td colspan='7'>not ranked</td></tr>"
        )
    mon = "".join(f"<li><a href='{esc(x)}'>{esc(x)}</a></li>" for x in monitoring) or "<li>no monitoring run yet</li>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>spx report {esc(run_id)}</title><style>"
        "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:72em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse} th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}"
        "tr.champion{background:#f3f6fb;font-weight:600}"
        ".verdict{border:2px solid #999;padding:.4em .8em;margin:.8em 0;border-radius:4px}"
        ".verdict.edge{border-color:#2e7d32;background:#eef7ee}.verdict.noedge{border-color:#b26a00;background:#fff6e5}"
        f"</style></head><body><h1>Training run {esc(run_id)}</h1>{head}"
        "<p>Ranked on the validation block, per horizon (the champion's horizon first); the out-of-time block "
        "was not looked at by any choice. Validation intervals are Bonferroni-corrected for the candidates of "
        "their horizon; out-of-time intervals are 95% moving-block bootstrap.</p>"
        "<table id='ranking'><tr><th>h</th><th>rank</th><th>variant</th><th>validation AUC</th>"
        "<th>Bonferroni CI</th><th>OOT AUC</th><th>OOT 95% CI</th><th>majority</th><th>momentum</th>"
        f"<th>eligible</th></tr>{''.join(body)}</table>"
        f"<h2>Monitoring</h2><ul>{mon}</ul></body></html>"
    )
