"""Selection rules on hand-made summaries (the e2e test covers registration in MLflow)."""

import numpy as np

from spx.components.selection.select import CREDIBLE, NO_EDGE, rank_variants, verdict_of


def _boot(centre: float, sd: float, n: int = 2000, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).normal(centre, sd, n).tolist()


def _summary(
    name,
    task,
    val_auc,
    train_auc,
    ci_low,
    ci_high,
    *,
    oot_auc=0.5,
    horizon=30,
    ic=0.02,
    sharpe=0.5,
    bh_sharpe=1.0,
    boot=None,
):
    return {
        "variant": name,
        "task": task,
        "model_format": "xgboost",
        "horizon": horizon,
        "native_uri": f"s3://b/{name}/",
        "model_uri": f"models:/{name}",
        "mlflow_run_id": name,
        "features": ["f"],
        "val_auc_boot": boot or [],
        "metrics": {
            "val_auc": val_auc,
            "val_train_auc": train_auc,
            "val_overfit_gap_auc": train_auc - val_auc,
            "val_auc_ci_low": ci_low,
            "val_auc_ci_high": ci_high,
            "val_ic": ic,
            "val_bt_sharpe": sharpe,
            "val_bh_sharpe": bh_sharpe,
            "oot_auc": oot_auc,
            "train_auc": train_auc,
            "overfit_gap_auc": train_auc - oot_auc,
            "oot_auc_ci_low": oot_auc - 0.03,
            "oot_auc_ci_high": oot_auc + 0.03,
            "cv_auc_mean": 0.5,
            "baseline_majority_auc": 0.5,
            "baseline_momentum_auc": 0.5,
        },
    }


SUMMARIES = [
    _summary("reg", "regression", 0.56, 0.62, 0.52, 0.60),  # best AUC, but a regressor
    _summary("overfit", "classification", 0.55, 0.99, 0.53, 0.57),
    # best on the final (OOT) block, worse on validation: the OOT block must not decide
    _summary("coinflip", "classification", 0.53, 0.60, 0.49, 0.57, oot_auc=0.58),
    _summary("credible", "classification", 0.54, 0.56, 0.505, 0.575, oot_auc=0.51),
    _summary("bad", "classification", 0.47, 0.55, 0.44, 0.50),
]


def test_rules_order_and_reasons_choose_on_validation_not_on_the_final_block():
    ranking = rank_variants(SUMMARIES, min_oot_auc=0.5, max_overfit_gap=0.35)
    assert [r["variant"] for r in ranking if r["eligible"]] == ["credible", "coinflip"]
    why = {r["variant"]: r["reasons"] for r in ranking}
    assert why["reg"] == ["regressor: tracked for comparison, not served"]
    assert why["overfit"] == ["overfit gap 0.4400 > 0.35"]
    assert why["bad"] == ["validation AUC 0.4700 < 0.5"]
    assert [r["rank"] for r in ranking] == [1, 2, 3, 4, 5]


def test_leakage_suspects_are_refused_by_name():
    leaky = _summary("leaky", "classification", 0.99, 1.0, 0.98, 1.0, oot_auc=0.99, ic=0.8, sharpe=25.0)
    inverse = _summary("inverse", "classification", 0.30, 0.31, 0.28, 0.32)
    ranking = rank_variants(SUMMARIES + [leaky, inverse], min_oot_auc=0.0, max_overfit_gap=1.0)
    by = {r["variant"]: r for r in ranking}
    assert by["leaky"]["suspect"] and not by["leaky"]["eligible"]
    reasons = " ".join(by["leaky"]["reasons"])
    assert "SUSPECT leakage: validation AUC 0.9900" in reasons and "IC 0.8000" in reasons and "Sharpe 25.00" in reasons
    assert by["inverse"]["suspect"] and "validation AUC 0.3000" in by["inverse"]["reasons"][0]
    assert next(r for r in ranking if r["candidate"])["variant"] == "overfit"  # best plausible validation AUC
    # the ceilings are configurable
    loose = rank_variants(
        [leaky], min_oot_auc=0.0, max_overfit_gap=1.0, max_auc=1.0, max_abs_ic=1.0, max_sharpe_excess=100.0
    )
    assert loose[0]["eligible"]


def test_credible_edge_rule_is_bonferroni_corrected_for_the_candidates():
    # a 95% interval just above 0.5 (sd 0.012 around 0.53: low ~0.506) is not enough with 4 candidates:
    # at level 1 - 0.05/4 the low end drops below 0.5
    boot = _boot(0.53, 0.012)
    one = [_summary("lucky", "classification", 0.53, 0.55, 0.506, 0.554, boot=boot)]
    many = one + [
        _summary(f"other{i}", "classification", 0.50, 0.55, 0.47, 0.53, boot=_boot(0.5, 0.012, seed=i))
        for i in range(3)
    ]
    alone = rank_variants(one, min_oot_auc=0.5, max_overfit_gap=0.35, min_auc_ci_low=0.5)
    assert alone[0]["eligible"] and alone[0]["val_auc_ci_bonferroni"][0] > 0.5
    crowd = rank_variants(many, min_oot_auc=0.5, max_overfit_gap=0.35, min_auc_ci_low=0.5)
    lucky = next(r for r in crowd if r["variant"] == "lucky")
    assert lucky["bonferroni_k"] == 4 and lucky["val_auc_ci_bonferroni"][0] <= 0.5
    assert not lucky["eligible"] and "Bonferroni, k=4" in lucky["reasons"][0]


def test_horizons_are_ranked_apart_and_the_champion_comes_from_the_champion_horizon():
    long = _summary("long", "classification", 0.58, 0.6, 0.55, 0.6, horizon=60)
    ranking = rank_variants(SUMMARIES + [long], min_oot_auc=0.5, max_overfit_gap=0.35)
    assert ranking[0]["champion_horizon"] == 30
    by = {r["variant"]: r for r in ranking}
    assert by["long"]["eligible"] and not by["long"]["candidate"] and by["long"]["rank"] == 1
    assert "ranked only against its own horizon" in by["long"]["reasons"][-1]
    assert next(r for r in ranking if r["candidate"])["variant"] == "credible"
    assert [r["horizon"] for r in ranking][-1] == 60  # reported after the champion horizon's table


def test_verdict_needs_both_the_corrected_validation_and_the_final_interval_above_half():
    ranking = rank_variants(SUMMARIES, min_oot_auc=0.5, max_overfit_gap=0.35)
    credible = next(r for r in ranking if r["variant"] == "credible")
    assert verdict_of(credible)[0] == NO_EDGE  # OOT interval [0.48, 0.54] includes 0.5
    strong = _summary("strong", "classification", 0.56, 0.58, 0.54, 0.58, oot_auc=0.56, boot=_boot(0.56, 0.005))
    row = rank_variants([strong], min_oot_auc=0.5, max_overfit_gap=0.35)[0]
    verdict, why = verdict_of(row)
    assert verdict == CREDIBLE and "Bonferroni (k=1)" in why
