"""Microstructure proxies from bars: spread, illiquidity, price impact, order-flow imbalance, depth.

Spread, chosen per bar: the quoted spread on every bar whose bid and ask are both there (OANDA
``price=MBA``, a file's ``bid``/``ask``), the Corwin-Schultz (2012) high-low estimator over two consecutive
bars on the others; ``spread_source_quoted`` says which (1/0) on each bar, and :func:`spread_sources` counts
them for the log. A few bars missing a quote side no longer switch the whole run to the estimate. All windows
are trailing.
Computed in float64 on numpy arrays (pandas' rolling windows), stored as float32
(:mod:`spx.components.silver.table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spx.components.bronze.validation import quoted_bars
from spx.components.silver.table import FeatureTable, lag, rolling, sqrt_pos

WINDOW = 20
_K = 3.0 - 2.0 * np.sqrt(2.0)


def _nan_where_zero(x: np.ndarray) -> np.ndarray:
    return np.where(x == 0.0, np.nan, x)


def _corwin_schultz(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        hl = np.log(high / low) ** 2
        beta = hl + lag(hl)
        gamma = np.log(np.maximum(high, lag(high)) / np.minimum(low, lag(low))) ** 2
        alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _K - np.sqrt(gamma / _K)
        ea = np.exp(alpha)
        spread = 2.0 * (ea - 1.0) / (1.0 + ea)
    return np.where(spread < 0.0, 0.0, spread)  # NaN stays NaN


def _roll(close: np.ndarray, window: int) -> np.ndarray:
    dp = np.diff(close, prepend=np.nan)
    cov = rolling(dp, window).cov(pd.Series(lag(dp), copy=False)).to_numpy()
    with np.errstate(invalid="ignore"):
        return 2.0 * sqrt_pos(-cov) / close


def corwin_schultz_spread(high: pd.Series, low: pd.Series) -> pd.Series:
    """Corwin-Schultz bid-ask spread estimate for the 2-bar window ending at each bar (clipped at 0)."""
    return pd.Series(_corwin_schultz(high.to_numpy(np.float64), low.to_numpy(np.float64)), index=high.index)


def roll_spread(close: pd.Series, window: int = WINDOW) -> pd.Series:
    """Roll (1984) effective spread: 2*sqrt(-cov(dp_t, dp_{t-1})), 0 when the covariance is positive."""
    return pd.Series(_roll(close.to_numpy(np.float64), window), index=close.index)


def spread_sources(bars: pd.DataFrame) -> str:
    """Which spread each bar got, in words (for the silver log)."""
    quoted = quoted_bars(bars)
    if not {"bid", "ask"} <= set(bars.columns):
        return "spread: Corwin-Schultz high-low estimate on every bar (the data has no bid/ask)"
    n, q = len(quoted), int(quoted.sum())
    return (
        f"spread: quoted on {q} of {n} bars ({q / max(n, 1):.2%}), the Corwin-Schultz estimate on the other "
        f"{n - q} (a quote side missing or crossed); spread_source_quoted marks each bar"
    )


def microstructure_features(bars: pd.DataFrame, window: int = WINDOW) -> pd.DataFrame:
    c, h, l, o, v = (bars[k].to_numpy(np.float64) for k in ("close", "high", "low", "open", "volume"))
    quoted = quoted_bars(bars)
    depth_cols = {"bid_size", "ask_size"} <= set(bars.columns)
    names = ["spread", "spread_source_quoted", "spread_ma", "roll_spread", "amihud_illiquidity_log"]
    names += ["price_impact", "ofi_bar", "ofi_ma", "signed_volume_imbalance"]
    names += ["quoted_depth_log", "depth_imbalance"] if depth_cols else []
    f = FeatureTable(bars, names)
    spread = _corwin_schultz(h, l)
    if quoted.any():
        bid, ask = bars["bid"].to_numpy(np.float64), bars["ask"].to_numpy(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.where(quoted, (ask - bid) / ((bid + ask) / 2.0), spread)
    f["spread_source_quoted"] = quoted.astype(np.float64)
    f["spread"] = spread
    f["spread_ma"] = rolling(spread, window).mean().to_numpy()
    f["roll_spread"] = _roll(c, window)
    ret = np.diff(np.log(c), prepend=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        amihud = np.abs(ret) / _nan_where_zero(c * v)
        amihud_ma = rolling(amihud, window).mean().to_numpy()
        f["amihud_illiquidity_log"] = np.log(np.where(amihud_ma > 0, amihud_ma, np.nan))
    # Kyle-lambda style price impact: slope of returns on signed sqrt volume over the window.
    signed = np.nan_to_num(np.sign(ret), nan=0.0) * np.sqrt(v)
    cov = rolling(ret, window).cov(pd.Series(signed, copy=False)).to_numpy()
    var = rolling(signed, window).var().to_numpy()
    f["price_impact"] = (cov / _nan_where_zero(var)) * 1e4
    with np.errstate(divide="ignore", invalid="ignore"):
        bar_ofi = (c - o) / _nan_where_zero(h - l)
    bar_ofi[np.isnan(bar_ofi)] = 0.0
    f["ofi_bar"] = bar_ofi  # bulk-volume style: where the bar closed in its range
    f["ofi_ma"] = rolling(bar_ofi, window).mean().to_numpy()
    signed_vol = np.nan_to_num(np.sign(np.diff(c, prepend=np.nan)), nan=0.0) * v  # tick rule
    with np.errstate(divide="ignore", invalid="ignore"):
        f["signed_volume_imbalance"] = rolling(signed_vol, window).sum().to_numpy() / _nan_where_zero(
            rolling(v, window).sum().to_numpy()
        )
    if depth_cols:
        bid_size, ask_size = bars["bid_size"].to_numpy(np.float64), bars["ask_size"].to_numpy(np.float64)
        depth = bid_size + ask_size
        f["quoted_depth_log"] = np.log1p(depth)
        with np.errstate(divide="ignore", invalid="ignore"):
            f["depth_imbalance"] = (bid_size - ask_size) / _nan_where_zero(depth)
    return f.frame()
