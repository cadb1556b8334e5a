"""End to end: the real pipeline on KFP's local runner, against the loopback S3 server and MLflow.

Runs the default dataset (the real SPY one-minute bars that ship with the project) on a slice (the
last three weeks of March 2011) with the default horizons (30 and 60 minutes) and — when ``../shared/data`` is beside the
project, as in CI — the real Reuters headlines of the same month through every news stage.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import spx.cli.pipeline as cli_pipeline
from spx.components.bronze.datasets import shared_data_dir
from spx.components.selection.select import CREDIBLE, NO_EDGE, select_champion
from spx.components.training.variants import VARIANTS
from spx.core.settings import settings
from spx.pipelines.local import TaskEvent, run_local

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # 18 KFP tasks (two at a time in training); slow when busy

VARIANT_NAMES = [v[0] for v in VARIANTS]
RUN = dict(
    run_id="e2e-test", start="2011-03-10", end="2011-03-31", n_folds=2, n_boot=50, min_oot_auc=0.0, max_overfit_gap=1.0
)
SHARED = shared_data_dir()
HAS_NEWS = SHARED is not None and (SHARED / "news" / "reuters_markets_2011q1.parquet").exists()


@pytest.fixture()
def e2e_run(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPX_NEWS_FILE", raising=False)
    monkeypatch.delenv("SPX_FINBERT_MODEL", raising=False)
    return run_local(**RUN)


def test_pipeline_writes_medallion_artifacts_mlflow_runs_and_champion(e2e_run, store, tmp_path, monkeypatch):
    selection = e2e_run
    keys = store.list("")
    # bronze (write-once raw), silver, gold, models, selection — all in the bucket
    assert any(k.startswith("bronze/market/spy-m1-2011q1/SPX500_USD/M1/") for k in keys)
    for family in ("technical", "microstructure", "volatility"):
        assert f"silver/e2e-test/{family}.parquet" in keys
    assert {"gold/e2e-test/features.parquet", "gold/e2e-test/manifest.json"} <= set(keys)
    for name in VARIANT_NAMES:
        prefix = f"models/e2e-test/{name}/"
        native = "model.bst" if name.startswith("lgbm") else "model.json"
        assert {
            prefix + native,
            prefix + "metrics.json",
            prefix + "oot_predictions.parquet",
            prefix + "importance.json",
            prefix + "report.html",
        } <= set(keys), name
    assert "selection/e2e-test/best_model_selection.json" in keys

    gold = store.read_parquet("gold/e2e-test/features.parquet")
    manifest = store.get_json("gold/e2e-test/manifest.json")
    # the slice is honoured (regular session, bar ends); the first 252 bars are warm-up (vol percentile rank)
    assert "2011-03-10" <= str(gold["timestamp"].min()) <= "2011-03-11"
    assert str(gold["timestamp"].max()) == "2011-03-31 20:00:00+00:00"  # 16:00 New York, the last bar end
    assert manifest["horizons"] == [30, 60] and set(manifest["base_feature_columns"]) < set(manifest["feature_columns"])
    assert manifest["session"] == "regular" and manifest["bars_per_year"] == 252 * 390

    # news: the real headlines went bronze -> silver -> gold -> as-of join; the *_all variants see them and
    # xgb_nonews is their no-news twin on the same rows
    news_cols = manifest["news_feature_columns"]
    if HAS_NEWS:
        assert len(news_cols) >= 10 and manifest["news"]["signals"] > 1000 and manifest["news"]["bars_with_news"] > 0
        assert {"bronze/news/file/", "silver/e2e-test/news.parquet", "gold/e2e-test/news_signals.parquet"} <= {
            k if not k.startswith("bronze/news/file/") else "bronze/news/file/" for k in keys
        }
        assert (gold["news_article_count"] > 0).mean() > 0.9 and gold["news_avg_sentiment"].abs().gt(0).any()
        assert selection["news"]["news_features"] == len(news_cols)
    metrics = {n: store.get_json(f"models/e2e-test/{n}/metrics.json") for n in VARIANT_NAMES}
    assert set(metrics["xgb_all"]["features"]) - set(metrics["xgb_nonews"]["features"]) == set(news_cols)
    assert metrics["xgb_all"]["n_oot"] == metrics["xgb_nonews"]["n_oot"]

    # the champion: the best candidate by VALIDATION AUC at the champion horizon (30); OOT is only reported
    ranking = selection["ranking"]
    candidates = [r for r in ranking if r["candidate"]]
    assert candidates[0]["variant"] == selection["champion"]["variant"]
    assert all(r["task"] == "classification" and r["horizon"] == 30 for r in candidates)
    assert candidates[0]["val_auc"] == max(r["val_auc"] for r in candidates)
    assert (
        selection["champion"]["verdict"] in (CREDIBLE, NO_EDGE)
        and selection["verdict"] == selection["champion"]["verdict"]
    )

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
        assert {"oot_auc", "train_auc", "baseline_majority_auc"} <= set(r.data.metrics)
        # an interval is logged, or the variant's metrics.json says why there is none (a block shorter than 10
        # bootstrap blocks: here the 60-minute OOT block of three weeks' last 10%)
        notes = metrics[r.data.tags["variant"]].get("notes") or {}
        assert "oot_auc_ci_low" in r.data.metrics or "too short for an interval" in notes.get("oot_auc_ci", "")
        assert r.data.params["horizon"] in {"30", "60"}
    champ = client.get_model_version_by_alias(cfg.registered_model, "champion")
    assert champ.tags["variant"] == selection["champion"]["variant"]
    assert champ.tags["native_uri"] == selection["champion"]["native_uri"]
    assert champ.tags["model_format"] in {"xgboost", "lightgbm"}
    assert champ.tags["verdict"] == selection["champion"]["verdict"]  # the verdict travels with the model
    champ_run = next(r for r in ranking if r["variant"] == champ.tags["variant"])["mlflow_run_id"]
    assert client.get_run(champ_run).data.tags["verdict"] == selection["champion"]["verdict"]
    # beside the native file: what the served predictor reports (registered name and version)
    info = store.get_json(champ.tags["native_uri"] + "spx-model.json")
    assert (info["name"], info["version"], info["feature_columns"]) == (
        cfg.registered_model,
        str(champ.version),
        metrics[champ.tags["variant"]]["features"],
    )

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
    _, strict = select_champion(
        store,
        run_id="e2e-test",
        expected_variants=VARIANT_NAMES,
        min_oot_auc=0.99,
        max_overfit_gap=1.0,
        registered_model=cfg.registered_model,
        tracking_uri=cfg.mlflow_tracking_uri,
    )
    assert strict["champion"] is None
    assert client.get_model_version_by_alias(cfg.registered_model, "champion").version == champ.version
    _, again = select_champion(
        store,
        run_id="e2e-test",
        expected_variants=VARIANT_NAMES,
        min_oot_auc=0.0,
        max_overfit_gap=1.0,
        registered_model=cfg.registered_model,
        tracking_uri=cfg.mlflow_tracking_uri,
    )
    new = client.get_model_version_by_alias(cfg.registered_model, "champion")
    assert int(new.version) == int(champ.version) + 1
    assert client.get_model_version_by_alias(cfg.registered_model, "previous-champion").version == champ.version
    # spx run's output: every task's full log filed under $SPX_HOME/runs/<run_id>/, and the summary a person reads
    # (one line per task when not on a terminal, the variants table, the champion, what next) stays short
    run_dir = Path(selection["run_dir"])
    logs = {p.stem: p.read_text() for p in run_dir.glob("*.log")}
    assert {"bronze-market", "gold-features", "select-champion"} <= set(logs)
    assert len([t for t in logs if t.startswith("train-variant")]) == len(VARIANT_NAMES)
    assert all("finished with status SUCCESS" in text for text in logs.values())
    assert '"inputs"' in logs["gold-features"]  # the executor-input JSON went to the file, not the screen
    out = io.StringIO()
    monkeypatch.setattr(cli_pipeline, "console", Console(file=out, width=200))
    board = cli_pipeline.TaskBoard(live=False)
    board.console = cli_pipeline.console
    for task in logs:
        board(TaskEvent(task, "SUCCESS", 1.0))
    cli_pipeline.print_selection(selection)
    cli_pipeline._print_next(selection)
    lines = out.getvalue().splitlines()
    assert len(lines) + 1 <= 60, f"spx run would print {len(lines) + 1} lines"  # + the "task logs in" line
    assert any("Champion" in line or "No new champion" in line for line in lines)

    # the typed KFP artifacts, under $SPX_HOME as the local runner keeps them: medallion manifests that name the
    # tables in the bucket, every variant's native model file, the selection's verdict
    root = settings().home / "kfp-local"
    gold_manifest = json.loads(next(root.glob("*/gold-features/gold")).read_text())
    assert gold_manifest["uri"] == store.uri("gold/e2e-test/features.parquet") and gold_manifest["rows"] == len(gold)
    assert json.loads(next(root.glob("*/silver-technical/features")).read_text())["uri"].endswith(
        "silver/e2e-test/technical.parquet"
    )
    models = sorted(root.glob("*/for-loop-*-iteration-*/train-variant/native_model"))
    assert len(models) == len(VARIANT_NAMES) and all(m.stat().st_size > 1000 for m in models)
    verdict_md = next(root.glob("*/select-champion/verdict")).read_text()
    assert verdict_md.startswith(f"**Verdict: {selection['champion']['verdict']}**")

    # MLflow, as a quant reads a run: the figures, the report, the input example beside the signature, and the
    # gold table as the run's input dataset (a registered version leads back to its data)
    champ_mlflow = client.get_run(champ_run)
    names = {a.path for a in client.list_artifacts(champ_run)} | {
        a.path for a in client.list_artifacts(champ_run, "figures")
    }
    assert {"figures/roc.png", "figures/calibration.png", "figures/importance.png", "figures/equity.png"} <= names
    assert "report.html" in names
    assert loaded.metadata.saved_input_example_info is not None  # the input example is stored with the model
    (dataset_input,) = champ_mlflow.inputs.dataset_inputs
    assert json.loads(dataset_input.dataset.source)["uri"] == store.uri("gold/e2e-test/features.parquet")
    assert champ_mlflow.data.tags["gold_sha256"].startswith(dataset_input.dataset.digest)
    described = client.get_model_version(cfg.registered_model, champ.version).description
    assert described.startswith(f"**Verdict: {selection['champion']['verdict']}**") and "momentum" in described

    # an unchanged rerun takes every task from KFP's local cache: same run, same figures
    again = run_local(**RUN)
    assert len(again["cached_tasks"]) == again["tasks"] >= 17 and again["run_id"] == "e2e-test"
    assert [r["oot_auc_ci"] for r in again["ranking"]] == [r["oot_auc_ci"] for r in selection["ranking"]]

    if not HAS_NEWS:
        pytest.skip(
            "../shared/data/news is not beside the project: the pipeline ran without news, and the "
            "real-headline checks were not made"
        )
