"""Small pipeline-level components that belong to no stage."""

from spx.core.component import spx_component


@spx_component
def resolve_run_id(requested: str, job_id: str) -> str:
    """The run id every artifact key carries: the requested one, else UTC time + the KFP job id."""
    import datetime
    import re

    if requested:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", requested):
            raise ValueError(f"run_id {requested!r}: use 1-64 of [A-Za-z0-9._-]")
        return requested
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = re.sub(r"[^A-Za-z0-9]", "", job_id)[:8] or "local"
    return f"{stamp}-{suffix}"
