"""Gold stage entry point: silver tables (+ news signals) -> features.parquet + manifest.json."""

from __future__ import annotations

import io
from typing import Callable

import pandas as pd

from spx.components.bronze.market import bar_interval, read_bronze
from spx.components.bronze.sessions import prepare_bars
from spx.components.gold.merge import LEAK_MAX_RANK_CORR, build_gold
from spx.core.storage import ObjectStore


def features_parquet(gold: pd.DataFrame) -> bytes:
    """The gold table as parquet with float64 feature columns (the documented contract; Feast's views are
    Float64): ``build_gold`` keeps features as float32 in memory, arrow widens them column by column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(gold, preserve_index=False)
    wide = [f.with_type(pa.float64()) if pa.types.is_float32(f.type) else f for f in table.schema]
    table = table.cast(pa.schema(wide, metadata=table.schema.metadata))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def build_gold_stage(
    store: ObjectStore,
    *,
    bronze_prefix: str,
    silver_uris: list[str],
    news_uri: str,
    granularity: str,
    start: str,
    end: str,
    horizons: list[int],
    instrument: str,
    run_id: str,
    news_delay_minutes: int = 0,
    session: str = "regular",
    label_cross_close: bool = False,
    leak_max_rank_corr: float = LEAK_MAX_RANK_CORR,
    progress: Callable[[str], None] = print,
) -> tuple[str, str]:
    bars = read_bronze(store, bronze_prefix, granularity=granularity, start=start or None, end=end or None)
    bar = bar_interval(granularity)
    session = session or "regular"
    silver = [store.read_parquet(u) for u in silver_uris]
    prepared = prepare_bars(bars, bar, session)
    news = None
    news_summary = {"signals": 0, "bars_with_news": 0}
    if news_uri:
        from spx.components.news.join import join_news_if_covered

        signals = store.read_parquet(news_uri)
        stamps = prepared.bars[["timestamp"]]
        news, covered = join_news_if_covered(stamps, signals, delay=pd.Timedelta(minutes=news_delay_minutes))
        news_summary = {"signals": int(len(signals)), "bars_with_news": covered}
        if news is None:
            progress(
                f"gold: NO NEWS for these bars — none of the {len(signals)} news signal rows falls in any bar's "
                "window (the news covers other dates) — training on market features only"
            )
        else:
            progress(
                f"gold: joined {len(signals)} news signal rows as-of (delay {news_delay_minutes} min): "
                f"{covered} of {len(news)} bars have at least one article in their window"
            )
    else:
        progress("gold: NO NEWS for this run (no news file or source) — training on market features only")
    gold, manifest = build_gold(
        bars,
        silver,
        bar=bar,
        horizons=[int(h) for h in horizons],
        instrument=instrument,
        news=news,
        session=session,
        label_cross_close=label_cross_close,
        leak_max_rank_corr=leak_max_rank_corr,
        prepared=prepared,
    )
    manifest.update(
        {
            "run_id": run_id,
            "bronze_prefix": bronze_prefix,
            "silver_uris": silver_uris,
            "news_uri": news_uri,
            "granularity": granularity,
            "news": news_summary,
        }
    )
    by_reason: dict[str, list[str]] = {}
    for col, why in (manifest.get("dropped_features") or {}).items():
        by_reason.setdefault(why, []).append(col)
    for why, cols in by_reason.items():
        progress(f"gold: {len(cols)} feature(s) left out, trained without them — {why}: {', '.join(cols)}")
    gold_uri = store.put_bytes(
        f"gold/{run_id}/features.parquet", features_parquet(gold), content_type="application/vnd.apache.parquet"
    ).uri
    manifest_uri = store.put_json(f"gold/{run_id}/manifest.json", manifest).uri
    progress(
        f"gold: {manifest['rows']} rows x {len(manifest['feature_columns'])} features "
        f"({len(manifest['news_feature_columns'])} news), horizons {manifest['horizons']}, "
        f"labelled rows {manifest['labelled_rows']}, session {manifest['session']} -> {gold_uri}"
    )
    return gold_uri, manifest_uri
