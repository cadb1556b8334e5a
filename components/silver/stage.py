"""Silver stage entry points: bronze bars -> one feature table per family.

Intraday bars go through :func:`spx.components.bronze.sessions.prepare_bars` first (regular session only
by default; the overnight gap taken out of the price path), so every family sees the same bars.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from spx.components.bronze.market import bar_interval, read_bronze
from spx.components.bronze.sessions import prepare_bars
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.core.storage import ObjectStore

FAMILIES: dict[str, Callable[[pd.DataFrame, pd.Timedelta, float], pd.DataFrame]] = {
    "technical": lambda bars, bar, ppy: technical_features(bars),
    "microstructure": lambda bars, bar, ppy: microstructure_features(bars),
    "volatility": lambda bars, bar, ppy: volatility_features(bars, bar, bars_per_year=ppy),
}


def build_silver(
    store: ObjectStore,
    *,
    family: str,
    bronze_prefix: str,
    granularity: str,
    start: str,
    end: str,
    run_id: str,
    session: str = "regular",
    progress: Callable[[str], None] = print,
) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown silver family {family!r}: {sorted(FAMILIES)}")
    bars = read_bronze(store, bronze_prefix, granularity=granularity, start=start or None, end=end or None)
    bar = bar_interval(granularity)
    prepared = prepare_bars(bars, bar, session or "regular")
    feats = FAMILIES[family](prepared.bars, bar, prepared.bars_per_year)
    uri = store.put_parquet(f"silver/{run_id}/{family}.parquet", feats).uri
    if family == "microstructure":
        from spx.components.silver.microstructure import spread_sources

        progress(f"silver/{family}: {spread_sources(prepared.bars)}")
    progress(
        f"silver/{family}: {len(feats)} rows x {feats.shape[1] - 1} features "
        f"({len(bars) - len(prepared.bars)} bars outside the {prepared.session_mode} session left out) -> {uri}"
    )
    return uri
