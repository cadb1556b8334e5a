"""Exchange sessions for intraday bars (the NYSE calendar from ``exchange_calendars``).

Time stamps: every bar in bronze, silver and gold is stamped with its **end** (the 09:30–09:31 New
York bar is stamped 09:31), as timezone-aware UTC. A bar belongs to the regular session of day ``d``
when ``open(d) < end <= close(d)`` and it starts at or after the open; ``open``/``close`` come from
the calendar (09:30–16:00 America/New_York, 13:00 on half days, no session on holidays).

:func:`prepare_bars` is what silver and gold run on the bronze bars:

* only regular-session bars are kept (``session="regular"``, the default; ``"all"`` keeps every bar);
* the overnight gap is taken out of the price path: each session's prices are rescaled so that its
  first bar opens at the previous session's last close (a constant factor per session, known from
  the session's first bar on — causal). One-bar returns, rolling volatilities, ranges and indicators
  computed on these prices therefore never treat the overnight move as one minute's move;
* the gap itself becomes a feature of its own (``session_gap``, % log return from the previous
  session's last close to this session's first open, known from the first bar on);
* the bars-per-year used to annualise volatility and Sharpe ratios is the calendar's real session
  length (390 one-minute bars on a full day, 210 on a half day), not 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from spx.core.choices import SESSIONS
from spx.core.errors import DataValidationError

CALENDAR = "XNYS"

SESSIONS_PER_YEAR = 252.0


@lru_cache(maxsize=16)
def _schedule(calendar: str, first: str, last: str) -> pd.DataFrame:
    import exchange_calendars as xcals

    cal = xcals.get_calendar(calendar, start=first, end=last)
    return cal.schedule[["open", "close"]].copy()


def schedule(calendar: str, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """Sessions (index: session date; ``open``, ``close`` in UTC) covering [first, last]."""
    # whole years, so that every slice of the same data shares one cached calendar
    lo = pd.Timestamp(first).tz_convert(None).normalize() - pd.Timedelta(days=7)
    hi = pd.Timestamp(last).tz_convert(None).normalize() + pd.Timedelta(days=7)
    return _schedule(calendar, f"{lo.year}-01-01", f"{hi.year}-12-31")


def locate(
    ts: pd.Series | pd.DatetimeIndex, bar: pd.Timedelta, calendar: str = CALENDAR
) -> tuple[np.ndarray, pd.DataFrame]:
    """Session number (row of the schedule) of each bar-end stamp, -1 outside the regular session."""
    idx = pd.DatetimeIndex(ts)
    sched = schedule(calendar, idx.min(), idx.max())
    opens = sched["open"].values.astype("datetime64[ns]").view("i8")
    closes = sched["close"].values.astype("datetime64[ns]").view("i8")
    t = idx.tz_convert("UTC").asi8
    pos = np.searchsorted(opens, t, side="left") - 1  # last open strictly before the bar end
    ok = pos >= 0
    safe = np.clip(pos, 0, len(opens) - 1)
    ok &= (t <= closes[safe]) & (t - bar.value >= opens[safe])
    return np.where(ok, safe, -1), sched


def bars_per_year(sched: pd.DataFrame, used: np.ndarray, bar: pd.Timedelta) -> float:
    """252 sessions a year times the mean calendar length (in bars) of the sessions in the data."""
    used = np.unique(used[used >= 0])
    if not len(used):
        return SESSIONS_PER_YEAR * (pd.Timedelta(minutes=390) / bar)
    length = (sched["close"].iloc[used] - sched["open"].iloc[used]).dt.total_seconds().to_numpy()
    return float(SESSIONS_PER_YEAR * length.mean() / bar.total_seconds())


def is_intraday(bar: pd.Timedelta) -> bool:
    return bar < pd.Timedelta(days=1)


HALT = pd.Timedelta(minutes=60)  # a pause this long (or of two bars, whichever is longer) ends a trading run


def halt_gap(bar: pd.Timedelta) -> pd.Timedelta:
    return max(HALT, 2 * bar)


def trading_runs(ts: pd.Series | pd.DatetimeIndex, bar: pd.Timedelta) -> np.ndarray:
    """Run number of each bar with ``session="all"``: a new run starts after a pause of :func:`halt_gap` or more
    between two bar ends (a future's daily halt, the weekend, the night between two extended-hours days)."""
    t = pd.DatetimeIndex(ts).asi8
    if not len(t):
        return np.zeros(0, dtype=np.int64)
    return np.r_[0, np.cumsum(np.diff(t) >= halt_gap(bar).value)].astype(np.int64)


@dataclass
class PreparedBars:
    """Bars ready for features: ``bars`` (session-filtered, overnight gap taken out of OHLC),
    ``close`` (the real closes, for labels), and per-bar session facts (intraday only)."""

    bars: pd.DataFrame
    close: pd.Series
    session: np.ndarray | None  # session number per bar (None for daily bars)
    session_gap: np.ndarray | None  # % log gap prev close -> this session's first open
    first_bar: np.ndarray | None  # 1.0 on the first bar of a session
    minutes_to_close: np.ndarray | None
    bars_per_year: float
    session_mode: str
    # the runs of bars a label may not leave (labels never cross their end unless asked): the regular sessions,
    # or with session="all" the stretches between trading halts (see :func:`trading_runs`); None for daily bars
    label_session: np.ndarray | None = None


def prepare_bars(
    bars: pd.DataFrame, bar: pd.Timedelta, session: str = "regular", calendar: str = CALENDAR
) -> PreparedBars:
    """See the module docstring. Daily bars pass through unchanged (one bar per session)."""
    if session not in SESSIONS:
        raise ValueError(f"session must be one of {SESSIONS}, got {session!r}")
    if not is_intraday(bar):
        bars = bars.reset_index(drop=True)
        ppy = SESSIONS_PER_YEAR / (bar / pd.Timedelta(days=1))
        return PreparedBars(bars, bars["close"].astype(float), None, None, None, None, ppy, session)
    if session == "all":
        # every bar kept, on the clock it trades (index CFDs: ~23 h a day); no session facts, but labels still
        # stop at a trading halt (the daily halt, the weekend) unless asked to cross it
        bars = bars.reset_index(drop=True)
        ppy = SESSIONS_PER_YEAR * (pd.Timedelta(hours=23) / bar)
        runs = trading_runs(bars["timestamp"], bar)
        return PreparedBars(bars, bars["close"].astype(float), None, None, None, None, ppy, session, runs)
    sess, sched = locate(bars["timestamp"], bar, calendar)
    keep = sess >= 0
    if not keep.any():
        raise DataValidationError(
            f"no bar falls in a regular {calendar} session (09:30-16:00 New York, bar-end stamps); "
            f"{describe_stamps(bars, bar, calendar)}"
        )
    kept_all = bool(keep.all())
    sess = sess if kept_all else sess[keep]

    def column(name: str, dtype=None) -> np.ndarray:  # one column of the session bars, numpy, no frame copy
        values = bars[name].array if name == "timestamp" else bars[name].to_numpy(dtype)
        return values if kept_all else values[keep]

    close_raw = column("close", np.float64)
    first = np.r_[True, sess[1:] != sess[:-1]]
    log_o = np.log(column("open", np.float64))
    log_c = np.log(close_raw)
    prev_close = np.r_[np.nan, log_c[:-1]]
    gap_at_first = np.where(first, log_o - prev_close, 0.0)
    gap_at_first[0] = 0.0  # no previous session in the data
    # per-session log factor: cumulative sum of -gap over session starts (causal: known at the open)
    factor = np.exp(np.cumsum(-gap_at_first))
    rescaled = {"open", "high", "low", "close", "bid", "ask"}
    adj = pd.DataFrame(
        {col: column(col, np.float64) * factor if col in rescaled else column(col) for col in bars.columns}
    )
    starts = np.flatnonzero(first)
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(sess)]))
    session_gap = gap_at_first[starts][run] * 100.0
    closes_ns = sched["close"].values.astype("datetime64[ns]").view("i8")[sess]
    mins_to_close = (closes_ns - adj["timestamp"].array.asi8) / 6e10
    return PreparedBars(
        adj,
        pd.Series(close_raw.copy(), name="close"),  # the real closes (labels), not a view of bronze
        sess,
        session_gap,
        first.astype(float),
        mins_to_close.astype(float),
        bars_per_year(sched, sess[starts], bar),
        session,
        sess,
    )


def describe_stamps(bars: pd.DataFrame, bar: pd.Timedelta, calendar: str = CALENDAR) -> str:
    """How many intraday bars fall in the regular session (for error messages)."""
    sess, _ = locate(pd.DatetimeIndex(bars["timestamp"]), bar, calendar)
    return (
        f"{float((sess >= 0).mean()):.0%} of the bars fall in the regular session; market files are checked "
        "against the calendar at ingest (components/bronze/clock.py)"
    )


MAX_MISSING_SESSIONS = 2  # consecutive exchange sessions without a bar that raw data may skip (a vendor's lost day)


def missing_session_runs(
    ts: pd.Series | pd.DatetimeIndex, bar: pd.Timedelta, calendar: str = CALENDAR
) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Runs of consecutive calendar sessions, between the first and the last bar, in which no bar falls:
    ``(first session date, last session date, sessions)``. Holes are counted in missing **sessions**, not in
    days, so weekends, holidays and the exchange's real closures (September 2001, January 2007, October 2012:
    all in the calendar) are never holes. Intraday, a session has a bar when a bar ends in ``(open, close]``;
    daily, when a bar is stamped after the previous session's close and at or before its own (a stamp at the
    close, or at midnight UTC of the session's date)."""
    idx = pd.DatetimeIndex(ts)
    if not len(idx):
        return []
    t = idx.tz_convert("UTC").asi8
    sched = schedule(calendar, idx.min(), idx.max())
    opens = sched["open"].values.astype("datetime64[ns]").view("i8")
    closes = sched["close"].values.astype("datetime64[ns]").view("i8")
    if is_intraday(bar):
        count = np.searchsorted(t, closes, "right") - np.searchsorted(t, opens, "right")
        inside = (closes >= t[0]) & (opens < t[-1])  # sessions from the first bar's to the last bar's
    else:
        hit = np.searchsorted(closes, t, "left")  # the session each daily stamp belongs to
        count = np.bincount(hit[hit < len(closes)], minlength=len(closes))
        inside = (np.arange(len(closes)) >= hit.min()) & (np.arange(len(closes)) <= min(hit.max(), len(closes) - 1))
    missing = inside & (count == 0)
    runs: list[tuple[pd.Timestamp, pd.Timestamp, int]] = []
    if not missing.any():
        return runs
    pos = np.flatnonzero(missing)
    breaks = np.flatnonzero(np.diff(pos) > 1)
    for lo, hi in zip(np.r_[0, breaks + 1], np.r_[breaks, len(pos) - 1]):
        runs.append((sched.index[pos[lo]], sched.index[pos[hi]], int(hi - lo + 1)))
    return runs
