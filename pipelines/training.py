"""The training pipeline: bronze -> silver -> gold -> five variants (parallel) -> champion.

Every step is a containerized KFP v2 component from ``components/``; they pass ``s3://`` URIs.
In the cluster, S3 credentials come from a Secret and settings from a ConfigMap (kfp-kubernetes);
locally (``spx run``) KFP's SubprocessRunner runs the same components with the env of ``spx run``.
"""


import os

from kfp import dsl

from components.bronze.component import bronze_market
from components.deploy.component import deploy_op
from components.gold.component import gold_features
from components.news.component import news_bronze, news_gold, news_silver
from components.selection.component import select_champion
from components.serving.component import feast_materialize
from components.silver.component import silver_microstructure, silver_technical, silver_volatility
from components.training.component import train_variant
from components.training.variants import VARIANTS
from pipelines.k8s import use_cluster_env
from pipelines.steps import resolve_run_id

PIPELINE_NAME = "spx-training"

# Retries with exponential backoff for the cluster. `spx run` sets SPX_PIPELINE_RETRIES=0 before importing
# this module: locally a failure is deterministic and should surface at once.
# KFP 2.5 applies a retry policy only to tasks of the pipeline's top-level DAG: a task inside `dsl.If`
# (feast materialize, the deploy step) gets none, so none is set there (see docs/cluster.md, "Retries").
# The deploy step retries its API calls itself (components/deploy/canary.py run_with_retries).
RETRY = dict(num_retries=int(os.environ.get("SPX_PIPELINE_RETRIES", "3")), backoff_duration="30s",
             backoff_factor=2.0, backoff_max_duration="600s")


def _configure(task: dsl.PipelineTask, *, cpu: str = "1", memory: str = "2G",
               cpu_limit: str = "2", memory_limit: str = "4G", retry: bool = True) -> dsl.PipelineTask:
    """Retries with exponential backoff (top-level tasks only), resources, and S3/MLflow settings."""
    if retry and RETRY["num_retries"] > 0:
        task.set_retry(**RETRY)
    task.set_cpu_request(cpu).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory).set_memory_limit(memory_limit)
    use_cluster_env(task)
    return task


@dsl.pipeline(name=PIPELINE_NAME, description="S&P 500 short-horizon direction: medallion features, "
              "walk-forward validated XGBoost/LightGBM variants, MLflow champion.")
def training_pipeline(
    run_id: str = "",
    source: str = "bundled",
    instrument: str = "SPX500_USD",
    granularity: str = "D",
    start: str = "",
    end: str = "",
    market_path: str = "",
    horizon_short: int = 1,
    horizon_long: int = 5,
    n_folds: int = 5,
    oot_frac: float = 0.1,
    n_boot: int = 500,
    cost_bps: float = 1.0,
    min_oot_auc: float = 0.5,
    max_overfit_gap: float = 0.35,
    min_auc_ci_low: float = 0.0,
    news_source: str = "file",
    news_path: str = "",
    news_window_minutes: int = 60,
    news_delay_minutes: int = 0,
    news_model_location: str = "",
    news_precision: str = "int8",
    materialize_features: bool = True,
    deploy: bool = False,
    namespace: str = "spx",
    isvc_name: str = "spx-direction",
    canary_percent: int = 10,
    serving_mode: str = "serverless",
) -> str:
    rid = resolve_run_id(requested=run_id, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    rid.set_caching_options(False)
    _configure(rid, cpu="100m", memory="128M", cpu_limit="500m", memory_limit="256M")
    run = rid.output

    bronze = bronze_market(source=source, instrument=instrument, granularity=granularity, start=start,
                           end=end, path=market_path)
    bronze.set_caching_options(False)  # new bars arrive every day
    _configure(bronze).set_display_name("bronze: market candles")

    silver_args = dict(bronze_prefix=bronze.output, granularity=granularity, start=start, end=end, run_id=run)
    technical = _configure(silver_technical(**silver_args)).set_display_name("silver: technical")
    micro = _configure(silver_microstructure(**silver_args)).set_display_name("silver: microstructure")
    vol = _configure(silver_volatility(**silver_args)).set_display_name("silver: volatility")

    # news: every step returns "" when there is no news, and gold then trains on market features only
    nb = news_bronze(source=news_source, start=start, end=end, path=news_path)
    nb.set_caching_options(False)
    _configure(nb, memory="1G", memory_limit="2G").set_display_name("bronze: news")
    ns = _configure(news_silver(bronze_prefix=nb.output, run_id=run), memory="1G", memory_limit="2G")
    ns.set_display_name("silver: news tone")
    ng = news_gold(silver_uri=ns.output, run_id=run, window_minutes=news_window_minutes,
                   model_location=news_model_location, precision=news_precision)
    _configure(ng, cpu="2", memory="4G", cpu_limit="2", memory_limit="6G").set_display_name("gold: FinBERT signals")

    gold = gold_features(bronze_prefix=bronze.output, technical_uri=technical.output,
                         microstructure_uri=micro.output, volatility_uri=vol.output, news_uri=ng.output,
                         granularity=granularity, start=start, end=end,
                         horizons=[horizon_short, horizon_long], instrument=instrument, run_id=run,
                         news_delay_minutes=news_delay_minutes)
    _configure(gold, memory="4G", memory_limit="8G").set_display_name("gold: features + labels")

    trains = []
    for name, model, task, feats, which in VARIANTS:
        t = train_variant(gold_uri=gold.outputs["gold_uri"], manifest_uri=gold.outputs["manifest_uri"],
                          variant=name, model=model, task=task, features=feats,
                          horizon=horizon_short if which == "short" else horizon_long, run_id=run,
                          n_folds=n_folds, oot_frac=oot_frac, n_boot=n_boot, cost_bps=cost_bps)
        _configure(t, cpu="2", memory="4G", cpu_limit="2", memory_limit="8G").set_display_name(f"train: {name}")
        trains.append(t)

    select = select_champion(run_id=run, expected_variants=[v[0] for v in VARIANTS],
                             min_oot_auc=min_oot_auc, max_overfit_gap=max_overfit_gap,
                             min_auc_ci_low=min_auc_ci_low)
    for t in trains:
        select.after(t)
    _configure(select).set_display_name("select + register champion")

    with dsl.If(materialize_features == True):  # noqa: E712 - KFP condition, not a Python bool
        feast = feast_materialize(gold_uri=gold.outputs["gold_uri"], manifest_uri=gold.outputs["manifest_uri"],
                                  run_id=run)
        _configure(feast, retry=False).set_display_name("feast: apply + materialize")

    with dsl.If(deploy == True):  # noqa: E712
        rollout = deploy_op(selection_uri=select.outputs["Output"], namespace=namespace, isvc_name=isvc_name,
                            canary_percent=canary_percent, mode=serving_mode)
        _configure(rollout, cpu="100m", memory="256M", cpu_limit="500m", memory_limit="512M", retry=False)
        rollout.set_display_name("kserve: canary rollout")
    return select.outputs["Output"]
