"""Silver stage entry points: bronze bars -> one feature table per family."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from spx.components.bronze.market import bar_interval, read_bronze
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.core.storage import ObjectStore

FAMILIES: dict[str, Callable[[pd.DataFrame, pd.Timedelta], pd.DataFrame]] = {
    "technical": lambda bars, bar: technical_features(bars),
    "microstructure": lambda bars, bar: microstructure_features(bars),
    "volatility": lambda bars, bar: volatility_features(bars, bar),
}


def build_silver(store: ObjectStore, *, family: str, bronze_prefix: str, granularity: str, start: str,
                 end: str, run_id: str, progress: Callable[[str], None] = print) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown silver family {family!r}: {sorted(FAMILIES)}")
    bars = read_bronze(store, bronze_prefix, granularity=granularity, start=start or None, end=end or None)
    feats = FAMILIES[family](bars, bar_interval(granularity))
    uri = store.put_parquet(f"silver/{run_id}/{family}.parquet", feats).uri
    progress(f"silver/{family}: {len(feats)} rows x {feats.shape[1] - 1} features -> {uri}")
    return uri
