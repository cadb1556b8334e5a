"""Real Feast: apply + materialize from the gold parquet in the loopback S3 server into the
SQLite online store, read back; the KFP component under KFP's local SubprocessRunner."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from spx.components.feature_store import store as F
from spx.components.serving.features import FeatureLookupError, OnlineFeatureReader
from tests.serving.helpers import FEATURES, gold_frame, manifest


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("timestamp").groupby("instrument").tail(1).set_index("instrument")


def test_apply_and_materialize_from_s3(serving_env, serving_store, tmp_path):
    frame = gold_frame(n_bars=120, seed=3)
    gold_uri = serving_store.put_parquet("gold/feast-a/features.parquet", frame).uri
    store = F.feature_store(home=tmp_path / "feast")
    summary = F.apply_and_materialize(gold_uri, manifest(), store=store)
    assert summary["feature_views"] == [F.MARKET_VIEW, F.NEWS_VIEW]
    assert summary["news_feature_columns"] == ["news_sentiment", "news_count"]
    assert set(summary["instruments"]) == set(frame["instrument"])

    views = {v.name: [f.name for f in v.features] for v in store.list_feature_views()}
    assert views[F.NEWS_VIEW] == ["news_sentiment", "news_count"]
    assert not any(c.startswith("y_") for cols in views.values() for c in cols), "labels must not be served"
    assert store.get_entity("instrument").join_key == "instrument"

    reader = OnlineFeatureReader(store)
    latest = _latest(frame)
    for inst in frame["instrument"].unique():
        got = reader.read(inst, FEATURES)
        assert got.values == pytest.approx(latest.loc[inst, FEATURES].astype(float).to_dict())
        assert got.event_time == latest.loc[inst, "timestamp"].to_pydatetime()
    with pytest.raises(FeatureLookupError) as err:
        reader.read("NOT_AN_INSTRUMENT", FEATURES)
    assert err.value.status == 404


def test_news_columns_may_be_absent_and_newer_run_replaces_rows(serving_env, serving_store, tmp_path):
    market = [c for c in FEATURES if not c.startswith("news_")]
    first = gold_frame(n_bars=50, seed=4)[["timestamp", "instrument", *market, "y_up_h6"]]
    uri = serving_store.put_parquet("gold/feast-b/features.parquet", first).uri
    store = F.feature_store(home=tmp_path / "feast")
    summary = F.apply_and_materialize(uri, manifest(market), store=store)
    assert summary["feature_views"] == [F.MARKET_VIEW]
    reader = OnlineFeatureReader(store)
    with pytest.raises(FeatureLookupError) as err:
        OnlineFeatureReader(store).read("SPX500_USD", FEATURES)
    assert err.value.status == 503  # the champion needs news features nobody materialized

    # a newer gold run: its newest bar replaces the old one in the online store
    later = gold_frame(n_bars=50, seed=5, end=first["timestamp"].max() + pd.Timedelta(hours=1))
    later = later[["timestamp", "instrument", *market, "y_up_h6"]]
    uri2 = serving_store.put_parquet("gold/feast-c/features.parquet", later).uri
    F.apply_and_materialize(uri2, manifest(market), store=store)
    got = reader.read("SPX500_USD", market)
    assert got.event_time == _latest(later).loc["SPX500_USD", "timestamp"].to_pydatetime()
    assert got.values == pytest.approx(_latest(later).loc["SPX500_USD", market].astype(float).to_dict())


def test_cached_reads_serve_a_newer_materialization_after_the_cache_time(serving_env, serving_store, tmp_path):
    market = [c for c in FEATURES if not c.startswith("news_")]
    first = gold_frame(n_bars=40, seed=7)[["timestamp", "instrument", *market]]
    store = F.feature_store(home=tmp_path / "feast")
    F.apply_and_materialize(
        serving_store.put_parquet("gold/feast-e/features.parquet", first).uri, manifest(market), store=store
    )
    cached = OnlineFeatureReader(store, cache_seconds=1.5)
    uncached = OnlineFeatureReader(store)
    old = cached.read("SPX500_USD", market)
    assert old.event_time == _latest(first).loc["SPX500_USD", "timestamp"].to_pydatetime()
    assert old.row == [old.values[c] for c in market] and json.loads(old.values_json) == old.values
    assert cached.read("SPX500_USD", market) is old  # a second read within the cache time is not a Feast read

    later = gold_frame(n_bars=40, seed=8, end=first["timestamp"].max() + pd.Timedelta(hours=2))
    later = later[["timestamp", "instrument", *market]]
    F.apply_and_materialize(
        serving_store.put_parquet("gold/feast-f/features.parquet", later).uri, manifest(market), store=store
    )
    newest = _latest(later).loc["SPX500_USD", "timestamp"].to_pydatetime()
    assert uncached.read("SPX500_USD", market).event_time == newest  # no cache: at once
    assert cached.read("SPX500_USD", market).event_time == old.event_time  # cached: the old row, with its time
    time.sleep(1.6)
    got = cached.read("SPX500_USD", market)
    assert got.event_time == newest
    assert got.values == pytest.approx(_latest(later).loc["SPX500_USD", market].astype(float).to_dict())
    # misses are not cached: an instrument is looked up again on every request
    with pytest.raises(FeatureLookupError):
        cached.read("NOT_YET", market)
    assert ("NOT_YET", tuple(market)) not in cached._cache


def test_missing_value_is_a_422(serving_env, serving_store, tmp_path):
    frame = gold_frame(n_bars=30, seed=6)
    frame.loc[frame.index[-1], "ret_1"] = float("nan")  # newest bar of the last instrument
    inst = frame.loc[frame.index[-1], "instrument"]
    uri = serving_store.put_parquet("gold/feast-d/features.parquet", frame).uri
    store = F.feature_store(home=tmp_path / "feast")
    F.apply_and_materialize(uri, manifest(), store=store)
    with pytest.raises(FeatureLookupError) as err:
        OnlineFeatureReader(store).read(inst, FEATURES)
    assert err.value.status == 422 and "ret_1" in str(err.value)


def test_kfp_component_runs_locally(serving_env, serving_store, tmp_path, monkeypatch):
    from kfp import local

    from spx.components.feature_store.component import feast_materialize

    frame = gold_frame(n_bars=40, seed=8)
    gold_uri = serving_store.put_parquet("gold/feast-kfp/features.parquet", frame).uri
    manifest_uri = serving_store.put_json("gold/feast-kfp/manifest.json", manifest()).uri
    monkeypatch.setenv("SPX_FEAST_HOME", str(tmp_path / "feast-kfp"))
    monkeypatch.chdir(F.__file__.rsplit("/components/", 1)[0])
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-root"), raise_on_error=True
    )
    task = feast_materialize(gold_uri=gold_uri, manifest_uri=manifest_uri, run_id="feast-kfp")
    summary = json.loads(task.output)
    assert summary["run_id"] == "feast-kfp"
    assert set(summary["instruments"]) == set(frame["instrument"])
    got = OnlineFeatureReader(F.feature_store(home=tmp_path / "feast-kfp")).read("SPX500_USD", FEATURES)
    assert got.values == pytest.approx(_latest(frame).loc["SPX500_USD", FEATURES].astype(float).to_dict())
