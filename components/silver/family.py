"""What a silver component runs (``components/silver/component.py``): one family's table from the bronze
``Dataset``, recorded as the task's ``features`` Dataset. A separate module because a component body cannot
import ``component.py`` at run time (KFP's runtime ``kfp.dsl`` has no ``component`` decorator)."""

from __future__ import annotations


def run_family(
    family: str, bronze, features, *, granularity: str, start: str, end: str, run_id: str, session: str
) -> str:
    """One silver family: build its table from the bronze ``Dataset`` and record it as the ``features``
    Dataset (what each component below runs; a component body imports it from here)."""
    from spx.components.silver.stage import build_silver
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    uri = build_silver(
        store,
        family=family,
        bronze_prefix=table_uri(bronze),
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )
    write_manifest(features, {**describe_object(store, uri), "layer": "silver", "family": family, "run_id": run_id})
    return uri
