"""Small pipeline-level components that belong to no stage."""

from spx.core.component import spx_component


@spx_component
def resolve_run_id(requested: str, job_id: str, run_key: str = "") -> str:
    """The run id every artifact key carries: the requested one, else UTC time + the KFP job id.

    ``run_key`` is not read: it is part of KFP's cache key. ``spx run`` builds this task cacheable and passes
    a fingerprint of everything the run depends on (its parameters, the code, the input files), so an
    unchanged rerun gets the earlier run's id back from KFP's local cache, and with it every later task's
    earlier outputs; any change gives a new id, so no earlier run's objects are overwritten. The compiled
    cluster pipeline never caches this task."""
    import datetime
    import re

    if requested:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", requested):
            raise ValueError(f"run_id {requested!r}: use 1-64 of [A-Za-z0-9._-]")
        return requested
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = re.sub(r"[^A-Za-z0-9]", "", job_id)[:8] or "local"
    return f"{stamp}-{suffix}"


@spx_component
def plan_variants(run_id: str, horizon_short: int, horizon_long: int) -> list:
    """The training variants of this run (``components/training/variants.py``) with their horizons: the items
    the pipeline's ``dsl.ParallelFor`` trains, one task each.

    Each item also carries the run id: KFP 2.17's local runner replaces every task output passed into a
    ParallelFor body with the loop item (``kfp/local/orchestrator/task_spec_utils.py``,
    ``create_parameter_loop_iteration_task_spec``), so the body reads upstream parameters from the item."""
    from spx.components.training.variants import VARIANTS

    return [
        {
            "run_id": run_id,
            "variant": name,
            "model": model,
            "objective": task,  # not "task": a loop item's .task is KFP's (the producing task)
            "features": features,
            "horizon": horizon_short if which == "short" else horizon_long,
        }
        for name, model, task, features, which in VARIANTS
    ]
