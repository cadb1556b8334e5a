"""KFP component: bronze market ingestion."""

from kfp.dsl import Dataset, Output

from spx.core.component import spx_component


@spx_component
def bronze_market(
    source: str,
    instrument: str,
    granularity: str,
    start: str,
    end: str,
    path: str,
    market: Output[Dataset],
    dataset: str = "",
    timestamps: str = "end",
    market_tz: str = "",
    cache_token: str = "",
) -> str:
    """Bring raw candles into bronze (write-once, UTC bar-end stamps); returns the bronze prefix URI.

    ``market``: the bronze prefix as a typed Dataset (a manifest: its objects, bytes and a digest of their
    content; see ``spx.core.artifacts``). ``cache_token`` is not read: it is part of KFP's cache key, so
    ``spx run`` can pass a fingerprint of the input file and reuse this task when nothing changed (the
    compiled cluster pipeline never caches bronze: new bars arrive every day)."""
    from spx.components.bronze.market import ingest_market
    from spx.core.artifacts import describe_prefix, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.bronze")
    store = ObjectStore()
    store.ensure_bucket()
    prefix = ingest_market(
        store,
        source=source,
        instrument=instrument,
        granularity=granularity,
        start=start,
        end=end,
        path=path,
        dataset=dataset,
        timestamps=timestamps,
        market_tz=market_tz,
        progress=log.info,
    )
    write_manifest(
        market,
        {
            **describe_prefix(store, prefix),
            "layer": "bronze",
            "source": source,
            "instrument": instrument,
            "granularity": granularity,
            "dataset": dataset,
            "start": start,
            "end": end,
        },
    )
    return prefix
