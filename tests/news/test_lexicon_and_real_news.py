"""The offline scorer (FinVADER lexicons + VADER) and the real Reuters headlines through every news stage.

The real-data test reads ``../shared/data`` (CI has it) and skips with the reason when it is absent.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from spx.components.bronze.datasets import get_dataset, shared_data_dir
from spx.components.bronze.sessions import prepare_bars
from spx.components.news.bronze import default_news_file, ingest
from spx.components.news.gold import SIGNAL_COLUMNS, build_gold
from spx.components.news.join import NEWS_FEATURE_COLUMNS, join_news_features
from spx.components.news.lexicon_scorer import (
    NAME,
    LexiconScorer,
    _dict_assignments,
    finvader_lexicon,
    labels_from_compound,
)
from spx.components.news.schema import SkipReport
from spx.components.news.silver import build_silver, silver_features

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None or not (SHARED / "news" / "reuters_markets_2011q1.parquet").exists(),
    reason="../shared/data/news/reuters_markets_2011q1.parquet is not beside the project",
)


def test_finvader_lexicons_are_read_as_data_without_importing_the_module():
    lexicon, source = finvader_lexicon()
    if not lexicon:
        pytest.skip("neither the finvader package nor ../shared/data/sentiment/finvader_lexicons.csv is here")
    assert "finvader" not in sys.modules  # its import calls nltk.download
    assert len(lexicon) > 7000
    scorer = LexiconScorer()
    assert scorer.name == NAME and scorer.lexicon_source == source
    assert "finvader" not in sys.modules
    c = scorer.compound(
        [
            "Operating profit rose 35 % to EUR 12 mn from a year earlier .",
            "The company swung to a net loss and cut its dividend after sales slumped .",
            "The board meets on Tuesday .",
        ]
    )
    assert c[0] > 0.05 and c[1] < -0.05
    assert list(labels_from_compound(c))[:2] == ["positive", "negative"]
    probs = scorer.predict(["Shares surged on record profit"])
    assert probs.shape == (1, 3) and probs[0, 0] - probs[0, 1] == pytest.approx(
        scorer.compound(["Shares surged on record profit"])[0]
    )


def test_word_list_parser_executes_nothing():
    source = "import os\nd = {}\nd['gain'] = 1.5\nd['loss'] = -2\nd['x'] = os.system('echo pwned')\n"
    assert _dict_assignments(source) == {"gain": 1.5, "loss": -2.0}


def test_installed_lexicon_matches_the_shared_reference_copy():
    if SHARED is None or not (SHARED / "sentiment" / "finvader_lexicons.csv").exists():
        pytest.skip("../shared/data/sentiment/finvader_lexicons.csv is not beside the project")
    from spx.components.news import lexicon_scorer

    if lexicon_scorer._finvader_files() is None:
        pytest.skip("finvader is not installed (the news extra: uv sync --all-extras)")
    installed, _ = finvader_lexicon()
    ref = pd.read_csv(SHARED / "sentiment" / "finvader_lexicons.csv")
    henry = ref[ref["source"].str.lower().str.startswith("henry")]
    assert all(installed[t] == pytest.approx(v) for t, v in zip(henry["term"], henry["score"]))
    senti = ref[ref["source"].str.lower().str.startswith("sentibignomics")]
    only_senti = senti[~senti["term"].isin(henry["term"])]
    assert all(installed[t] == pytest.approx(0.1 * v) for t, v in zip(only_senti["term"], only_senti["score"]))


def test_non_english_text_under_an_english_tag_is_skipped_and_counted():
    bronze = pd.DataFrame(
        {
            "article_id": ["a", "b", "c"],
            "title": ["Stocks rise on jobs data", "股市因就业数据上涨", "Акции растут"],
            "body": ["", "", ""],
            "source": ["x"] * 3,
            "url": ["u1", "u2", "u3"],
            "language": ["en", "en", ""],
            "published_at": pd.to_datetime(["2011-03-01 15:00"] * 3, utc=True),
        }
    )
    report = SkipReport()
    out = silver_features(bronze, report)
    assert out["article_id"].tolist() == ["a"] and report.skipped["not_english"] == 2


def test_offline_default_scorer_is_the_lexicon(store, tmp_path, monkeypatch):
    monkeypatch.delenv("SPX_FINBERT_MODEL", raising=False)
    path = tmp_path / "news.csv"
    pd.DataFrame(
        {
            "title": ["Stocks rally as profits beat forecasts", "Bank shares slump on losses", "bad date"],
            "published_at": ["2011-03-01T15:00:00Z", "2011-03-01T15:10:00Z", "not a time"],
            "url": ["https://n/1", "https://n/2", "https://n/3"],
        }
    ).to_csv(path, index=False)
    result = ingest("file", "2011-03-01", "2011-03-02", store=store, path=path)
    assert result.articles == 2 and result.report.total_skipped == 1  # the unparsable time: skipped, counted
    silver_uri, _ = build_silver(store, result.prefix, "lex")
    gold_uri, summary = build_gold(store, silver_uri, "lex")
    signals = store.read_parquet(gold_uri)
    assert list(signals.columns) == list(SIGNAL_COLUMNS) and summary["scored"] == 2
    assert (signals["scorer"] == LexiconScorer().name).all()
    assert signals.loc[0, "sentiment"] > 0 > signals.loc[1, "sentiment"]


@needs_shared
def test_real_reuters_headlines_through_every_news_stage_into_gold_features(store, monkeypatch):
    monkeypatch.delenv("SPX_NEWS_FILE", raising=False)
    monkeypatch.delenv("SPX_FINBERT_MODEL", raising=False)
    path = default_news_file()
    assert path is not None and path.name == "reuters_markets_2011q1.parquet"
    result = ingest("file", "2011-03-07", "2011-03-12", store=store, path=path)  # one week of headlines
    assert result.articles > 1000
    silver_uri, report = build_silver(store, result.prefix, "real")
    assert report.kept > 1000
    gold_uri, summary = build_gold(store, silver_uri, "real", window_minutes=60)
    signals = store.read_parquet(gold_uri)
    assert len(signals) == report.kept and signals["sentiment"].abs().gt(0.05).mean() > 0.2
    bars = pd.read_parquet(get_dataset("spy_m1_2011q1").path())
    week = prepare_bars(bars, pd.Timedelta(minutes=1)).bars
    week = week[(week["timestamp"] >= "2011-03-07") & (week["timestamp"] < "2011-03-12")]
    joined = join_news_features(week[["timestamp"]].reset_index(drop=True), signals)
    assert set(NEWS_FEATURE_COLUMNS) <= set(joined.columns)
    assert (joined["news_article_count"] > 0).mean() > 0.9  # Reuters publishes all through the session
    assert joined["news_avg_sentiment"].abs().gt(0).mean() > 0.5
    assert np.isfinite(joined[list(NEWS_FEATURE_COLUMNS)].to_numpy()).all()
