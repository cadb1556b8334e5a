"""KFP component: bronze market ingestion."""

from spx.core.component import spx_component


@spx_component
def bronze_market(
    source: str,
    instrument: str,
    granularity: str,
    start: str,
    end: str,
    path: str,
    dataset: str = "",
    timestamps: str = "end",
    market_tz: str = "",
) -> str:
    """Bring raw candles into bronze (write-once, UTC bar-end stamps); returns the bronze prefix URI."""
    from spx.components.bronze.market import ingest_market
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.bronze")
    store = ObjectStore()
    store.ensure_bucket()
    return ingest_market(
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
