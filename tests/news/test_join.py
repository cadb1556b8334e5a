"""The as-of join: exact window aggregates, and never an article at or after the bar it feeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spx.components.news.join import NEWS_FEATURE_COLUMNS, join_news_features, news_feature_columns

T0 = pd.Timestamp("2024-03-19 13:00", tz="UTC")


def signal_rows(minutes: list[int], pos: list[float], neg: list[float]) -> pd.DataFrame:
    pos_a, neg_a = np.asarray(pos, float), np.asarray(neg, float)
    neu = np.clip(1 - pos_a - neg_a, 0, 1)
    return pd.DataFrame(
        {
            "published_at": pd.DatetimeIndex([T0 + pd.Timedelta(minutes=m) for m in minutes], tz="UTC"),
            "positive_prob": pos_a,
            "negative_prob": neg_a,
            "neutral_prob": neu,
            "tb_polarity": pos_a - neg_a,
            "tb_subjectivity": pos_a,
            "lm_tone": -neg_a,
            "lm_uncertainty": neu,
            "policy_tone": pos_a * 0.5,
        }
    )


def brute_force(bar: pd.Timestamp, sig: pd.DataFrame, delay: pd.Timedelta, window: pd.Timedelta) -> dict:
    eff = sig["published_at"] + delay
    rows = sig[(eff < bar) & (eff >= bar - window)]
    if rows.empty:
        return {"news_article_count": 0.0, "news_avg_sentiment": 0.0, "news_neutral_prob": 1.0}
    s = rows["positive_prob"] - rows["negative_prob"]
    conf = rows[["positive_prob", "negative_prob", "neutral_prob"]].max(axis=1)
    return {
        "news_article_count": float(len(rows)),
        "news_avg_sentiment": s.mean(),
        "news_neutral_prob": rows["neutral_prob"].mean(),
        "news_signal_strength": abs(s.mean()) * conf.mean(),
        "news_tb_polarity": rows["tb_polarity"].mean(),
    }


def test_columns_and_no_news():
    market = pd.DataFrame({"timestamp": pd.date_range(T0, periods=3, freq="15min"), "close": [1.0, 2, 3]})
    out = join_news_features(market, None)
    assert list(out.columns) == ["timestamp", "close", *NEWS_FEATURE_COLUMNS]
    assert news_feature_columns() == list(NEWS_FEATURE_COLUMNS)
    assert all(out[c].dtype == np.float64 for c in NEWS_FEATURE_COLUMNS)
    assert (out["news_article_count"] == 0).all() and (out["news_neutral_prob"] == 1).all()
    assert (out[[c for c in NEWS_FEATURE_COLUMNS if c != "news_neutral_prob"]] == 0).all().all()
    assert out["close"].tolist() == [1.0, 2, 3]
    empty = join_news_features(market, signal_rows([], [], []))
    pd.testing.assert_frame_equal(empty, out)


def test_boundaries_delay_and_window():
    sig = signal_rows([0, 30, 60], [0.9, 0.1, 0.8], [0.05, 0.8, 0.1])
    market = pd.DataFrame({"timestamp": [T0 + pd.Timedelta(minutes=m) for m in (0, 3, 30, 32, 60, 61, 120)]})
    out = join_news_features(market, sig, window=pd.Timedelta(minutes=60))
    # at T0 the article published at T0 is NOT used (strictly before the close); the 60-minute
    # window still holds an article exactly 60 minutes old (T0 at T0+60)
    assert out["news_article_count"].tolist() == [0, 1, 1, 2, 2, 2, 1]
    assert out.loc[2, "news_avg_sentiment"] == pytest.approx(0.85)
    assert out.loc[4, "news_avg_sentiment"] == pytest.approx((0.85 - 0.7) / 2)
    assert out.loc[2, "news_trading_signal"] == 1.0 and out.loc[6, "news_trading_signal"] == 1.0
    assert out.loc[4, "news_trading_signal"] == 0.0  # weak mixed news: no signal
    delayed = join_news_features(market, sig, window=pd.Timedelta(minutes=60), delay=pd.Timedelta(minutes=5))
    assert delayed["news_article_count"].tolist() == [0, 0, 1, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="negative delay"):
        join_news_features(market, sig, delay=pd.Timedelta(minutes=-1))


def test_window_from_signals_and_unsorted_market_keeps_order():
    sig = signal_rows([0, 10], [0.2, 0.7], [0.7, 0.2]).assign(window_minutes=15.0)
    times = [T0 + pd.Timedelta(minutes=m) for m in (40, 5, 20, 12)]
    market = pd.DataFrame({"timestamp": times, "instrument": ["SPX"] * 4}, index=[7, 3, 9, 1])
    out = join_news_features(market, sig)
    assert out.index.tolist() == [7, 3, 9, 1]
    assert out["news_article_count"].tolist() == [0, 1, 1, 2]  # 15-minute window from the signals
    assert out["news_trading_signal"].tolist() == [0.0, -1.0, 1.0, 0.0]


def test_naive_market_times_are_utc_and_inputs_checked():
    sig = signal_rows([0], [0.9], [0.05])
    market = pd.DataFrame({"timestamp": [pd.Timestamp("2024-03-19 13:30")]})
    assert join_news_features(market, sig)["news_article_count"].tolist() == [1]
    with pytest.raises(ValueError, match="timestamp"):
        join_news_features(pd.DataFrame({"ts": []}), sig)
    with pytest.raises(ValueError, match="lack columns"):
        join_news_features(market, sig.drop(columns="neutral_prob"))


articles = st.lists(st.tuples(st.integers(-300, 600), st.floats(0, 1), st.floats(0, 1)), max_size=40)
bars = st.lists(st.integers(-120, 720), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, database=None)
@given(articles=articles, bars=bars, delay=st.integers(0, 30), window=st.integers(1, 180))
def test_as_of_join_matches_brute_force(articles, bars, delay, window):
    minutes = [a[0] for a in articles]
    pos = [a[1] * 0.9 for a in articles]
    neg = [(1 - a[1]) * a[2] * 0.9 for a in articles]
    sig = signal_rows(minutes, pos, neg)
    market = pd.DataFrame({"timestamp": [T0 + pd.Timedelta(minutes=b) for b in bars]})
    d, w = pd.Timedelta(minutes=delay), pd.Timedelta(minutes=window)
    out = join_news_features(market, sig, delay=d, window=w)
    for i, bar in enumerate(market["timestamp"]):
        expected = brute_force(bar, sig, d, w)
        for col, value in expected.items():
            assert out.loc[i, col] == pytest.approx(value, abs=1e-9), (col, bar)


@settings(max_examples=60, deadline=None, database=None)
@given(articles=articles, bars=bars, delay=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_articles_at_or_after_the_bar_never_feed_it(articles, bars, delay, seed):
    """Rewrite every article whose published_at + delay is at or after a bar's close, and add
    new ones exactly at the close: that bar's features must not change by a single bit."""
    rng = np.random.default_rng(seed)
    sig = signal_rows(
        [a[0] for a in articles], [a[1] * 0.9 for a in articles], [(1 - a[1]) * a[2] * 0.9 for a in articles]
    )
    d = pd.Timedelta(minutes=delay)
    market = pd.DataFrame({"timestamp": [T0 + pd.Timedelta(minutes=b) for b in bars]})
    base = join_news_features(market, sig, delay=d, window=pd.Timedelta(minutes=90))
    for i, bar in enumerate(market["timestamp"]):
        future = sig["published_at"] + d >= bar
        changed = sig.copy()
        n = int(future.sum())
        changed.loc[future, "positive_prob"] = rng.uniform(0, 1, n)
        changed.loc[future, "negative_prob"] = rng.uniform(0, 1, n)
        changed.loc[future, "tb_polarity"] = rng.uniform(-1, 1, n)
        at_close = signal_rows([0, 0], [1.0, 0.0], [0.0, 1.0])
        at_close["published_at"] = bar - d
        changed = pd.concat([changed, at_close], ignore_index=True)
        again = join_news_features(market.iloc[[i]], changed, delay=d, window=pd.Timedelta(minutes=90))
        for col in NEWS_FEATURE_COLUMNS:
            assert again[col].iloc[0] == base.loc[i, col], (col, bar)


def test_news_that_covers_no_bar_is_not_joined():
    """2011 headlines beside 2018 bars: no news columns (constants), not a news variant by chance."""
    from spx.components.news.join import join_news_if_covered

    sig = signal_rows([0, 10, 20], [0.9, 0.1, 0.5], [0.05, 0.8, 0.2])
    later = pd.DataFrame({"timestamp": pd.date_range(T0 + pd.Timedelta(days=400), periods=50, freq="1min")})
    joined, covered = join_news_if_covered(later, sig)
    assert joined is None and covered == 0
    overlapping = pd.DataFrame({"timestamp": pd.date_range(T0, periods=50, freq="1min")})
    joined, covered = join_news_if_covered(overlapping, sig)
    assert joined is not None and covered == int((joined["news_article_count"] > 0).sum()) > 0
