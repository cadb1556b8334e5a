"""Selection rules on hand-made summaries (the e2e test covers registration in MLflow)."""

from spx.components.selection.select import rank_variants


def _summary(name, task, auc, train_auc, ci_low, ci_high):
    return {"variant": name, "task": task, "model_format": "xgboost", "horizon": 1, "native_uri": f"s3://b/{name}/",
            "model_uri": f"models:/{name}", "mlflow_run_id": name, "features": ["f"],
            "metrics": {"oot_auc": auc, "train_auc": train_auc, "overfit_gap_auc": train_auc - auc,
                        "oot_auc_ci_low": ci_low, "oot_auc_ci_high": ci_high, "cv_auc_mean": 0.5,
                        "baseline_majority_auc": 0.5, "baseline_momentum_auc": 0.5}}


SUMMARIES = [
    _summary("reg", "regression", 0.60, 0.62, 0.55, 0.65),      # best AUC, but a regressor
    _summary("overfit", "classification", 0.58, 0.99, 0.53, 0.63),
    _summary("coinflip", "classification", 0.53, 0.60, 0.49, 0.57),
    _summary("credible", "classification", 0.52, 0.56, 0.505, 0.535),
    _summary("bad", "classification", 0.47, 0.55, 0.44, 0.50),
]


def test_rules_order_and_reasons():
    ranking = rank_variants(SUMMARIES, min_oot_auc=0.5, max_overfit_gap=0.35)
    assert [r["variant"] for r in ranking if r["eligible"]] == ["coinflip", "credible"]
    why = {r["variant"]: r["reasons"] for r in ranking}
    assert why["reg"] == ["regressor: tracked for comparison, not served"]
    assert why["overfit"] == ["overfit gap 0.4100 > 0.35"]
    assert why["bad"] == ["OOT AUC 0.4700 < 0.5"]
    assert [r["rank"] for r in ranking] == [1, 2, 3, 4, 5]


def test_credible_edge_requirement():
    ranking = rank_variants(SUMMARIES, min_oot_auc=0.5, max_overfit_gap=0.35, min_auc_ci_low=0.5)
    assert [r["variant"] for r in ranking if r["eligible"]] == ["credible"]
    coin = next(r for r in ranking if r["variant"] == "coinflip")
    assert coin["reasons"] == ["OOT AUC 95% CI low 0.4900 <= 0.5"]
