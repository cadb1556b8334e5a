"""Bronze (write-once, dedup, reruns) and silver (TextBlob + lexicon) against a real S3 server."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from spx.components.news.bronze import default_news_file, ingest, read_bronze, read_news_file
from spx.components.news.gdelt import GdeltClient
from spx.components.news.http import PoliteSession
from spx.components.news.schema import BRONZE_COLUMNS
from spx.components.news.silver import SILVER_COLUMNS, build_silver, default_lexicon, silver_features, tone_scores
from spx.core.errors import DataValidationError
from spx.core.storage import ImmutableObjectError


def gdelt_client(base: str) -> GdeltClient:
    fast = PoliteSession(min_interval=0, backoff=0.01, sleep=lambda s: None, timeout=5)
    return GdeltClient(base_url=f"{base}/api/v2/doc/doc", http=fast, window=timedelta(days=1))


def test_gdelt_to_bronze_write_once_and_rerun(store, news_http):
    base, _ = news_http
    result = ingest("gdelt", "2024-03-19", "2024-03-21", store=store, client=gdelt_client(base))
    assert result.prefix == f"s3://{store.bucket}/bronze/news/gdelt/"
    assert result.articles == 7 and result.written == 7
    keys = store.list("bronze/news/gdelt/")
    assert [k.split("/")[3] for k in keys] == ["2024-03-19", "2024-03-20"]
    assert all(len(k.split("/")[-1]) == len("0" * 64 + ".parquet") for k in keys)
    obj = store.read_parquet(keys[0])
    assert list(obj.columns)[:6] == list(BRONZE_COLUMNS)
    assert str(obj["published_at"].dtype) == "datetime64[ns, UTC]"
    assert result.report.as_dict()["skipped"] == {"empty_text": 1, "no_date": 1}

    again = ingest("gdelt", "2024-03-19", "2024-03-21", store=store, client=gdelt_client(base))
    assert again.written == 0 and again.prefix == result.prefix and store.list("bronze/news/gdelt/") == keys

    # bronze objects are immutable: different bytes under an existing key are refused
    with pytest.raises(ImmutableObjectError):
        store.put_bytes(keys[0], b"tampered", write_once=True)

    frame = read_bronze(store, result.prefix)
    assert len(frame) == 7 and frame["article_id"].is_unique
    one_day = read_bronze(store, result.prefix, start="2024-03-20", end="2024-03-21")
    assert len(one_day) == 2


def test_overlapping_file_ingest_adds_only_new(store, tmp_path):
    path = tmp_path / "news.csv"
    pd.DataFrame(
        {
            "headline": ["Stocks rally on Fed", "Oil slides", "Dow slips", "No date here"],
            "date": ["2024-01-02 15:00:00+00:00", "2024-01-02 16:00", "2024-01-03 15:00", ""],
            "link": ["https://x.com/1", "https://x.com/2", "https://x.com/3", "https://x.com/4"],
        }
    ).to_csv(path, index=False)
    # two of the times have no zone: the file is refused (not read as UTC: a lookahead on New York stamps),
    # naming the option; nothing is written
    with pytest.raises(DataValidationError, match=r"without a time zone \(e.g. '2024-01-02 16:00'\).*--news-tz"):
        ingest("file", "2024-01-02", "2024-01-03", store=store, path=path)
    assert store.list("bronze/news/") == []
    first = ingest("file", "2024-01-02", "2024-01-03", store=store, path=path, tz="UTC")
    assert first.written == 2 and dict(first.report.skipped) == {"no_date": 1}
    second = ingest("file", "2024-01-02", "2024-01-04", store=store, path=path, tz="UTC")
    assert second.articles == 3 and second.written == 1
    assert len(read_bronze(store, second.prefix)) == 3


def test_no_news_file_means_empty_prefix(store, monkeypatch, tmp_path):
    import spx.components.bronze.datasets as datasets

    monkeypatch.delenv("SPX_NEWS_FILE", raising=False)
    # a clone without ../shared beside it: no default news file
    monkeypatch.setattr(datasets, "shared_data_dir", lambda: None)
    assert default_news_file() is None
    result = ingest("file", "2024-01-01", "2024-02-01", store=store)
    assert result.prefix == "" and store.list("bronze/news/file/") == []
    monkeypatch.setenv("SPX_NEWS_FILE", str(tmp_path / "missing.parquet"))
    assert ingest("file", "2024-01-01", "2024-02-01", store=store).prefix == ""


def test_bad_inputs_raise_clearly(store, tmp_path):
    with pytest.raises(ValueError, match="unknown news source"):
        ingest("twitter", "2024-01-01", "2024-01-02", store=store)
    with pytest.raises(ValueError, match="empty news range"):
        ingest("file", "2024-01-02", "2024-01-01", store=store)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="needs a date column"):
        read_news_file(bad)


def test_lexicon_scores_and_negation():
    lex = default_lexicon()
    up = tone_scores("Stocks rallied to a record high as profits beat expectations", lex)
    down = tone_scores("Stocks tumbled on recession fears and bank losses", lex)
    assert up["lm_tone"] > 0.5 and down["lm_tone"] < -0.5
    negated = tone_scores("Investors are not confident", lex)
    assert negated["lm_positive"] == 0 and negated["lm_negative"] > 0
    hawk = tone_scores("Fed hawks signal another rate hike and quantitative tightening", lex)
    dove = tone_scores("Fed signals rate cuts and easing to support the economy", lex)
    assert hawk["policy_tone"] > 0 > dove["policy_tone"]
    # finance-specific: 'liability', 'tax', 'crude' and the month 'May' carry no tone
    flat = tone_scores("In May the company paid tax on crude liability", lex)
    assert flat["lm_positive"] == flat["lm_negative"] == flat["lm_uncertainty"] == 0
    assert tone_scores("", lex)["lm_tone"] == 0


def test_silver_features_skip_and_score():
    bronze = pd.DataFrame(
        {
            "title": ["Stocks rally after strong jobs data", "Wall Street en hausse", "", "Stocks fall"],
            "body": ["Investors cheered robust growth.", "", "...", ""],
            "source": ["t"] * 4,
            "url": ["u1", "u2", "u3", "u4"],
            "language": ["en", "fr", "en", ""],
            "published_at": pd.to_datetime(
                ["2024-01-02 15:00", "2024-01-02 15:00", "2024-01-02 16:00", "2024-01-02 14:00"], utc=True
            ),
            "article_id": ["a", "b", "c", "d"],
        }
    )
    from spx.components.news.schema import SkipReport

    report = SkipReport()
    silver = silver_features(bronze, report)
    assert list(silver.columns) == list(SILVER_COLUMNS)
    assert silver["article_id"].tolist() == ["d", "a"]  # sorted by time; fr and punctuation-only dropped
    assert dict(report.skipped) == {"not_english": 1, "empty_text": 1}
    rally = silver.iloc[1]
    assert rally["text"] == "Stocks rally after strong jobs data. Investors cheered robust growth."
    assert rally["tb_polarity"] > 0 and rally["lm_tone"] > 0
    assert silver["text_hash"].is_unique


def test_build_silver_from_bronze(store, tmp_path):
    path = tmp_path / "news.jsonl"
    pd.DataFrame(
        {
            "title": ["Fed raises rates", "Stocks climb"],
            "published_at": ["2024-01-02T15:00:00Z"] * 2,
            "url": ["https://a/1", "https://a/2"],
        }
    ).to_json(path, orient="records", lines=True)
    prefix = ingest("file", "2024-01-01", "2024-01-03", store=store, path=path).prefix
    uri, report = build_silver(store, prefix, "run-1")
    assert uri == f"s3://{store.bucket}/silver/run-1/news.parquet" and report.kept == 2
    assert len(store.read_parquet(uri)) == 2
    assert build_silver(store, "", "run-1")[0] == ""
    assert build_silver(store, f"s3://{store.bucket}/bronze/news/nothing/", "run-1")[0] == ""


def test_naive_news_times_are_read_in_the_zone_the_user_names(store, tmp_path):
    """An article published at 19:00 New York, written without a zone: read in the named zone it is 23:00 or
    00:00 UTC — after that day's close — not 19:00 UTC, where it would count for the close (issue 19)."""
    path = tmp_path / "evening.csv"
    pd.DataFrame(
        {
            "title": ["Futures slide after hours", "Stocks open higher"],
            "published_at": ["2011-03-14 19:00:00", "2011-03-15 09:35:00"],
            "url": ["https://n/1", "https://n/2"],
        }
    ).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="--news-tz"):
        ingest("file", "2011-03-14", "2011-03-16", store=store, path=path)
    with pytest.raises(DataValidationError, match="is not a time zone"):
        ingest("file", "2011-03-14", "2011-03-16", store=store, path=path, tz="New York")
    result = ingest("file", "2011-03-14", "2011-03-16", store=store, path=path, tz="America/New_York")
    frame = read_bronze(store, result.prefix)
    assert sorted(frame["published_at"].astype(str)) == ["2011-03-14 23:00:00+00:00", "2011-03-15 13:35:00+00:00"]
    close = pd.Timestamp("2011-03-14 20:00", tz="UTC")  # 16:00 New York (EDT)
    assert (frame["published_at"] > close).sum() == 2  # the evening article comes after the close it was dated on
