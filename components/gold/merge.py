"""Gold: one feature table (market features + time/session + derived returns [+ news]) with labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spx.core.errors import DataValidationError
from spx.components.gold.labels import label_columns, make_labels

RETURN_LAGS = (1, 2, 3, 5, 10, 20)
BASE_PREFIXES = ("ret_", "rsi_", "macd", "roc_", "stoch_", "sma_", "ema_", "bb_", "atr_", "adx_", "volume_")


def return_features(bars: pd.DataFrame) -> pd.DataFrame:
    logc = np.log(bars["close"].astype(float))
    f = pd.DataFrame(index=bars.index)
    for k in RETURN_LAGS:
        f[f"ret_{k}"] = (logc - logc.shift(k)) * 100.0
    f["ret_1_lag1"] = f["ret_1"].shift(1)
    f["ret_1_lag2"] = f["ret_1"].shift(2)
    f["gap_open"] = (np.log(bars["open"].astype(float)) - logc.shift(1)) * 100.0
    return f


def time_features(ts: pd.Series, bar: pd.Timedelta) -> pd.DataFrame:
    """Calendar/session features of the bar close, in New York time (the cash session's clock)."""
    ny = pd.DatetimeIndex(ts).tz_convert("America/New_York")
    f = pd.DataFrame(index=ts.index)
    f["dow"] = ny.dayofweek.to_numpy(float)
    f["month"] = ny.month.to_numpy(float)
    f["day_of_month"] = ny.day.to_numpy(float)
    if bar < pd.Timedelta(days=1):
        minutes = ny.hour * 60 + ny.minute
        f["minute_of_day"] = minutes.to_numpy(float)
        f["mins_since_cash_open"] = (minutes - 570).to_numpy(float)  # 09:30 NY
        f["in_cash_session"] = ((minutes >= 570) & (minutes <= 960)).astype(float)
    return f


def build_gold(
    bars: pd.DataFrame,
    silver: list[pd.DataFrame],
    *,
    bar: pd.Timedelta,
    horizons: list[int],
    instrument: str,
    news: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Merge silver tables on ``timestamp``; add returns, time features, labels.

    ``news`` (optional) is a frame already joined as-of to the bars' timestamps (``news_*`` columns).
    Rows in the indicator warm-up (any NaN feature) are dropped; rows at the tail keep NaN labels
    (they are the newest rows: served, not trained on).
    """
    ts = bars["timestamp"].reset_index(drop=True)
    ts_ns = ts.values  # datetime64[ns] (UTC) — compares without boxing Timestamps
    parts: list[pd.DataFrame] = [ts.to_frame()]
    seen: set[str] = set()
    for table in silver:
        if "timestamp" not in table.columns:
            raise DataValidationError("silver table without a timestamp column")
        if len(table) != len(bars) or not np.array_equal(table["timestamp"].values, ts_ns):
            raise DataValidationError("silver tables are not aligned with the bronze bars")
        cols = [c for c in table.columns if c != "timestamp"]
        dup = seen & set(cols)
        if dup:
            raise DataValidationError(f"duplicate feature names across silver tables: {sorted(dup)}")
        seen |= set(cols)
        parts.append(table[cols].reset_index(drop=True))
    bars = bars.reset_index(drop=True)
    parts += [return_features(bars), time_features(ts, bar)]
    news_cols: list[str] = []
    if news is not None and not news.empty:
        news_cols = [c for c in news.columns if c.startswith("news_")]
        parts.append(news[news_cols].reset_index(drop=True))
    # one float64 matrix for all features (a single block: no pandas consolidation copies)
    frames = parts[1:]
    feature_cols = [c for f in frames for c in f.columns]
    X = np.empty((len(ts), len(feature_cols)), dtype=np.float64)
    j = 0
    for f in frames:
        X[:, j:j + f.shape[1]] = f.to_numpy(dtype=np.float64, na_value=np.nan)
        j += f.shape[1]
    X[np.isinf(X)] = np.nan
    market = np.array([c not in news_cols for c in feature_cols])
    warm = np.isnan(X[:, market]).any(axis=1)
    first_valid = int(np.argmax(~warm)) if (~warm).any() else len(X)
    X, ts = X[first_valid:], ts.iloc[first_valid:].reset_index(drop=True)
    labels = make_labels(bars["close"].astype(float), horizons).iloc[first_valid:].reset_index(drop=True)
    if np.isnan(X).any():  # NaNs after warm-up (e.g. zero-range bars): fill from the past only
        X = pd.DataFrame(X).ffill().to_numpy()
        keep = ~np.isnan(X).any(axis=1)
        X, ts, labels = X[keep], ts[keep].reset_index(drop=True), labels[keep].reset_index(drop=True)
    gold = pd.concat([ts.to_frame(), pd.Series(instrument, index=ts.index, name="instrument"),
                      pd.DataFrame(X, columns=feature_cols), labels], axis=1)
    base_cols = [c for c in feature_cols if c.startswith(BASE_PREFIXES)]
    manifest = {
        "instrument": instrument,
        "bar_interval": str(bar),
        "horizons": list(horizons),
        "feature_columns": feature_cols,
        "base_feature_columns": base_cols,
        "news_feature_columns": news_cols,
        "label_columns": {str(h): list(label_columns(h)) for h in horizons},
        "rows": int(len(gold)),
        "labelled_rows": {str(h): int(gold[label_columns(h)[0]].notna().sum()) for h in horizons},
        "first_timestamp": str(gold["timestamp"].iloc[0]) if len(gold) else None,
        "last_timestamp": str(gold["timestamp"].iloc[-1]) if len(gold) else None,
    }
    return gold, manifest
