"""KFP v2 component: Feast apply + materialize the newest gold rows into the online store.

Runs after each training run (the lead's pipeline wires it after the gold/selection steps).
The logic lives in :func:`spx.components.feature_store.store.materialize_logic`; the online store is
chosen by the environment (SQLite locally, Redis in the cluster; see store.repo_config).
"""

from spx.core.component import spx_component


@spx_component
def feast_materialize(gold_uri: str, manifest_uri: str, run_id: str) -> str:
    """Apply the Feast definitions for this gold table and materialize its newest rows.

    Returns a JSON summary: feature views, feature columns, window, newest bar per instrument.
    """
    from spx.components.feature_store.store import materialize_logic

    return materialize_logic(gold_uri, manifest_uri, run_id)
