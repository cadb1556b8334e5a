"""Real-world shapes of market files, built from real bars (nothing here invents a price path).

Sources: the bundled real SPY one-minute bars of January + March 2011 (regular session and sparse extended
hours, bar-END stamps in UTC) and, when ``../shared/data`` is beside the project, the real SPY five-minute
bars of 2018-2020 (regular session only) — read in place, never copied.

Each builder turns real bars into a shape a user may hand to ``spx run --source file``: resampled
(five-minute, hourly on the clock grid or on the session grid), stamped with bar starts, on a New York
wall clock labelled UTC, naive, with the volume zeroed (an index), with quotes that miss a side now and
then, with 23-hour futures-like sessions, with a closing print after 16:00, moved onto the sessions around
a real exchange closure, or cut to a few sessions. What a builder adds that the source does not have
(quotes, the overnight bars of a futures-like session) is said in its docstring.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from spx.components.bronze.datasets import get_dataset, shared_data_dir
from spx.components.bronze.sessions import schedule

NY = "America/New_York"
PRICES = ["open", "high", "low", "close"]


@functools.lru_cache(maxsize=1)
def _minute() -> pd.DataFrame:
    return pd.read_parquet(get_dataset("spy_m1_2011q1").path())


def minute_2011() -> pd.DataFrame:
    """The bundled real SPY one-minute bars (Jan + Mar 2011; regular session + sparse extended hours)."""
    return _minute().copy()


def five_minute_2018_2020() -> pd.DataFrame | None:
    """The real SPY five-minute bars 2018-2020 (regular session) from ../shared/data, or None when absent."""
    shared = shared_data_dir()
    path = None if shared is None else shared / "market" / "spy_m5_2018_2020.parquet"
    if path is None or not path.exists():
        return None
    return pd.read_parquet(path)[["timestamp", "open", "high", "low", "close", "volume"]]


def ny_minutes(ts: pd.Series) -> np.ndarray:
    local = pd.DatetimeIndex(ts).tz_convert(NY)
    return np.asarray(local.hour * 60 + local.minute)


def regular_only(bars: pd.DataFrame, bar: pd.Timedelta = pd.Timedelta(minutes=1)) -> pd.DataFrame:
    """Only the bars that end inside a regular NYSE session (and start at or after its open)."""
    from spx.components.bronze.sessions import locate

    sess, _ = locate(bars["timestamp"], bar)
    return bars[sess >= 0].reset_index(drop=True)


def january(bars: pd.DataFrame) -> pd.DataFrame:
    """January 2011 only (the bundled file has no February: a slice without that hole)."""
    return bars[bars["timestamp"] < "2011-02-01"].reset_index(drop=True)


def resample(bars: pd.DataFrame, rule: str, *, offset: str | None = None, stamp: str = "end") -> pd.DataFrame:
    """OHLCV bars of ``rule`` from bar-END stamped bars, the way vendors aggregate: bins (t - rule, t].
    ``offset="30min"`` puts hourly bins on the session grid (09:30-10:30 ... 15:30-16:00), without it they are on
    the clock grid (09:00-10:00 holds 09:30-10:00 on a regular-only file). ``stamp="end"``: the bin's end, or its
    last bar's end when the data stops earlier (the 15:30-16:00 bar of the session grid is stamped 16:00);
    ``stamp="start"``: the bin's start (09:30, 10:30, ... 15:30)."""
    frame = bars.set_index("timestamp", drop=False).rename(columns={"timestamp": "last_end"})
    agg = frame.resample(rule, closed="right", label="right", offset=offset).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "last_end": "last"}
    )
    agg = agg.dropna(subset=["close"])
    if stamp == "end":
        agg.index = pd.DatetimeIndex(np.minimum(agg.index.asi8, pd.DatetimeIndex(agg["last_end"]).asi8)).tz_localize(
            "UTC"
        )
    else:
        agg.index = agg.index - pd.Timedelta(rule)
    return agg.drop(columns="last_end").rename_axis("timestamp").reset_index()


def start_stamped(bars: pd.DataFrame, bar: pd.Timedelta) -> pd.DataFrame:
    """The same bars stamped with their START (bar end minus one bar)."""
    return bars.assign(timestamp=bars["timestamp"] - bar)


def wall_clock_labelled_utc(bars: pd.DataFrame) -> pd.DataFrame:
    """New York wall-clock readings written with a UTC label (a common export mistake)."""
    wall = bars["timestamp"].dt.tz_convert(NY).dt.tz_localize(None)
    return bars.assign(timestamp=wall.dt.tz_localize("UTC"))


def naive_wall_clock(bars: pd.DataFrame, zone: str = NY) -> pd.DataFrame:
    """Naive stamps: the wall clock of ``zone`` without any zone."""
    return bars.assign(timestamp=bars["timestamp"].dt.tz_convert(zone).dt.tz_localize(None))


def zero_volume(bars: pd.DataFrame) -> pd.DataFrame:
    """An index: regular-session bars only, volume 0 everywhere."""
    return regular_only(bars).assign(volume=0.0)


def with_quotes(bars: pd.DataFrame, *, missing_share: float = 0.0013, seed: int = 0) -> pd.DataFrame:
    """Bid/ask around each real close (half a cent either side, SPY's typical 2011 spread widening with the
    bar's range), with one side missing on ``missing_share`` of the bars — the quote columns are derived, the
    prices are real. ``bid_size``/``ask_size`` follow the bar's volume."""
    rng = np.random.default_rng(seed)
    half = 0.005 + 0.1 * (bars["high"] - bars["low"]).to_numpy() * rng.uniform(0, 1, len(bars))
    close = bars["close"].to_numpy()
    bid, ask = close - half, close + half
    size = np.maximum(1.0, bars["volume"].to_numpy() / 50)
    out = bars.assign(bid=bid, ask=ask, bid_size=size, ask_size=size)
    n_missing = int(round(missing_share * len(bars)))
    if n_missing:
        rows = rng.choice(len(bars), n_missing, replace=False)
        side = rng.integers(0, 2, n_missing)
        out.loc[rows[side == 0], "bid"] = np.nan
        out.loc[rows[side == 1], "ask"] = np.nan
    return out


def futures_like(bars: pd.DataFrame) -> pd.DataFrame:
    """23-hour sessions like an index future's (18:00-17:00 New York, a one-hour halt, closed from Friday 17:00
    to Sunday 18:00): every real bar of the file is kept, and each minute of those 23 hours that has no real
    bar gets a flat bar at the last real close with the median volume of the real extended-hours bars (the
    overnight bars are the only thing made up; the regular session, the open and its volume jump are real)."""
    out = bars.set_index("timestamp")
    sched = schedule("XNYS", out.index.min(), out.index.max())
    sched = sched[(sched["close"] >= out.index.min()) & (sched["open"] <= out.index.max())]
    minutes = []
    for close in sched["close"]:
        day = close.tz_convert(NY).normalize()
        end = day + pd.Timedelta(hours=17)
        start = day - pd.Timedelta(days=1) + pd.Timedelta(hours=18)  # Monday's opens Sunday 18:00
        minutes.append(pd.date_range(start + pd.Timedelta(minutes=1), end, freq="1min").tz_convert("UTC"))
    grid = minutes[0].append(minutes[1:])
    ext = ny_minutes(bars["timestamp"])
    outside = (ext <= 9 * 60 + 30) | (ext > 16 * 60)
    fill_volume = float(np.median(bars.loc[outside, "volume"]))
    full = out.reindex(grid)  # real bars in the halt (17:00-18:00) and at weekends are not part of the sessions
    real = full["close"].notna()
    last = full["close"].ffill().bfill()
    for col in PRICES:
        full[col] = full[col].where(real, last)
    full["volume"] = full["volume"].where(real, fill_volume)
    return full.rename_axis("timestamp").reset_index()


def print_after_close(bars: pd.DataFrame, minutes_after: int = 1, factor: float = 3.0) -> pd.DataFrame:
    """A closing print reported after 16:00: on every session, a bar ``minutes_after`` after the close with
    ``factor`` times the last regular bar's volume, at its close (a late-reported auction print)."""
    sched = schedule("XNYS", bars["timestamp"].min(), bars["timestamp"].max())
    closes = set(sched["close"])
    last = bars[bars["timestamp"].isin(closes)]
    prints = last.assign(
        timestamp=last["timestamp"] + pd.Timedelta(minutes=minutes_after),
        open=last["close"],
        high=last["close"],
        low=last["close"],
        volume=last["volume"] * factor,
    )
    keep = bars[~bars["timestamp"].isin(set(prints["timestamp"]))]
    return pd.concat([keep, prints]).sort_values("timestamp").reset_index(drop=True)


def sessions_of(bars: pd.DataFrame) -> list[pd.Timestamp]:
    """The session dates (New York) that have at least one regular-session bar."""
    from spx.components.bronze.sessions import locate

    sess, sched = locate(bars["timestamp"], pd.Timedelta(minutes=1))
    return list(sched.index[np.unique(sess[sess >= 0])])


def onto_sessions(bars: pd.DataFrame, first_session: str, *, skip_half_days: bool = True) -> pd.DataFrame:
    """Move each real session of ``bars`` (with its extended-hours bars, the bars from the previous close to
    its close) onto the calendar's sessions from ``first_session`` on, in order: every bar keeps its offset
    from its session's open. Used to put real bars around a real exchange closure (the calendar has the
    closure; the bars never see it). Half days of the target are skipped when ``skip_half_days``."""
    src = schedule("XNYS", bars["timestamp"].min(), bars["timestamp"].max())
    src = src[(src["close"] >= bars["timestamp"].min()) & (src["open"] <= bars["timestamp"].max())]
    src = src[(src["close"] - src["open"]) == pd.Timedelta(hours=6, minutes=30)]
    lo = pd.Timestamp(first_session, tz="UTC")
    tgt = schedule("XNYS", lo, lo + pd.Timedelta(days=3 * len(src) + 30))
    tgt = tgt[tgt.index >= pd.Timestamp(first_session)]
    if skip_half_days:
        tgt = tgt[(tgt["close"] - tgt["open"]) == pd.Timedelta(hours=6, minutes=30)]
    ts = bars["timestamp"]
    parts = []
    prev_close = None
    for (_, s), (_, t) in zip(src.iterrows(), tgt.iterrows()):
        lo_edge = prev_close if prev_close is not None else s["open"] - pd.Timedelta(hours=12)
        mask = (ts > lo_edge) & (ts <= s["close"] + pd.Timedelta(hours=4))
        part = bars[mask]
        parts.append(part.assign(timestamp=part["timestamp"] - s["open"] + t["open"]))
        prev_close = s["close"] + pd.Timedelta(hours=4)
    out = pd.concat(parts).sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)
    return out


def first_sessions(bars: pd.DataFrame, n: int) -> pd.DataFrame:
    """The bars of the first ``n`` sessions (with their extended hours up to 20:00 New York)."""
    days = sessions_of(bars)[:n]
    last_close = schedule("XNYS", bars["timestamp"].min(), bars["timestamp"].max()).loc[days[-1], "close"]
    return bars[bars["timestamp"] <= last_close + pd.Timedelta(hours=4)].reset_index(drop=True)


def write(frame: pd.DataFrame, path, fmt: str = "parquet"):
    """Write a shape as a user would hand it in (parquet or CSV with ISO stamps)."""
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
