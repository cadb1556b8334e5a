"""KFP component: one training variant (walk-forward + OOT test + MLflow)."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from spx.core.component import spx_component


@spx_component
def train_variant(
    gold: Input[Dataset],
    variant: str,
    model: str,
    task: str,
    features: str,
    horizon: int,
    run_id: str,
    n_folds: int,
    oot_frac: float,
    n_boot: int,
    cost_bps: float,
    max_fit_rows: int,
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    report: Output[HTML],
    summary: Output[Markdown],
    native_model: Output[Model],
) -> str:
    """Train, validate and log one variant; returns the URI of its metrics.json.

    ``gold``: the gold table as a typed Dataset (its manifest names the table and its ``manifest.json``).
    ``native_model``: the native model file KServe serves (XGBoost JSON / LightGBM text), with the variant,
    its MLflow run and its validation/OOT AUCs and baselines as metadata."""
    from spx.components.training.kfp_outputs import emit_training_outputs
    from spx.components.training.train import TrainConfig, run_training
    from spx.components.training.variants import VariantSpec
    from spx.core.artifacts import table_uri
    from spx.core.logs import stage_logging
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.train")
    result = run_training(
        ObjectStore(),
        gold_uri=table_uri(gold),
        manifest_uri=table_uri(gold, "manifest_uri"),
        spec=VariantSpec(variant, model, task, features, horizon),
        run_id=run_id,
        cfg=TrainConfig(
            n_folds=n_folds, oot_frac=oot_frac, n_boot=n_boot, cost_bps=cost_bps, max_fit_rows=max_fit_rows
        ),
        settings=settings(),
        progress=log.info,
    )
    emit_training_outputs(result, metrics=metrics, roc=roc, report=report, summary=summary, model=native_model)
    return result["metrics_uri"]
