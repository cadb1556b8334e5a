"""The leakage test: a feature equal to the future label is refused — by gold when it is (almost) a
function of the label, and by selection when a blurred copy slips past gold and the variant's
validation results come out implausible. Real SPY minute bars, the real training code."""

import numpy as np
import pandas as pd
import pytest

from spx.components.bronze.datasets import get_dataset
from spx.components.bronze.sessions import prepare_bars
from spx.components.gold.merge import LeakageError, build_gold
from spx.components.selection.select import rank_variants
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.components.training.train import TrainConfig, train_variant
from spx.components.training.variants import VariantSpec

BAR = pd.Timedelta(minutes=1)


@pytest.fixture(scope="module")
def real_gold():
    bars = pd.read_parquet(get_dataset("spy_m1_2011q1").path())
    prepared = prepare_bars(bars, BAR)
    silver = [
        technical_features(prepared.bars),
        microstructure_features(prepared.bars),
        volatility_features(prepared.bars, BAR, bars_per_year=prepared.bars_per_year),
    ]
    return bars, silver, build_gold(bars, silver, bar=BAR, horizons=[30, 60], instrument="SPY")


def _summary(name, result):
    return {
        "variant": name,
        "task": "classification",
        "model_format": "xgboost",
        "horizon": 30,
        "native_uri": "s3://b/",
        "model_uri": "models:/x",
        "mlflow_run_id": name,
        "features": result.features,
        "val_auc_boot": result.val_auc_boot,
        "metrics": result.metrics,
    }


def test_a_feature_equal_to_the_future_label_is_refused_in_gold(real_gold):
    bars, silver, _ = real_gold
    close = prepare_bars(bars, BAR).close
    leak = silver[0].assign(future_up=(close.shift(-31) > close.shift(-1)).astype(float).to_numpy())
    with pytest.raises(LeakageError, match="future_up"):
        build_gold(bars, [leak, *silver[1:]], bar=BAR, horizons=[30, 60], instrument="SPY")


def test_a_blurred_leak_that_passes_gold_is_refused_by_selection_naming_the_suspect(real_gold):
    _, _, (gold, manifest) = real_gold
    rng = np.random.default_rng(0)
    ret = gold["y_ret_h30"].to_numpy()
    blurred = np.where(np.isnan(ret), 0.0, ret) + rng.normal(0, np.nanstd(ret) * 1.5, len(gold))
    leaky_gold = gold.assign(hint=blurred)
    leaky_manifest = {**manifest, "feature_columns": manifest["feature_columns"] + ["hint"]}
    cfg = TrainConfig(n_folds=2, n_boot=100)
    spec = VariantSpec("xgb_all", "xgboost", "classification", "all", 30)
    leaky = train_variant(leaky_gold, leaky_manifest, spec, cfg, BAR, progress=lambda s: None)
    clean = train_variant(
        gold,
        manifest,
        VariantSpec("xgb_clean", "xgboost", "classification", "all", 30),
        cfg,
        BAR,
        progress=lambda s: None,
    )
    assert leaky.metrics["val_auc"] > 0.6  # what a leak looks like; the clean twin stays near a coin flip
    ranking = rank_variants(
        [_summary("xgb_all", leaky), _summary("xgb_clean", clean)], min_oot_auc=0.0, max_overfit_gap=1.0
    )
    by = {r["variant"]: r for r in ranking}
    assert by["xgb_all"]["suspect"] and not by["xgb_all"]["eligible"]
    assert any(r.startswith("SUSPECT leakage: validation AUC") for r in by["xgb_all"]["reasons"])
    assert not by["xgb_clean"]["suspect"]
