"""Synthetic one-minute bars for benchmarks, bootstrapped from the REAL bundled SPY minute bars.

The regular-session bars of ``spy_m1_2011q1`` (16,770 real one-minute bars, Jan + Mar 2011) are
resampled with replacement: each synthetic bar takes one real bar's close-to-close log return, its
high/low range and open offset relative to its close, and its volume (jointly, from the same real bar);
each session's first bar opens with a real overnight gap (bootstrapped from the 42 real ones). Time
stamps are real NYSE regular-session bar ends (09:31..16:00 New York, half days 13:00, no holidays),
going back from 2011 as far as the requested number of bars needs. The bars are therefore synthetic —
realistic in scale and calendar, not a market history — and are used for speed/memory figures only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NOTE = (
    "synthetic 1-minute bars: bootstrapped real SPY one-minute returns/ranges/volumes (spy_m1_2011q1, "
    "regular session) on real NYSE session time stamps; speed figures only"
)


def _real_minute_bars() -> pd.DataFrame:
    from spx.components.bronze.datasets import get_dataset
    from spx.components.bronze.sessions import prepare_bars

    bars = pd.read_parquet(get_dataset("spy_m1_2011q1").path())
    return prepare_bars(bars, pd.Timedelta(minutes=1))


def session_stamps(n: int, last_day: str = "2011-03-31") -> pd.DatetimeIndex:
    """The last ``n`` regular-session one-minute bar ends up to ``last_day`` (NYSE calendar)."""
    import exchange_calendars as xcals

    years = int(np.ceil(n / (252 * 390))) + 1
    first = pd.Timestamp(last_day) - pd.DateOffset(years=years)
    sched = xcals.get_calendar("XNYS", start=first.strftime("%Y-%m-%d"), end=last_day).schedule
    opens = sched["open"].values.astype("datetime64[m]").astype(np.int64)
    closes = sched["close"].values.astype("datetime64[m]").astype(np.int64)
    lengths = closes - opens
    starts = np.repeat(opens, lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    minutes = starts + offsets + 1  # bar ends: open+1 .. close
    return pd.DatetimeIndex(minutes[-n:].astype("datetime64[m]").astype("datetime64[ns]"), tz="UTC")


def minute_bars(n: int, seed: int = 0) -> pd.DataFrame:
    prepared = _real_minute_bars()
    real = prepared.bars  # gap-adjusted real bars: within-session moves only
    logc = np.log(real["close"].to_numpy())
    first = prepared.first_bar.astype(bool)
    ret = np.diff(logc, prepend=np.nan)
    ok = ~first & np.isfinite(ret)
    ret, close_r = ret[ok], real["close"].to_numpy()[ok]
    hi_off = np.log(real["high"].to_numpy()[ok] / close_r)
    lo_off = np.log(real["low"].to_numpy()[ok] / close_r)
    open_off = np.log(real["open"].to_numpy()[ok] / close_r)
    volume = real["volume"].to_numpy()[ok]
    gaps = prepared.session_gap[first][1:] / 100.0
    ret, gaps = ret - ret.mean(), gaps - gaps.mean()  # no drift: a price level that stays realistic

    ts = session_stamps(n)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ret), size=n)
    r = ret[pick].copy()
    ny = ts.tz_convert("America/New_York")
    day = ny.normalize()
    session_first = np.r_[True, day[1:] != day[:-1]]
    gap = np.zeros(n)
    gap[session_first] = rng.choice(gaps, size=int(session_first.sum()))
    gap[0] = 0.0
    close = 130.0 * np.exp(np.cumsum(r + gap))
    open_ = close * np.exp(open_off[pick])
    first_idx = np.flatnonzero(session_first)[1:]
    open_[first_idx] = close[first_idx - 1] * np.exp(gap[first_idx])  # the session opens with a real gap
    high = np.maximum(close * np.exp(hi_off[pick]), np.maximum(open_, close))
    low = np.minimum(close * np.exp(lo_off[pick]), np.minimum(open_, close))
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume[pick]}
    )
