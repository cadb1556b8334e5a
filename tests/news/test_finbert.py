"""FinBERT plumbing on a tiny BERT built from a config in the test (random weights).

These tests check loading, label order from config.id2label, batching, truncation, the model
location rules and the content-hash cache. They say nothing about sentiment accuracy."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from spx.components.news import finbert
from spx.components.news.finbert import (
    FinBertScorer,
    ModelUnavailable,
    ScoreCache,
    label_indices,
    model_key,
    resolve_model,
    score_texts,
)
from spx.components.news.schema import content_hash
from tests.news.helpers import build_tiny_model

TEXTS = [
    "Stocks rally after the Fed signals rate cuts",
    "Oil prices fall",
    "Powell warns inflation fight is not over",
    "Treasury yields jump",
    "Dow Jones record high",
    "banks beat earnings expectations",
    "the market",
    "Nasdaq tumble as yields climb higher and higher after the decision",
]


def frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "text_hash": [content_hash(t, "") for t in texts]})


def test_batching_and_length_sorting_do_not_change_scores(tiny_model):
    one = FinBertScorer(tiny_model, batch_size=1).predict(TEXTS)
    many = FinBertScorer(tiny_model, batch_size=3).predict(TEXTS)
    assert one.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-5)
    assert FinBertScorer(tiny_model).predict([]).shape == (0, 3)


def test_truncation_caps_long_articles(tiny_model):
    scorer = FinBertScorer(tiny_model, max_length=16)
    long = " ".join(["stocks rally"] * 500)  # far beyond the 64 positions of the tiny model
    probs = scorer.predict([long, "stocks rally"])
    assert np.isfinite(probs).all()
    capped = FinBertScorer(tiny_model, max_length=4096)
    assert capped.max_length == 64  # never beyond the model's position embeddings
    assert np.isfinite(capped.predict([long])).all()


def test_label_order_is_read_from_config(tmp_path):
    # the tiny model's bias favours output index 2; its label decides which column wins
    prosus = FinBertScorer(build_tiny_model(tmp_path / "a", ("positive", "negative", "neutral")))
    other = FinBertScorer(build_tiny_model(tmp_path / "b", ("Neutral", "Positive", "Negative")))
    assert prosus.predict(["the market"]).argmax() == 2  # neutral
    assert other.predict(["the market"]).argmax() == 1  # negative column
    assert label_indices({0: "neutral", 1: "positive", 2: "negative"}) == [1, 2, 0]
    with pytest.raises(ModelUnavailable, match="three classes"):
        label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})


def test_resolve_model_local_s3_and_hub_rules(tiny_model, store, tmp_path, monkeypatch):
    assert resolve_model(str(tiny_model)) == tiny_model.resolve()
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelUnavailable, match="no sentiment model configured"):
        monkeypatch.delenv("SPX_FINBERT_MODEL", raising=False)
        resolve_model("")
    # hub ids are refused unless explicitly allowed, and HF_HUB_OFFLINE always wins
    monkeypatch.delenv("SPX_ALLOW_HUB_DOWNLOAD", raising=False)
    with pytest.raises(ModelUnavailable, match="not allowed"):
        resolve_model("ProsusAI/finbert")
    monkeypatch.setenv("SPX_ALLOW_HUB_DOWNLOAD", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        resolve_model("ProsusAI/finbert")

    for path in tiny_model.iterdir():
        store.upload_file(str(path), f"models/finbert/v1/{path.name}")
    uri = store.uri("models/finbert/v1")
    local = resolve_model(uri, store=store, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in local.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in tiny_model.iterdir()
    )
    stamp = (local / "config.json").stat().st_mtime_ns
    assert resolve_model(uri, store=store, cache_dir=tmp_path / "cache") == local  # reused
    assert (local / "config.json").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(FinBertScorer(local).predict(TEXTS), FinBertScorer(tiny_model).predict(TEXTS))
    with pytest.raises(ModelUnavailable, match="no model at"):
        resolve_model(store.uri("models/absent"), store=store, cache_dir=tmp_path / "cache")


def test_cache_scores_only_new_texts(tiny_model, store, monkeypatch):
    probs, stats = score_texts(frame(TEXTS[:5]), model_location=str(tiny_model), store=store, batch_size=2)
    assert (stats.articles, stats.cached, stats.scored) == (5, 0, 5)

    loads = []
    real_init = FinBertScorer.__init__
    monkeypatch.setattr(FinBertScorer, "__init__", lambda self, *a, **k: (loads.append(1), real_init(self, *a, **k))[1])
    again, stats2 = score_texts(frame(TEXTS[:5]), model_location=str(tiny_model), store=store)
    assert (stats2.cached, stats2.scored) == (5, 0) and loads == []  # model never loaded
    merged = probs.merge(again, on="text_hash", suffixes=("", "_again"))
    for col in finbert.PROB_COLUMNS:
        np.testing.assert_allclose(merged[col], merged[f"{col}_again"], atol=1e-7)

    more, stats3 = score_texts(frame(TEXTS), model_location=str(tiny_model), store=store)
    assert (stats3.cached, stats3.scored) == (5, 3) and loads == [1] and len(more) == len(TEXTS)
    # a different truncation length is a different cache
    _, stats4 = score_texts(frame(TEXTS[:2]), model_location=str(tiny_model), store=store, max_length=16)
    assert stats4.scored == 2
    # a changed model is a different cache too
    other = build_tiny_model(tiny_model.parent / "changed", seed=7)
    assert model_key(other, 128) != model_key(tiny_model, 128)


def test_cache_compacts_many_shards(tiny_model, store, monkeypatch):
    for text in TEXTS[:5]:
        score_texts(frame([text]), model_location=str(tiny_model), store=store)
    cache = ScoreCache(store, model_key(tiny_model, 128))
    assert len(store.list(cache.prefix)) == 5
    monkeypatch.setattr(ScoreCache, "MAX_SHARDS", 3)
    assert len(cache.load()) == 5
    assert len(store.list(cache.prefix)) == 1 and len(cache.load()) == 5


def test_model_dir_without_config_is_refused(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "config.json").unlink()
    with pytest.raises(ModelUnavailable, match="no config.json"):
        resolve_model(str(broken))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_run_and_stay_close(tiny_model, precision):
    exact = FinBertScorer(tiny_model).predict(TEXTS)
    fast = FinBertScorer(tiny_model, precision=precision, batch_size=4).predict(TEXTS)
    assert fast.shape == exact.shape and np.isfinite(fast).all()
    np.testing.assert_allclose(fast, exact, atol=0.05)
    assert model_key(tiny_model, 128, precision) != model_key(tiny_model, 128)
    with pytest.raises(ValueError, match="precision"):
        FinBertScorer(tiny_model, precision="fp8")
