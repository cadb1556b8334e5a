"""The canary decision as the KFP UI shows it: a Markdown output of the monitoring pipeline's canary task.

``evaluate_canary_op`` writes :func:`decision_markdown` to its ``decision`` output (and the same numbers to the
output's metadata, :func:`decision_metadata`), so a promote, rollback or hold is read in the run's page with
its measurement — requests, errors, error rate, p95 latency and where they came from — beside the thresholds
it was judged against, the models involved and the exact patch sent (or "dry run" / "nothing sent").
"""

from __future__ import annotations

import json
import math
from typing import Any

VERBS = {
    "promote": "PROMOTE the canary to 100%",
    "rollback": "ROLL BACK to the stable model",
    "hold": "HOLD (nothing changed)",
    "no-canary": "no canary in progress (nothing to judge)",
    "no-isvc": "no InferenceService yet (nothing deployed)",
    "no-cluster": "no Kubernetes API (step skipped)",
}


def _num(value: Any, spec: str) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return format(x, spec) if math.isfinite(x) else "n/a"


def _model(ref: dict | None) -> str:
    if not ref:
        return "—"
    version = f" v{ref['model_version']}" if ref.get("model_version") else ""
    variant = f"{ref['variant']}" if ref.get("variant") else "model"
    return f"{variant}{version} (`{ref.get('native_uri', '')}`)"


def decision_metadata(result: dict, thresholds: dict[str, float]) -> dict[str, Any]:
    """The decision's numbers as flat metadata (what a dashboard plots over time)."""
    m = result.get("measurement") or {}
    out: dict[str, Any] = {
        "decision": result.get("decision"),
        "verb": result.get("verb"),
        "dry_run": bool(result.get("dry_run", False)),
        **{f"threshold_{k}": float(v) for k, v in thresholds.items()},
    }
    for key in ("requests", "errors", "error_rate", "p95_latency_ms", "source", "window_start", "window_end"):
        if m.get(key) is not None:
            out[key] = m[key]
    for role in ("canary", "stable", "target"):
        ref = result.get(role) or {}
        if ref.get("model_version"):
            out[f"{role}_model_version"] = str(ref["model_version"])
    return out


def decision_markdown(result: dict, thresholds: dict[str, float]) -> str:
    """``result``: ``CanaryEvaluation.to_dict()`` (or the no-cluster stub); ``thresholds``: the
    ``HealthThresholds`` fields."""
    decision = str(result.get("decision"))
    lines = [f"## Canary: {VERBS.get(decision, decision)}", ""]
    reasons = list(result.get("reasons") or [])
    if reasons:
        lines += ["Why: " + "; ".join(reasons) + ".", ""]
    m = result.get("measurement")
    if m:
        lines += [
            f"Measured from {m.get('source')} over {m.get('window_start')} – {m.get('window_end')}:",
            "",
            "| | canary | threshold |",
            "|---|---|---|",
            f"| requests | {m.get('requests')} | at least {int(thresholds.get('min_requests', 0))} to judge |",
            f"| errors | {m.get('errors')} | |",
            f"| error rate | {_num(m.get('error_rate'), '.4f')} | at most {_num(thresholds.get('max_error_rate'), '.4f')} |",
            f"| p95 latency | {_num(m.get('p95_latency_ms'), '.1f')} ms | at most "
            f"{_num(thresholds.get('max_p95_latency_ms'), '.1f')} ms |",
            "",
        ]
        lines += [f"- note: {n}" for n in m.get("notes") or []]
        if m.get("notes"):
            lines.append("")
    lines += [
        f"Canary: {_model(result.get('canary'))}; stable: {_model(result.get('stable'))}; serving 100% "
        f"afterwards: {_model(result.get('target'))}.",
        "",
    ]
    body = result.get("body")
    if result.get("dry_run"):
        lines.append("Dry run: nothing was sent.")
    elif body is None:
        lines.append("Nothing was sent to the cluster.")
    else:
        lines += ["Patch sent (merge patch):", "", "```json", json.dumps(body, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"
