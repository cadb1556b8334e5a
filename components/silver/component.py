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
    from spx.components.silver.family import run_family

    args = dict(granularity=granularity, start=start, end=end, run_id=run_id, session=session)
    return run_family("technical", bronze, features, **args)


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
    from spx.components.silver.family import run_family

    args = dict(granularity=granularity, start=start, end=end, run_id=run_id, session=session)
    return run_family("microstructure", bronze, features, **args)


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
    from spx.components.silver.family import run_family

    args = dict(granularity=granularity, start=start, end=end, run_id=run_id, session=session)
    return run_family("volatility", bronze, features, **args)
