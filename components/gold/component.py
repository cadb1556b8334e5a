"""KFP component: gold feature table and labels."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Output

from spx.core.component import spx_component


@spx_component
def gold_features(
    market: Input[Dataset],
    technical: Input[Dataset],
    microstructure: Input[Dataset],
    volatility: Input[Dataset],
    news: Input[Dataset],
    granularity: str,
    start: str,
    end: str,
    horizons: list,
    instrument: str,
    run_id: str,
    news_delay_minutes: int,
    gold: Output[Dataset],
    session: str = "regular",
    label_cross_close: bool = False,
) -> NamedTuple("GoldOutputs", [("gold_uri", str), ("manifest_uri", str)]):
    """Merge silver (+ news signals as-of), add time/return features and labels.

    Inputs are the bronze and silver tables as typed Datasets (manifests, ``spx.core.artifacts``); ``gold`` is
    the gold table as one, with its manifest's facts (rows, features, labels, news) as metadata. The URIs of
    the table and of its ``manifest.json`` are also returned (Feast reads them)."""
    from collections import namedtuple

    from spx.components.gold.stage import build_gold_stage
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    gold_uri, manifest_uri = build_gold_stage(
        store,
        bronze_prefix=table_uri(market),
        silver_uris=[table_uri(technical), table_uri(microstructure), table_uri(volatility)],
        news_uri=table_uri(news),
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
    manifest = store.get_json(manifest_uri)
    write_manifest(
        gold,
        {
            **describe_object(store, gold_uri),
            "layer": "gold",
            "run_id": run_id,
            "manifest_uri": manifest_uri,
            "rows": manifest.get("rows"),
            "features": len(manifest.get("feature_columns") or []),
            "news_features": len(manifest.get("news_feature_columns") or []),
            "horizons": manifest.get("horizons"),
            "labelled_rows": manifest.get("labelled_rows"),
            "first_timestamp": manifest.get("first_timestamp"),
            "last_timestamp": manifest.get("last_timestamp"),
        },
    )
    return namedtuple("GoldOutputs", ["gold_uri", "manifest_uri"])(gold_uri, manifest_uri)
