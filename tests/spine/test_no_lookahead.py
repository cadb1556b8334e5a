"""No lookahead: every feature at bar t is unchanged when the bars after t are removed."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spx.components.gold.merge import build_gold
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from tests.spine.helpers import real_bars

BAR = pd.Timedelta(days=1)
N = 700


def _features(bars: pd.DataFrame) -> pd.DataFrame:
    silver = [technical_features(bars), microstructure_features(bars), volatility_features(bars, BAR)]
    gold, manifest = build_gold(bars, silver, bar=BAR, horizons=[1, 5], instrument="SPX")
    return gold.set_index("timestamp")[manifest["feature_columns"]]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(min_value=0, max_value=4000), cut=st.integers(min_value=320, max_value=N - 1))
def test_features_do_not_change_when_future_bars_are_removed(offset, cut):
    full_bars = real_bars(N, start=offset)
    full = _features(full_bars)
    truncated = _features(full_bars.iloc[: cut + 1].reset_index(drop=True))
    common = truncated.index
    assert len(common) > 0
    np.testing.assert_allclose(full.loc[common].to_numpy(), truncated.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_future_shock_leaves_past_features_untouched():
    bars = real_bars(600, start=2000)
    shocked = bars.copy()
    shocked.loc[500:, ["open", "high", "low", "close"]] *= 1.5  # a crash-sized move after bar 499
    shocked.loc[500:, "volume"] *= 10
    a, b = _features(bars), _features(shocked)
    before = a.index[a.index < bars["timestamp"].iloc[500]]
    pd.testing.assert_frame_equal(a.loc[before], b.loc[before])
    assert not np.allclose(a.loc[a.index[-1]], b.loc[b.index[-1]])  # and the shock is visible after


def test_minute_features_with_sessions_do_not_change_when_future_bars_are_removed():
    """The same property on the real SPY minute bars, through the session step (regular-session filter,
    overnight gap taken out of the price path, session gap feature): nothing leaks from later sessions."""
    from spx.components.bronze.datasets import get_dataset
    from spx.components.bronze.sessions import prepare_bars

    bar = pd.Timedelta(minutes=1)
    raw = pd.read_parquet(get_dataset("spy_m1_2011q1").path())
    raw = raw[raw["timestamp"] < "2011-01-12"].reset_index(drop=True)  # 7 sessions + extended hours

    def features(bars):
        prepared = prepare_bars(bars, bar)
        silver = [
            technical_features(prepared.bars),
            microstructure_features(prepared.bars),
            volatility_features(prepared.bars, bar, bars_per_year=prepared.bars_per_year),
        ]
        gold, manifest = build_gold(bars, silver, bar=bar, horizons=[30, 60], instrument="SPY", prepared=prepared)
        return gold.set_index("timestamp")[manifest["feature_columns"]]

    full = features(raw)
    for cut in ("2011-01-07 15:00", "2011-01-10 14:45", "2011-01-10 21:00"):
        part = features(raw[raw["timestamp"] <= cut].reset_index(drop=True))
        assert len(part) > 0
        np.testing.assert_allclose(
            full.loc[part.index].to_numpy(), part.to_numpy(), rtol=1e-7, atol=1e-9, equal_nan=True
        )
