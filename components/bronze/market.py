"""Bronze market data: sources (OANDA v20, bundled real S&P 500, local file) and the write-once lake.

Layout: ``bronze/market/{source}/{instrument}/{granularity}/{first}_{last}.parquet`` where
``first``/``last`` are the UTC timestamps of the chunk's first and last bar (``%Y%m%dT%H%M%SZ``).
Chunks are write-once, so bronze is append-only; the newest stored bar is read off the keys,
which makes ingestion incremental and resumable after a crash (every completed page is a chunk).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import requests

from spx.components.bronze.validation import validate_candles
from spx.core.errors import DataValidationError, ServiceError
from spx.core.http import RETRY_STATUSES, RetryableHTTP, http_retrying
from spx.core.settings import settings
from spx.core.storage import ObjectStore

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


def default_max_gap(granularity: str) -> pd.Timedelta:
    """Largest hole tolerated in raw bars: market closures (weekends, holidays, 9/11) are fine."""
    return pd.Timedelta(days=7) if bar_interval(granularity) >= pd.Timedelta(days=1) else pd.Timedelta(days=4)


def bronze_prefix(source: str, instrument: str, granularity: str) -> str:
    return f"bronze/market/{source}/{instrument}/{granularity}/"


def chunk_key(prefix: str, df: pd.DataFrame) -> str:
    first, last = df["timestamp"].iloc[0], df["timestamp"].iloc[-1]
    return f"{prefix}{first.strftime(TS_FMT)}_{last.strftime(TS_FMT)}.parquet"


def _chunk_end(key: str) -> pd.Timestamp:
    stem = key.rsplit("/", 1)[-1].removesuffix(".parquet")
    return pd.Timestamp(pd.to_datetime(stem.split("_")[1], format=TS_FMT, utc=True))


def newest_stored_bar(store: ObjectStore, prefix: str) -> pd.Timestamp | None:
    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    return max((_chunk_end(k) for k in keys), default=None)


def write_chunk(
    store: ObjectStore,
    prefix: str,
    df: pd.DataFrame,
    *,
    source: str,
    granularity: str,
    allowed_gaps: list | None = None,
) -> str:
    """Validate and write one chunk write-once. Invalid data never reaches bronze."""
    clean = validate_candles(df, source=source, max_gap=default_max_gap(granularity), allowed_gaps=allowed_gaps)
    return store.put_parquet(chunk_key(prefix, clean), clean, write_once=True).uri


def _utc(value: str | pd.Timestamp, *, end_of_day: bool = False) -> pd.Timestamp:
    """A UTC timestamp; a bare date as an end bound means the whole day."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end_of_day and isinstance(value, str) and len(value.strip()) <= 10:
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return ts


def read_bronze(
    store: ObjectStore,
    prefix: str,
    *,
    granularity: str,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """All chunks under ``prefix`` concatenated, validated and sliced to [start, end]."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    uri_prefix = prefix if prefix.startswith("s3://") else store.uri(prefix)
    keys = [k for k in store.iter_keys(uri_prefix) if k.endswith(".parquet")]
    if not keys:
        raise DataValidationError(f"{uri_prefix}: no bronze candles found (missing raw data)")
    frames = []
    for key in sorted(keys):
        uri = f"s3://{store._split(uri_prefix)[0]}/{key}"
        try:
            frames.append(store.read_parquet(uri))
        except Exception as exc:  # corrupt parquet
            raise DataValidationError(f"{uri}: unreadable bronze object ({exc})") from exc
    from spx.components.bronze.datasets import allowed_gaps_for_prefix

    bars = validate_candles(
        pd.concat(frames, ignore_index=True),
        source=uri_prefix,
        max_gap=default_max_gap(granularity),
        allowed_gaps=allowed_gaps_for_prefix(uri_prefix),
    )
    if start:
        bars = bars[bars["timestamp"] >= _utc(start)]
    if end:
        bars = bars[bars["timestamp"] <= _utc(end, end_of_day=True)]
    if bars.empty:
        raise DataValidationError(f"{uri_prefix}: no candles between {start} and {end}")
    return bars.reset_index(drop=True)


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


def normalise_stamps(
    df: pd.DataFrame,
    *,
    granularity: str,
    source: str,
    timestamps: str = "end",
    market_tz: str = "",
    check_session: bool = True,
) -> pd.DataFrame:
    """UTC bar-END stamps, or a clear refusal.

    ``market_tz``: the zone the file's clock is in — naive stamps are localised to it, and stamps that
    carry UTC but are really that zone's wall clock are re-read in it. Without it, naive stamps are
    refused. ``timestamps``: ``end`` (default) or ``start`` (shifted by one bar to the bar end).
    Intraday bars are then checked against the NYSE calendar: stamps that look like bar starts or like
    New York wall-clock time labelled UTC are refused with a message saying which it looks like."""
    from spx.components.bronze.sessions import diagnose_stamps, is_intraday

    if timestamps not in ("end", "start"):
        raise ValueError(f"timestamps must be 'end' or 'start', got {timestamps!r}")
    if "timestamp" not in df.columns:
        return df
    out = df.copy()
    if market_tz:
        ts = pd.to_datetime(out["timestamp"], utc=False)
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_localize(None) if str(ts.dt.tz) == "UTC" else ts.dt.tz_convert(market_tz).dt.tz_localize(None)
        try:
            out["timestamp"] = ts.dt.tz_localize(market_tz, ambiguous="raise", nonexistent="raise").dt.tz_convert("UTC")
        except Exception as exc:
            raise DataValidationError(f"{source}: cannot read the stamps as {market_tz} wall clock ({exc})") from exc
    bar = bar_interval(granularity)
    clean = validate_candles(out, source=source)  # schema, UTC, order (gaps are checked on write)
    if timestamps == "start":
        clean["timestamp"] = clean["timestamp"] + bar
    elif check_session and is_intraday(bar):
        verdict = diagnose_stamps(clean, bar)
        if verdict:
            fix = (
                "pass --market-tz America/New_York"
                if "wall-clock" in verdict
                else "pass --timestamps start to shift them to bar ends"
            )
            raise DataValidationError(
                f"{source}: the time stamps look like {verdict}; this project stamps "
                f"bars with their END in UTC — {fix}, or fix the file"
            )
    return clean


def load_file(path: str | Path) -> pd.DataFrame:
    """Candles from a CSV or parquet file with columns timestamp, open, high, low, close, volume."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: market data file not found")
    try:
        df = pd.read_parquet(path) if path.suffix in {".parquet", ".pq"} else pd.read_csv(path)
    except Exception as exc:
        raise DataValidationError(f"{path}: unreadable market data file ({exc})") from exc
    df.columns = [str(c).strip().lower().replace(" ", "_") for c in df.columns]
    for alias in ("time", "date", "datetime"):
        if "timestamp" not in df.columns and alias in df.columns:
            df = df.rename(columns={alias: "timestamp"})
    return df


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
    timestamps: str = "end",
    market_tz: str = "",
    client: OandaClient | None = None,
    progress: Callable[[str], None] = log.info,
) -> str:
    """Bring raw candles into bronze (write-once) and return the bronze prefix URI.

    ``source``: ``bundled`` (a named dataset, see :mod:`spx.components.bronze.datasets`; default the real
    SPY one-minute bars of 2011), ``file`` (CSV/parquet at ``path``; ``timestamps``/``market_tz`` say
    how to read its stamps) or ``oanda`` (v20 API, incremental from the newest stored bar; OANDA stamps
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
        prefix = bronze_prefix("file", instrument, granularity)
        bars = normalise_stamps(
            load_file(path), granularity=granularity, source=str(path), timestamps=timestamps, market_tz=market_tz
        )
        uri = write_chunk(store, prefix, bars, source=str(path), granularity=granularity)
        progress(f"bronze: {len(bars)} bars from {path} -> {uri}")
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
