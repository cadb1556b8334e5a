"""GDELT DOC 2.0 API client (article list mode).

``GET {base}?query=...&mode=ArtList&format=json&maxrecords=250&startdatetime=YYYYMMDDHHMMSS
&enddatetime=...&sort=DateAsc`` answers ``{"articles": [{"url", "url_mobile", "title", "seendate",
"socialimage", "domain", "language", "sourcecountry"}, ...]}`` — or ``{}`` when nothing matched,
or a *plain-text* message (HTTP 200 or 429) for rate limiting ("Please limit requests to one every
5 seconds…") and for query errors. The DOC API returns at most 250 articles per call and covers
a rolling window of recent months, so :class:`GdeltClient` walks the range in windows and halves
any window that comes back full, down to ``min_window``.

The article list carries no body; ``fetch_fulltext=True`` downloads each page and keeps the text
of its ``<p>`` elements (off by default: slow, and many publishers forbid it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any, Iterator

import pandas as pd
import requests

from spx.components.news.http import FetchError, PoliteSession, RetryableResponse
from spx.components.news.schema import SkipReport, utc
from spx.core.settings import settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.gdeltproject.org/api/v2/doc/doc"
MAX_RECORDS = 250

# US equity market and Fed policy. GDELT needs OR-ed terms inside parentheses and phrases quoted.
DEFAULT_TERMS: tuple[str, ...] = (
    '"S&P 500"',
    '"stock market"',
    '"Wall Street"',
    '"Federal Reserve"',
    "FOMC",
    '"interest rates"',
    '"Dow Jones"',
    "Nasdaq",
    "Powell",
)


def build_query(
    terms: tuple[str, ...] | list[str] = DEFAULT_TERMS, *, language: str = "english", extra: str = ""
) -> str:
    """A DOC API query: ``(t1 OR t2 ...) sourcelang:english [extra]``."""
    terms = [t.strip() for t in terms if t.strip()]
    if not terms:
        raise ValueError("a GDELT query needs at least one term")
    core = terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
    parts = [core]
    if language:
        parts.append(f"sourcelang:{language}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def gdelt_time(ts: pd.Timestamp) -> str:
    return utc(ts).strftime("%Y%m%d%H%M%S")


def iter_windows(
    start: pd.Timestamp, end: pd.Timestamp, window: timedelta
) -> Iterator[tuple[pd.Timestamp, pd.Timestamp]]:
    """Half-open windows [a, b) covering [start, end)."""
    start, end = utc(start), utc(end)
    if end <= start:
        return
    a = start
    while a < end:
        b = min(a + window, end)
        yield a, b
        a = b


def _check_gdelt(resp: requests.Response) -> None:
    text = resp.text.lstrip()
    if text.startswith("{") or text == "":
        return
    if "limit requests" in text.lower():
        raise RetryableResponse(f"GDELT rate limit: {text[:120]!r}")
    raise FetchError(f"GDELT rejected the request: {text[:300]!r}", resp.status_code)


class _ParagraphText(HTMLParser):
    """Collects the text of <p> elements outside script/style/nav/footer."""

    _SKIP = {"script", "style", "noscript", "nav", "footer", "header", "aside", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._p = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "p":
            self._p += 1

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag == "p" and self._p:
            self._p -= 1
            self.parts.append("\n")

    def handle_data(self, data):  # noqa: ANN001
        if self._p and not self._skip:
            self.parts.append(data)


def html_to_text(page: str, max_chars: int = 20_000) -> str:
    parser = _ParagraphText()
    parser.feed(page)
    parser.close()
    text = " ".join(" ".join(p.split()) for p in "".join(parser.parts).split("\n") if p.strip())
    return text[:max_chars]


@dataclass
class GdeltClient:
    base_url: str = field(default_factory=lambda: settings().news.gdelt_url or DEFAULT_BASE_URL)
    query: str = field(default_factory=build_query)
    window: timedelta = timedelta(hours=6)
    min_window: timedelta = timedelta(minutes=15)
    max_records: int = MAX_RECORDS
    fetch_fulltext: bool = False
    http: PoliteSession = field(default_factory=lambda: PoliteSession(min_interval=5.0))
    fulltext_http: PoliteSession = field(default_factory=lambda: PoliteSession(min_interval=0.5, max_retries=1))
    fulltext_failures: int = field(default=0, init=False)

    def artlist(self, start: pd.Timestamp, end: pd.Timestamp) -> list[dict[str, Any]]:
        """One ArtList call for [start, end); the raw article dicts."""
        params = {
            "query": self.query,
            "mode": "ArtList",
            "format": "json",
            "maxrecords": str(self.max_records),
            "sort": "DateAsc",
            "startdatetime": gdelt_time(start),
            "enddatetime": gdelt_time(end),
        }
        resp = self.http.get(self.base_url, params=params, check=_check_gdelt)
        text = resp.text.strip()
        if not text:
            return []
        try:
            payload = json.loads(text, strict=False)  # GDELT titles may hold raw control chars
        except json.JSONDecodeError as exc:
            raise FetchError(f"GDELT answered with invalid JSON ({exc}): {text[:200]!r}") from None
        articles = payload.get("articles", []) if isinstance(payload, dict) else []
        return [a for a in articles if isinstance(a, dict)]

    def _walk(self, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[dict[str, Any]]:
        articles = self.artlist(start, end)
        if len(articles) >= self.max_records and (end - start) / 2 >= self.min_window:
            mid = start + (end - start) / 2
            log.info("GDELT window %s..%s is full (%d); splitting", start, end, len(articles))
            yield from self._walk(start, mid)
            yield from self._walk(mid, end)
            return
        if len(articles) >= self.max_records:
            log.warning(
                "GDELT window %s..%s still holds %d articles at the minimum window; later articles in it are missed",
                start,
                end,
                len(articles),
            )
        yield from articles

    def fetch(self, start: Any, end: Any, report: SkipReport | None = None) -> Iterator[dict[str, Any]]:
        """Raw records (schema field names) for every article seen in [start, end)."""
        report = report if report is not None else SkipReport()
        for a, b in iter_windows(utc(start), utc(end), self.window):
            for art in self._walk(a, b):
                yield self._record(art, report)

    def _record(self, art: dict[str, Any], report: SkipReport) -> dict[str, Any]:
        body = ""
        url = art.get("url") or ""
        if self.fetch_fulltext and url:
            try:
                body = html_to_text(self.fulltext_http.get(url).text)
            except (FetchError, requests.RequestException) as exc:
                self.fulltext_failures += 1
                log.info("full text unavailable for %s: %s", url, exc)
        domain = art.get("domain") or ""
        return {
            "title": art.get("title"),
            "body": body,
            "source": f"gdelt:{domain}" if domain else "gdelt",
            "published_at": art.get("seendate"),
            "url": url,
            "language": art.get("language"),
        }
