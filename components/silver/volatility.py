"""Volatility estimators over trailing windows, annualised with the real number of bars a year.

Intraday: ``bars_per_year`` comes from the exchange calendar (252 sessions x the session's real length
in bars — 390 one-minute bars on a regular NYSE day), see :mod:`spx.components.bronze.sessions`. Without
it, intraday bars are assumed to trade ~23 h a day (index CFDs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOWS = (20, 50)
RANK_WINDOW = 252


def periods_per_year(bar: pd.Timedelta, bars_per_year: float | None = None) -> float:
    if bars_per_year:
        return float(bars_per_year)
    if bar >= pd.Timedelta(days=1):
        return 252.0 / (bar / pd.Timedelta(days=1))
    return 252.0 * (pd.Timedelta(hours=23) / bar)  # index CFDs trade ~23h a day


def _rolling_rank_pct(x: pd.Series, window: int) -> pd.Series:
    """Share of the trailing window (including t) at or below x_t — uses the past only."""
    return x.rolling(window, min_periods=window).rank(pct=True)


def volatility_features(
    bars: pd.DataFrame, bar: pd.Timedelta, window: int = 20, bars_per_year: float | None = None
) -> pd.DataFrame:
    o, h, l, c = (np.log(bars[k].astype(float)) for k in ("open", "high", "low", "close"))
    ann = np.sqrt(periods_per_year(bar, bars_per_year))
    ret = c.diff()
    f = pd.DataFrame(index=bars.index)
    f["timestamp"] = bars["timestamp"]
    for w in WINDOWS:
        f[f"hv_{w}"] = ret.rolling(w).std() * ann
    hl, co = h - l, c - o
    f["vol_parkinson"] = np.sqrt((hl**2).rolling(window).mean() / (4.0 * np.log(2.0))) * ann
    gk = 0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2
    f["vol_garman_klass"] = np.sqrt(gk.rolling(window).mean().clip(lower=0.0)) * ann
    rs = (h - c) * (h - o) + (l - c) * (l - o)
    f["vol_rogers_satchell"] = np.sqrt(rs.rolling(window).mean().clip(lower=0.0)) * ann
    overnight = o - c.shift(1)
    k = 0.34 / (1.34 + (window + 1) / (window - 1))
    yz = overnight.rolling(window).var() + k * co.rolling(window).var() + (1 - k) * rs.rolling(window).mean()
    f["vol_yang_zhang"] = np.sqrt(yz.clip(lower=0.0)) * ann
    f["range_pct"] = np.exp(hl) - 1.0
    f["range_ma"] = f["range_pct"].rolling(window).mean()
    f["vol_ratio_20_50"] = f["hv_20"] / f["hv_50"]
    f["vol_pct_rank"] = _rolling_rank_pct(f["hv_20"], RANK_WINDOW)
    return f
