"""Sessions, labels at the session close, the overnight gap, annualisation, and the gold leakage guard —
on the real bundled SPY one-minute bars (and the real NYSE calendar for half days and holidays)."""

import numpy as np
import pandas as pd
import pytest

from spx.components.bronze.datasets import get_dataset
from spx.components.bronze.sessions import locate, prepare_bars
from spx.components.gold.merge import LeakageError, build_gold
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features

BAR = pd.Timedelta(minutes=1)


@pytest.fixture(scope="module")
def minute_bars() -> pd.DataFrame:
    return pd.read_parquet(get_dataset("spy_m1_2011q1").path())


def _gold(bars, **kw):
    prepared = prepare_bars(bars, BAR, kw.get("session", "regular"))
    silver = [
        technical_features(prepared.bars),
        microstructure_features(prepared.bars),
        volatility_features(prepared.bars, BAR, bars_per_year=prepared.bars_per_year),
    ]
    return build_gold(bars, silver, bar=BAR, horizons=[30, 60], instrument="SPY", **kw)


def _ny(ts):
    return pd.DatetimeIndex(ts).tz_convert("America/New_York")


def test_regular_session_only_and_labels_never_cross_the_close(minute_bars):
    gold, manifest = _gold(minute_bars)
    ny = _ny(gold["timestamp"])
    minutes = ny.hour * 60 + ny.minute
    assert minutes.min() >= 9 * 60 + 31 and minutes.max() <= 16 * 60  # bar ends 09:31 .. 16:00
    assert manifest["session"] == "regular" and manifest["timestamp_meaning"] == "bar end (UTC)"
    labelled = gold["y_up_h30"].notna().to_numpy()
    # row t is labelled by close[t+1] -> close[t+31]: the last labelled bar of a day ends 15:29
    assert minutes[labelled].max() == 15 * 60 + 29
    at_1550 = gold[(minutes == 15 * 60 + 50)]
    assert len(at_1550) > 0 and at_1550["y_up_h30"].isna().all() and at_1550["y_ret_h60"].isna().all()
    at_1529 = gold[(minutes == 15 * 60 + 29)]
    assert at_1529["y_up_h30"].notna().all() and at_1529["y_up_h60"].isna().all()
    # the label is the in-session return close[t+1] -> close[t+1+h]
    close = prepare_bars(minute_bars, BAR).close.set_axis(prepare_bars(minute_bars, BAR).bars["timestamp"])
    row = gold[labelled].iloc[100]
    t = row["timestamp"]
    expected = (close[t + pd.Timedelta(minutes=31)] / close[t + pd.Timedelta(minutes=1)] - 1) * 100
    assert row["y_ret_h30"] == pytest.approx(expected, rel=1e-9)


def test_label_cross_close_is_an_explicit_option(minute_bars):
    gold, manifest = _gold(minute_bars, label_cross_close=True)
    ny = _ny(gold["timestamp"])
    at_1550 = gold[(ny.hour * 60 + ny.minute) == 15 * 60 + 50]
    # runs into the next session (the last day of the data has none)
    assert manifest["label_cross_close"] and at_1550["y_up_h30"].iloc[:-1].notna().all()


def test_overnight_gap_is_its_own_feature_not_a_one_minute_return(minute_bars):
    prepared = prepare_bars(minute_bars, BAR)
    gold, _ = _gold(minute_bars)
    raw = minute_bars.set_index("timestamp")
    ny = _ny(gold["timestamp"])
    firsts = gold[(ny.hour == 9) & (ny.minute == 31)]
    assert len(firsts) >= 40 and (firsts["session_first_bar"] == 1).all()
    for _, row in firsts.iterrows():
        t = row["timestamp"]
        bar = raw.loc[t]
        # one-bar return of the first bar: its own open -> close, not yesterday's close -> today's close
        # (features are stored as float32: 7 significant digits)
        assert row["ret_1"] == pytest.approx(np.log(bar["close"] / bar["open"]) * 100, rel=1e-6, abs=1e-9)
    # the gap itself: % log(first open / previous regular-session close)
    day2 = firsts.iloc[1]
    prev_close = prepared.close[prepared.bars["timestamp"] < day2["timestamp"]].iloc[-1]
    assert day2["session_gap"] == pytest.approx(np.log(raw.loc[day2["timestamp"], "open"] / prev_close) * 100)
    # and rolling volatility does not jump at the open the way it would on the raw closes
    gaps = np.abs(firsts["session_gap"].to_numpy())
    assert gaps.max() > 10 * np.abs(gold["ret_1"]).median()  # real overnight gaps are large vs one minute
    naive_ret = np.log(minute_bars["close"]).diff()  # what a session-blind feature would see
    assert np.abs(gold["ret_1"]).max() < np.nanmax(np.abs(naive_ret)) * 100


def test_half_days_and_holidays_follow_the_exchange_calendar():
    # 2011-11-24 Thanksgiving (closed), 2011-11-25 half day (13:00 close), 2011-11-28 full day
    stamps = pd.date_range("2011-11-24 14:00", "2011-11-28 21:30", freq="1min", tz="UTC")
    sess, sched = locate(stamps, BAR)
    day = pd.Series(sess, index=stamps)
    ny = _ny(stamps)
    kept = ny[day.to_numpy() >= 0]
    assert not (kept.date == pd.Timestamp("2011-11-24").date()).any()
    half = kept[kept.date == pd.Timestamp("2011-11-25").date()]
    assert (half.min().hour, half.min().minute, half.max().hour, half.max().minute) == (9, 31, 13, 0)
    assert len(half) == 210
    full = kept[kept.date == pd.Timestamp("2011-11-28").date()]
    assert len(full) == 390


def test_volatility_is_annualised_with_the_real_session_length(minute_bars):
    prepared = prepare_bars(minute_bars, BAR)
    assert prepared.bars_per_year == pytest.approx(252 * 390)  # Jan + Mar 2011: no half day
    vol = volatility_features(prepared.bars, BAR, bars_per_year=prepared.bars_per_year)
    ret = np.log(prepared.bars["close"]).diff()
    i = 5000
    assert vol["hv_20"].iloc[i] == pytest.approx(ret.iloc[i - 19 : i + 1].std() * np.sqrt(252 * 390))


def test_gold_refuses_a_feature_that_is_the_future_label(minute_bars):
    prepared = prepare_bars(minute_bars, BAR)
    silver = [
        technical_features(prepared.bars),
        microstructure_features(prepared.bars),
        volatility_features(prepared.bars, BAR, bars_per_year=prepared.bars_per_year),
    ]
    close = prepared.close
    future = (close.shift(-31) / close.shift(-1) - 1).fillna(0.0)  # the 30-bar label, as a "feature"
    silver[2] = silver[2].assign(fwd_return_30=future.to_numpy())
    with pytest.raises(LeakageError, match=r"fwd_return_30 \(1\.000\)"):
        build_gold(minute_bars, silver, bar=BAR, horizons=[30, 60], instrument="SPY")
