"""What a run's bars can and cannot give, said before anything starts: the sessions and bars a session keeps,
the bars left out (and why), the label horizons that fit, the volume and quote coverage, and whether the
validation and out-of-time blocks will be big enough for a verdict.

:func:`load_run_bars` reads the bars a run will use exactly as bronze will (a file: the same reading of its
stamps, the same window, the same checks; a bundled dataset: its file), without a server; :func:`profile_bars`
measures them. ``spx run`` calls both before it starts S3 or any task (``spx.cli.preflight``): every problem
found here is one line the user can act on, instead of a task failing minutes later with another cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spx.components.bronze.market import bar_interval, read_market_file, slice_bars
from spx.components.bronze.sessions import (
    CALENDAR,
    halt_gap,
    is_intraday,
    locate,
    trading_runs,
)
from spx.components.bronze.validation import check_missing_sessions, quoted_bars, validate_candles
from spx.core.errors import DataValidationError

WARM_UP_BARS = 271  # the longest indicator window: the volatility percentile rank, 252 bars of a 20-bar vol
NY = "America/New_York"


@dataclass
class RunBars:
    """The bars a run will use (UTC bar ends, its window), where they come from, and what reading them said."""

    bars: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)
    allowed_gaps: list = field(default_factory=list)


def load_run_bars(
    *,
    source: str,
    dataset: str,
    path: str,
    granularity: str,
    start: str,
    end: str,
    timestamps: str,
    market_tz: str,
) -> RunBars | None:
    """The bars of a ``file`` or ``bundled`` run, read as bronze will read them (None for ``oanda``: its bars are
    fetched by the run). Raises :class:`DataValidationError` with the problem, as bronze would."""
    bar = bar_interval(granularity)
    if source == "file":
        if not path:
            raise DataValidationError("--source file needs --market-path (a CSV or parquet file of candles)")
        market, read = read_market_file(
            path, granularity=granularity, timestamps=timestamps, market_tz=market_tz, start=start, end=end
        )
        runs = check_missing_sessions(read.bars["timestamp"], bar, source=str(path))
        notes = list(market.notes) + [read.summary()]
        if runs:
            days = sum(n for _, _, n in runs)
            notes.append(
                f"{days} exchange session(s) without any bar, in runs of at most 2 (first {runs[0][0].date()}): "
                "accepted, no bar is invented for them"
            )
        return RunBars(read.bars, str(path), notes)
    if source == "bundled":
        from spx.components.bronze.datasets import get_dataset

        ds = get_dataset(dataset)
        bars = slice_bars(ds.load(), start, end)
        if bars.empty:
            raise DataValidationError(
                f"dataset {ds.name}: no bar between {start or 'its start'} and {end or 'its end'}"
            )
        bars = validate_candles(bars, source=f"dataset {ds.name}", bar=bar, allowed_gaps=ds.allowed_gaps())
        return RunBars(bars, f"dataset {ds.name}", [], ds.allowed_gaps())
    return None


@dataclass
class DataProfile:
    """The facts :func:`profile_bars` measures; ``problems`` stop the run, ``notes`` are said."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sessions: int = 0
    bars_per_session: int | None = None
    kept: int = 0
    too_little: str = ""


def _local_hhmm(ns: np.ndarray) -> str:
    if not len(ns):
        return "-"
    local = pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(NY)
    minutes = local.hour * 60 + local.minute
    common = int(pd.Series(minutes).mode().iloc[0])
    return f"{common // 60:02d}:{common % 60:02d}"


def profile_bars(
    bars: pd.DataFrame,
    *,
    granularity: str,
    session: str,
    horizons: list[int],
    label_cross_close: bool = False,
    oot_frac: float = 0.10,
    val_frac: float = 0.15,
    source: str = "",
    min_block_sessions: int = 2,
    min_block_windows: int = 10,
) -> DataProfile:
    """Measure ``bars`` (UTC bar ends) for a run with these options; see the module docstring. The minimum a
    block needs for a verdict is selection's (``spx.components.selection.select``; passed in: bronze is below
    it)."""
    out = DataProfile()
    bar = bar_interval(granularity)
    ts = pd.DatetimeIndex(bars["timestamp"])
    t = ts.asi8
    first, last = ts.min(), ts.max()
    span = f"{first.tz_convert(NY):%Y-%m-%d} .. {last.tz_convert(NY):%Y-%m-%d}"
    intraday = is_intraday(bar)
    if not intraday:
        keep = np.ones(len(bars), dtype=bool)
        runs = np.arange(len(bars))
        out.sessions, out.kept, out.bars_per_session = len(bars), len(bars), 1
        out.lines.append(f"data: {source}: {len(bars):,} daily bars, {span}")
    elif session == "all":
        keep = np.ones(len(bars), dtype=bool)
        runs = trading_runs(bars["timestamp"], bar)
        counts = np.bincount(runs)
        out.sessions, out.kept = len(counts), len(bars)
        out.bars_per_session = int(np.median(counts))
        out.lines.append(
            f"data: {source}: {len(bars):,} {granularity} bars (session all) in {len(counts)} trading runs between "
            f"halts of {int(halt_gap(bar) / pd.Timedelta(minutes=1))} minutes or more ({out.bars_per_session} bars a run, median), {span}; labels stop at a "
            + ("halt" if not label_cross_close else "halt only without --label-cross-close: they cross it")
        )
    else:
        sess, sched = locate(bars["timestamp"], bar, CALENDAR)
        keep = sess >= 0
        if not keep.any():
            out.problems.append(
                f"{source}: no bar falls in a regular NYSE session (09:30-16:00 New York, bar ends) — if the data "
                "trades around the clock and you want every bar, pass --session all"
            )
            return out
        runs = sess[keep]
        counts = np.bincount(np.unique(runs, return_inverse=True)[1])
        out.sessions, out.kept = len(counts), int(keep.sum())
        out.bars_per_session = int(np.median(counts))
        kept_t = t[keep]
        starts = np.r_[True, runs[1:] != runs[:-1]]
        ends = np.r_[runs[1:] != runs[:-1], True]
        out.lines.append(
            f"data: {source}: {out.kept:,} regular-session {granularity} bars in {out.sessions} sessions "
            f"({out.bars_per_session} a session, median; bar ends {_local_hhmm(kept_t[starts])}-"
            f"{_local_hhmm(kept_t[ends])} New York), {span}"
        )
        outside = int((~keep).sum())
        if outside:
            opens = sched["open"].values.astype("datetime64[ns]").view("i8")
            pos = np.clip(np.searchsorted(opens, t, "left") - 1, 0, len(opens) - 1)
            straddle = (~keep) & (t > opens[pos]) & (t - bar.value < opens[pos])
            share = outside / len(bars)
            line = f"{outside:,} bars ({share:.0%}) outside the regular session are left out (--session all keeps them)"
            n_straddle = len(np.unique(pos[straddle]))
            if n_straddle:
                line += (
                    f"; on {n_straddle} of {out.sessions} sessions that includes the bar ending "
                    f"{_local_hhmm(t[straddle])} New York, which starts before the 09:30 open (it mixes pre-open "
                    "and regular trading)"
                )
            if share >= 0.5:
                line += " — most of the data: check that this is what you want"
            out.notes.append(line)
    kept_bars = bars[keep] if not keep.all() else bars
    # volume and quotes
    volume = kept_bars["volume"].to_numpy(np.float64)
    with_volume = float((volume > 0).mean()) if len(volume) else 0.0
    if with_volume == 0.0:
        out.notes.append("volume is 0 on every bar (an index?): the 6 volume features are left out of gold")
    elif with_volume < 0.5:
        out.notes.append(f"volume is 0 on {1 - with_volume:.0%} of the bars: the volume features are thin")
    if {"bid", "ask"} <= set(kept_bars.columns):
        quoted = float(quoted_bars(kept_bars).mean())
        out.notes.append(
            f"quotes: bid and ask on {quoted:.2%} of the bars — the quoted spread there, the Corwin-Schultz "
            "estimate on the rest (chosen per bar)"
        )
    # rows left after the warm-up, labels per session, blocks
    if out.kept <= WARM_UP_BARS:
        out.problems.append(
            f"{source}: only {out.kept} bars in the {'data' if not intraday else session + ' session'}; the "
            f"indicators need {WARM_UP_BARS} bars of warm-up before the first row — give the run more data "
            "(--start/--end)"
        )
        return out
    per = out.bars_per_session or 1
    for h in horizons:
        if intraday and not label_cross_close:
            if per - h - 1 < 1:
                where = "session" if session != "all" else "trading run"
                out.problems.append(
                    f"{source}: horizon {h} bars never fits in a {where}: a label needs h + 2 bars of one {where} and "
                    f"these keep {per} {granularity} bars (median) — use horizons of at most {max(per - 2, 0)} bars "
                    "(--horizon-short/--horizon-long), or --label-cross-close"
                )
        elif out.kept - WARM_UP_BARS <= h + 1:
            out.problems.append(f"{source}: horizon {h} bars is longer than the data after the warm-up")
    if out.problems:
        return out
    h = min(horizons)
    span_h = h + 1
    labelled_per = (per - span_h) if intraday and not label_cross_close else per
    rows = max(0, out.kept - WARM_UP_BARS) * (labelled_per / per)
    short = []
    for name, frac in (("validation", val_frac), ("out-of-time", oot_frac)):
        block_rows = rows * frac
        block_sessions = block_rows / max(labelled_per, 1) if intraday else block_rows
        windows = (
            block_rows / span_h
            if not intraday
            else math.ceil(block_sessions) * math.ceil(min(block_rows, labelled_per) / span_h)
        )
        if (intraday and math.ceil(block_sessions) < min_block_sessions) or windows < min_block_windows:
            short.append(f"{name} about {block_rows:,.0f} rows ({block_sessions:.1f} sessions)")
    if short:
        out.too_little = (
            f"at horizon {h} the {' and '.join(short)} — under the minimum for a verdict ({min_block_sessions} "
            f"sessions and {min_block_windows} independent label windows a block): the run will train and report, "
            "say 'too little data to judge' and register nothing"
        )
        out.notes.append(out.too_little)
    return out
