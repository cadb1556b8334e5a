"""As-of join of article-level news signals onto market bars, with no lookahead.

For a bar closing at ``t`` the features aggregate exactly the articles whose *effective time*
``published_at + delay`` satisfies ``t - window <= effective < t`` — strictly before the close,
so an article published at (or after) the bar's close never feeds that bar. Aggregates use
prefix sums over the articles sorted by effective time and ``searchsorted`` on the bar times:
O((bars + articles) log articles), exact, and independent of the order of ``market``.

Per bar, with ``s_i = positive_i - negative_i`` and ``c_i = max(probabilities_i)``:

* ``news_avg_sentiment`` = mean s_i (in [-1, 1])
* ``news_positive_prob`` / ``news_negative_prob`` / ``news_neutral_prob`` = mean probabilities
* ``news_signal_strength`` = |mean s_i| * mean c_i (in [0, 1])
* ``news_trading_signal`` = sign(mean s_i) when signal_strength >= ``signal_threshold``, else 0
* ``news_article_count`` = number of articles in the window
* ``news_quality_score`` = mean c_i * min(1, count / ``full_count``) (confidence x coverage)
* ``news_tb_polarity``, ``news_tb_subjectivity``, ``news_lm_tone``, ``news_lm_uncertainty``,
  ``news_policy_tone`` = means of the silver tone features

A bar with no article in its window gets 0 everywhere except ``news_neutral_prob`` = 1 (the
neutral prior), and ``news_article_count`` = 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_WINDOW = pd.Timedelta(minutes=60)

# silver tone features averaged per bar -> output column
TONE_FEATURES: dict[str, str] = {
    "tb_polarity": "news_tb_polarity",
    "tb_subjectivity": "news_tb_subjectivity",
    "lm_tone": "news_lm_tone",
    "lm_uncertainty": "news_lm_uncertainty",
    "policy_tone": "news_policy_tone",
}

NEWS_FEATURE_COLUMNS: tuple[str, ...] = (
    "news_avg_sentiment",
    "news_signal_strength",
    "news_trading_signal",
    "news_article_count",
    "news_quality_score",
    "news_positive_prob",
    "news_negative_prob",
    "news_neutral_prob",
    *TONE_FEATURES.values(),
)

_PROBS = ("positive_prob", "negative_prob", "neutral_prob")


def news_feature_columns() -> list[str]:
    """The float columns :func:`join_news_features` adds (for the gold manifest)."""
    return list(NEWS_FEATURE_COLUMNS)


def _as_utc(values: pd.Series | pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(values))
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


def _window_from(signals: pd.DataFrame, window: pd.Timedelta | None) -> pd.Timedelta:
    if window is not None:
        return pd.Timedelta(window)
    if "window_minutes" in signals.columns and len(signals):
        values = pd.unique(signals["window_minutes"].dropna())
        if len(values) > 1:
            raise ValueError(f"signals carry several window_minutes values {list(values)}")
        if len(values) == 1:
            return pd.Timedelta(minutes=float(values[0]))
    return DEFAULT_WINDOW


def neutral_news_features(n: int) -> dict[str, np.ndarray]:
    out = {c: np.zeros(n, dtype=np.float64) for c in NEWS_FEATURE_COLUMNS}
    out["news_neutral_prob"][:] = 1.0
    return out


def join_news_features(
    market: pd.DataFrame,
    signals: pd.DataFrame | None,
    *,
    delay: pd.Timedelta = pd.Timedelta(0),
    window: pd.Timedelta | None = None,
    signal_threshold: float = 0.1,
    full_count: int = 5,
) -> pd.DataFrame:
    """``market`` plus the ``NEWS_FEATURE_COLUMNS`` (see module docstring); never looks ahead.

    ``signals``: article rows with ``published_at`` and ``positive_prob``, ``negative_prob``,
    ``neutral_prob`` (+ optional silver tone features, ``window_minutes``). ``window`` defaults to
    the signals' ``window_minutes`` or 60 minutes."""
    if "timestamp" not in market.columns:
        raise ValueError("market frame needs a 'timestamp' column (UTC bar close)")
    delay = pd.Timedelta(delay)
    if delay < pd.Timedelta(0):
        raise ValueError(f"delay must be >= 0 (a negative delay would look ahead), got {delay}")
    clash = [c for c in NEWS_FEATURE_COLUMNS if c in market.columns]
    if clash:
        raise ValueError(f"market frame already has news columns {clash}")
    out = market.copy()
    n = len(out)
    if signals is None or len(signals) == 0:
        for col, values in neutral_news_features(n).items():
            out[col] = values
        return out
    missing = [c for c in ("published_at", *_PROBS) if c not in signals.columns]
    if missing:
        raise ValueError(f"news signals lack columns {missing}")
    span = _window_from(signals, window)
    if span <= pd.Timedelta(0):
        raise ValueError(f"news window must be positive, got {span}")

    sig = signals.loc[signals["published_at"].notna()]
    eff = _as_utc(sig["published_at"]) + delay
    order = np.argsort(eff.asi8, kind="stable")
    eff_ns = eff.asi8[order]

    probs = sig[list(_PROBS)].to_numpy(dtype=np.float64)[order]
    probs = np.nan_to_num(probs, nan=0.0)
    sentiment = probs[:, 0] - probs[:, 1]
    confidence = probs.max(axis=1)
    tone_in = {
        src: (sig[src].to_numpy(dtype=np.float64)[order] if src in sig.columns else np.zeros(len(sig)))
        for src in TONE_FEATURES
    }
    series = {
        "sent": sentiment,
        "conf": confidence,
        "pos": probs[:, 0],
        "neg": probs[:, 1],
        "neu": probs[:, 2],
        **{k: np.nan_to_num(v) for k, v in tone_in.items()},
    }

    bars = _as_utc(out["timestamp"]).asi8
    hi = np.searchsorted(eff_ns, bars, side="left")  # eff < t
    lo = np.searchsorted(eff_ns, bars - span.value, side="left")  # eff >= t - window
    count = (hi - lo).astype(np.float64)
    has = count > 0
    safe = np.where(has, count, 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0.0], np.cumsum(values)])
        return np.where(has, (csum[hi] - csum[lo]) / safe, 0.0)

    avg = mean(series["sent"])
    conf = mean(series["conf"])
    strength = np.abs(avg) * conf
    features = {
        "news_avg_sentiment": avg,
        "news_signal_strength": strength,
        "news_trading_signal": np.where(has & (strength >= signal_threshold), np.sign(avg), 0.0),
        "news_article_count": count,
        "news_quality_score": conf * np.minimum(1.0, count / float(max(full_count, 1))),
        "news_positive_prob": mean(series["pos"]),
        "news_negative_prob": mean(series["neg"]),
        "news_neutral_prob": np.where(has, mean(series["neu"]), 1.0),
        **{dst: mean(series[src]) for src, dst in TONE_FEATURES.items()},
    }
    for col in NEWS_FEATURE_COLUMNS:
        out[col] = np.asarray(features[col], dtype=np.float64)
    return out


def join_news_if_covered(
    market: pd.DataFrame, signals: pd.DataFrame, *, delay: pd.Timedelta = pd.Timedelta(0)
) -> tuple[pd.DataFrame | None, int]:
    """The as-of join and the number of bars with at least one article in their window; the join is
    None when that number is 0 — news that covers none of the bars (2011 headlines beside 2018–2020
    bars) would only add constant columns, and a "news" variant would differ from its no-news twin by
    chance alone, so the run trains without news and says so."""
    joined = join_news_features(market, signals, delay=delay)
    covered = int((joined["news_article_count"] > 0).sum())
    return (joined if covered else None), covered
