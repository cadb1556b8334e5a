"""KFP components: silver feature families (one component each)."""

from spx.core.component import spx_component


@spx_component
def silver_technical(
    bronze_prefix: str, granularity: str, start: str, end: str, run_id: str, session: str = "regular"
) -> str:
    """RSI, MACD, ROC, stochastic, SMA/EMA, Bollinger, ATR, ADX, volume features (TA-Lib)."""
    from spx.components.silver.stage import build_silver
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    return build_silver(
        ObjectStore(),
        family="technical",
        bronze_prefix=bronze_prefix,
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )


@spx_component
def silver_microstructure(
    bronze_prefix: str, granularity: str, start: str, end: str, run_id: str, session: str = "regular"
) -> str:
    """Spread (quoted or Corwin-Schultz), Roll, Amihud, price impact, order-flow imbalance, depth."""
    from spx.components.silver.stage import build_silver
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    return build_silver(
        ObjectStore(),
        family="microstructure",
        bronze_prefix=bronze_prefix,
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )


@spx_component
def silver_volatility(
    bronze_prefix: str, granularity: str, start: str, end: str, run_id: str, session: str = "regular"
) -> str:
    """Historical, Garman-Klass, Parkinson, Rogers-Satchell, Yang-Zhang, range, percentile rank."""
    from spx.components.silver.stage import build_silver
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    return build_silver(
        ObjectStore(),
        family="volatility",
        bronze_prefix=bronze_prefix,
        granularity=granularity,
        start=start,
        end=end,
        run_id=run_id,
        session=session,
        progress=stage_logging("spx.silver").info,
    )
