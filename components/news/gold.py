"""Gold news: sentiment probabilities per article, joined with the silver tone features.

Scorer: FinBERT when a model is configured (``model_location`` or ``$SPX_FINBERT_MODEL``: a local
directory or an ``s3://`` prefix); otherwise the offline default, the FinVADER lexicons with VADER
(:mod:`spx.components.news.lexicon_scorer`, evaluated on Financial PhraseBank by ``bench/sentiment.py``).
The output carries a ``scorer`` column naming which one scored it.

The output (``gold/{run_id}/news_signals.parquet``) is article-level — ``article_id``,
``published_at``, ``source``, ``text_hash``, ``positive_prob``, ``negative_prob``,
``neutral_prob``, ``sentiment`` (= positive − negative), ``confidence`` (= max probability), the
silver tone features and ``window_minutes`` — so that :func:`spx.components.news.join.join_news_features`
can aggregate each bar's trailing window as of the bar's close without lookahead.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from spx.components.news.finbert import PROB_COLUMNS, FinBertScorer, ScoreStats, configured_model, score_texts
from spx.components.news.silver import SILVER_FEATURES

log = logging.getLogger(__name__)

SIGNAL_COLUMNS: tuple[str, ...] = (
    "article_id",
    "published_at",
    "source",
    "text_hash",
    *PROB_COLUMNS,
    "sentiment",
    "confidence",
    *SILVER_FEATURES,
    "window_minutes",
    "scorer",
)


def article_signals(
    silver: pd.DataFrame, probs: pd.DataFrame, window_minutes: int, scorer: str = "finbert"
) -> pd.DataFrame:
    """Silver rows + FinBERT probabilities (joined on ``text_hash``) -> signal rows."""
    merged = silver.merge(probs, on="text_hash", how="left", validate="many_to_one")
    if merged[list(PROB_COLUMNS)].isna().any().any():
        raise RuntimeError("some articles got no FinBERT probabilities; scoring is incomplete")
    p = merged[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    merged["sentiment"] = p[:, 0] - p[:, 1]
    merged["confidence"] = p.max(axis=1)
    merged["window_minutes"] = float(window_minutes)
    merged["scorer"] = scorer
    return merged[list(SIGNAL_COLUMNS)].sort_values(["published_at", "article_id"]).reset_index(drop=True)


def score_silver(
    silver: pd.DataFrame,
    *,
    window_minutes: int = 60,
    model_location: str | None = None,
    store=None,
    batch_size: int = 32,
    max_length: int = 128,
    use_cache: bool = True,
    scorer: FinBertScorer | None = None,
    precision: str = "fp32",
) -> tuple[pd.DataFrame, ScoreStats]:
    if window_minutes <= 0:
        raise ValueError(f"window_minutes must be positive, got {window_minutes}")
    if scorer is None and not configured_model(model_location):
        import time

        from spx.components.news.lexicon_scorer import LexiconScorer

        t0 = time.perf_counter()
        unique = silver.drop_duplicates("text_hash")[["text_hash", "text"]]
        lex = LexiconScorer()
        p = lex.predict(unique["text"].tolist())
        probs = pd.DataFrame(
            {"text_hash": unique["text_hash"].to_numpy(), **{c: p[:, i] for i, c in enumerate(PROB_COLUMNS)}}
        )
        stats = ScoreStats(
            articles=len(unique),
            scored=len(unique),
            seconds=time.perf_counter() - t0,
            model_seconds=time.perf_counter() - t0,
        )
        log.info(
            "news gold: no FinBERT model configured — scored %d texts with %s (lexicons: %s) in %.1fs",
            len(unique),
            lex.name,
            lex.lexicon_source,
            stats.seconds,
        )
        return article_signals(silver, probs, window_minutes, scorer=lex.name), stats
    probs, stats = score_texts(
        silver[["text_hash", "text"]],
        model_location=model_location,
        store=store,
        batch_size=batch_size,
        max_length=max_length,
        use_cache=use_cache,
        scorer=scorer,
        precision=precision,
    )
    return article_signals(silver, probs, window_minutes, scorer="finbert"), stats


def build_gold(
    store,
    silver_uri: str,
    run_id: str,
    *,
    window_minutes: int = 60,
    model_location: str | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    precision: str = "fp32",
) -> tuple[str, dict[str, Any]]:
    """Score the silver articles; write ``gold/{run_id}/news_signals.parquet``. "" when no news."""
    if not silver_uri:
        log.warning("news gold: no silver news — no news signals this run (market features only)")
        return "", {"articles": 0}
    silver = store.read_parquet(silver_uri)
    if silver.empty:
        log.warning("news gold: %s holds no articles — no news signals this run", silver_uri)
        return "", {"articles": 0}
    signals, stats = score_silver(
        silver,
        window_minutes=window_minutes,
        model_location=model_location,
        store=store,
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
    )
    key = f"gold/{run_id}/news_signals.parquet"
    store.put_parquet(key, signals)
    log.info("news gold: %d article signals -> %s (%s)", len(signals), store.uri(key), stats.as_dict())
    return store.uri(key), {"articles": len(signals), **stats.as_dict()}
