"""Real-world shapes of market data (issue 19), built from real bars (tests/shapes/builders.py): each case either
trains correctly or stops before any server starts, with one line a user can act on.

Unit tier: everything runs in this process, without S3, MLflow or KFP — the pre-flight of ``spx run``
(``spx.cli.preflight``, which reads a file exactly as bronze does) and the stage functions (sessions, silver,
gold, training, selection) on the shapes' bars. The S3-backed cases (two sources under one instrument,
tombstones) are in test_shapes_bronze.py, the whole pipeline in test_shapes_e2e.py.

Cases that need the real five-minute bars of 2018-2020 skip when ../shared/data is not beside the project.
"""

from __future__ import annotations

import traceback

import numpy as np
import pandas as pd
import pytest

from spx.cli.preflight import preflight
from spx.components.bronze.market import read_stamps
from spx.components.bronze.sessions import locate, prepare_bars
from spx.components.gold.merge import VOLUME_FEATURES, build_gold
from spx.components.silver.microstructure import microstructure_features, spread_sources
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.core.errors import DataValidationError
from tests.shapes import builders as B

M1, M5, H1 = pd.Timedelta(minutes=1), pd.Timedelta(minutes=5), pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def minute() -> pd.DataFrame:
    return B.minute_2011()


@pytest.fixture(scope="module")
def jan(minute) -> pd.DataFrame:
    return B.january(minute)


@pytest.fixture(scope="module")
def five() -> pd.DataFrame:
    bars = B.five_minute_2018_2020()
    if bars is None:
        pytest.skip("../shared/data/market/spy_m5_2018_2020.parquet is not beside the project")
    return bars


@pytest.fixture(scope="module")
def hourly(five) -> pd.DataFrame:
    """Three years of real hourly SPY bars on the clock grid (10:00 ... 16:00 New York bar ends), aggregated
    from the real five-minute bars the way vendors do (bins (t - 1h, t])."""
    return B.resample(five, "1h")


def check(tmp_path, frame: pd.DataFrame | None, *, name="bars", fmt="parquet", **options) -> list[str]:
    """``spx run``'s pre-flight on ``frame`` written as a user's file; returns the lines it prints."""
    args = dict(
        source="file",
        dataset="",
        market_path="",
        granularity="M1",
        start="",
        end="",
        timestamps="auto",
        market_tz="",
        session="regular",
        label_cross_close=False,
        horizons=[30, 60],
        oot_frac=0.1,
        news_source="none",
    )
    if frame is not None:
        path = tmp_path / f"{name}.{fmt}"
        B.write(frame, path, fmt)
        args["market_path"] = str(path)
    args.update(options)
    return preflight(**args)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# -- 1. the clock: the stamps' end and zone are read from the data, or the user is asked --------------------


@pytest.mark.parametrize(
    "shape, granularity",
    [
        ("extended hours, 1 minute", "M1"),
        ("regular hours only, 1 minute", "M1"),
        ("5 minute", "M5"),
        ("23-hour futures-like sessions", "M1"),
        ("a closing print after 16:00", "M1"),
        ("an index: no volume", "M1"),
    ],
)
def test_bar_start_stamps_are_refused_naming_the_option_and_read_right_with_it(tmp_path, jan, shape, granularity):
    bar = {"M1": M1, "M5": M5}[granularity]
    ends = {
        "extended hours, 1 minute": lambda: jan,
        "regular hours only, 1 minute": lambda: B.regular_only(jan),
        "5 minute": lambda: B.resample(jan, "5min"),
        "23-hour futures-like sessions": lambda: B.futures_like(jan),
        "a closing print after 16:00": lambda: B.print_after_close(jan),
        "an index: no volume": lambda: B.zero_volume(jan),
    }[shape]()
    starts = B.start_stamped(ends, bar)
    session = "all" if "futures" in shape else "regular"
    with pytest.raises(DataValidationError, match="look like bar starts.*pass --timestamps start") as err:
        check(tmp_path, starts, granularity=granularity, session=session, horizons=[6, 12])
    one_line(err)
    # told the truth, the bars come out exactly as the bar-end original (no bar shifted, none dropped)
    read = read_stamps(starts, granularity=granularity, source="f", timestamps="start")
    assert read.check.verdict == "confirmed"
    assert read.bars["timestamp"].tolist() == pd.to_datetime(ends["timestamp"], utc=True).tolist()
    # and the bar-end original passes as it is
    assert read_stamps(ends, granularity=granularity, source="f").check.verdict == "confirmed"


@pytest.mark.parametrize("grid", ["clock", "session"])
def test_hourly_bar_starts_are_refused_and_no_real_bar_is_dropped_when_read_right(tmp_path, five, grid):
    offset = "30min" if grid == "session" else None
    ends = B.resample(five, "1h", offset=offset)
    starts = B.resample(five, "1h", offset=offset, stamp="start")
    with pytest.raises(DataValidationError, match="look like bar starts.*pass --timestamps start"):
        check(tmp_path, starts, granularity="H1", horizons=[1, 2])
    read = read_stamps(starts, granularity="H1", source="f", timestamps="start")
    # the session grid's last bar is half an hour (15:30-16:00): its end is the close, not 16:30
    assert read.bars["timestamp"].tolist() == ends["timestamp"].tolist()
    kept_right = (locate(read.bars["timestamp"], H1)[0] >= 0).sum()
    # read as ends (the old behaviour), each bar moved one hour early: the day's last real bar fell out
    wrong = starts.assign(timestamp=pd.to_datetime(starts["timestamp"], utc=True))
    kept_wrong = (locate(wrong["timestamp"], H1)[0] >= 0).sum()
    sessions = len(np.unique(locate(read.bars["timestamp"], H1)[0]))
    assert kept_right - kept_wrong >= 0.9 * sessions


def test_wall_clock_labelled_utc_and_a_wrong_market_tz_are_refused_naming_the_fix(tmp_path, jan):
    with pytest.raises(DataValidationError, match="America/New_York wall clock.*pass --market-tz America/New_York"):
        check(tmp_path, B.wall_clock_labelled_utc(jan))
    # a file already in UTC, read as New York wall clock: 81% of its bars fell outside the session, silently
    with pytest.raises(DataValidationError, match="drop --market-tz") as err:
        check(tmp_path, jan, market_tz="America/New_York")
    one_line(err)
    lines = check(tmp_path, B.wall_clock_labelled_utc(jan), market_tz="America/New_York")
    assert any("confirmed by the data" in line for line in lines)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_naive_stamps_are_refused_with_the_zone_they_fit_and_read_in_it(tmp_path, jan, fmt):
    naive = B.naive_wall_clock(jan)
    with pytest.raises(
        DataValidationError, match="naive time stamps.*pass --timestamps end --market-tz America/New_York"
    ):
        check(tmp_path, naive, fmt=fmt)
    read = read_stamps(
        pd.read_csv(tmp_path / f"bars.{fmt}") if fmt == "csv" else naive,
        granularity="M1",
        source="f",
        market_tz="America/New_York",
    )
    assert read.bars["timestamp"].tolist() == jan["timestamp"].tolist()


def test_stamps_the_data_cannot_place_are_asked_about_not_guessed(tmp_path, jan):
    """A file without the opening half hour on any day shows no open: with the default the user is asked which
    end the stamps mark; an explicit answer is taken."""
    regular = B.regular_only(jan)
    late = regular[B.ny_minutes(regular["timestamp"]) > 10 * 60].reset_index(drop=True)
    with pytest.raises(
        DataValidationError, match="cannot tell from the data.*pass --timestamps end or --timestamps start"
    ):
        check(tmp_path, late)
    lines = check(tmp_path, late, timestamps="end")
    assert any("the data cannot confirm it" in line for line in lines)


def test_a_granularity_that_is_not_the_files_is_refused_naming_the_right_one(tmp_path, hourly):
    with pytest.raises(
        DataValidationError, match="most bars are 1 hour apart, not one 1 minute bar: pass --granularity H1"
    ):
        check(tmp_path, hourly)


# -- 2. holes are counted in missing sessions; the window is cut first --------------------------------------


@pytest.mark.parametrize(
    "first_session, closure",
    [("2001-08-27", "2001-09-11"), ("2006-12-11", "2007-01-02"), ("2012-10-15", "2012-10-29")],
)
def test_hourly_history_across_a_real_exchange_closure_passes(tmp_path, minute, first_session, closure):
    """Real minute bars moved session by session onto the sessions around a real closure (9/11, President Ford's
    funeral, Hurricane Sandy), aggregated to hourly: the closure is in the exchange calendar, so it is no hole
    (the old 4-day limit refused the September 2001 file: Sep 10 -> Sep 17)."""
    moved = B.onto_sessions(B.january(minute), first_session)
    hourly = B.resample(B.regular_only(moved), "1h")
    ts = pd.DatetimeIndex(hourly["timestamp"])
    assert (ts.tz_convert(B.NY).normalize() == pd.Timestamp(closure, tz=B.NY)).sum() == 0  # no bar that day
    assert ts.min() < pd.Timestamp(closure, tz="UTC") < ts.max()
    read = read_stamps(hourly, granularity="H1", source="f")
    from spx.components.bronze.validation import check_missing_sessions

    assert check_missing_sessions(read.bars["timestamp"], H1, source="f") == []
    assert read.check.verdict == "confirmed"


def test_a_real_hole_of_three_sessions_is_refused_and_cut_away_by_the_window(tmp_path, jan):
    days = pd.DatetimeIndex(jan["timestamp"]).tz_convert(B.NY).normalize()
    hole = days.isin(pd.to_datetime(["2011-01-19", "2011-01-20", "2011-01-21"]).tz_localize(B.NY))
    holed = jan[~hole].reset_index(drop=True)
    with pytest.raises(
        DataValidationError, match="no bar in 3 consecutive exchange sessions, 2011-01-19 .. 2011-01-21"
    ):
        check(tmp_path, holed)
    # the window is cut before the checks: a hole outside it is not this run's problem
    lines = check(tmp_path, holed, start="2011-01-24")
    assert "2011-01-24 .. 2011-01-31" in lines[0]


def test_the_bundled_file_with_its_february_hole_is_usable_from_march(tmp_path, minute):
    with pytest.raises(DataValidationError, match="19 consecutive exchange sessions, 2011-02-01 .. 2011-02-28"):
        check(tmp_path, minute)
    assert "23 sessions" in check(tmp_path, minute, start="2011-03-01")[0]


# -- 3. what cannot give a label or a feature stops early, with the right cause ----------------------------


def test_a_horizon_longer_than_a_sessions_labelled_bars_stops_before_anything_starts(tmp_path, hourly):
    with pytest.raises(DataValidationError, match=r"horizon 7 bars never fits in a session.*at most 4 bars") as err:
        check(tmp_path, hourly, granularity="H1", horizons=[7, 8])
    one_line(err)
    # the bar straddling the open (09:00-10:00 on the clock grid) is said, not only logged
    lines = check(tmp_path, hourly, granularity="H1", horizons=[1, 2])
    assert "6 a session" in lines[0] and "bar ends 11:00-16:00 New York" in lines[0]
    assert any("bar ending 10:00 New York, which starts before the 09:30 open" in line for line in lines)


def test_gold_refuses_a_table_without_labels_naming_the_horizons_that_fit(hourly):
    prepared = prepare_bars(hourly, H1)
    silver = _silver(prepared, H1)
    with pytest.raises(DataValidationError, match=r"no row has a label for horizon\(s\) \[7\].*at most 4 bars"):
        build_gold(hourly, silver, bar=H1, horizons=[7], instrument="SPY", prepared=prepared)


def _silver(prepared, bar):
    return [
        technical_features(prepared.bars),
        microstructure_features(prepared.bars),
        volatility_features(prepared.bars, bar, bars_per_year=prepared.bars_per_year),
    ]


def test_an_index_without_volume_trains_without_the_volume_family(tmp_path, jan):
    """Volume 0 everywhere made four volume features NaN on every row: gold dropped every row and succeeded,
    and seven training tasks crashed with a message about the horizon."""
    index = B.zero_volume(jan)
    lines = check(tmp_path, index)
    assert any("volume is 0 on every bar" in line for line in lines)
    prepared = prepare_bars(index, M1)
    gold, manifest = build_gold(
        index, _silver(prepared, M1), bar=M1, horizons=[30], instrument="SPX", prepared=prepared
    )
    assert set(manifest["dropped_features"]) == set(VOLUME_FEATURES)
    assert not set(VOLUME_FEATURES) & set(manifest["feature_columns"] + manifest["base_feature_columns"])
    assert manifest["rows"] > 7000 and manifest["labelled_rows"]["30"] > 6000
    result = _train(gold, manifest, 30)
    assert 0.3 < result.metrics["oot_auc"] < 0.7 and result.metrics["n_oot"] > 500


def test_a_missing_path_is_refused_in_this_process(tmp_path):
    with pytest.raises(DataValidationError, match="market data file not found"):
        check(tmp_path, None, market_path=str(tmp_path / "nope.csv"))
    (tmp_path / "bars.csv").write_text("time,price\n2011-01-03T14:31:00Z,127.1\n")
    with pytest.raises(DataValidationError, match=r"missing columns \['open', 'high', 'low', 'close', 'volume'\]"):
        check(tmp_path, None, market_path=str(tmp_path / "bars.csv"))


# -- 5. tiny data is called tiny -------------------------------------------------------------------------


def _train(gold, manifest, horizon, name="xgb_all", n_boot=200):
    from spx.components.training.train import TrainConfig, train_variant
    from spx.components.training.variants import VariantSpec

    spec = VariantSpec(name, "xgboost", "classification", "all", horizon)
    return train_variant(gold, manifest, spec, TrainConfig(n_folds=2, n_boot=n_boot), M1, progress=lambda m: None)


def _summary(result, name):
    return {
        "variant": name,
        "task": "classification",
        "model_format": "xgboost",
        "horizon": result.spec.horizon,
        "metrics": result.metrics,
        "native_uri": "s3://x/",
        "model_uri": "runs:/x",
        "mlflow_run_id": "x",
        "features": result.features,
        "val_auc_boot": result.val_auc_boot,
        "notes": result.notes,
    }


def test_six_sessions_are_too_little_to_judge_no_leakage_flag_no_champion(tmp_path, minute):
    from spx.components.selection.select import TOO_LITTLE, rank_variants

    six = B.first_sessions(minute, 6)
    lines = check(tmp_path, six)
    assert any("under the minimum for a verdict" in line for line in lines)
    prepared = prepare_bars(six, M1)
    gold, manifest = build_gold(six, _silver(prepared, M1), bar=M1, horizons=[30], instrument="SPY", prepared=prepared)
    result = _train(gold, manifest, 30)
    m = result.metrics
    assert m["n_oot_windows"] < 10 and m["n_oot"] == pytest.approx(result.n_oot)
    # the intervals of blocks this short are not given, with the reason; an interval given holds its estimate
    for block in ("val", "oot"):
        lo, hi = m[f"{block}_auc_ci_low"], m[f"{block}_auc_ci_high"]
        if np.isfinite(lo):
            assert lo <= m[f"{block}_auc"] <= hi
        else:
            assert "too short for an interval" in result.notes[f"{block}_auc_ci"]
    ranking = rank_variants([_summary(result, "xgb_all")], min_oot_auc=0.0, max_overfit_gap=1.0, max_auc=0.5001)
    row = ranking[0]
    assert row["too_little_data"] and not row["suspect"] and not row["eligible"]
    assert any(r.startswith(TOO_LITTLE) for r in row["reasons"])
    assert row["oot_sessions"] <= 2 and row["val_rows"] == m["n_val"]


def test_block_bootstrap_intervals_contain_their_estimate_or_say_why_not():
    """On tiny blocks of real returns: never an interval that excludes its own point estimate (the old moving-
    block bootstrap printed OOT 0.108 with [0.141, 0.308])."""
    from spx.components.training import metrics as M

    close = B.regular_only(B.minute_2011())["close"].to_numpy()
    ret = np.diff(np.log(close))
    rng = np.random.default_rng(0)
    given = 0
    for trial in range(300):
        block = int(rng.integers(10, 62))
        n = int(rng.integers(block * 2, block * 14))
        start = int(rng.integers(0, len(ret) - n - block - 1))
        y = (ret[start + block : start + block + n] > 0).astype(int)
        score = ret[start : start + n] + rng.normal(0, ret.std(), n) * rng.uniform(0, 2)
        lo, hi, aucs, note = M.auc_interval(y, score, block=block, n_boot=200, seed=trial)
        point = M.auc_score(y, score)
        if np.isfinite(lo):
            given += 1
            assert lo <= point <= hi and len(aucs) > 100
        else:
            assert note and len(aucs) == 0
            assert n < 10 * block or "exclude" in note or "one class" in note
    assert given > 50


# -- 6. --session all records what it did ----------------------------------------------------------------


def test_session_all_labels_stop_at_the_halt_unless_asked_and_the_manifest_says_so(jan):
    futures = B.with_quotes(B.futures_like(jan))
    for cross in (False, True):
        prepared = prepare_bars(futures, M1, "all")
        gold, manifest = build_gold(
            futures,
            _silver(prepared, M1),
            bar=M1,
            horizons=[30],
            instrument="ES",
            session="all",
            label_cross_close=cross,
            prepared=prepared,
        )
        ts = pd.DatetimeIndex(gold["timestamp"]).asi8
        labelled = gold["y_up_h30"].notna().to_numpy()
        # the label of row t ends at bar t+31: does any labelled window contain the 17:00-18:00 halt?
        pos = np.flatnonzero(labelled)
        pos = pos[pos + 31 < len(ts)]
        crossing = (ts[pos + 31] - ts[pos]) > pd.Timedelta(minutes=90).value
        assert manifest["label_cross_close"] is cross
        if cross:
            assert crossing.any() and manifest["label_breaks"].startswith("none")
        else:
            assert not crossing.any() and "trading halt" in manifest["label_breaks"]


def test_a_few_missing_quote_sides_switch_only_those_bars_to_the_estimate(jan):
    quoted = B.with_quotes(B.regular_only(jan), missing_share=0.0013)
    feats = microstructure_features(quoted)
    source = feats["spread_source_quoted"].to_numpy()
    missing = quoted[["bid", "ask"]].isna().any(axis=1).to_numpy()
    assert missing.sum() == 10 and (source[missing] == 0).all() and (source[~missing] == 1).all()
    assert "quoted on 7790 of 7800 bars (99.87%)" in spread_sources(quoted)


# -- 7. the way out --------------------------------------------------------------------------------------


def test_a_failed_tasks_cause_is_on_the_last_line_and_the_hint_follows_the_outcome():
    from spx.cli.outcome import failure_cause, next_hint

    try:  # a real failure of the gold stage on an hourly file with too long a horizon
        hourly = B.resample(B.regular_only(B.minute_2011()), "1h")
        prepared = prepare_bars(hourly, H1)
        build_gold(hourly, _silver(prepared, H1), bar=H1, horizons=[7], instrument="SPY", prepared=prepared)
    except DataValidationError:
        log = traceback.format_exc().splitlines()
    wrapped = log + ["RuntimeError: Task 'gold-features' finished with status FAILURE"]
    cause = failure_cause(wrapped)
    assert cause.startswith("DataValidationError: gold: no row has a label for horizon(s) [7]")
    assert "spx serve" in next_hint({"champion": {"variant": "xgb_all"}})
    assert "spx serve" not in next_hint({"champion": None, "reason": "no variant met the criteria"})
    assert "more sessions" in next_hint({"champion": None, "verdict": "too little data to judge"})
