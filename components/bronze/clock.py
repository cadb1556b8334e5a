"""Which end of the bar, and which clock, a file's time stamps are on — read from the data.

Bronze stores UTC bar-END stamps. A market file says how its stamps are to be read with two options:
``timestamps`` (``end`` | ``start``; ``auto``: bar ends expected, and checked) and ``market_tz`` (the zone of its
wall clock; empty: the stamps are absolute as written). A wrong reading moves every bar by a constant: one bar
(starts read as ends) or hours (a wall clock read as UTC, or UTC stamps re-read as a wall clock). Both show in
the data at the exchange's **open**:

* the regular session's first bar is one of the busiest of the day and the bar before it is quiet (pre-market)
  or absent (a regular-hours file) — on every session, in every session shape: regular hours only, extended
  hours, 23-hour futures (the cash open is the day's volume jump), a closing print reported after 16:00 (the
  close is never looked at, so a late print cannot pull the reading), hourly bars on the clock grid (the bar
  holding the 09:30 open is the one ending 10:00) or on the session grid;
* a reading one bar late puts a pre-market bar (or nothing) at the open; one bar early compares the second
  bar with the opening bar; hours off put the open in the night or mid-session.

The statistic, per session: ``J = log((A_open + eps) / (A_before + eps))`` where ``A_open`` is the activity of
the bar the reading puts over the open's first instant (its end in ``(open, open + bar]``) and ``A_before`` that
of the bar just before (its end in ``(open - bar, open]``); activity is the bar's volume, or — for a file with no
volume (an index) — its presence plus its relative range. Every reading of interest is scored on a sample of
sessions (both ends of the bar; the clock as written and the wall clocks of the zones markets and vendors use),
and the reading the options give is checked against the best:

* **contradicted**: another reading puts a clear jump at the open (median ``J`` at least ``log 2``), beats the
  given one by at least ``log 2`` in the median and on most sessions: the file is refused, and the message names
  the options of that reading;
* **confirmed**: the given reading has a clear jump and none beats it;
* **unclear**: neither (too few sessions, or no open visible: e.g. a file without the 09:30 bar): with
  ``timestamps=auto`` the user is asked to say which end the stamps mark; an explicit ``end``/``start`` is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spx.components.bronze.sessions import CALENDAR, schedule

# zones whose wall clocks market files are exported in (exchanges, vendors, brokers); "UTC" as a wall clock is
# the reading of naive stamps as UTC
ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Australia/Sydney",
)
# median activity ratio at the open of a reading that sees it: the right readings of the real shapes show x7 to
# x82 (volume; an index's range x20-x30), wrong ones x0.6-x1.4; x2 leaves room for a future's busy pre-open
CLEAR_JUMP = math.log(2.0)
MARGIN = math.log(2.0)  # how much better (median log ratio) another reading must be to contradict the given one
WIN_SHARE = 0.6  # ... and on which share of the sessions where the two differ
MIN_SESSIONS = 5  # fewer sessions than this: the median is a handful of days, the data cannot tell
SAMPLE_SESSIONS = 80
DAY_NS = 86_400_000_000_000


@dataclass(frozen=True)
class Reading:
    """How to read a file's stamps: ``timestamps`` (end | start) and ``market_tz`` ("" = as written)."""

    timestamps: str = "end"
    market_tz: str = ""

    def describe(self) -> str:
        end = "bar ends" if self.timestamps == "end" else "bar starts"
        clock = "as written" if not self.market_tz else f"{self.market_tz} wall clock"
        return f"{end}, {clock}"

    def flags(self) -> str:
        """The ``spx run`` options that give this reading."""
        out = f"--timestamps {self.timestamps}"
        return out + (f" --market-tz {self.market_tz}" if self.market_tz else " and no --market-tz")

    def fix_from(self, given: "Reading") -> str:
        """What to change in the options that gave ``given`` to get this reading, in words."""
        steps = []
        if self.timestamps != given.timestamps:
            steps.append(f"pass --timestamps {self.timestamps}")
        if self.market_tz != given.market_tz:
            steps.append(
                f"pass --market-tz {self.market_tz}"
                if self.market_tz
                else "drop --market-tz (the stamps are already absolute, e.g. UTC)"
            )
        return " and ".join(steps) or f"pass {self.flags()}"


@dataclass
class RawStamps:
    """A file's stamps before any reading: the wall-clock readings (naive int64 ns) and, for zone-aware stamps,
    the absolute instants (UTC int64 ns)."""

    wall: np.ndarray
    absolute: np.ndarray | None  # None for naive stamps
    labelled: str  # "naive" | "utc" (written with a UTC label) | "offset" (written with real offsets)
    example: str

    @property
    def naive(self) -> bool:
        return self.absolute is None


def _to_datetime(values: pd.Series, **kw) -> pd.Series:
    """ISO 8601 strings parsed at C speed; anything else element by element."""
    try:
        return pd.to_datetime(values, format="ISO8601", **kw)
    except (ValueError, TypeError):
        return pd.to_datetime(values, format="mixed", **kw)


_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"


def parse_stamps(values: pd.Series) -> RawStamps:
    """The stamps of a file as written (raises ValueError/TypeError when they cannot be parsed)."""
    example = str(values.iloc[0]) if len(values) else ""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    elif values.dtype == object and len(values) and pd.Timestamp(values.iloc[0]).tzinfo is not None:
        text = values.astype(str)
        for suffix in ("+00:00", "Z"):  # all written in UTC: parse the wall readings (several times faster)
            if text.str.endswith(suffix).all():
                wall = _to_datetime(text.str.slice(0, -len(suffix))).array.asi8.copy()
                return RawStamps(wall, wall.copy(), "utc", example)
        absolute = _to_datetime(values, utc=True).array.asi8.copy()
        if pd.Timestamp(values.iloc[0]).utcoffset() == pd.Timedelta(0):
            return RawStamps(absolute.copy(), absolute, "utc", example)
        # written with offsets: their wall readings are the stamps without the offset
        wall = _to_datetime(values.astype(str).str.replace(_OFFSET, "", regex=True)).array.asi8.copy()
        return RawStamps(wall, absolute, "offset", example)
    else:
        ts = _to_datetime(values)
    tz = getattr(ts.dt, "tz", None)
    if tz is None:
        return RawStamps(ts.array.asi8.copy(), None, "naive", example)
    absolute = ts.dt.tz_convert("UTC").array.asi8.copy()
    if str(tz) == "UTC":
        return RawStamps(absolute.copy(), absolute, "utc", example)
    return RawStamps(ts.dt.tz_localize(None).array.asi8.copy(), absolute, "offset", example)


def read_as(raw: RawStamps, reading: Reading, bar: pd.Timedelta, *, strict: bool = False) -> np.ndarray:
    """UTC bar-end instants (int64 ns) of ``raw`` under ``reading``; NaT (``iNaT``) where a wall-clock reading
    does not exist or is ambiguous (``strict``: raise instead, after trying to infer the repeated DST hour)."""
    if not reading.market_tz:
        if raw.absolute is None:
            raise ValueError("naive stamps have no reading as written: name the zone of their clock")
        ends = raw.absolute.copy()
    elif raw.labelled == "offset":  # absolute already: a zone changes nothing
        ends = raw.absolute.copy()  # type: ignore[union-attr]
    else:
        wall = pd.DatetimeIndex(raw.wall.view("datetime64[ns]"))
        if strict:
            try:
                local = wall.tz_localize(reading.market_tz, ambiguous="infer", nonexistent="raise")
            except Exception:  # noqa: BLE001 - a repeated hour that cannot be inferred: say which stamp
                local = wall.tz_localize(reading.market_tz, ambiguous="raise", nonexistent="raise")
        else:
            local = wall.tz_localize(reading.market_tz, ambiguous="NaT", nonexistent="NaT")
        ends = local.tz_convert("UTC").asi8.copy()
    if reading.timestamps == "start":
        ok = ends != np.iinfo(np.int64).min
        ends[ok] += bar.value
    return ends


def activity(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Per-bar activity: the volume when most bars have one, else presence plus the bar's relative range."""
    if "volume" in frame.columns:
        volume = pd.to_numeric(frame["volume"], errors="coerce").to_numpy(np.float64)
        if np.isfinite(volume).all() and (volume > 0).mean() >= 0.5:
            return volume, "volume"
    high = pd.to_numeric(frame["high"], errors="coerce").to_numpy(np.float64)
    low = pd.to_numeric(frame["low"], errors="coerce").to_numpy(np.float64)
    close = pd.to_numeric(frame["close"], errors="coerce").to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rng = np.nan_to_num((high - low) / close, nan=0.0, posinf=0.0, neginf=0.0)
    scale = np.median(rng[rng > 0]) if (rng > 0).any() else 1.0
    return 1.0 + rng / scale, "range (no volume)"


@dataclass
class ClockCheck:
    """The verdict on a reading: ``confirmed`` | ``contradicted`` | ``unclear`` (see the module docstring)."""

    given: Reading
    best: Reading
    verdict: str
    scores: dict[Reading, float] = field(default_factory=dict)  # median J per reading
    wins: float = float("nan")  # share of sessions where ``best`` beats ``given``
    sessions: int = 0
    basis: str = "volume"

    @property
    def ratio_given(self) -> float:
        return math.exp(self.scores.get(self.given, 0.0))

    @property
    def ratio_best(self) -> float:
        return math.exp(self.scores.get(self.best, 0.0))

    def evidence(self) -> str:
        return (
            f"the {self.basis} of the bar over the 09:30 open against the bar before it is x{self.ratio_given:.1f} "
            f"read as {self.given.describe()}, x{self.ratio_best:.1f} read as {self.best.describe()} "
            f"(median of {self.sessions} sessions; the second wins on {self.wins:.0%} of them)"
        )

    def summary(self) -> str:
        """One line for the pre-flight and the bronze log."""
        if self.verdict == "confirmed":
            return (
                f"stamps read as {self.given.describe()}: confirmed by the data (the bar over the 09:30 open has "
                f"x{self.ratio_given:.1f} the {self.basis} of the bar before it, median of {self.sessions} sessions)"
            )
        if self.verdict == "contradicted":
            return f"stamps contradict the calendar read as {self.given.describe()}: {self.evidence()}"
        return (
            f"stamps read as {self.given.describe()}: the data cannot confirm it (no clear jump in {self.basis} at "
            f"the 09:30 open: x{self.ratio_given:.1f}, median of {self.sessions} sessions)"
        )


def _sample_days(raw_days: np.ndarray, n: int) -> np.ndarray:
    days = np.unique(raw_days)
    if len(days) <= n:
        return days
    return days[np.linspace(0, len(days) - 1, n).round().astype(int)]


def open_jumps(ends: np.ndarray, act: np.ndarray, opens: np.ndarray, bar: pd.Timedelta, eps: float) -> np.ndarray:
    """``J`` per session open (see the module docstring) for bars ending at ``ends`` (UTC ns, any order)."""
    ok = ends != np.iinfo(np.int64).min
    order = np.argsort(ends[ok], kind="stable")
    e, a = ends[ok][order], act[ok][order]
    cum = np.r_[0.0, np.cumsum(a)]

    def window(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # activity of bars ending in (lo, hi]
        return cum[np.searchsorted(e, hi, "right")] - cum[np.searchsorted(e, lo, "right")]

    b = bar.value
    at_open, before = window(opens, opens + b), window(opens - b, opens)
    return np.log((at_open + eps) / (before + eps))


def candidate_readings(raw: RawStamps, given: Reading) -> list[Reading]:
    """The given reading first, then both ends of the bar on every clock that applies to these stamps."""
    clocks = [""] if raw.labelled == "offset" else ([] if raw.naive else [""]) + list(ZONES)
    out = [given]
    for tz in clocks:
        for end in ("end", "start"):
            r = Reading(end, tz)
            if r not in out:
                out.append(r)
    return out


def check_reading(
    frame: pd.DataFrame,
    raw: RawStamps,
    given: Reading,
    bar: pd.Timedelta,
    *,
    calendar: str = CALENDAR,
    readings: list[Reading] | None = None,
) -> ClockCheck:
    """Score ``given`` and the other readings on a sample of sessions and say which fits (module docstring)."""
    raw_days = raw.wall // DAY_NS
    days = _sample_days(raw_days, SAMPLE_SESSIONS)
    near = np.isin(raw_days, np.concatenate([days - 1, days, days + 1]))
    sub_raw = RawStamps(raw.wall[near], None if raw.absolute is None else raw.absolute[near], raw.labelled, raw.example)
    act_all, basis = activity(frame)
    act = act_all[near]
    lo = pd.Timestamp(int(raw.wall.min()) - 2 * DAY_NS, tz="UTC")
    hi = pd.Timestamp(int(raw.wall.max()) + 2 * DAY_NS, tz="UTC")
    sched = schedule(calendar, lo, hi)
    session_days = sched.index.values.astype("datetime64[D]").astype(np.int64)
    sampled = np.isin(session_days, days)
    opens = sched["open"].values.astype("datetime64[ns]").view("i8")[sampled]
    positive = act[act > 0]
    eps = 0.05 * float(np.median(positive)) if len(positive) else 1.0
    jumps: dict[Reading, np.ndarray] = {}
    for reading in readings or candidate_readings(raw, given):
        try:
            ends = read_as(sub_raw, reading, bar)
        except ValueError:
            continue
        jumps[reading] = open_jumps(ends, act, opens, bar, eps)
    scores = {r: float(np.median(j)) if len(j) else 0.0 for r, j in jumps.items()}
    n = len(opens)
    given_j = jumps.get(given)
    if given_j is None or n < MIN_SESSIONS:
        best = max(scores, key=lambda r: scores[r]) if scores else given
        return ClockCheck(given, best, "unclear", scores, float("nan"), n, basis)
    best = given
    for r in jumps:  # ties go to the given reading, then to the order of the candidates
        if scores[r] > scores[best] + 1e-9:
            best = r
    wins = float("nan")
    if best != given:
        differ = np.abs(jumps[best] - given_j) > 0.1
        wins = float((jumps[best][differ] > given_j[differ]).mean()) if differ.any() else 0.0
        if scores[best] >= CLEAR_JUMP and scores[best] - scores[given] >= MARGIN and wins >= WIN_SHARE:
            return ClockCheck(given, best, "contradicted", scores, wins, n, basis)
    verdict = "confirmed" if scores[given] >= CLEAR_JUMP else "unclear"
    return ClockCheck(given, best if verdict == "unclear" else given, verdict, scores, wins, n, basis)
