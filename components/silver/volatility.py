"""Volatility estimators over trailing windows, annualised with the real number of bars a year.

Intraday: ``bars_per_year`` comes from the exchange calendar (252 sessions x the session's real length
in bars — 390 one-minute bars on a regular NYSE day), see :mod:`spx.components.bronze.sessions`. Without
it, intraday bars are assumed to trade ~23 h a day (index CFDs). Computed in float64 on numpy arrays,
stored as float32 (:mod:`spx.components.silver.table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spx.components.silver.table import FeatureTable, rolling, sqrt_pos

WINDOWS = (20, 50)
RANK_WINDOW = 252
COLUMNS = [
    *(f"hv_{w}" for w in WINDOWS),
    "vol_parkinson",
    "vol_garman_klass",
    "vol_rogers_satchell",
    "vol_yang_zhang",
    "range_pct",
    "range_ma",
    "vol_ratio_20_50",
    "vol_pct_rank",
]
_RANK_CHUNK = 1 << 16  # rows per pass of the rank loop: its operands stay in cache


def periods_per_year(bar: pd.Timedelta, bars_per_year: float | None = None) -> float:
    if bars_per_year:
        return float(bars_per_year)
    if bar >= pd.Timedelta(days=1):
        return 252.0 / (bar / pd.Timedelta(days=1))
    return 252.0 * (pd.Timedelta(hours=23) / bar)  # index CFDs trade ~23h a day


def rolling_rank_pct(x: np.ndarray, window: int) -> np.ndarray:
    """Share of the trailing window (including t) at or below x_t — uses the past only.

    Exactly pandas' ``rolling(window, min_periods=window).rank(pct=True)`` (average rank of ties, NaN when
    the window holds a NaN), in O(n * window) vectorised comparisons instead of a skip list: for each of
    the ``window - 1`` earlier bars, count the bars x_t is above (gt) and at or above (ge); the average
    rank of x_t is then ``(gt + ge) / 2 + 1``."""
    x = np.asarray(x, dtype=np.float64)
    n, out = len(x), np.full(len(x), np.nan)
    m = n - window + 1
    if m <= 0:
        return out
    acc = np.zeros(m, dtype=np.int32)  # gt + ge, at most 2 * (window - 1)
    tmp = np.empty(min(_RANK_CHUNK, m), dtype=bool)
    for a in range(0, m, _RANK_CHUNK):
        b = min(a + _RANK_CHUNK, m)
        target, counts, flag = x[window - 1 + a : window - 1 + b], acc[a:b], tmp[: b - a]
        for k in range(1, window):
            earlier = x[window - 1 - k + a : window - 1 - k + b]
            np.greater(target, earlier, out=flag)
            counts += flag
            np.greater_equal(target, earlier, out=flag)
            counts += flag
    out[window - 1 :] = (acc / 2.0 + 1.0) / window
    nans = np.cumsum(np.isnan(x))
    has_nan = nans[window - 1 :] - np.r_[0, nans[: m - 1]] > 0  # a NaN in the window [t-window+1, t]
    out[window - 1 :][has_nan] = np.nan
    return out


def volatility_features(
    bars: pd.DataFrame, bar: pd.Timedelta, window: int = 20, bars_per_year: float | None = None
) -> pd.DataFrame:
    o, h, l, c = (np.log(bars[k].to_numpy(np.float64)) for k in ("open", "high", "low", "close"))
    ann = np.sqrt(periods_per_year(bar, bars_per_year))
    ret = np.diff(c, prepend=np.nan)
    f = FeatureTable(bars, COLUMNS)
    hv = {w: rolling(ret, w).std().to_numpy() * ann for w in WINDOWS}
    for w in WINDOWS:
        f[f"hv_{w}"] = hv[w]
    hl, co = h - l, c - o
    with np.errstate(invalid="ignore"):
        f["vol_parkinson"] = np.sqrt(rolling(hl**2, window).mean().to_numpy() / (4.0 * np.log(2.0))) * ann
        gk = 0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2
        f["vol_garman_klass"] = sqrt_pos(rolling(gk, window).mean().to_numpy()) * ann
        rs = (h - c) * (h - o) + (l - c) * (l - o)
        rs_mean = rolling(rs, window).mean().to_numpy()
        f["vol_rogers_satchell"] = sqrt_pos(rs_mean) * ann
        overnight = o - np.r_[np.nan, c[:-1]]
        k = 0.34 / (1.34 + (window + 1) / (window - 1))
        yz = rolling(overnight, window).var().to_numpy() + k * rolling(co, window).var().to_numpy() + (1 - k) * rs_mean
        f["vol_yang_zhang"] = sqrt_pos(yz) * ann
    range_pct = np.exp(hl) - 1.0
    f["range_pct"] = range_pct
    f["range_ma"] = rolling(range_pct, window).mean().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        f["vol_ratio_20_50"] = hv[20] / hv[50]
    f["vol_pct_rank"] = rolling_rank_pct(hv[20], RANK_WINDOW)
    return f.frame()
