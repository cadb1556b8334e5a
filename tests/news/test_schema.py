"""Bronze schema: cleaning, dates, URL canonicalisation, dedup, skip counts."""

from __future__ import annotations

import pandas as pd
import pytest

from spx.components.news.schema import (
    BRONZE_COLUMNS,
    MalformedArticle,
    canonical_url,
    clean_text,
    normalize_articles,
    parse_published,
    validate_bronze,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("20240319T143000Z", "2024-03-19 14:30:00+00:00"),  # GDELT seendate
        ("20240319143000", "2024-03-19 14:30:00+00:00"),
        ("Tue, 12 Mar 2024 08:31:00 -0400", "2024-03-12 12:31:00+00:00"),  # RFC 822 with offset
        ("2024-03-19T10:30:00-04:00", "2024-03-19 14:30:00+00:00"),
        ("2024-03-19 14:30", "2024-03-19 14:30:00+00:00"),  # naive -> UTC
        (1710858600, "2024-03-19 14:30:00+00:00"),  # epoch seconds
    ],
)
def test_parse_published_forms(value, expected):
    assert str(parse_published(value)) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "not a date", float("nan"), "18000101T000000Z"])
def test_parse_published_rejects(value):
    with pytest.raises(MalformedArticle) as err:
        parse_published(value)
    assert err.value.reason == "no_date"


def test_clean_text_strips_markup_and_flags_bad_encoding():
    assert clean_text("<p>Stocks &amp; bonds\n\n <b>rally</b></p>") == "Stocks & bonds rally"
    assert clean_text("caf\u0065\u0301") == "caf\u00e9"  # NFC
    for bad in (b"\xff\xfe broken", "half \ud800 surrogate", "mojibake \ufffd here"):
        with pytest.raises(MalformedArticle) as err:
            clean_text(bad)
        assert err.value.reason == "bad_encoding"


def test_canonical_url_ignores_tracking_scheme_www_and_slash():
    a = canonical_url("https://www.Reuters.com/markets/story/?utm_source=x&id=7#top")
    b = canonical_url("http://reuters.com/markets/story?id=7")
    assert a == b == "https://reuters.com/markets/story?id=7"


def test_normalize_counts_skips_and_dedups():
    records = [
        {
            "title": "Stocks rise",
            "body": "",
            "published_at": "2024-03-19T14:00:00Z",
            "url": "https://a.com/x?utm_source=1",
            "language": "English",
        },
        {
            "title": "Stocks rise (copy)",
            "body": "",
            "published_at": "2024-03-19T14:05:00Z",
            "url": "https://www.a.com/x",
            "language": "en",
        },  # same URL
        {
            "title": "STOCKS  rise",
            "body": "",
            "published_at": "2024-03-19T15:00:00Z",
            "url": "https://b.com/other",
            "language": "en",
        },  # same content
        {"title": "No date", "body": "x", "published_at": None, "url": "https://c.com"},
        {"title": "", "body": "  ", "published_at": "2024-03-19T15:00:00Z", "url": "https://d.com"},
        {"title": b"\xc3\x28 bad bytes", "published_at": "2024-03-19T15:00:00Z", "url": "https://e.com"},
        "not a dict",
        {
            "title": "Fed holds",
            "body": "Rates unchanged",
            "published_at": "2024-03-19T18:00:00Z",
            "url": "",
            "language": "en-US",
        },  # no URL: content id
    ]
    frame, report = normalize_articles(records, source="test")
    assert list(frame.columns) == [*BRONZE_COLUMNS, "article_id"]
    validate_bronze(frame)
    assert frame["title"].tolist() == ["Stocks rise", "Fed holds"]  # earliest copy kept
    assert frame["language"].tolist() == ["en", "en"]
    assert report.seen == 8 and report.kept == 2 and report.duplicates == 2
    assert dict(report.skipped) == {"no_date": 1, "empty_text": 1, "bad_encoding": 1, "not_a_record": 1}
    assert str(frame["published_at"].dtype) == "datetime64[ns, UTC]"


def test_validate_bronze_rejects_naive_dates():
    frame = pd.DataFrame({c: ["x"] for c in BRONZE_COLUMNS})
    frame["published_at"] = pd.to_datetime(["2024-01-01"])
    with pytest.raises(ValueError, match="UTC"):
        validate_bronze(frame)
