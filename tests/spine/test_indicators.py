"""Indicator values: TA-Lib-backed features against hand computations on small cases."""

import numpy as np
import pandas as pd
import pytest

from spx.components.gold.labels import make_labels
from spx.components.silver.microstructure import corwin_schultz_spread, microstructure_features, roll_spread
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from tests.spine.helpers import real_bars

F32 = 1e-6  # features are computed in float64 and stored as float32 (7 significant digits)


def _bars(close, high=None, low=None, open_=None, volume=None):
    close = np.asarray(close, float)
    n = len(close)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"),
            "open": close if open_ is None else np.asarray(open_, float),
            "high": close + 1 if high is None else np.asarray(high, float),
            "low": close - 1 if low is None else np.asarray(low, float),
            "close": close,
            "volume": np.full(n, 100.0) if volume is None else np.asarray(volume, float),
        }
    )


def test_sma_ema_ratios_match_hand_computation():
    close = np.arange(1.0, 61.0)
    f = technical_features(_bars(close))
    # SMA(5) at the last bar = mean(56..60) = 58
    assert f["sma_5_ratio"].iloc[-1] == pytest.approx(60 / 58 - 1)
    assert np.isnan(f["sma_5_ratio"].iloc[3]) and not np.isnan(f["sma_5_ratio"].iloc[4])
    # TA-Lib EMA seeds with the SMA of the first p values, then alpha = 2/(p+1)
    ema, alpha = close[:10].mean(), 2 / 11
    for x in close[10:]:
        ema = alpha * x + (1 - alpha) * ema
    assert f["ema_10_ratio"].iloc[-1] == pytest.approx(60 / ema - 1, rel=F32)


def test_rsi_extremes_and_wilder_value():
    up = technical_features(_bars(np.arange(1.0, 41.0)))
    assert up["rsi_14"].iloc[-1] == pytest.approx(100.0)
    down = technical_features(_bars(np.arange(40.0, 0.0, -1.0)))
    assert down["rsi_14"].iloc[-1] == pytest.approx(0.0)
    # Wilder RSI by hand on a zig-zag series
    close = np.array(
        [
            44,
            44.34,
            44.09,
            43.61,
            44.33,
            44.83,
            45.10,
            45.42,
            45.84,
            46.08,
            45.89,
            46.03,
            45.61,
            46.28,
            46.28,
            46.00,
            46.03,
            46.41,
            46.22,
            45.64,
        ]
    )
    d = np.diff(close)
    gain, loss = np.clip(d, 0, None), np.clip(-d, 0, None)
    ag, al = gain[:14].mean(), loss[:14].mean()
    for g, l in zip(gain[14:], loss[14:]):
        ag, al = (ag * 13 + g) / 14, (al * 13 + l) / 14
    f = technical_features(_bars(close))
    assert f["rsi_14"].iloc[-1] == pytest.approx(100 - 100 / (1 + ag / al), rel=F32)


def test_bollinger_and_volume_zscore():
    close = np.r_[np.full(19, 100.0), 110.0]
    vol = np.r_[np.full(19, 100.0), 300.0]
    f = technical_features(_bars(close, volume=vol))
    mean, sd = close.mean(), close.std()  # TA-Lib uses the population std
    upper, lower = mean + 2 * sd, mean - 2 * sd
    assert f["bb_pctb"].iloc[-1] == pytest.approx((110 - lower) / (upper - lower))
    assert f["bb_width"].iloc[-1] == pytest.approx((upper - lower) / mean)
    assert f["volume_zscore"].iloc[-1] == pytest.approx((300 - vol.mean()) / vol.std())
    assert f["volume_ratio"].iloc[-1] == pytest.approx(300 / vol.mean())


def test_corwin_schultz_hand_case_and_roll():
    high = pd.Series([101.0, 102.0])
    low = pd.Series([99.0, 100.0])
    beta = np.log(101 / 99) ** 2 + np.log(102 / 100) ** 2
    gamma = np.log(102 / 99) ** 2
    k = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    expected = max(0.0, 2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha)))
    assert corwin_schultz_spread(high, low).iloc[1] == pytest.approx(expected)
    # a bid-ask bounce 100, 101, 100, 101 … has Roll spread 2*sqrt(-cov) = 2*sqrt(1) = 2 (in price)
    close = pd.Series([100.0, 101.0] * 15)
    dp = close.diff()
    cov = np.cov(dp.iloc[-20:], dp.shift(1).iloc[-20:])[0, 1]
    assert roll_spread(close, 20).iloc[-1] == pytest.approx(2 * np.sqrt(-cov) / close.iloc[-1])


def test_quoted_spread_used_when_bid_ask_present():
    bars = _bars(np.full(30, 100.0))
    bars["bid"], bars["ask"] = 99.9, 100.1
    f = microstructure_features(bars)
    assert f["spread"].iloc[-1] == pytest.approx(0.2 / 100.0)
    assert f["spread_source_quoted"].iloc[-1] == 1.0


def test_parkinson_and_garman_klass_hand_values():
    n = 40
    o, h, l, c = np.full(n, 100.0), np.full(n, 102.0), np.full(n, 99.0), np.full(n, 101.0)
    f = volatility_features(_bars(c, high=h, low=l, open_=o), pd.Timedelta(days=1))
    hl, co = np.log(102 / 99), np.log(101 / 100)
    assert f["vol_parkinson"].iloc[-1] == pytest.approx(np.sqrt(hl**2 / (4 * np.log(2))) * np.sqrt(252))
    gk = 0.5 * hl**2 - (2 * np.log(2) - 1) * co**2
    assert f["vol_garman_klass"].iloc[-1] == pytest.approx(np.sqrt(gk) * np.sqrt(252))
    rs = np.log(102 / 101) * np.log(102 / 100) + np.log(99 / 101) * np.log(99 / 100)
    assert f["vol_rogers_satchell"].iloc[-1] == pytest.approx(np.sqrt(rs) * np.sqrt(252))


def test_historical_vol_on_real_bars_matches_numpy():
    bars = real_bars(300, start=1000)
    f = volatility_features(bars, pd.Timedelta(days=1))
    r = np.diff(np.log(bars["close"].to_numpy()))
    assert f["hv_20"].iloc[-1] == pytest.approx(np.std(r[-20:], ddof=1) * np.sqrt(252))
    assert f["hv_50"].iloc[-1] == pytest.approx(np.std(r[-50:], ddof=1) * np.sqrt(252))


def test_labels_start_at_next_bar():
    close = pd.Series([100.0, 101.0, 99.0, 103.0, 104.0, 102.0])
    lab = make_labels(close, [1, 2])
    # row 0: entry at close[1]=101, exit close[2]=99 (h=1) / close[3]=103 (h=2)
    assert lab["y_ret_h1"].iloc[0] == pytest.approx((99 / 101 - 1) * 100)
    assert lab["y_up_h1"].iloc[0] == 0.0
    assert lab["y_ret_h2"].iloc[0] == pytest.approx((103 / 101 - 1) * 100)
    assert lab["y_up_h2"].iloc[0] == 1.0
    assert lab["y_up_h1"].iloc[-2:].isna().all() and lab["y_up_h2"].iloc[-3:].isna().all()
