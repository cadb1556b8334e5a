"""KFP components: silver feature families (one component each).

Each takes the bronze prefix as a typed ``Dataset`` and outputs its silver table as one (a manifest of the
table in the bucket: ``spx.core.artifacts``); it also returns the table's URI."""

from kfp.dsl import Dataset, Input, Output

from spx.core.component import spx_component


@spx_component
def silver_technical(
    bronze: Input[Dataset],
    granularity: str,
    start: str,
    end: str,
    run_id: str,
    features: Output[Dataset],
    session: str = "regular",
) -> str:
    """RSI, MACD, ROC, stochastic, SMA/EMA, Bollinger, ATR, ADX, volume features (TA-Lib)."""
    from spx.components.silver.stage import build_silver
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    uri = build_silver(
        store,
        family="technical",
        bronze_prefix=table_uri(bronze),
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )
    write_manifest(
        features, {**describe_object(store, uri), "layer": "silver", "family": "technical", "run_id": run_id}
    )
    return uri


@spx_component
def silver_microstructure(
    bronze: Input[Dataset],
    granularity: str,
    start: str,
    end: str,
    run_id: str,
    features: Output[Dataset],
    session: str = "regular",
) -> str:
    """Spread (quoted or Corwin-Schultz), Roll, Amihud, price impact, order-flow imbalance, depth."""
    from spx.components.silver.stage import build_silver
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    uri = build_silver(
        store,
        family="microstructure",
        bronze_prefix=table_uri(bronze),
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )
    write_manifest(
        features, {**describe_object(store, uri), "layer": "silver", "family": "microstructure", "run_id": run_id}
    )
    return uri


@spx_component
def silver_volatility(
    bronze: Input[Dataset],
    granularity: str,
    start: str,
    end: str,
    run_id: str,
    features: Output[Dataset],
    session: str = "regular",
) -> str:
    """Historical, Garman-Klass, Parkinson, Rogers-Satchell, Yang-Zhang, range, percentile rank."""
    from spx.components.silver.stage import build_silver
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    uri = build_silver(
        store,
        family="volatility",
        bronze_prefix=table_uri(bronze),
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )
    write_manifest(
        features, {**describe_object(store, uri), "layer": "silver", "family": "volatility", "run_id": run_id}
    )
    return uri
