"""Bronze market data: sources (OANDA v20, bundled real S&P 500, local file) and the write-once lake.

Layout: ``bronze/market/{dataset}/{instrument}/{granularity}/{first}_{last}.parquet`` where
``first``/``last`` are the UTC timestamps of the chunk's first and last bar (``%Y%m%dT%H%M%SZ``).
Chunks are write-once, so bronze is append-only; the newest stored bar is read off the keys,
which makes ingestion incremental and resumable after a crash (every completed page is a chunk).

One dataset per prefix: ``{dataset}`` is the bundled dataset's name, ``oanda``, or — for a file — a name
derived from the file's name and content (``file-{stem}-{sha256 of its bytes and of how its stamps are read}``),
so a second file never lands beside the first one under the same instrument. Chunks that overlap must agree
bar for bar (slices of one file do); a chunk that disagrees is refused when the prefix is read, naming both.
A chunk is never deleted or rewritten: :func:`retire_chunk` writes a tombstone
(``{prefix}_retired/{chunk}.json``, write-once, with the reason) and readers skip the chunk from then on
(``spx bronze list`` / ``spx bronze retire``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pandas as pd
import requests

from spx.components.bronze.validation import validate_candles
from spx.core.choices import TIMESTAMPS
from spx.core.errors import DataValidationError, ObjectNotFoundError, ServiceError
from spx.core.http import RETRY_STATUSES, RetryableHTTP, http_retrying
from spx.core.settings import settings
from spx.core.storage import ObjectStore

if TYPE_CHECKING:
    from spx.components.bronze.clock import ClockCheck, Reading

log = logging.getLogger(__name__)

TS_FMT = "%Y%m%dT%H%M%SZ"

GRANULARITY = {
    "S5": pd.Timedelta(seconds=5),
    "M1": pd.Timedelta(minutes=1),
    "M5": pd.Timedelta(minutes=5),
    "M15": pd.Timedelta(minutes=15),
    "M30": pd.Timedelta(minutes=30),
    "H1": pd.Timedelta(hours=1),
    "H4": pd.Timedelta(hours=4),
    "D": pd.Timedelta(days=1),
}


def bar_interval(granularity: str) -> pd.Timedelta:
    try:
        return GRANULARITY[granularity]
    except KeyError:
        raise ValueError(f"unknown granularity {granularity!r}; known: {sorted(GRANULARITY)}") from None


def bronze_prefix(source: str, instrument: str, granularity: str) -> str:
    return f"bronze/market/{source}/{instrument}/{granularity}/"


RETIRED = "_retired/"


def chunk_key(prefix: str, df: pd.DataFrame) -> str:
    first, last = df["timestamp"].iloc[0], df["timestamp"].iloc[-1]
    return f"{prefix}{first.strftime(TS_FMT)}_{last.strftime(TS_FMT)}.parquet"


def _chunk_bounds(key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    stem = key.rsplit("/", 1)[-1].removesuffix(".parquet")
    first, last = stem.split("_")[:2]
    last = last.split("-")[0]  # a chunk re-written after its key was retired carries "-{sha}"
    return (
        pd.Timestamp(pd.to_datetime(first, format=TS_FMT, utc=True)),
        pd.Timestamp(pd.to_datetime(last, format=TS_FMT, utc=True)),
    )


def _chunk_end(key: str) -> pd.Timestamp:
    return _chunk_bounds(key)[1]


def _prefix_key(store: ObjectStore, prefix: str) -> tuple[str, str]:
    """(bucket, key prefix ending in "/") of a prefix given as a key or an s3:// URI."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if prefix.startswith("s3://"):
        bucket, key = store._split(prefix)
        return bucket, key
    return store.bucket, prefix


def tombstone_key(chunk_key_: str) -> str:
    head, _, name = chunk_key_.rpartition("/")
    return f"{head}/{RETIRED}{name.removesuffix('.parquet')}.json"


@dataclass
class Chunk:
    """One bronze object: its key, the first and last bar end its name records, and its tombstone if any."""

    key: str
    first: pd.Timestamp
    last: pd.Timestamp
    retired: dict | None = None


def list_chunks(store: ObjectStore, prefix: str) -> list[Chunk]:
    """The chunks under ``prefix`` (every dataset below it when it is a higher prefix), retired ones included
    and marked (with their tombstone: reason, when, the previous key holder)."""
    bucket, key_prefix = _prefix_key(store, prefix)
    keys = sorted(store.iter_keys(f"s3://{bucket}/{key_prefix}"))
    tombstones = {k for k in keys if f"/{RETIRED}" in k and k.endswith(".json")}
    out = []
    for key in keys:
        if not key.endswith(".parquet") or f"/{RETIRED}" in key:
            continue
        try:
            first, last = _chunk_bounds(key)
        except (ValueError, IndexError):
            continue  # not a chunk (a stray object)
        tomb = tombstone_key(key)
        retired = store.get_json(f"s3://{bucket}/{tomb}") if tomb in tombstones else None
        out.append(Chunk(key=f"s3://{bucket}/{key}", first=first, last=last, retired=retired))
    return out


def retire_chunk(store: ObjectStore, key: str, *, reason: str, by: str = "spx") -> str:
    """Retire a bronze chunk: a write-once tombstone beside it (the chunk itself is kept, byte for byte); readers
    skip it from then on. Returns the tombstone's URI. Retiring twice keeps the first tombstone."""
    bucket, k = store._split(key)
    if "/bronze/market/" not in f"/{k}" or not k.endswith(".parquet") or f"/{RETIRED}" in k:
        raise DataValidationError(f"{key}: not a bronze market chunk (bronze/market/.../FIRST_LAST.parquet)")
    if not store.exists(f"s3://{bucket}/{k}"):
        raise ObjectNotFoundError(f"s3://{bucket}/{k} does not exist: list the chunks with `spx bronze list`")
    if not reason.strip():
        raise DataValidationError("say why the chunk is retired (--reason): the tombstone keeps it")
    tomb = f"s3://{bucket}/{tombstone_key(k)}"
    if store.exists(tomb):
        return tomb
    record = {
        "key": f"s3://{bucket}/{k}",
        "reason": reason,
        "retired_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "by": by,
    }
    return store.put_json(tomb, record, write_once=True).uri


def _live_keys(store: ObjectStore, prefix: str) -> list[str]:
    return [c.key for c in list_chunks(store, prefix) if c.retired is None]


def newest_stored_bar(store: ObjectStore, prefix: str) -> pd.Timestamp | None:
    return max((_chunk_end(k) for k in _live_keys(store, prefix)), default=None)


def write_chunk(
    store: ObjectStore,
    prefix: str,
    df: pd.DataFrame,
    *,
    source: str,
    granularity: str,
    allowed_gaps: list | None = None,
) -> str:
    """Validate and write one chunk write-once. Invalid data never reaches bronze. A chunk whose natural key was
    retired is written beside it under ``{first}_{last}-{sha}.parquet`` (the retired object stays as it was)."""
    clean = validate_candles(df, source=source, bar=bar_interval(granularity), allowed_gaps=allowed_gaps)
    key = chunk_key(prefix, clean)
    if store.exists(tombstone_key(key)):
        buf = io.BytesIO()
        clean.to_parquet(buf, index=False)
        key = key.removesuffix(".parquet") + f"-{hashlib.sha256(buf.getvalue()).hexdigest()[:8]}.parquet"
    return store.put_parquet(key, clean, write_once=True).uri


def _utc(value: str | pd.Timestamp, *, end_of_day: bool = False) -> pd.Timestamp:
    """A UTC timestamp; a bare date as an end bound means the whole day."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end_of_day and isinstance(value, str) and len(value.strip()) <= 10:
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return ts


def slice_bars(bars: pd.DataFrame, start, end) -> pd.DataFrame:
    """Bars with ``start <= timestamp <= end`` (a bare end date: the whole day); bounds may be empty."""
    keep = np.ones(len(bars), dtype=bool)
    ts = pd.to_datetime(bars["timestamp"], utc=True)
    if start:
        keep &= (ts >= _utc(start)).to_numpy()
    if end:
        keep &= (ts <= _utc(end, end_of_day=True)).to_numpy()
    return bars if keep.all() else bars[keep].reset_index(drop=True)


JUNCTION_JUMP = np.log(2.0)  # a price that halves or doubles where one chunk meets the next: another instrument


def _check_junctions(tagged: pd.DataFrame, frames: list[tuple[str, pd.DataFrame]], where: str) -> None:
    """Refuse chunks whose prices do not join: where consecutive bars come from different chunks, the close of
    the one and the open of the next must be within a factor of 2 (SPY next to SPX, ES or a CFD is 10x off; no
    index moves 2x between two of its own bars)."""
    order = tagged.sort_values("timestamp", kind="stable")
    chunk = order["_chunk"].to_numpy()
    at = np.flatnonzero(chunk[1:] != chunk[:-1])
    if not len(at):
        return
    close = order["close"].to_numpy(np.float64)
    opens = order["open"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.abs(np.log(opens[at + 1] / close[at]))
    bad = np.flatnonzero(jump > JUNCTION_JUMP)
    if len(bad):
        i = at[bad[0]]
        stamps = order["timestamp"].to_numpy()
        raise DataValidationError(
            f"{where}: chunks do not join — the price goes from {close[i]:g} (bar ending {pd.Timestamp(stamps[i])}, "
            f"{frames[chunk[i]][0]}) to {opens[i + 1]:g} ({frames[chunk[i + 1]][0]}): two instruments under one "
            "prefix — retire the wrong one with `spx bronze retire KEY --reason ...` (see `spx bronze list`)"
        )


def _merge_chunks(frames: list[tuple[str, pd.DataFrame]], where: str) -> pd.DataFrame:
    """Concatenate chunks; bars stored twice (overlapping slices of one source) must agree exactly and are kept
    once. A disagreement means two sources (or a revised history) under one prefix: refused, naming both; so are
    chunks whose prices do not join (:func:`_check_junctions`)."""
    if len(frames) == 1:
        return frames[0][1]
    tagged = pd.concat([f.assign(_chunk=i) for i, (_, f) in enumerate(frames)], ignore_index=True)
    ts = pd.to_datetime(tagged["timestamp"], utc=True)
    dup = ts.duplicated(keep=False).to_numpy()
    if not dup.any():
        _check_junctions(tagged, frames, where)
        return tagged.drop(columns="_chunk")
    values = [c for c in tagged.columns if c not in ("timestamp", "_chunk")]
    part = tagged.loc[dup].assign(_ts=ts[dup])
    distinct = part.drop_duplicates(["_ts", *values])
    clash = distinct["_ts"].duplicated(keep=False)
    if clash.any():
        first_ts = distinct.loc[clash, "_ts"].iloc[0]
        chunks = sorted({frames[i][0] for i in distinct.loc[distinct["_ts"] == first_ts, "_chunk"]})
        raise DataValidationError(
            f"{where}: chunks disagree on the bar ending {first_ts} ({' vs '.join(chunks)}): two sources or a "
            "revised history under one prefix — retire the wrong one with `spx bronze retire KEY --reason ...` "
            "(see `spx bronze list`)"
        )
    keep = ~ts.duplicated(keep="first").to_numpy()
    merged = tagged.loc[keep].reset_index(drop=True)
    _check_junctions(merged, frames, where)
    return merged.drop(columns="_chunk")


def read_bronze(
    store: ObjectStore,
    prefix: str,
    *,
    granularity: str,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The live (not retired) chunks under ``prefix``, merged, sliced to [start, end] and then validated (the
    slice only: a hole outside it does not matter to this run)."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    uri_prefix = prefix if prefix.startswith("s3://") else store.uri(prefix)
    keys = _live_keys(store, uri_prefix)
    if not keys:
        raise DataValidationError(f"{uri_prefix}: no bronze candles found (missing raw data)")
    frames = []
    for uri in sorted(keys):
        try:
            frames.append((uri, store.read_parquet(uri)))
        except Exception as exc:  # corrupt parquet
            raise DataValidationError(f"{uri}: unreadable bronze object ({exc})") from exc
    from spx.components.bronze.datasets import allowed_gaps_for_prefix

    merged = _merge_chunks(frames, uri_prefix)
    if "timestamp" in merged.columns:
        merged = merged.sort_values("timestamp", kind="stable").reset_index(drop=True)
        merged = slice_bars(merged, start, end)
    if merged.empty:
        raise DataValidationError(f"{uri_prefix}: no candles between {start} and {end}")
    return validate_candles(
        merged, source=uri_prefix, bar=bar_interval(granularity), allowed_gaps=allowed_gaps_for_prefix(uri_prefix)
    )


# --------------------------------------------------------------------------------------------
# Offline sources
# --------------------------------------------------------------------------------------------


def load_bundled_daily() -> pd.DataFrame:
    """Real daily S&P 500 OHLCV shipped in ``arch`` (1999-01-04..2018-12-31, 5,031 bars).

    The bar timestamp is the 16:00 America/New_York close, in UTC. ``Adj Close`` equals
    ``Close`` for an index, so the unadjusted OHLC is used.
    """
    from arch.data import sp500

    raw = sp500.load()
    ts = (pd.DatetimeIndex(raw.index).tz_localize("America/New_York") + pd.Timedelta(hours=16)).tz_convert("UTC")
    return pd.DataFrame(
        {
            "timestamp": ts.astype("datetime64[ns, UTC]"),
            "open": raw["Open"].to_numpy(float),
            "high": raw["High"].to_numpy(float),
            "low": raw["Low"].to_numpy(float),
            "close": raw["Close"].to_numpy(float),
            "volume": raw["Volume"].to_numpy(float),
        }
    )


@dataclass
class StampReading:
    """A market file's bars on UTC bar-end stamps (sliced to the run's window, validated but for holes), the
    reading that put them there and the data's verdict on it (None for daily bars or when not checked)."""

    bars: pd.DataFrame
    reading: "Reading"
    check: "ClockCheck | None" = None

    def summary(self) -> str:
        if self.check is not None:
            return self.check.summary()
        return f"stamps read as {self.reading.describe()} (daily bars: not checked against the open)"


def clip_to_close(ends: np.ndarray, bar: pd.Timedelta) -> np.ndarray:
    """Bar ends from bar starts (start + one bar), with a bar that starts inside a regular session and would end
    after its close ended at the close: the session grid's last hourly bar (15:30-16:00), a half day's last bar.
    Without it that bar would be stamped 16:30 and fall out of the session every day."""
    from spx.components.bronze.sessions import CALENDAR, schedule

    ok = ends != np.iinfo(np.int64).min
    if not ok.any():
        return ends
    starts = ends - bar.value
    sched = schedule(
        CALENDAR, pd.Timestamp(int(starts[ok].min()), tz="UTC"), pd.Timestamp(int(ends[ok].max()), tz="UTC")
    )
    opens = sched["open"].values.astype("datetime64[ns]").view("i8")
    closes = sched["close"].values.astype("datetime64[ns]").view("i8")
    pos = np.clip(np.searchsorted(opens, starts, "right") - 1, 0, len(opens) - 1)
    late = ok & (starts >= opens[pos]) & (starts < closes[pos]) & (ends > closes[pos])
    out = ends.copy()
    out[late] = closes[pos[late]]
    return out


def _spacing_problem(ends: np.ndarray, bar: pd.Timedelta, source: str) -> str:
    """A message when the bars are plainly not ``bar`` apart (the usual spacing, within a day), else ""."""
    diffs = np.diff(np.sort(ends[ends != np.iinfo(np.int64).min]))
    diffs = diffs[(diffs > 0) & (diffs < pd.Timedelta(hours=20).value)]
    if len(diffs) < 10:
        return ""
    values, counts = np.unique(diffs, return_counts=True)
    mode = int(values[np.argmax(counts)])
    if mode == bar.value or counts.max() < 0.5 * len(diffs):
        return ""
    spacing = pd.Timedelta(mode)
    known = next((g for g, td in GRANULARITY.items() if td == spacing), None)
    fix = (
        f"pass --granularity {known}"
        if known
        else f"no granularity of {_duration(spacing)} is known ({', '.join(GRANULARITY)})"
    )
    return f"{source}: most bars are {_duration(spacing)} apart, not one {_duration(bar)} bar: {fix}"


def _duration(td: pd.Timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def read_stamps(
    df: pd.DataFrame,
    *,
    granularity: str,
    source: str,
    timestamps: str = "auto",
    market_tz: str = "",
    start: str = "",
    end: str = "",
    check_session: bool = True,
) -> StampReading:
    """UTC bar-END stamps, sliced to ``[start, end]``, or one clear refusal.

    ``market_tz``: the zone the file's clock is in — naive stamps are localised to it (the repeated hour of a
    DST change is inferred from the order of the bars), and stamps that carry UTC but are really that zone's
    wall clock are re-read in it. Without it, naive stamps are refused (the message names the zone whose clock
    they fit, when the data shows one). ``timestamps``: ``auto`` (bar ends expected; the data must confirm it),
    ``end`` or ``start`` (shifted by one bar to the bar end). The window is cut **before** the checks: a problem
    outside ``[start, end]`` is not this run's. Intraday stamps are then checked against the exchange calendar
    (:mod:`spx.components.bronze.clock`): a reading the data contradicts is refused with the options of the one
    it fits; with ``auto``, stamps whose end the data cannot tell are refused with the question."""
    from spx.components.bronze.clock import Reading, check_reading, parse_stamps, read_as
    from spx.components.bronze.sessions import is_intraday

    if timestamps not in TIMESTAMPS:
        raise DataValidationError(f"--timestamps must be one of {TIMESTAMPS}, got {timestamps!r}")
    bar = bar_interval(granularity)
    given = Reading("end" if timestamps == "auto" else timestamps, market_tz)
    if "timestamp" not in df.columns or df.empty:
        return StampReading(validate_candles(df, source=source), given)  # the schema message
    try:
        raw = parse_stamps(df["timestamp"])
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataValidationError(f"{source}: unparseable timestamps ({exc})") from exc
    intraday = is_intraday(bar)
    if raw.naive and not market_tz:
        hint = ""
        if intraday and check_session:
            guess = check_reading(df, raw, Reading(given.timestamps, "UTC"), bar)
            if guess.verdict != "unclear" and guess.best.market_tz:
                hint = f"; they fit the exchange calendar read as {guess.best.describe()}: pass {guess.best.flags()}"
        raise DataValidationError(
            f"{source}: naive time stamps (no time zone, e.g. {raw.example!r}); refusing to guess UTC — "
            "name the zone their clock is in (--market-tz ZONE) or give the file zone-aware stamps" + hint
        )
    try:
        ends = read_as(raw, given, bar, strict=True)
    except Exception as exc:  # noqa: BLE001 - a wall-clock time that does not exist or cannot be placed
        raise DataValidationError(f"{source}: cannot read the stamps as {market_tz} wall clock ({exc})") from exc
    if given.timestamps == "start" and intraday:
        ends = clip_to_close(ends, bar)
    out = df.copy()
    out["timestamp"] = pd.DatetimeIndex(ends.view("datetime64[ns]")).tz_localize("UTC")
    keep = np.ones(len(out), dtype=bool)
    if start:
        keep &= ends >= _utc(start).value
    if end:
        keep &= ends <= _utc(end, end_of_day=True).value
    if not keep.any():
        raise DataValidationError(
            f"{source}: no bar between {start or 'the start'} and {end or 'the end'} (the file spans "
            f"{out['timestamp'].min()} .. {out['timestamp'].max()} read as {given.describe()})"
        )
    if not keep.all():
        out, ends = out[keep].reset_index(drop=True), ends[keep]
        raw = type(raw)(raw.wall[keep], None if raw.absolute is None else raw.absolute[keep], raw.labelled, raw.example)
    if intraday:
        problem = _spacing_problem(ends, bar, source)
        if problem:
            raise DataValidationError(problem)
    clean = validate_candles(out, source=source)  # schema, order, prices (holes are checked on write)
    check = None
    if check_session and intraday:
        check = check_reading(clean, raw, given, bar)
        if check.verdict == "contradicted":
            raise DataValidationError(
                f"{source}: the stamps look like {check.best.describe()}, not {given.describe()}: "
                f"{check.best.fix_from(given)}, or fix the file ({check.evidence()}; this project stores bar ENDs "
                "in UTC)"
            )
        if check.verdict == "unclear" and timestamps == "auto":
            raise DataValidationError(
                f"{source}: cannot tell from the data whether the stamps mark bar starts or bar ends (no clear "
                f"jump in {check.basis} at the 09:30 open in {check.sessions} sessions); say which: pass "
                "--timestamps end or --timestamps start"
            )
    return StampReading(clean, given, check)


@dataclass
class MarketFile:
    """A market file as read: its frame (lower-case column names), the SHA-256 of its bytes, and what was done
    to make it a candle table (said to the user)."""

    path: Path
    frame: pd.DataFrame
    sha256: str
    notes: list[str] = field(default_factory=list)

    def dataset(self, reading: "Reading") -> str:
        """The bronze dataset name of this file read this way: ``file-{stem}-{8 hex}`` (one prefix per content
        and reading, so no second source ever lands beside it)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.path.stem.lower()).strip("-")[:40] or "data"
        ident = hashlib.sha256(f"{self.sha256}|{reading.timestamps}|{reading.market_tz}".encode()).hexdigest()
        return f"file-{slug}-{ident[:8]}"


def open_market_file(path: str | Path) -> MarketFile:
    """Candles from a CSV or parquet file with columns timestamp, open, high, low, close[, volume][, bid, ask,
    bid_size, ask_size]. A file without a volume column (an index) is read with volume 0, and says so."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: market data file not found")
    if not path.is_file():
        raise DataValidationError(f"{path}: not a file")
    try:
        data = path.read_bytes()
        buf = io.BytesIO(data)
        df = pd.read_parquet(buf) if path.suffix in {".parquet", ".pq"} else pd.read_csv(buf)
    except Exception as exc:
        raise DataValidationError(f"{path}: unreadable market data file ({exc})") from exc
    df.columns = [str(c).strip().lower().replace(" ", "_") for c in df.columns]
    for alias in ("time", "date", "datetime"):
        if "timestamp" not in df.columns and alias in df.columns:
            df = df.rename(columns={alias: "timestamp"})
    notes = []
    if "volume" not in df.columns and {"open", "high", "low", "close"} <= set(df.columns):
        df["volume"] = 0.0
        notes.append("no volume column: read as volume 0 (an index); the volume features are left out")
    return MarketFile(path, df, hashlib.sha256(data).hexdigest(), notes)


def read_market_file(
    path: str | Path,
    *,
    granularity: str,
    timestamps: str = "auto",
    market_tz: str = "",
    start: str = "",
    end: str = "",
) -> tuple[MarketFile, StampReading]:
    """A market file opened (:func:`open_market_file`) and its stamps read (:func:`read_stamps`): what bronze
    writes and what ``spx run``'s pre-flight checks, the same way."""
    market = open_market_file(path)
    read = read_stamps(
        market.frame,
        granularity=granularity,
        source=str(path),
        timestamps=timestamps,
        market_tz=market_tz,
        start=start,
        end=end,
    )
    return market, read


# --------------------------------------------------------------------------------------------
# OANDA v20
# --------------------------------------------------------------------------------------------


class OandaError(ServiceError):
    pass


@dataclass
class OandaClient:
    """OANDA v20 REST candles client (``GET /v3/instruments/{instrument}/candles``).

    Token from ``OANDA_API_TOKEN``; base URL from ``OANDA_API_URL`` (default: the practice API).
    Retries 429/5xx/connection errors with exponential backoff and jitter (honouring Retry-After).
    """

    token: str
    base_url: str = "https://api-fxpractice.oanda.com"
    max_retries: int = 5
    backoff: float = 0.5
    timeout: float = 30.0
    page_size: int = 5000
    session: requests.Session | None = None
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls) -> "OandaClient":
        cfg = settings().market
        token = cfg.oanda_api_token.get_secret_value()
        if not token:
            raise OandaError("OANDA_API_TOKEN is not set: export your v20 API token to ingest from OANDA")
        return cls(token=token, base_url=cfg.oanda_api_url or cls.base_url)

    def _get(self, path: str, params: dict) -> dict:
        session = self.session or requests.Session()
        headers = {"Authorization": f"Bearer {self.token}", "Accept-Datetime-Format": "RFC3339"}
        url = self.base_url.rstrip("/") + path

        def once() -> dict:
            try:
                resp = session.get(url, params=params, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RetryableHTTP(f"OANDA unreachable: {exc}") from exc
            if resp.status_code == 200:
                return resp.json()
            if resp.status_code in RETRY_STATUSES:
                raise RetryableHTTP(f"OANDA {resp.status_code} for {path}", resp.headers.get("Retry-After"))
            try:
                msg = resp.json().get("errorMessage", resp.text)
            except ValueError:
                msg = resp.text
            raise OandaError(f"OANDA {resp.status_code} for {path}: {msg}")

        try:
            return http_retrying(
                max_retries=self.max_retries, backoff=self.backoff, sleep=self.sleep, what=f"OANDA {path}"
            )(once)
        except RetryableHTTP as exc:
            raise OandaError(f"{exc} (after {self.max_retries + 1} attempts)") from None

    def candles_page(
        self, instrument: str, granularity: str, start: pd.Timestamp, *, include_first: bool
    ) -> pd.DataFrame:
        payload = self._get(
            f"/v3/instruments/{instrument}/candles",
            {
                "granularity": granularity,
                "price": "MBA",
                "from": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "count": self.page_size,
                "includeFirst": "true" if include_first else "false",
            },
        )
        return parse_oanda_candles(payload)

    def iter_pages(
        self, instrument: str, granularity: str, start: pd.Timestamp, end: pd.Timestamp, *, include_first: bool = True
    ) -> Iterator[pd.DataFrame]:
        cursor, first = start, include_first
        while cursor < end:
            page = self.candles_page(instrument, granularity, cursor, include_first=first)
            page = page[page["timestamp"] <= end]
            if page.empty:
                return
            yield page
            cursor, first = page["timestamp"].iloc[-1], False


def parse_oanda_candles(payload: dict) -> pd.DataFrame:
    """v20 candles JSON -> bars (complete candles only); mid OHLC, bid/ask closes for the spread.

    ``timestamp`` here is OANDA's ``time``: the candle START. :func:`ingest_market` adds one bar
    before anything reaches bronze (bronze, silver and gold stamp bar ends)."""
    rows = []
    for c in payload.get("candles", []):
        if not c.get("complete", False):
            continue
        mid = c.get("mid") or {}
        bid, ask = c.get("bid") or {}, c.get("ask") or {}
        try:
            rows.append(
                {
                    "timestamp": c["time"],
                    "open": float(mid["o"]),
                    "high": float(mid["h"]),
                    "low": float(mid["l"]),
                    "close": float(mid["c"]),
                    "volume": float(c.get("volume", 0)),
                    "bid": float(bid["c"]) if "c" in bid else float("nan"),
                    "ask": float(ask["c"]) if "c" in ask else float("nan"),
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(f"OANDA candle malformed at {c.get('time')}: {exc}") from exc
    df = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume", "bid", "ask"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


# --------------------------------------------------------------------------------------------
# Stage entry point
# --------------------------------------------------------------------------------------------


def ingest_market(
    store: ObjectStore,
    *,
    source: str = "bundled",
    instrument: str = "SPX500_USD",
    granularity: str = "",
    start: str = "",
    end: str = "",
    path: str = "",
    dataset: str = "",
    timestamps: str = "auto",
    market_tz: str = "",
    client: OandaClient | None = None,
    progress: Callable[[str], None] = log.info,
) -> str:
    """Bring raw candles into bronze (write-once) and return the bronze prefix URI.

    ``source``: ``bundled`` (a named dataset, see :mod:`spx.components.bronze.datasets`; default the real
    SPY one-minute bars of 2011), ``file`` (CSV/parquet at ``path``; ``timestamps``/``market_tz`` say
    how to read its stamps, ``start``/``end`` cut it before it is checked; its bronze dataset is named after its
    name and content, see :meth:`MarketFile.dataset`) or ``oanda`` (v20 API, incremental from the newest stored bar; OANDA stamps
    candle starts, stored here as bar ends). Bronze always holds UTC bar-end stamps.
    """
    if source == "bundled":
        from spx.components.bronze.datasets import DATASETS, get_dataset

        if not dataset and granularity:  # no name: the bundled dataset with these bars (D: arch)
            dataset = next((d.name for d in DATASETS.values() if d.granularity == granularity), "")
        ds = get_dataset(dataset)
        if granularity and granularity != ds.granularity:
            raise DataValidationError(f"dataset {ds.name} has {ds.granularity} bars, not {granularity}")
        prefix = bronze_prefix(ds.bronze_source, instrument, ds.granularity)
        bars = ds.load()
        uri = write_chunk(
            store, prefix, bars, source=f"dataset {ds.name}", granularity=ds.granularity, allowed_gaps=ds.allowed_gaps()
        )
        progress(f"bronze: {len(bars)} bars of dataset {ds.name} ({ds.description}) -> {uri}")
        return store.uri(prefix)
    granularity = granularity or "M1"
    if source == "file":
        if not path:
            raise DataValidationError("source=file needs a path to a CSV/parquet file")
        market, read = read_market_file(
            path, granularity=granularity, timestamps=timestamps, market_tz=market_tz, start=start, end=end
        )
        prefix = bronze_prefix(market.dataset(read.reading), instrument, granularity)
        for note in market.notes:
            progress(f"bronze: {path}: {note}")
        progress(f"bronze: {path}: {read.summary()}")
        uri = write_chunk(store, prefix, read.bars, source=str(path), granularity=granularity)
        progress(f"bronze: {len(read.bars)} bars from {path} -> {uri}")
        return store.uri(prefix)
    if source == "oanda":
        client = client or OandaClient.from_env()
        bar = bar_interval(granularity)
        prefix = bronze_prefix("oanda", instrument, granularity)
        newest = newest_stored_bar(store, prefix)  # a bar END
        if not start and newest is None:
            raise DataValidationError("source=oanda with an empty bronze prefix needs a start date")
        begin = newest - bar if newest is not None else _utc(start)  # the newest stored candle's start
        stop = _utc(end, end_of_day=True) if end else pd.Timestamp.now(tz="UTC")
        total = 0
        for page in client.iter_pages(instrument, granularity, begin, stop, include_first=newest is None):
            page = page.assign(timestamp=page["timestamp"] + bar)  # OANDA stamps starts; bronze stores ends
            write_chunk(store, prefix, page, source=f"oanda:{instrument}:{granularity}", granularity=granularity)
            total += len(page)
            progress(
                f"bronze: +{len(page)} {granularity} bars ending up to {page['timestamp'].iloc[-1]} ({total} this run)"
            )
        progress(f"bronze: oanda ingest done, {total} new bars under {store.uri(prefix)}")
        return store.uri(prefix)
    raise ValueError(f"unknown market source {source!r} (bundled | file | oanda)")
