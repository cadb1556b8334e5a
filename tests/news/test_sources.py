"""GDELT DOC 2.0 and RSS clients against recorded-format responses served on loopback."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from spx.components.news.gdelt import GdeltClient, build_query, html_to_text, iter_windows
from spx.components.news.http import FetchError, PoliteSession
from spx.components.news.rss import RssClient, parse_feed
from spx.components.news.schema import SkipReport, normalize_articles
from tests.news.helpers import FIXTURES


def fast_session(**kw) -> PoliteSession:
    sleeps: list[float] = []
    session = PoliteSession(min_interval=0.0, backoff=0.01, sleep=sleeps.append, timeout=5, **kw)
    session.sleeps = sleeps  # type: ignore[attr-defined]
    return session


def gdelt(base: str, **kw) -> GdeltClient:
    return GdeltClient(base_url=f"{base}/api/v2/doc/doc", http=fast_session(), fulltext_http=fast_session(), **kw)


def test_build_query_and_windows():
    q = build_query(['"S&P 500"', "FOMC"])
    assert q == '("S&P 500" OR FOMC) sourcelang:english'
    assert build_query(["Powell"], language="") == "Powell"
    with pytest.raises(ValueError):
        build_query([])
    windows = list(iter_windows(pd.Timestamp("2024-03-19"), pd.Timestamp("2024-03-20 03:00"), timedelta(hours=12)))
    assert [(str(a), str(b)) for a, b in windows] == [
        ("2024-03-19 00:00:00+00:00", "2024-03-19 12:00:00+00:00"),
        ("2024-03-19 12:00:00+00:00", "2024-03-20 00:00:00+00:00"),
        ("2024-03-20 00:00:00+00:00", "2024-03-20 03:00:00+00:00"),
    ]


def test_gdelt_walks_windows_and_normalises(news_http):
    base, rec = news_http
    client = gdelt(base, window=timedelta(hours=12))
    report = SkipReport()
    frame, report = normalize_articles(client.fetch("2024-03-19", "2024-03-21", report), source="gdelt", report=report)
    calls = [p for path, p in rec.requests if path == "/api/v2/doc/doc"]
    assert len(calls) == 4  # 2 days / 12 h windows
    first = calls[0]
    assert first["mode"] == ["ArtList"] and first["format"] == ["json"] and first["sort"] == ["DateAsc"]
    assert first["maxrecords"] == ["250"]
    assert first["startdatetime"] == ["20240319000000"] and first["enddatetime"] == ["20240319120000"]
    assert "sourcelang:english" in first["query"][0]
    # 10 recorded articles: 1 without date, 1 empty title, 1 duplicate URL (utm + www variant)
    assert report.seen == 10
    assert dict(report.skipped) == {"no_date": 1, "empty_text": 1}
    assert report.duplicates == 1 and len(frame) == 7
    assert frame["published_at"].is_monotonic_increasing
    reuters = frame[frame["source"] == "gdelt:reuters.com"]
    assert len(reuters) == 1 and str(reuters["published_at"].iloc[0]) == "2024-03-19 14:30:00+00:00"
    assert set(frame["language"]) == {"en", "fr"}
    assert "édge" in " ".join(frame["title"])


def test_gdelt_retries_rate_limit_and_server_errors(news_http):
    base, rec = news_http
    rec.rate_limit_first, rec.server_errors_first = 2, 1
    client = gdelt(base, window=timedelta(days=1))
    arts = client.artlist(pd.Timestamp("2024-03-20", tz="UTC"), pd.Timestamp("2024-03-21", tz="UTC"))
    assert len(arts) == 2
    assert len(rec.requests) == 4  # 2 rate-limited + 1 x 503 + success
    assert len(client.http.sleeps) == 3  # backed off before each retry


def test_gdelt_gives_up_after_retries_and_reports_query_errors(news_http):
    base, rec = news_http
    rec.rate_limit_first = 99
    client = gdelt(base)
    client.http.max_retries = 2
    with pytest.raises(FetchError, match="after 3 attempts"):
        client.artlist(pd.Timestamp("2024-03-20", tz="UTC"), pd.Timestamp("2024-03-21", tz="UTC"))
    rec.rate_limit_first = 0
    rec.gdelt_error_text = "The specified phrase is too short."
    with pytest.raises(FetchError, match="too short"):
        client.artlist(pd.Timestamp("2024-03-20", tz="UTC"), pd.Timestamp("2024-03-21", tz="UTC"))


def test_gdelt_splits_full_windows(news_http):
    base, rec = news_http
    rec.full_windows = True
    client = gdelt(base, window=timedelta(hours=4), min_window=timedelta(minutes=30))
    records = list(client.fetch("2024-03-19 00:00", "2024-03-19 04:00"))
    spans = [(p["startdatetime"][0], p["enddatetime"][0]) for _, p in rec.requests]
    # 4h full -> 2h full x2 -> 1h (3 articles each) x4
    assert spans[0] == ("20240319000000", "20240319040000")
    assert len(rec.requests) == 1 + 2 + 4
    assert len(records) == 4 * 3


def test_gdelt_optional_fulltext(news_http):
    base, rec = news_http
    import json

    data = json.loads((FIXTURES / "gdelt_artlist_2024-03-20.json").read_text())
    art = dict(data["articles"][0], url=f"{base}/article/fed")
    client = gdelt(base, fetch_fulltext=True)
    record = client._record(art, SkipReport())
    assert record["body"] == (
        "US stocks rallied on Wednesday after the Federal Reserve held rates steady. "
        "The S&P 500 gained 0.9% to a record close."
    )
    missing = client._record(dict(art, url=f"{base}/nothing-here"), SkipReport())
    assert missing["body"] == "" and client.fulltext_failures == 1


def test_html_to_text_skips_scripts_nav_footer():
    text = html_to_text((FIXTURES / "article_page.html").read_text())
    assert "not text" not in text and "Copyright" not in text and "Home" not in text
    assert text.startswith("US stocks rallied")


def test_rss_parse_fixture():
    records = parse_feed((FIXTURES / "rss_markets.xml").read_bytes())
    frame, report = normalize_articles(records, source="rss")
    assert report.seen == 5 and dict(report.skipped) == {"no_date": 1, "empty_text": 1}
    first = frame.iloc[0]
    assert first["title"] == "Treasury yields climb on hot inflation data"
    assert str(first["published_at"]) == "2024-03-12 12:31:00+00:00"  # -0400 converted to UTC
    rally = frame[frame["title"].str.startswith("Stocks rally")].iloc[0]
    assert rally["body"].startswith("US stocks rallied on Wednesday")  # markup stripped
    assert rally["source"] == "rss:Markets Desk" and rally["language"] == "en"
    banks = frame[frame["title"].str.startswith("Bank")].iloc[0]
    assert "trading revenue" in banks["body"] and "track()" not in banks["body"]  # content:encoded


def test_rss_client_range_and_failing_feeds(news_http):
    base, _ = news_http
    client = RssClient(
        feeds=[f"{base}/feeds/markets.xml", f"{base}/feeds/missing.xml", f"{base}/feeds/garbage.xml"],
        http=fast_session(max_retries=0),
    )
    report = SkipReport()
    records = list(client.fetch("2024-03-15", "2024-04-01", report))
    frame, report = normalize_articles(records, source="rss", report=report)
    assert frame["title"].tolist() == ["Stocks rally as Fed signals rate cuts later this year"]
    assert report.skipped["feed_unavailable"] == 2  # 404 and a page that is not a feed
    assert report.skipped["no_date"] == 1  # kept for counting, not silently dropped
