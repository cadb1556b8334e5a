"""Training honesty: shuffled labels give OOT AUC near 0.5; baselines and CI are reported."""

import numpy as np
import pandas as pd
import pytest

from spx.components.gold.merge import build_gold
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.components.training import metrics as M
from spx.components.training.train import TrainConfig, train_variant
from spx.components.training.variants import VariantSpec, default_variants
from tests.spine.helpers import real_bars

BAR = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def gold():
    bars = real_bars()
    silver = [technical_features(bars), microstructure_features(bars), volatility_features(bars, BAR)]
    return build_gold(bars, silver, bar=BAR, horizons=[1, 5], instrument="SPX")


def test_shuffled_labels_give_oot_auc_near_half(gold):
    frame, manifest = gold
    rng = np.random.default_rng(7)
    shuffled = frame.copy()
    mask = shuffled["y_up_h1"].notna()
    shuffled.loc[mask, "y_up_h1"] = rng.permutation(shuffled.loc[mask, "y_up_h1"].to_numpy())
    spec = VariantSpec("xgb_all", "xgboost", "classification", "all", 1)
    res = train_variant(shuffled, manifest, spec, TrainConfig(n_folds=3, n_boot=300), BAR, progress=lambda s: None)
    m = res.metrics
    assert abs(m["oot_auc"] - 0.5) < 0.06
    assert m["oot_auc_ci_low"] < 0.5 < m["oot_auc_ci_high"]
    assert abs(m["cv_auc_mean"] - 0.5) < 0.05
    # in-sample fit is much better than chance: that's what the overfit gap is for
    assert m["train_auc"] > 0.6 and m["overfit_gap_auc"] > 0.1


def test_all_variants_report_baselines_ci_and_backtest(gold):
    frame, manifest = gold
    for spec in default_variants(1, 5):
        m = train_variant(
            frame, manifest, spec, TrainConfig(n_folds=2, n_boot=50), BAR, progress=lambda s: None
        ).metrics
        for key in (
            "oot_auc",
            "train_auc",
            "cv_auc_mean",
            "oot_auc_ci_low",
            "oot_auc_ci_high",
            "baseline_majority_auc",
            "baseline_momentum_auc",
            "oot_rank_ic",
            "bt_sharpe",
            "bh_sharpe",
        ):
            assert np.isfinite(m[key]), (spec.name, key)
        assert m["baseline_majority_auc"] == 0.5
        assert m["oot_auc_ci_low"] <= m["oot_auc"] <= m["oot_auc_ci_high"]
        if spec.task == "regression":
            assert {"oot_rmse", "oot_mae", "oot_directional_accuracy"} <= set(m)
        else:
            assert {"oot_accuracy", "oot_precision", "oot_recall", "oot_log_loss", "oot_brier"} <= set(m)
        assert m["purge_bars"] == spec.horizon + 1


def test_auc_matches_sklearn_and_bootstrap_ci_brackets():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = y * 0.3 + rng.normal(size=400)
    assert M.auc_score(y, s) == pytest.approx(roc_auc_score(y, s))
    lo, hi = M.block_bootstrap_ci(y, s, block=10, n_boot=300)
    assert lo < roc_auc_score(y, s) < hi and lo > 0.5


def test_backtest_costs_and_buy_and_hold():
    prob = np.array([0.9, 0.1, 0.9, 0.9])
    ret = np.array([1.0, -2.0, 0.5, 0.5])  # percent
    bt = M.backtest_long_flat(prob, ret, horizon=1, periods_per_year=252, cost_bps=10)
    # in, out, in, stay: positions 1,0,1,1; turnover 1,1,1,0; costs 10bp each change
    strat = np.array([0.01 - 0.001, 0 - 0.001, 0.005 - 0.001, 0.005])
    assert bt["bt_total_return"] == pytest.approx(np.prod(1 + strat) - 1)
    assert bt["bh_total_return"] == pytest.approx(np.prod(1 + ret / 100) - 1)
    assert bt["bt_turnover"] == pytest.approx(0.75)


def test_thinning_keeps_the_last_row_and_only_rows_of_the_block():
    from spx.components.training.train import thin

    rows = np.arange(100, 1100)
    assert thin(rows, 0) is rows and thin(rows, 1000) is rows  # off, or not exceeded: every row
    kept = thin(rows, 300)  # stride ceil(1000 / 300) = 4
    assert kept[-1] == rows[-1] and np.all(np.diff(kept) == 4) and len(kept) <= 300
    assert set(kept) <= set(rows)  # never a row outside the fit block (no validation/OOT row enters a fit)


def test_max_fit_rows_thins_the_fits_but_evaluates_every_row(gold):
    frame, manifest = gold
    spec = VariantSpec("xgb_all", "xgboost", "classification", "all", 1)
    full = train_variant(frame, manifest, spec, TrainConfig(n_folds=2, n_boot=50), BAR, progress=lambda s: None)
    capped = train_variant(
        frame, manifest, spec, TrainConfig(n_folds=2, n_boot=50, max_fit_rows=1000), BAR, progress=lambda s: None
    )
    assert full.metrics["n_fit_rows"] == full.n_train > 1000  # the default cap is far above this data
    assert capped.metrics["n_fit_rows"] <= 1000 < capped.n_train == full.n_train
    assert capped.n_oot == full.n_oot and len(capped.oot) == len(full.oot)  # the OOT block is scored whole
    assert capped.metrics["oot_auc"] != full.metrics["oot_auc"]  # a different (thinned) fit
