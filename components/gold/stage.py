"""Gold stage entry point: silver tables (+ news signals) -> features.parquet + manifest.json."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from spx.components.bronze.market import bar_interval, read_bronze
from spx.components.gold.merge import build_gold
from spx.core.storage import ObjectStore


def build_gold_stage(store: ObjectStore, *, bronze_prefix: str, silver_uris: list[str], news_uri: str,
                     granularity: str, start: str, end: str, horizons: list[int], instrument: str,
                     run_id: str, news_delay_minutes: int = 0,
                     progress: Callable[[str], None] = print) -> tuple[str, str]:
    bars = read_bronze(store, bronze_prefix, granularity=granularity, start=start or None, end=end or None)
    silver = [store.read_parquet(u) for u in silver_uris]
    news = None
    if news_uri:
        from spx.components.news.join import join_news_features

        signals = store.read_parquet(news_uri)
        news = join_news_features(bars[["timestamp"]], signals,
                                  delay=pd.Timedelta(minutes=news_delay_minutes))
        progress(f"gold: joined {len(signals)} news signal rows as-of (delay {news_delay_minutes} min)")
    else:
        progress("gold: no news signals for this run; training on market features only")
    gold, manifest = build_gold(bars, silver, bar=bar_interval(granularity), horizons=[int(h) for h in horizons],
                                instrument=instrument, news=news)
    manifest.update({"run_id": run_id, "bronze_prefix": bronze_prefix, "silver_uris": silver_uris,
                     "news_uri": news_uri, "granularity": granularity})
    gold_uri = store.put_parquet(f"gold/{run_id}/features.parquet", gold).uri
    manifest_uri = store.put_json(f"gold/{run_id}/manifest.json", manifest).uri
    progress(f"gold: {manifest['rows']} rows x {len(manifest['feature_columns'])} features, "
             f"horizons {manifest['horizons']} -> {gold_uri}")
    return gold_uri, manifest_uri
