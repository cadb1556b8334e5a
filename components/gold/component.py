"""KFP component: gold feature table and labels."""

from typing import NamedTuple

from spx.core.component import spx_component


@spx_component
def gold_features(
    bronze_prefix: str,
    technical_uri: str,
    microstructure_uri: str,
    volatility_uri: str,
    news_uri: str,
    granularity: str,
    start: str,
    end: str,
    horizons: list,
    instrument: str,
    run_id: str,
    news_delay_minutes: int,
    session: str = "regular",
    label_cross_close: bool = False,
) -> NamedTuple("GoldOutputs", [("gold_uri", str), ("manifest_uri", str)]):
    """Merge silver (+ news signals as-of), add time/return features and labels."""
    from collections import namedtuple

    from spx.components.gold.stage import build_gold_stage
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    gold_uri, manifest_uri = build_gold_stage(
        ObjectStore(),
        bronze_prefix=bronze_prefix,
        silver_uris=[technical_uri, microstructure_uri, volatility_uri],
        news_uri=news_uri,
        granularity=granularity,
        start=start,
        end=end,
        horizons=[int(float(h)) for h in horizons],
        instrument=instrument,
        run_id=run_id,
        news_delay_minutes=news_delay_minutes,
        session=session,
        label_cross_close=label_cross_close,
        progress=stage_logging("spx.gold").info,
    )
    return namedtuple("GoldOutputs", ["gold_uri", "manifest_uri"])(gold_uri, manifest_uri)
