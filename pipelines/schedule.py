"""Create or update the KFP recurring run of the training pipeline (``spx schedule``).

KFP has no update call for recurring runs, so "update" is: find the recurring run by its display name in
the experiment; if it already matches (cron, pipeline version, max concurrency, catch-up, enabled) do
nothing; otherwise create the new one first and then delete the old one, so a failure in between never
leaves the pipeline unscheduled (re-running converges).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from spx.core.errors import ConfigError

log = logging.getLogger(__name__)

# KFP 2.5's ScheduledWorkflow controller parses crons with github.com/robfig/cron v1.2.0 (`cron.Parse`):
# six fields, seconds first; each field a comma list of `*`/`?`, `N`, `N-M`, each optionally `/STEP`;
# month and day-of-week also take three-letter names; day-of-week is 0-6 (Sunday = 0; 7 is rejected);
# no `L`, `W` or `#`.
_FIELDS = (  # (name, min, max, names)
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
        },
    ),
    ("day-of-week", 0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_PART = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")

# KFP 2.5's API server accepts max_concurrency 1..10 for a recurring run
MAX_CONCURRENCY = (1, 10)


class ScheduleError(ConfigError):
    pass


def _value(text: str, field: tuple, expr: str) -> int:
    name, lo, hi, names = field
    if text.isdigit():
        value = int(text)
    elif names and text.lower() in names:
        value = names[text.lower()]
    else:
        raise ScheduleError(
            f"invalid {name} value {text!r} in {expr!r} (KFP's cron parser takes numbers"
            + (f" or names {'/'.join(n.upper() for n in names)}" if names else "")
            + ")"
        )
    if not lo <= value <= hi:
        raise ScheduleError(f"{name} value {value} out of range {lo}-{hi} in {expr!r}")
    return value


def _check_field(text: str, field: tuple, expr: str) -> None:
    name = field[0]
    for part in text.split(","):
        m = _PART.match(part)
        if not m:
            raise ScheduleError(
                f"invalid {name} field {text!r} in {expr!r}: KFP 2.5 (robfig/cron v1.2.0) takes "
                "*, ?, N, N-M and /STEP only (no L, W or #)"
            )
        if m.group("step") is not None and int(m.group("step")) == 0:
            raise ScheduleError(f"{name} step must be >= 1 in {expr!r}")
        rng = m.group("range")
        if rng in ("*", "?"):
            continue
        bounds = [_value(v, field, expr) for v in rng.split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise ScheduleError(f"{name} range {rng!r} runs backwards in {expr!r}")


def validate_kfp_cron(expr: str) -> str:
    """Check a six-field, seconds-first cron the way KFP 2.5 (robfig/cron v1.2.0) parses it; return it."""
    fields = expr.split()
    if len(fields) != 6:
        raise ScheduleError(f"KFP cron needs 6 fields (seconds first), got {len(fields)}: {expr!r}")
    for text, field in zip(fields, _FIELDS):
        _check_field(text, field, expr)
    return " ".join(fields)


def validate_max_concurrency(value: int) -> int:
    lo, hi = MAX_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ScheduleError(f"max_concurrency must be an integer in {lo}..{hi} (KFP's limit), got {value!r}")
    return value


def to_kfp_cron(expr: str) -> str:
    """A user cron (5 fields, minute first) to KFP's 6-field seconds-first form, checked as KFP parses it.

    ``'0 2 * * *'`` -> ``'0 0 2 * * *'``; 6-field input is kept; anything KFP 2.5 would reject is an error.
    """
    if not isinstance(expr, str):
        raise ScheduleError(f"cron must be a string, got {expr!r}")
    fields = expr.split()
    if not fields:
        raise ScheduleError("cron expression is empty")
    if fields[0].startswith("@"):
        raise ScheduleError(f"cron macros like {fields[0]!r} are not supported: write the fields out")
    if len(fields) == 5:
        return validate_kfp_cron(" ".join(["0", *fields]))
    if len(fields) == 6:
        return validate_kfp_cron(" ".join(fields))
    raise ScheduleError(
        f"cron needs 5 fields (minute hour day month weekday) or 6 (seconds first); got {len(fields)}: {expr!r}"
    )


def _eq_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


@dataclass(frozen=True)
class ScheduleResult:
    action: str  # "created" | "updated" | "unchanged"
    recurring_run_id: str
    replaced_id: str | None
    cron: str


def latest_version_id(client, pipeline_id: str) -> str:
    resp = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=1, sort_by="created_at desc")
    versions = resp.pipeline_versions or []
    if not versions:
        raise ScheduleError(f"pipeline {pipeline_id} has no versions: run `spx submit` first")
    return versions[0].pipeline_version_id


def _matches(
    run,
    *,
    cron: str,
    pipeline_id: str,
    version_id: str,
    max_concurrency: int,
    no_catchup: bool,
    params: dict,
    service_account: str | None,
    pipeline_root: str,
) -> bool:
    trigger = getattr(run, "trigger", None)
    cron_now = getattr(getattr(trigger, "cron_schedule", None), "cron", None)
    ref = getattr(run, "pipeline_version_reference", None)
    runtime_config = getattr(run, "runtime_config", None)
    run_params = getattr(runtime_config, "parameters", None) or {}
    run_root = getattr(runtime_config, "pipeline_root", None) or ""
    mode = str(getattr(run, "mode", "") or "")
    return (
        cron_now == cron
        and ref is not None
        and ref.pipeline_id == pipeline_id
        and ref.pipeline_version_id == version_id
        and int(getattr(run, "max_concurrency", 0) or 0) == max_concurrency
        and bool(getattr(run, "no_catchup", False)) == no_catchup
        and dict(run_params) == dict(params)
        and run_root == pipeline_root
        and (service_account or "") == (getattr(run, "service_account", "") or "")
        and mode.upper().endswith("ENABLE")
    )


def create_or_update_schedule(
    client,
    *,
    cron: str,
    pipeline_name: str,
    job_name: str,
    experiment_name: str = "spx-direction",
    version_id: str | None = None,
    params: dict | None = None,
    max_concurrency: int = 1,
    no_catchup: bool = True,
    service_account: str | None = None,
    namespace: str | None = None,
    pipeline_root: str | None = None,
) -> ScheduleResult:
    """Make the recurring run ``job_name`` run ``pipeline_name`` on ``cron``; idempotent."""
    kfp_cron = to_kfp_cron(cron)
    validate_max_concurrency(max_concurrency)
    from spx.pipelines.submit import default_pipeline_root

    params = dict(params or {})
    pipeline_root = pipeline_root or default_pipeline_root()
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise ScheduleError(f"no pipeline named {pipeline_name!r} on the KFP server: run `spx submit` first")
    version_id = version_id or latest_version_id(client, pipeline_id)
    experiment = client.create_experiment(name=experiment_name, namespace=namespace)
    existing = (
        client.list_recurring_runs(
            experiment_id=experiment.experiment_id, filter=_eq_filter("display_name", job_name), page_size=100
        ).recurring_runs
        or []
    )
    for run in existing:
        if _matches(
            run,
            cron=kfp_cron,
            pipeline_id=pipeline_id,
            version_id=version_id,
            max_concurrency=max_concurrency,
            no_catchup=no_catchup,
            params=params,
            service_account=service_account,
            pipeline_root=pipeline_root,
        ):
            log.info("recurring run %s already up to date", run.recurring_run_id)
            return ScheduleResult("unchanged", run.recurring_run_id, None, kfp_cron)
    created = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=job_name,
        description=f"{pipeline_name} on '{cron}' (managed by spx schedule)",
        cron_expression=kfp_cron,
        max_concurrency=max_concurrency,
        no_catchup=no_catchup,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
        enabled=True,
        service_account=service_account,
        pipeline_root=pipeline_root,
    )
    replaced = None
    for run in existing:
        client.delete_recurring_run(run.recurring_run_id)
        replaced = run.recurring_run_id
    return ScheduleResult("updated" if existing else "created", created.recurring_run_id, replaced, kfp_cron)
