"""End to end: the real pipeline on KFP's local runner, against the loopback S3 server and MLflow.

Runs on a slice (2011-2018) of the bundled real daily S&P 500 to keep it under a couple of minutes.
"""

import numpy as np
import pytest

from spx.components.selection.select import select_champion
from spx.components.training.variants import VARIANTS
from spx.pipelines.local import run_local
from spx.core.settings import settings

pytestmark = pytest.mark.e2e

VARIANT_NAMES = [v[0] for v in VARIANTS]


@pytest.fixture()
def e2e_run(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    selection = run_local(run_id="e2e-test", source="bundled", start="2011-01-01", end="2018-12-31",
                          horizon_short=1, horizon_long=5, n_folds=3, n_boot=100, min_oot_auc=0.0,
                          max_overfit_gap=1.0)
    return selection


def test_pipeline_writes_medallion_artifacts_mlflow_runs_and_champion(e2e_run, store, tmp_path):
    selection = e2e_run
    keys = store.list("")
    # bronze (write-once raw), silver, gold, models, selection — all in the bucket
    assert any(k.startswith("bronze/market/arch-sp500/SPX500_USD/D/") for k in keys)
    for family in ("technical", "microstructure", "volatility"):
        assert f"silver/e2e-test/{family}.parquet" in keys
    assert {"gold/e2e-test/features.parquet", "gold/e2e-test/manifest.json"} <= set(keys)
    for name in VARIANT_NAMES:
        prefix = f"models/e2e-test/{name}/"
        native = "model.bst" if name.startswith("lgbm") else "model.json"
        assert {prefix + native, prefix + "metrics.json", prefix + "oot_predictions.parquet",
                prefix + "importance.json", prefix + "report.html"} <= set(keys), name
    assert "selection/e2e-test/best_model_selection.json" in keys

    gold = store.read_parquet("gold/e2e-test/features.parquet")
    manifest = store.get_json("gold/e2e-test/manifest.json")
    # the slice is honoured; the first ~252 bars are indicator warm-up (volatility percentile rank)
    assert "2011-01-01" <= str(gold["timestamp"].min()) <= "2012-03-01"
    assert str(gold["timestamp"].max()).startswith("2018-12-31")
    assert manifest["horizons"] == [1, 5] and set(manifest["base_feature_columns"]) < set(manifest["feature_columns"])

    # the champion: the best eligible classifier by OOT AUC
    ranking = selection["ranking"]
    assert [r["variant"] for r in ranking if r["eligible"]][0] == selection["champion"]["variant"]
    eligible = [r for r in ranking if r["eligible"]]
    assert all(r["task"] == "classification" for r in eligible)
    assert eligible[0]["oot_auc"] == max(r["oot_auc"] for r in eligible)

    # MLflow: one run per variant with metrics, params and a logged model; alias champion
    import mlflow
    from mlflow import MlflowClient

    cfg = settings()
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow_experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.pipeline_run_id = 'e2e-test'")
    assert sorted(r.data.tags["variant"] for r in runs) == sorted(VARIANT_NAMES)
    for r in runs:
        assert {"oot_auc", "train_auc", "baseline_majority_auc", "oot_auc_ci_low"} <= set(r.data.metrics)
        assert r.data.params["horizon"] in {"1", "5"}
    champ = client.get_model_version_by_alias(cfg.registered_model, "champion")
    assert champ.tags["variant"] == selection["champion"]["variant"]
    assert champ.tags["native_uri"] == selection["champion"]["native_uri"]
    assert champ.tags["model_format"] in {"xgboost", "lightgbm"}
    # beside the native file: what the served predictor reports (registered name and version)
    info = store.get_json(champ.tags["native_uri"] + "spx-model.json")
    assert (info["name"], info["version"], info["feature_columns"]) == (
        cfg.registered_model, str(champ.version), manifest["feature_columns"] if champ.tags["variant"] != "xgb_base"
        else manifest["base_feature_columns"])

    # the registered model (pyfunc) and the native file KServe serves give the same P(up)
    loaded = mlflow.pyfunc.load_model(f"models:/{cfg.registered_model}@champion")
    rows = gold.tail(3)[loaded.metadata.get_input_schema().input_names()]
    via_mlflow = np.asarray(loaded.predict(rows), dtype=float)
    native_key = champ.tags["native_uri"] + ("model.json" if champ.tags["model_format"] == "xgboost" else "model.bst")
    native_path = tmp_path / native_key.rsplit("/", 1)[-1]
    store.download_file(native_key, str(native_path))
    if champ.tags["model_format"] == "xgboost":
        import xgboost as xgb

        native = xgb.Booster(model_file=str(native_path)).predict(xgb.DMatrix(rows.to_numpy()))
    else:
        import lightgbm as lgb

        native = lgb.Booster(model_file=str(native_path)).predict(rows.to_numpy())
    np.testing.assert_allclose(via_mlflow, native, rtol=1e-5)
    assert ((via_mlflow > 0) & (via_mlflow < 1)).all()

    # re-selection: strict criteria keep the current champion; a new winner moves the alias and
    # the old one becomes previous-champion (the rollback target)
    _, strict = select_champion(store, run_id="e2e-test", expected_variants=VARIANT_NAMES, min_oot_auc=0.99,
                                max_overfit_gap=1.0, registered_model=cfg.registered_model,
                                tracking_uri=cfg.mlflow_tracking_uri)
    assert strict["champion"] is None
    assert client.get_model_version_by_alias(cfg.registered_model, "champion").version == champ.version
    _, again = select_champion(store, run_id="e2e-test", expected_variants=VARIANT_NAMES, min_oot_auc=0.0,
                               max_overfit_gap=1.0, registered_model=cfg.registered_model,
                               tracking_uri=cfg.mlflow_tracking_uri)
    new = client.get_model_version_by_alias(cfg.registered_model, "champion")
    assert int(new.version) == int(champ.version) + 1
    assert client.get_model_version_by_alias(cfg.registered_model, "previous-champion").version == champ.version
