"""How `spx run` ends: the cause of a failed task on the last line, and a "next:" hint that follows what happened.

A failed task used to end the run with ``task gold-features failed (RuntimeError)``: the cause was the last line
of a 20-line traceback above it. :func:`failure_cause` finds the exception the component raised in the task's log
(the last ``SomeError: message`` line; KFP's runner wraps it in a RuntimeError), so the run's last line names it.

After "no new champion" the old hint said ``spx serve``, which then failed with MLflow's "model not found": the
hint now depends on the outcome (:func:`next_hint`).
"""

from __future__ import annotations

import re

_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Refused|Failure))(?:: (.*))?$")
_WRAPPERS = {"RuntimeError"}  # what the local runner raises around a failed task


def failure_cause(lines: list[str]) -> str:
    """The exception a failed task's log ends with, as ``Type: message`` (the last one that is not the runner's
    RuntimeError wrapper; that one when nothing else is there); "" when the log has none."""
    found: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.strip()
        m = _EXCEPTION.match(line)
        if m:
            found.append((m.group(1), (m.group(2) or "").strip()))
    if not found:
        return ""
    real = [f for f in found if f[0] not in _WRAPPERS]
    kind, message = (real or found)[-1]
    return f"{kind}: {message}" if message else kind


def next_hint(selection: dict) -> str:
    """The "next:" line after a run, by what happened (rich markup)."""
    from spx.components.selection.select import TOO_LITTLE

    if selection.get("champion"):
        return (
            "next: [bold]spx serve[/] (V2 model server on localhost) · [bold]spx report[/] · "
            "[bold]python -m pytest -m unit[/]"
        )
    if selection.get("verdict") == TOO_LITTLE:
        return (
            "next: nothing was registered — give the run more sessions (a wider --start/--end, or a longer file) · "
            "[bold]spx report[/] shows this run's pictures"
        )
    return (
        "next: no model was registered by this run (the reasons are in the table) — change the data or the "
        "criteria (--min-oot-auc, --max-overfit-gap) and run again · [bold]spx report[/] shows this run's pictures"
    )
