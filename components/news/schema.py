"""The bronze news schema and the normalisation every source goes through.

Every source (GDELT, RSS, a local file) yields plain dict records; :func:`normalize_articles`
turns them into one DataFrame with the bronze columns ``title, body, source, published_at (UTC),
url, language`` plus ``article_id`` (the dedup key). Malformed records — no parsable date, text
that is not valid UTF-8, no text at all — are skipped and *counted* in :class:`SkipReport`,
never raised, so one bad article never stops a stage.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from spx.core.errors import DataValidationError

log = logging.getLogger(__name__)

BRONZE_COLUMNS: tuple[str, ...] = ("title", "body", "source", "published_at", "url", "language")
"""Columns of every bronze news object (the contract in docs/ARCHITECTURE.md)."""

ID_COLUMN = "article_id"

# GDELT reports languages by English name; feeds use ISO 639-1 codes (sometimes with a region).
_LANGUAGE_NAMES = {
    "english": "en",
    "spanish": "es",
    "french": "fr",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "russian": "ru",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
    "arabic": "ar",
    "hindi": "hi",
    "turkish": "tr",
    "polish": "pl",
    "swedish": "sv",
    "norwegian": "no",
    "danish": "da",
    "finnish": "fi",
    "greek": "el",
    "hebrew": "he",
    "indonesian": "id",
    "vietnamese": "vi",
    "thai": "th",
    "czech": "cs",
    "romanian": "ro",
    "hungarian": "hu",
    "ukrainian": "uk",
}

# Query parameters that only track clicks; dropped when canonicalising URLs for dedup.
_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid|cmpid|ocid|ref|src)$", re.I)
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@dataclass
class SkipReport:
    """How many records were dropped, and why. Adding two reports sums them."""

    seen: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    duplicates: int = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: "SkipReport") -> "SkipReport":
        return SkipReport(
            self.seen + other.seen,
            self.kept + other.kept,
            self.skipped + other.skipped,
            self.duplicates + other.duplicates,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "duplicates": self.duplicates,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": self.total_skipped,
        }

    def log(self, stage: str) -> None:
        log.info(
            "%s: %d records seen, %d kept, %d duplicates dropped, %d malformed skipped %s",
            stage,
            self.seen,
            self.kept,
            self.duplicates,
            self.total_skipped,
            dict(self.skipped) or "",
        )


# -- field cleaning ---------------------------------------------------------------------------


class MalformedArticle(DataValidationError):
    """A record that cannot become a bronze row; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def clean_text(value: Any) -> str:
    """Text as clean NFC unicode without markup. Bytes must be valid UTF-8.

    Raises :class:`MalformedArticle` ("bad_encoding") for undecodable bytes or text carrying
    lone surrogates / replacement characters (the marks of a broken decode upstream).
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedArticle("bad_encoding", str(exc)) from None
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise MalformedArticle("bad_encoding", str(exc)) from None
    if "\ufffd" in text:
        raise MalformedArticle("bad_encoding", "text holds U+FFFD replacement characters")
    text = html.unescape(_TAGS.sub(" ", text))
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return _SPACE.sub(" ", text).strip()


def parse_published(value: Any, naive_tz: str | None = "UTC") -> pd.Timestamp:
    """A timestamp in UTC from the forms sources use.

    Accepts datetimes, pandas timestamps, epoch seconds, ISO 8601, RFC 822 (RSS) and GDELT's
    ``20240102T153000Z`` / ``20240102153000``. A value without a zone is read in ``naive_tz``: UTC for the
    sources whose format defines it (GDELT's seendate, RSS), the zone the user names for a file; ``None``
    refuses it (:class:`MalformedArticle` "naive_date": an article written at 19:00 New York and read as 19:00
    UTC would count for that day's close — a lookahead). A wall-clock time that is ambiguous or missing at a DST
    change is placed at the later instant (an article never counts earlier than it could have been read).
    Raises :class:`MalformedArticle` ("no_date")."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        raise MalformedArticle("no_date")
    ts: pd.Timestamp | None = None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ts = pd.Timestamp(float(value), unit="s")
        elif isinstance(value, (datetime, pd.Timestamp)):
            ts = pd.Timestamp(value)
        else:
            text = str(value).strip()
            if not text:
                raise MalformedArticle("no_date")
            m = re.fullmatch(r"(\d{8})T?(\d{6})Z?", text)
            if m:
                ts = pd.Timestamp(datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S"))
            else:
                try:
                    ts = pd.Timestamp(parsedate_to_datetime(text))
                except (TypeError, ValueError, IndexError):
                    ts = pd.Timestamp(text)
    except MalformedArticle:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedArticle("no_date", f"unparsable date {value!r}: {exc}") from None
    if ts is None or pd.isna(ts):
        raise MalformedArticle("no_date")
    if ts.tzinfo is None:
        if naive_tz is None:
            raise MalformedArticle("naive_date", f"no time zone: {value!r}")
        ts = ts.tz_localize(naive_tz, ambiguous=False, nonexistent="shift_forward")
    ts = ts.tz_convert("UTC")
    if not (pd.Timestamp("1990-01-01", tz="UTC") <= ts <= pd.Timestamp("2100-01-01", tz="UTC")):
        raise MalformedArticle("no_date", f"implausible date {ts}")
    return ts


def normalize_language(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = str(value).strip().lower()
    if not text:
        return ""
    if text in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[text]
    return re.split(r"[-_]", text)[0][:8]


def canonical_url(url: str) -> str:
    """URL used for dedup: lower-case scheme/host, no fragment, no tracking parameters,
    no trailing slash, ``www.`` dropped, http and https treated alike."""
    url = (url or "").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.netloc.lower()
    if host.startswith("www."):
        host = host[4:]
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k)]
    )
    path = parts.path.rstrip("/") or ""
    return urlunsplit(("https" if parts.scheme in {"http", "https", ""} else parts.scheme, host, path, query, ""))


def content_hash(title: str, body: str) -> str:
    """SHA-256 of the normalised article text (case- and whitespace-insensitive)."""
    text = _SPACE.sub(" ", f"{title}\n{body}".lower()).strip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def article_id(url: str, title: str, body: str) -> str:
    """Stable id: hash of the canonical URL, or of the content when there is no URL."""
    key = canonical_url(url)
    if key:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return content_hash(title, body)[:32]


# -- records -> bronze frame ------------------------------------------------------------------


def normalize_record(record: Mapping[str, Any], *, source: str, naive_tz: str | None = "UTC") -> dict[str, Any]:
    """One raw record (dict with title/body/published_at/url/language) to a bronze row (naive publication times
    read in ``naive_tz``, see :func:`parse_published`)."""
    title = clean_text(record.get("title"))
    body = clean_text(record.get("body"))
    if not title and not body:
        raise MalformedArticle("empty_text")
    published = parse_published(record.get("published_at"), naive_tz)
    url = clean_text(record.get("url"))
    return {
        "title": title,
        "body": body,
        "source": clean_text(record.get("source")) or source,
        "published_at": published,
        "url": url,
        "language": normalize_language(record.get("language")),
    }


def empty_bronze_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in BRONZE_COLUMNS})
    frame["published_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame[ID_COLUMN] = pd.Series(dtype="object")
    return frame


def normalize_articles(
    records: Iterable[Mapping[str, Any]],
    *,
    source: str,
    report: SkipReport | None = None,
    naive_tz: str | None = "UTC",
) -> tuple[pd.DataFrame, SkipReport]:
    """Records to a bronze frame, deduplicated by canonical URL and by content hash.

    Returns the frame (bronze columns + ``article_id``, sorted by ``published_at``) and the
    skip report. On duplicates the earliest-published copy is kept."""
    report = report or SkipReport()
    rows: list[dict[str, Any]] = []
    for record in records:
        report.seen += 1
        try:
            if not isinstance(record, Mapping):
                raise MalformedArticle("not_a_record", type(record).__name__)
            rows.append(normalize_record(record, source=source, naive_tz=naive_tz))
        except MalformedArticle as exc:
            report.skip(exc.reason)
            log.debug("skipped article: %s", exc)
    if not rows:
        return empty_bronze_frame(), report
    frame = pd.DataFrame(rows, columns=list(BRONZE_COLUMNS))
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True).astype("datetime64[ns, UTC]")
    frame[ID_COLUMN] = [article_id(u, t, b) for u, t, b in zip(frame.url, frame.title, frame.body)]
    frame = dedup_articles(frame, report)
    report.kept += len(frame)
    return frame, report


def dedup_articles(frame: pd.DataFrame, report: SkipReport | None = None) -> pd.DataFrame:
    """Drop repeats by ``article_id`` (URL) and by content hash; keep the earliest copy."""
    if frame.empty:
        return frame
    before = len(frame)
    content = [content_hash(t, b) for t, b in zip(frame.title, frame.body)]
    out = (
        frame.assign(_content=content)
        .sort_values(["published_at", ID_COLUMN], kind="mergesort")
        .drop_duplicates(ID_COLUMN, keep="first")
        .drop_duplicates("_content", keep="first")
        .drop(columns="_content")
        .reset_index(drop=True)
    )
    if report is not None:
        report.duplicates += before - len(out)
    return out


def naive_published_example(records: Iterable[Mapping[str, Any]]) -> Any:
    """The first publication time without a zone among ``records`` (None when every one has a zone or none
    parses)."""
    for record in records:
        value = record.get("published_at") if isinstance(record, Mapping) else None
        try:
            parse_published(value, naive_tz=None)
        except MalformedArticle as exc:
            if exc.reason == "naive_date":
                return value
    return None


def validate_bronze(frame: pd.DataFrame) -> None:
    """Raise ValueError naming the problem when a frame breaks the bronze contract."""
    missing = [c for c in BRONZE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bronze news frame lacks columns {missing}")
    if not isinstance(frame["published_at"].dtype, pd.DatetimeTZDtype) or str(frame["published_at"].dt.tz) != "UTC":
        raise ValueError(f"bronze news published_at must be UTC datetimes, got {frame['published_at'].dtype}")


def utc(value: Any) -> pd.Timestamp:
    """A user-given bound (date or datetime string) as a UTC timestamp."""
    ts = pd.Timestamp(value)
    return ts.tz_localize(timezone.utc) if ts.tzinfo is None else ts.tz_convert("UTC")
