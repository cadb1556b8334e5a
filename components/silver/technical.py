"""Technical indicators (TA-Lib), expressed scale-free so models see stationary inputs.

Every value at bar t uses bars <= t only (TA-Lib indicators are causal recursions/windows). Computed in
float64 (TA-Lib's input), stored as float32 (:mod:`spx.components.silver.table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from spx.components.silver.table import FeatureTable

SMA_EMA_PERIODS = (5, 10, 20, 50)
COLUMNS = [
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "roc_12",
    "stoch_k",
    "stoch_d",
    *(f"{kind}_{p}_ratio" for p in SMA_EMA_PERIODS for kind in ("sma", "ema")),
    "bb_width",
    "bb_pctb",
    "atr_14",
    "adx_14",
    "volume_ma_20_log",
    "volume_ratio",
    "volume_zscore",
]


def technical_features(bars: pd.DataFrame) -> pd.DataFrame:
    o, h, l, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    v = bars["volume"].to_numpy(np.float64)
    f = FeatureTable(bars, COLUMNS)
    f["rsi_14"] = talib.RSI(c, timeperiod=14)
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    f["macd"], f["macd_signal"], f["macd_hist"] = macd / c, signal / c, hist / c
    f["roc_12"] = talib.ROC(c, timeperiod=12)
    slowk, slowd = talib.STOCH(h, l, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0)
    f["stoch_k"], f["stoch_d"] = slowk, slowd
    for p in SMA_EMA_PERIODS:
        f[f"sma_{p}_ratio"] = c / talib.SMA(c, timeperiod=p) - 1.0
        f[f"ema_{p}_ratio"] = c / talib.EMA(c, timeperiod=p) - 1.0
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    width = upper - lower
    f["bb_width"] = width / middle
    with np.errstate(invalid="ignore", divide="ignore"):
        pctb = np.where(width > 0, (c - lower) / width, 0.5)
    pctb[np.isnan(width)] = np.nan
    f["bb_pctb"] = pctb
    f["atr_14"] = talib.ATR(h, l, c, timeperiod=14) / c
    f["adx_14"] = talib.ADX(h, l, c, timeperiod=14)
    vma = talib.SMA(v, timeperiod=20)
    vstd = talib.STDDEV(v, timeperiod=20, nbdev=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f["volume_ma_20_log"] = np.log1p(vma)
        f["volume_ratio"] = np.where(vma > 0, v / vma, np.nan)
        zscore = np.where(vstd > 0, (v - vma) / vstd, 0.0)
    zscore[np.isnan(vstd)] = np.nan
    f["volume_zscore"] = zscore
    return f.frame()
