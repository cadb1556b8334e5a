"""Microstructure proxies from bars: spread, illiquidity, price impact, order-flow imbalance, depth.

Quoted spread uses bid/ask when the data has them (OANDA ``price=MBA``); otherwise the
Corwin-Schultz (2012) high-low estimator over two consecutive bars. All windows are trailing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = 20
_K = 3.0 - 2.0 * np.sqrt(2.0)


def corwin_schultz_spread(high: pd.Series, low: pd.Series) -> pd.Series:
    """Corwin-Schultz bid-ask spread estimate for the 2-bar window ending at each bar (clipped at 0)."""
    hl = np.log(high / low) ** 2
    beta = hl + hl.shift(1)
    gamma = np.log(np.maximum(high, high.shift(1)) / np.minimum(low, low.shift(1))) ** 2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
    spread = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    return spread.clip(lower=0.0)


def roll_spread(close: pd.Series, window: int = WINDOW) -> pd.Series:
    """Roll (1984) effective spread: 2*sqrt(-cov(dp_t, dp_{t-1})), 0 when the covariance is positive."""
    dp = close.diff()
    cov = dp.rolling(window).cov(dp.shift(1))
    return (2.0 * np.sqrt((-cov).clip(lower=0.0))) / close


def microstructure_features(bars: pd.DataFrame, window: int = WINDOW) -> pd.DataFrame:
    c, h, l, o, v = (bars[k].astype(float) for k in ("close", "high", "low", "open", "volume"))
    ret = np.log(c).diff()
    f = pd.DataFrame(index=bars.index)
    f["timestamp"] = bars["timestamp"]
    if {"bid", "ask"} <= set(bars.columns) and bars[["bid", "ask"]].notna().all().all():
        mid = (bars["bid"] + bars["ask"]) / 2.0
        f["spread"] = (bars["ask"] - bars["bid"]) / mid
        f["spread_source_quoted"] = 1.0
    else:
        f["spread"] = corwin_schultz_spread(h, l)
        f["spread_source_quoted"] = 0.0
    f["spread_ma"] = f["spread"].rolling(window).mean()
    f["roll_spread"] = roll_spread(c, window)
    dollar_volume = c * v
    with np.errstate(divide="ignore", invalid="ignore"):
        amihud = ret.abs() / dollar_volume.replace(0.0, np.nan)
    amihud_ma = amihud.rolling(window).mean()
    f["amihud_illiquidity_log"] = np.log(amihud_ma.where(amihud_ma > 0))
    # Kyle-lambda style price impact: slope of returns on signed sqrt volume over the window.
    signed = np.sign(ret).fillna(0.0) * np.sqrt(v)
    cov = ret.rolling(window).cov(signed)
    var = signed.rolling(window).var()
    f["price_impact"] = (cov / var.replace(0.0, np.nan)) * 1e4
    rng = (h - l).replace(0.0, np.nan)
    bar_ofi = ((c - o) / rng).fillna(0.0)  # bulk-volume style: where the bar closed in its range
    f["ofi_bar"] = bar_ofi
    f["ofi_ma"] = bar_ofi.rolling(window).mean()
    signed_vol = np.sign(c.diff()).fillna(0.0) * v  # tick rule
    f["signed_volume_imbalance"] = signed_vol.rolling(window).sum() / v.rolling(window).sum().replace(0.0, np.nan)
    if {"bid_size", "ask_size"} <= set(bars.columns):
        depth = bars["bid_size"] + bars["ask_size"]
        f["quoted_depth_log"] = np.log1p(depth)
        f["depth_imbalance"] = (bars["bid_size"] - bars["ask_size"]) / depth.replace(0.0, np.nan)
    return f
