"""Gold: one feature table (market features + time/session + derived returns [+ news]) with labels.

``timestamp`` is the bar END in UTC. Intraday bars are the regular-session bars with the overnight gap
taken out of the price path (:func:`spx.components.bronze.sessions.prepare_bars`); the gap is the feature
``session_gap`` instead, and labels never cross the session close unless ``label_cross_close``.

Leakage guard: a feature whose rank correlation with a label's return (or whose AUC for the label's
direction) is near perfect is a function of a future bar's price; gold refuses it by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from spx.components.bronze.sessions import prepare_bars
from spx.components.gold.labels import label_columns, make_labels
from spx.core.errors import DataValidationError

RETURN_LAGS = (1, 2, 3, 5, 10, 20)
BASE_PREFIXES = (
    "ret_",
    "rsi_",
    "macd",
    "roc_",
    "stoch_",
    "sma_",
    "ema_",
    "bb_",
    "atr_",
    "adx_",
    "volume_",
    "session_gap",
)
LEAK_MAX_RANK_CORR = 0.98  # |Spearman| of a feature with a label's return at or above this: refused
LEAK_SAMPLE = 20_000


class LeakageError(DataValidationError):
    """A feature is (nearly) a function of the future label."""


def leakage_check(
    X: np.ndarray,
    feature_cols: list[str],
    labels: pd.DataFrame,
    horizons: list[int],
    *,
    max_rank_corr: float = LEAK_MAX_RANK_CORR,
    sample: int = LEAK_SAMPLE,
    seed: int = 0,
) -> dict:
    """Max |rank corr| (and AUC distance from 0.5, doubled) of every feature with every label, on a sample.

    Raises :class:`LeakageError` naming the features at or above ``max_rank_corr``."""
    worst: dict[str, float] = {}
    suspects: list[str] = []
    for h in horizons:
        up_col, ret_col = label_columns(h)
        idx = np.flatnonzero(labels[ret_col].notna().to_numpy())
        if len(idx) < 50:
            continue
        if len(idx) > sample:
            idx = np.sort(np.random.default_rng(seed).choice(idx, sample, replace=False))
        y_up = labels[up_col].to_numpy()[idx] > 0.5
        n_pos, n_neg = int(y_up.sum()), int((~y_up).sum())
        # ranks of every column at once (ties broken by order: fine for a near-perfect test)
        ranks = np.empty((len(idx), X.shape[1] + 1))
        ranks[:, :-1] = np.nan_to_num(X[idx]).argsort(axis=0, kind="stable").argsort(axis=0, kind="stable")
        ranks[:, -1] = stats.rankdata(labels[ret_col].to_numpy()[idx])
        centred = ranks - ranks.mean(axis=0)
        norms = np.sqrt((centred**2).sum(axis=0))
        constant = norms[:-1] == 0
        rho = np.abs(centred[:, :-1].T @ centred[:, -1]) / np.where(constant, 1.0, norms[:-1] * norms[-1])
        if n_pos and n_neg:
            auc = (ranks[y_up, :-1] + 1).sum(axis=0) / (n_pos * n_neg) - (n_pos + 1) / (2 * n_neg)
        else:
            auc = np.full(X.shape[1], 0.5)
        score = np.where(constant, 0.0, np.maximum(rho, np.abs(2 * auc - 1)))
        for col, value in zip(feature_cols, score.tolist()):
            worst[col] = max(worst.get(col, 0.0), value)
            if value >= max_rank_corr and col not in suspects:
                suspects.append(col)
    if suspects:
        detail = ", ".join(f"{c} ({worst[c]:.3f})" for c in suspects)
        raise LeakageError(
            f"leakage: feature(s) {detail} are almost a function of a future label "
            f"(|rank corr| or |2 AUC - 1| >= {max_rank_corr}); a feature at bar t may use "
            "bars <= t only — refusing to build gold"
        )
    return worst


def return_features(bars: pd.DataFrame, gap_open: bool = True) -> pd.DataFrame:
    logc = np.log(bars["close"].astype(float))
    f = pd.DataFrame(index=bars.index)
    for k in RETURN_LAGS:
        f[f"ret_{k}"] = (logc - logc.shift(k)) * 100.0
    f["ret_1_lag1"] = f["ret_1"].shift(1)
    f["ret_1_lag2"] = f["ret_1"].shift(2)
    if gap_open:  # daily bars: open vs previous close (intraday: the session gap, see session_features)
        f["gap_open"] = (np.log(bars["open"].astype(float)) - logc.shift(1)) * 100.0
    return f


def session_features(prepared) -> pd.DataFrame:
    """The overnight gap as its own feature, the first bar of a session, minutes left to the close."""
    return pd.DataFrame(
        {
            "session_gap": prepared.session_gap,
            "session_first_bar": prepared.first_bar,
            "mins_to_close": prepared.minutes_to_close,
        },
        index=prepared.bars.index,
    )


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
    session: str = "regular",
    label_cross_close: bool = False,
    leak_max_rank_corr: float = LEAK_MAX_RANK_CORR,
    prepared=None,
) -> tuple[pd.DataFrame, dict]:
    """Merge silver tables on ``timestamp``; add returns, time/session features, labels.

    ``bars`` are the raw bronze bars; silver tables must have been computed on
    ``prepare_bars(bars, bar, session).bars`` (what the silver stage does). ``news`` (optional) is a
    frame already joined as-of to those bars' timestamps (``news_*`` columns). Rows in the indicator
    warm-up (any NaN feature) are dropped; rows at a session's or the data's tail keep NaN labels.
    ``prepared``: ``prepare_bars(bars, bar, session)`` when the caller already has it.
    """
    prepared = prepared if prepared is not None else prepare_bars(bars, bar, session)
    bars = prepared.bars
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
    parts += [return_features(bars, gap_open=prepared.session is None), time_features(ts, bar)]
    if prepared.session is not None:
        parts.append(session_features(prepared))
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
        X[:, j : j + f.shape[1]] = f.to_numpy(dtype=np.float64, na_value=np.nan)
        j += f.shape[1]
    np.copyto(X, np.nan, where=np.isinf(X))
    n_market = sum(1 for c in feature_cols if c not in news_cols)  # news columns come last
    warm = np.isnan(X[:, :n_market]).any(axis=1)
    first_valid = int(np.argmax(~warm)) if (~warm).any() else len(X)
    X, ts = X[first_valid:], ts.iloc[first_valid:].reset_index(drop=True)
    labels = (
        make_labels(prepared.close, horizons, session=prepared.session, cross_close=label_cross_close)
        .iloc[first_valid:]
        .reset_index(drop=True)
    )
    nan_cols = np.flatnonzero(np.isnan(X).any(axis=0))
    if len(nan_cols):  # NaNs after warm-up (e.g. zero-range bars): fill from the past only, column by column
        for j in nan_cols:
            X[:, j] = pd.Series(X[:, j]).ffill().to_numpy()
        bad = np.isnan(X[:, nan_cols]).any(axis=1)
        if bad.any():
            keep = ~bad
            X, ts, labels = X[keep], ts[keep].reset_index(drop=True), labels[keep].reset_index(drop=True)
    leak_scores = leakage_check(X, feature_cols, labels, list(horizons), max_rank_corr=leak_max_rank_corr)
    gold = pd.DataFrame(X, columns=feature_cols, copy=False)  # one float block, no consolidation copy
    gold.insert(0, "timestamp", ts.reset_index(drop=True))
    gold.insert(1, "instrument", instrument)
    for col in labels.columns:
        gold[col] = labels[col].to_numpy()
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
        "timestamp_meaning": "bar end (UTC)",
        "session": prepared.session_mode if prepared.session is not None else "daily",
        "calendar": "XNYS" if prepared.session is not None else None,
        "sessions": int(len(np.unique(prepared.session))) if prepared.session is not None else None,
        "label_cross_close": bool(label_cross_close),
        "bars_per_year": prepared.bars_per_year,
        "leak_max_abs_rank_corr": max(leak_scores.values(), default=0.0),
    }
    return gold, manifest
