"""RSS/Atom client: feeds fetched politely over HTTP, parsed by ``feedparser``.

Each entry becomes a raw record (``title``, ``body`` from the summary or content, ``url`` from the
link, ``published_at`` from ``published``/``updated``, ``language`` from the feed). Entries
outside [start, end) are dropped when a range is given; feeds only hold their latest items, so
RSS is for live collection, GDELT or a file for history.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import feedparser
import pandas as pd

from spx.components.news.http import FetchError, PoliteSession
from spx.components.news.schema import MalformedArticle, SkipReport, parse_published, utc

log = logging.getLogger(__name__)

# Public market/Fed feeds; override with --feed or SPX_NEWS_FEEDS (comma-separated).
DEFAULT_FEEDS: tuple[str, ...] = (
    "https://www.federalreserve.gov/feeds/press_all.xml",
    "https://feeds.content.dowjones.io/public/rss/mw_topstories",
    "https://www.cnbc.com/id/100003114/device/rss/rss.html",
)


def _entry_time(entry: Any) -> Any:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return pd.Timestamp(calendar.timegm(value), unit="s", tz="UTC")  # feedparser gives UTC
    for key in ("published", "updated", "created"):
        if entry.get(key):
            return entry.get(key)  # unparsed string: parse_published tries harder or skips
    return None


def _entry_body(entry: Any) -> str:
    contents = entry.get("content") or []
    for item in contents:
        if item.get("value"):
            return item["value"]
    return entry.get("summary") or entry.get("description") or ""


def parse_feed(content: bytes | str, *, feed_url: str = "") -> list[dict[str, Any]]:
    """Raw records from one feed document."""
    parsed = feedparser.parse(content)
    if parsed.get("bozo") and not parsed.entries:
        raise FetchError(f"feed {feed_url or '<document>'} is not parsable: {parsed.get('bozo_exception')}")
    language = parsed.feed.get("language", "")
    publisher = parsed.feed.get("title", "") or feed_url
    out = []
    for entry in parsed.entries:
        out.append(
            {
                "title": entry.get("title"),
                "body": _entry_body(entry),
                "source": f"rss:{publisher}" if publisher else "rss",
                "published_at": _entry_time(entry),
                "url": entry.get("link") or entry.get("id") or "",
                "language": entry.get("language") or language,
            }
        )
    return out


@dataclass
class RssClient:
    feeds: Sequence[str] = DEFAULT_FEEDS
    http: PoliteSession = field(default_factory=lambda: PoliteSession(min_interval=1.0, max_retries=3))

    def fetch(self, start: Any = None, end: Any = None, report: SkipReport | None = None) -> Iterator[dict[str, Any]]:
        """Records from every feed; a feed that fails is logged and counted, the rest go on."""
        report = report if report is not None else SkipReport()
        lo = utc(start) if start is not None else None
        hi = utc(end) if end is not None else None
        for url in self.feeds:
            try:
                resp = self.http.get(url)
                records = parse_feed(resp.content, feed_url=url)
            except FetchError as exc:
                report.skip("feed_unavailable")
                log.warning("RSS feed %s skipped: %s", url, exc)
                continue
            for record in records:
                if lo is not None or hi is not None:
                    try:
                        ts = parse_published(record["published_at"])
                    except MalformedArticle:
                        yield record  # normalisation counts it as no_date
                        continue
                    if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
                        continue
                yield record
