"""Real bars for the spine tests: slices of the bundled daily S&P 500."""

from __future__ import annotations

import functools

import pandas as pd

from spx.components.bronze.market import load_bundled_daily


@functools.lru_cache(maxsize=1)
def _bundled() -> pd.DataFrame:
    return load_bundled_daily()


def real_bars(n: int | None = None, start: int = 0) -> pd.DataFrame:
    df = _bundled()
    end = None if n is None else start + n
    return df.iloc[start:end].reset_index(drop=True).copy()
