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
from spx.components.silver.table import lag
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

    ``X`` holds one feature per ROW (``X[j]`` is ``feature_cols[j]``), as gold builds it. The scores are
    computed on a random sample of ``sample`` labelled rows (20,000: a near-perfect rank correlation or AUC
    of a leaking feature is near perfect on any sample of that size; tests/spine/test_leakage.py proves a
    feature equal to a future label is refused on the real minute data, where the sample is drawn).
    Raises :class:`LeakageError` naming the features at or above ``max_rank_corr``."""
    worst: dict[str, float] = {}
    suspects: list[str] = []
    n_feat = X.shape[0]
    for h in horizons:
        up_col, ret_col = label_columns(h)
        idx = np.flatnonzero(labels[ret_col].notna().to_numpy())
        if len(idx) < 50:
            continue
        if len(idx) > sample:
            idx = np.sort(np.random.default_rng(seed).choice(idx, sample, replace=False))
        y_up = labels[up_col].to_numpy()[idx] > 0.5
        n_pos, n_neg = int(y_up.sum()), int((~y_up).sum())
        # ranks of every feature at once (ties broken by order: fine for a near-perfect test)
        ranks = np.empty((n_feat + 1, len(idx)))
        order = np.nan_to_num(X[:, idx]).argsort(axis=1, kind="stable")
        np.put_along_axis(ranks[:-1], order, np.arange(len(idx), dtype=float)[None, :], axis=1)  # inverse
        ranks[-1] = stats.rankdata(labels[ret_col].to_numpy()[idx])
        centred = ranks - ranks.mean(axis=1, keepdims=True)
        norms = np.sqrt((centred**2).sum(axis=1))
        constant = norms[:-1] == 0
        rho = np.abs(centred[:-1] @ centred[-1]) / np.where(constant, 1.0, norms[:-1] * norms[-1])
        if n_pos and n_neg:
            auc = (ranks[:-1, y_up] + 1).sum(axis=1) / (n_pos * n_neg) - (n_pos + 1) / (2 * n_neg)
        else:
            auc = np.full(n_feat, 0.5)
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


def return_features(bars: pd.DataFrame, gap_open: bool = True) -> dict[str, np.ndarray]:
    """Lagged log returns in % (float64 columns by name)."""
    logc = np.log(bars["close"].to_numpy(np.float64))
    f: dict[str, np.ndarray] = {}
    for k in RETURN_LAGS:
        f[f"ret_{k}"] = (logc - lag(logc, k)) * 100.0
    f["ret_1_lag1"] = lag(f["ret_1"], 1)
    f["ret_1_lag2"] = lag(f["ret_1"], 2)
    if gap_open:  # daily bars: open vs previous close (intraday: the session gap, see session_features)
        f["gap_open"] = (np.log(bars["open"].to_numpy(np.float64)) - lag(logc, 1)) * 100.0
    return f


def session_features(prepared) -> dict[str, np.ndarray]:
    """The overnight gap as its own feature, the first bar of a session, minutes left to the close."""
    return {
        "session_gap": prepared.session_gap,
        "session_first_bar": prepared.first_bar,
        "mins_to_close": prepared.minutes_to_close,
    }


DAY_NS = 86_400_000_000_000
MINUTE_NS = 60_000_000_000


def time_features(ts: pd.Series, bar: pd.Timedelta) -> dict[str, np.ndarray]:
    """Calendar/session features of the bar close, in New York time (the cash session's clock).

    One time-zone conversion (UTC -> New York wall clock, as int64 nanoseconds); the fields are integer
    arithmetic on it (day number -> weekday, numpy's calendar months -> month and day of month)."""
    local = pd.DatetimeIndex(ts).tz_convert("America/New_York").tz_localize(None).asi8
    days = local // DAY_NS
    f: dict[str, np.ndarray] = {"dow": ((days + 3) % 7).astype(float)}  # 1970-01-01 was a Thursday (3)
    day = days.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    f["month"] = (month.astype(np.int64) % 12 + 1).astype(float)
    f["day_of_month"] = ((day - month.astype("datetime64[D]")).astype(np.int64) + 1).astype(float)
    if bar < pd.Timedelta(days=1):
        minutes = (local - days * DAY_NS) // MINUTE_NS
        f["minute_of_day"] = minutes.astype(float)
        f["mins_since_cash_open"] = (minutes - 570).astype(float)  # 09:30 NY
        f["in_cash_session"] = ((minutes >= 570) & (minutes <= 960)).astype(float)
    return f


VOLUME_FEATURES = (
    "volume_ma_20_log",
    "volume_ratio",
    "volume_zscore",
    "amihud_illiquidity_log",
    "price_impact",
    "signed_volume_imbalance",
)


def empty_features(cols: list[str], n_finite: np.ndarray, bars: pd.DataFrame) -> dict[str, str]:
    """Market features that cannot be computed on these bars, with the reason: the volume family when the
    volume is 0 on every bar (an index: four of them would be NaN on every row, the others constant), and any
    feature with no finite value on any bar."""
    out: dict[str, str] = {}
    volume = bars["volume"].to_numpy(np.float64) if "volume" in bars.columns else np.zeros(len(bars))
    if len(volume) and not (volume > 0).any():
        for col in cols:
            if col in VOLUME_FEATURES:
                out[col] = "volume is 0 on every bar (an index?): the volume family is left out"
    for col, count in zip(cols, n_finite.tolist()):
        if count == 0 and col not in out:
            out[col] = "no finite value on any bar"
    return out


def bars_per_session(prepared) -> int | None:
    """The median number of bars a session (or, with session="all", a trading run) keeps; None for daily bars."""
    runs = prepared.label_session if prepared.label_session is not None else prepared.session
    if runs is None or not len(runs):
        return None
    return int(np.median(np.bincount(np.unique(runs, return_inverse=True)[1])))


def label_breaks(prepared, cross_close: bool) -> str:
    """What a label window may not cross, in words (the manifest records it)."""
    if prepared.session is None and prepared.label_session is None:
        return "none (daily bars: each label spans h sessions)"
    if cross_close:
        return "none (--label-cross-close: windows run into the next session, overnight moves included)"
    if prepared.session is not None:
        return "the regular session's close"
    from spx.components.bronze.sessions import HALT

    return f"a trading halt (a pause of {int(HALT / pd.Timedelta(minutes=1))} minutes or two bars between bars)"


def no_label_message(horizons: list[int], prepared, cross_close: bool) -> str:
    per = bars_per_session(prepared)
    where = "session" if prepared.session is not None else "trading run"
    if per is None or cross_close:
        return (
            f"gold: no row has a label for horizon(s) {horizons}: the data holds {len(prepared.close)} bars — "
            "use a shorter horizon or more data"
        )
    fit = max(0, per - 2)
    return (
        f"gold: no row has a label for horizon(s) {horizons} bars: a label needs h + 2 bars in one {where} (the "
        f"bar, the next one, h more) and these {where}s keep {per} bars (median) — use horizons of at most {fit} "
        "bars (--horizon-short/--horizon-long), or --label-cross-close"
    )


def _ffill(x: np.ndarray) -> None:
    """Forward-fill NaNs in place (from the past only); leading NaNs stay."""
    missing = np.isnan(x)
    src = np.where(missing, 0, np.arange(len(x)))
    np.maximum.accumulate(src, out=src)
    x[:] = x[src]


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

    Feature columns are float32 (one block, filled column by column: no pandas intermediates; the values
    are computed in float64), labels float64.
    """
    prepared = prepared if prepared is not None else prepare_bars(bars, bar, session)
    bars = prepared.bars
    ts = bars["timestamp"].array  # DatetimeArray (UTC): compared and sliced without boxing Timestamps
    ts_ns = ts.asi8
    n = len(ts)
    seen: set[str] = set()
    feature_cols: list[str] = []
    for table in silver:
        if "timestamp" not in table.columns:
            raise DataValidationError("silver table without a timestamp column")
        if len(table) != n or not np.array_equal(pd.DatetimeIndex(table["timestamp"]).asi8, ts_ns):
            raise DataValidationError("silver tables are not aligned with the bronze bars")
        cols = [c for c in table.columns if c != "timestamp"]
        dup = seen & set(cols)
        if dup:
            raise DataValidationError(f"duplicate feature names across silver tables: {sorted(dup)}")
        seen |= set(cols)
        feature_cols += cols
    derived = [return_features(bars, gap_open=prepared.session is None), time_features(ts, bar)]
    if prepared.session is not None:
        derived.append(session_features(prepared))
    for part in derived:
        feature_cols += list(part)
    news_cols: list[str] = []
    if news is not None and not news.empty:
        news_cols = [c for c in news.columns if c.startswith("news_")]
        feature_cols += news_cols
    n_market = len(feature_cols) - len(news_cols)  # news columns come last
    # one float32 block, one feature per row (pandas keeps it as the frame's single block)
    X = np.empty((len(feature_cols), n), dtype=np.float32)
    sources = [(table, c) for table in silver for c in table.columns if c != "timestamp"]
    sources += [(part, c) for part in derived for c in part]
    sources += [(news, c) for c in news_cols]
    has_nan = np.zeros(len(feature_cols), dtype=bool)
    n_finite = np.zeros(len(feature_cols), dtype=np.int64)
    for j, (source, col) in enumerate(sources):
        values = source[col]
        if isinstance(values, pd.Series):  # numpy-backed columns convert without a copy; nullable ones with NaN
            numeric = isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiub"
            values = values.to_numpy() if numeric else values.to_numpy(dtype=np.float64, na_value=np.nan)
        row = X[j]
        row[:] = values
        finite = np.isfinite(row)
        n_finite[j] = int(finite.sum())
        if n_finite[j] < n:
            row[np.isinf(row)] = np.nan
            has_nan[j] = True
    dropped = empty_features(feature_cols[:n_market], n_finite[:n_market], bars)
    if dropped:  # a family that cannot be computed on these bars (no volume: an index) is left out, by name
        keep_cols = np.array([c not in dropped for c in feature_cols])
        X, has_nan = X[keep_cols], has_nan[keep_cols]
        feature_cols = [c for c in feature_cols if c not in dropped]
        n_market -= len(dropped)
    if not feature_cols:
        raise DataValidationError("gold: no feature can be computed on these bars")
    complete = np.ones(n, dtype=bool)  # rows without a NaN in any market feature
    for j in np.flatnonzero(has_nan[:n_market]):
        complete &= np.isfinite(X[j])
    first_valid = int(np.argmax(complete)) if complete.any() else n
    X, ts = X[:, first_valid:], ts[first_valid:]
    label_runs = prepared.label_session if prepared.label_session is not None else prepared.session
    labels = make_labels(prepared.close, horizons, session=label_runs, cross_close=label_cross_close)
    labels = labels.iloc[first_valid:].reset_index(drop=True)
    nan_cols = [j for j in np.flatnonzero(has_nan) if np.isnan(X[j]).any()]
    if nan_cols:  # NaNs after warm-up (e.g. zero-range bars): fill from the past only, column by column
        bad = np.zeros(X.shape[1], dtype=bool)
        for j in nan_cols:
            _ffill(X[j])
            bad |= np.isnan(X[j])
        if bad.any():
            keep = ~bad
            X, ts, labels = X[:, keep], ts[keep], labels[keep].reset_index(drop=True)
    if X.shape[1] == 0:
        raise DataValidationError(
            f"gold: no row is left after the indicators' warm-up: the {n} bars in the "
            f"{prepared.session_mode} session are fewer than the longest window needs (about 300 bars: the "
            "volatility rank looks 252 bars back) — give the run more data (--start/--end)"
        )
    unlabelled = [h for h in horizons if not labels[label_columns(h)[0]].notna().any()]
    if unlabelled:
        raise DataValidationError(no_label_message(unlabelled, prepared, label_cross_close))
    leak_scores = leakage_check(X, feature_cols, labels, list(horizons), max_rank_corr=leak_max_rank_corr)
    gold = pd.DataFrame(X.T, columns=feature_cols, copy=False)  # the float32 block itself, no copy
    gold.insert(0, "timestamp", ts)
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
        "label_breaks": label_breaks(prepared, label_cross_close),
        "dropped_features": dropped,
        "bars_per_year": prepared.bars_per_year,
        "leak_max_abs_rank_corr": max(leak_scores.values(), default=0.0),
    }
    return gold, manifest
