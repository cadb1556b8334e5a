"""Bronze news: collect from a source, normalise, deduplicate, write once to the bucket.

Objects: ``bronze/news/{source}/{yyyy-mm-dd}/{sha}.parquet`` (``sha`` = SHA-256 of the parquet
bytes), columns ``title, body, source, published_at (UTC), url, language, article_id``. Articles
already present under a day's prefix (same ``article_id``) are not written again, so a rerun over
the same range writes nothing and overlapping ranges only add what is new.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from spx.components.news.schema import (
    BRONZE_COLUMNS,
    ID_COLUMN,
    SkipReport,
    dedup_articles,
    empty_bronze_frame,
    naive_published_example,
    normalize_articles,
    utc,
    validate_bronze,
)
from spx.core.choices import NEWS_SOURCES
from spx.core.errors import DataValidationError
from spx.core.settings import settings

log = logging.getLogger(__name__)

SOURCES = NEWS_SOURCES
BRONZE_ROOT = "bronze/news"

# Column aliases accepted from news files (Kaggle-style headline datasets and our own exports).
_FILE_ALIASES = {
    "title": ("title", "headline", "headlines", "heading"),
    "body": ("body", "text", "content", "summary", "description", "article"),
    "published_at": ("published_at", "published", "datetime", "date", "time", "timestamp", "seendate", "pubdate"),
    "url": ("url", "link", "article_url"),
    "language": ("language", "lang"),
    "source": ("source", "publisher", "domain", "site"),
}


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


DEFAULT_NEWS = "news/reuters_markets_2011q1.parquet"  # overlaps the default minute bars (Jan-Mar 2011)


def default_news_file() -> Path | None:
    """The offline default: ``$SPX_NEWS_FILE``, else ``../shared/data/news/reuters_markets_2011q1.parquet``
    (Reuters headlines: read in place, never copied into the project). None when neither exists —
    the pipeline then trains on market features alone and says so."""
    configured = settings().news.news_file
    if configured:
        return Path(configured)
    from spx.components.bronze.datasets import shared_data_dir

    shared = shared_data_dir()
    if shared is None:
        return None
    path = shared / DEFAULT_NEWS
    return path if path.exists() else None


def read_news_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Raw records from a CSV / parquet / JSON-lines file, mapping common column aliases."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        frame = pd.read_parquet(path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    elif name.endswith((".json", ".json.gz")):
        frame = pd.read_json(path, dtype=False, convert_dates=False)
    elif name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding_errors="replace")
    else:
        raise ValueError(f"unsupported news file type: {path} (use .parquet, .csv, .jsonl)")
    lower = {c.lower(): c for c in frame.columns}
    mapping = {}
    for target, aliases in _FILE_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                mapping[target] = lower[alias]
                break
    if "published_at" not in mapping or ("title" not in mapping and "body" not in mapping):
        raise ValueError(f"news file {path} needs a date column and a title or text column; has {list(frame.columns)}")
    records = []
    for row in frame.to_dict("records"):
        records.append({k: row.get(col) for k, col in mapping.items()})
    return records


# -- writing ----------------------------------------------------------------------------------


@dataclass
class IngestResult:
    source: str
    prefix: str  # s3:// prefix of the source, "" when the source had no articles
    report: SkipReport
    articles: int = 0  # valid articles from the source in range
    written: int = 0  # new articles written now
    objects: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "prefix": self.prefix,
            "articles": self.articles,
            "written": self.written,
            "objects": self.objects,
            **self.report.as_dict(),
        }


def bronze_prefix(source: str) -> str:
    return f"{BRONZE_ROOT}/{source}/"


def _existing_ids(store, prefix: str) -> set[str]:
    ids: set[str] = set()
    for key in store.list(prefix):
        if key.endswith(".parquet"):
            try:
                ids.update(store.read_parquet(key, columns=[ID_COLUMN])[ID_COLUMN].astype(str))
            except Exception:  # noqa: BLE001 - an object from another writer without ids
                frame = store.read_parquet(key)
                ids.update(_ids_for(frame))
    return ids


def _ids_for(frame: pd.DataFrame) -> list[str]:
    from spx.components.news.schema import article_id

    return [article_id(u, t, b) for u, t, b in zip(frame.url, frame.title, frame.body)]


def write_bronze(store, frame: pd.DataFrame, source: str) -> tuple[int, list[str]]:
    """Write the articles of ``frame`` not yet in the bucket; one object per UTC day.

    Returns (articles written, object URIs written)."""
    if frame.empty:
        return 0, []
    validate_bronze(frame)
    written, objects = 0, []
    days = frame["published_at"].dt.strftime("%Y-%m-%d")
    for day, part in frame.groupby(days, sort=True):
        prefix = f"{bronze_prefix(source)}{day}/"
        new = part[~part[ID_COLUMN].isin(_existing_ids(store, prefix))]
        if new.empty:
            continue
        new = new.sort_values(["published_at", ID_COLUMN])[list(BRONZE_COLUMNS) + [ID_COLUMN]]
        buf = io.BytesIO()
        new.to_parquet(buf, index=False)
        data = buf.getvalue()
        key = f"{prefix}{hashlib.sha256(data).hexdigest()}.parquet"
        result = store.put_bytes(key, data, write_once=True, content_type="application/vnd.apache.parquet")
        if result.written:
            written += len(new)
            objects.append(result.uri)
    return written, objects


def ingest(
    source: str,
    start: Any,
    end: Any,
    *,
    store,
    records: Iterable[dict[str, Any]] | None = None,
    client: Any = None,
    path: str | os.PathLike | None = None,
    tz: str = "",
) -> IngestResult:
    """Collect ``source`` articles published in [start, end) into bronze.

    ``records`` (raw dicts) bypasses collection; otherwise ``client`` (a GdeltClient/RssClient)
    or, for ``file``, ``path`` (default: :func:`default_news_file`) is used. A news file follows the rule of
    market files: publication times without a zone are refused (naming one), or read in ``tz`` when the user
    names it (GDELT and RSS define UTC and keep it)."""
    if source not in SOURCES:
        raise ValueError(f"unknown news source {source!r}; choose one of {SOURCES}")
    if source == "none":
        log.info("news source none: the pipeline runs on market features only")
        return IngestResult(source, "", SkipReport())
    if source == "gdelt" and not start:
        raise ValueError("news source gdelt needs a start date (the DOC API walks the range in windows)")
    # empty bounds (the pipeline's default: all bars) mean unbounded
    lo = utc(start) if start else pd.Timestamp("1970-01-01", tz="UTC")
    hi = utc(end) if end else pd.Timestamp.now(tz="UTC")
    if hi <= lo:
        raise ValueError(f"empty news range: start {lo} is not before end {hi}")
    report = SkipReport()
    if records is None:
        if source == "gdelt":
            from spx.components.news.gdelt import GdeltClient

            records = (client or GdeltClient()).fetch(lo, hi, report)
        elif source == "rss":
            from spx.components.news.rss import RssClient

            records = (client or RssClient()).fetch(lo, hi, report)
        else:
            path = Path(path) if path else default_news_file()
            if path is None or not Path(path).exists():
                log.warning(
                    "no news file (set SPX_NEWS_FILE or add one listed in ../shared/README.md); "
                    "news bronze is empty — the pipeline runs on market features only"
                )
                return IngestResult(source, "", report)
            records = read_news_file(path)
    naive_tz: str | None = "UTC"
    if source == "file":
        records = list(records)
        example = naive_published_example(records) if not tz else None
        if example is not None:
            raise DataValidationError(
                f"{path or 'news records'}: publication times without a time zone (e.g. {example!r}); refusing "
                "to read them as UTC (an article at 19:00 New York would count for that day's close) — name "
                "their zone with --news-tz ZONE (e.g. America/New_York) or write zone-aware times"
            )
        naive_tz = tz or None
        if tz:
            _check_zone(tz)
    frame, report = normalize_articles(records, source=source, report=report, naive_tz=naive_tz)
    in_range = (frame["published_at"] >= lo) & (frame["published_at"] < hi)
    if (~in_range).any():
        log.info("%d articles outside [%s, %s) left out", int((~in_range).sum()), lo, hi)
    frame = frame[in_range]
    report.log(f"news bronze ({source})")
    if frame.empty:
        log.warning("news source %s gave no valid articles in [%s, %s)", source, lo, hi)
        return IngestResult(source, "", report)
    written, objects = write_bronze(store, frame, source)
    prefix = store.uri(bronze_prefix(source))
    log.info(
        "news bronze (%s): %d articles in range, %d new written in %d objects under %s",
        source,
        len(frame),
        written,
        len(objects),
        prefix,
    )
    return IngestResult(source, prefix, report, articles=len(frame), written=written, objects=objects)


# -- reading ----------------------------------------------------------------------------------


def read_bronze(store, prefix: str, start: Any = None, end: Any = None) -> pd.DataFrame:
    """All bronze articles under a prefix (optionally day-filtered), deduplicated."""
    lo = utc(start).normalize() if start is not None else None
    hi = utc(end) if end is not None else None
    frames = []
    for key in store.list(prefix):
        if not key.endswith(".parquet"):
            continue
        day = key.rstrip("/").split("/")[-2]
        try:
            day_ts = pd.Timestamp(day, tz="UTC")
        except ValueError:
            day_ts = None
        if day_ts is not None and ((lo is not None and day_ts < lo) or (hi is not None and day_ts >= hi)):
            continue
        frames.append(store.read_parquet(key))
    if not frames:
        return empty_bronze_frame()
    frame = pd.concat(frames, ignore_index=True)
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    if ID_COLUMN not in frame.columns:
        frame[ID_COLUMN] = _ids_for(frame)
    frame = dedup_articles(frame)
    if lo is not None:
        frame = frame[frame["published_at"] >= utc(start)]
    if hi is not None:
        frame = frame[frame["published_at"] < hi]
    return frame.reset_index(drop=True)


def _check_zone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataValidationError(f"--news-tz {tz!r} is not a time zone (e.g. America/New_York, UTC)") from None


def summary_json(result: IngestResult) -> str:
    return json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str)
