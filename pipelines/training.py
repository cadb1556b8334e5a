"""The training pipeline: bronze -> silver -> gold -> five variants (parallel) -> champion.

Every step is a containerized KFP v2 component from ``components/``; they pass ``s3://`` URIs.
In the cluster, S3 credentials come from a Secret and settings from a ConfigMap (kfp-kubernetes);
locally (``spx run``) KFP's SubprocessRunner runs the same components with the env of ``spx run``.
"""

from kfp import dsl

from spx.components.bronze.component import bronze_market
from spx.components.deploy.component import deploy_op
from spx.components.feature_store.component import feast_materialize
from spx.components.gold.component import gold_features
from spx.components.news.component import news_bronze, news_gold, news_silver
from spx.components.selection.component import select_champion
from spx.components.silver.component import silver_microstructure, silver_technical, silver_volatility
from spx.components.training.component import train_variant
from spx.components.training.variants import VARIANTS
from spx.pipelines.options import CompileOptions, compiling, configure
from spx.pipelines.steps import resolve_run_id

PIPELINE_NAME = "spx-training"


def _configure(
    task: dsl.PipelineTask,
    *,
    cpu: str = "1",
    memory: str = "2G",
    cpu_limit: str = "2",
    memory_limit: str = "4G",
    retry: bool = True,
) -> dsl.PipelineTask:
    """Image, retries, resources and cluster settings from the compile options (``spx.pipelines.options``).

    KFP 2.5 applies a retry policy only to tasks of the pipeline's top-level DAG: a task inside ``dsl.If``
    (feast materialize, the deploy step) gets none, so none is set there (see docs/cluster.md, "Retries").
    The deploy step retries its API calls itself (components/deploy/canary.py run_with_retries)."""
    return configure(task, cpu=cpu, memory=memory, cpu_limit=cpu_limit, memory_limit=memory_limit, retry=retry)


DESCRIPTION = (
    "S&P 500 short-horizon direction: medallion features, walk-forward validated XGBoost/LightGBM "
    "variants, MLflow champion."
)


def training_dag(
    run_id: str = "",
    source: str = "bundled",
    dataset: str = "spy_m1_2011q1",
    instrument: str = "SPX500_USD",
    granularity: str = "M1",
    start: str = "",
    end: str = "",
    market_path: str = "",
    timestamps: str = "end",
    market_tz: str = "",
    session: str = "regular",
    label_cross_close: bool = False,
    horizon_short: int = 30,
    horizon_long: int = 60,
    n_folds: int = 5,
    oot_frac: float = 0.1,
    n_boot: int = 500,
    cost_bps: float = 1.0,
    max_fit_rows: int = 300_000,
    min_oot_auc: float = 0.5,
    max_overfit_gap: float = 0.35,
    min_auc_ci_low: float = 0.0,
    max_auc: float = 0.60,
    max_abs_ic: float = 0.20,
    max_sharpe_excess: float = 6.0,
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
    deploy_without_edge: bool = False,
) -> str:
    rid = resolve_run_id(requested=run_id, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    rid.set_caching_options(False)
    _configure(rid, cpu="100m", memory="128M", cpu_limit="500m", memory_limit="256M")
    run = rid.output

    bronze = bronze_market(
        source=source,
        instrument=instrument,
        granularity=granularity,
        start=start,
        end=end,
        path=market_path,
        dataset=dataset,
        timestamps=timestamps,
        market_tz=market_tz,
    )
    bronze.set_caching_options(False)  # new bars arrive every day
    _configure(bronze).set_display_name("bronze: market candles")

    silver_args = dict(
        bronze_prefix=bronze.output, granularity=granularity, start=start, end=end, run_id=run, session=session
    )
    technical = _configure(silver_technical(**silver_args)).set_display_name("silver: technical")
    micro = _configure(silver_microstructure(**silver_args)).set_display_name("silver: microstructure")
    vol = _configure(silver_volatility(**silver_args)).set_display_name("silver: volatility")

    # news: every step returns "" when there is no news, and gold then trains on market features only
    nb = news_bronze(source=news_source, start=start, end=end, path=news_path)
    nb.set_caching_options(False)
    _configure(nb, memory="1G", memory_limit="2G").set_display_name("bronze: news")
    ns = _configure(news_silver(bronze_prefix=nb.output, run_id=run), memory="1G", memory_limit="2G")
    ns.set_display_name("silver: news tone")
    ng = news_gold(
        silver_uri=ns.output,
        run_id=run,
        window_minutes=news_window_minutes,
        model_location=news_model_location,
        precision=news_precision,
    )
    _configure(ng, cpu="2", memory="4G", cpu_limit="2", memory_limit="6G").set_display_name(
        "gold: news signals (FinVADER lexicon, or FinBERT when configured)"
    )

    gold = gold_features(
        bronze_prefix=bronze.output,
        technical_uri=technical.output,
        microstructure_uri=micro.output,
        volatility_uri=vol.output,
        news_uri=ng.output,
        granularity=granularity,
        start=start,
        end=end,
        horizons=[horizon_short, horizon_long],
        instrument=instrument,
        run_id=run,
        news_delay_minutes=news_delay_minutes,
        session=session,
        label_cross_close=label_cross_close,
    )
    _configure(gold, memory="4G", memory_limit="8G").set_display_name("gold: features + labels")

    trains = []
    for name, model, task, feats, which in VARIANTS:
        t = train_variant(
            gold_uri=gold.outputs["gold_uri"],
            manifest_uri=gold.outputs["manifest_uri"],
            variant=name,
            model=model,
            task=task,
            features=feats,
            horizon=horizon_short if which == "short" else horizon_long,
            run_id=run,
            n_folds=n_folds,
            oot_frac=oot_frac,
            n_boot=n_boot,
            cost_bps=cost_bps,
            max_fit_rows=max_fit_rows,
        )
        _configure(t, cpu="2", memory="4G", cpu_limit="2", memory_limit="8G").set_display_name(f"train: {name}")
        trains.append(t)

    select = select_champion(
        run_id=run,
        expected_variants=[v[0] for v in VARIANTS],
        min_oot_auc=min_oot_auc,
        max_overfit_gap=max_overfit_gap,
        min_auc_ci_low=min_auc_ci_low,
        max_auc=max_auc,
        max_abs_ic=max_abs_ic,
        max_sharpe_excess=max_sharpe_excess,
        champion_horizon=horizon_short,
    )
    for t in trains:
        select.after(t)
    _configure(select).set_display_name("select + register champion")

    with dsl.If(materialize_features == True):  # noqa: E712 - KFP condition, not a Python bool
        feast = feast_materialize(
            gold_uri=gold.outputs["gold_uri"], manifest_uri=gold.outputs["manifest_uri"], run_id=run
        )
        _configure(feast, retry=False).set_display_name("feast: apply + materialize")

    with dsl.If(deploy == True):  # noqa: E712
        rollout = deploy_op(
            selection_uri=select.outputs["Output"],
            namespace=namespace,
            isvc_name=isvc_name,
            canary_percent=canary_percent,
            mode=serving_mode,
            allow_no_edge=deploy_without_edge,
        )
        _configure(rollout, cpu="100m", memory="256M", cpu_limit="500m", memory_limit="512M", retry=False)
        rollout.set_display_name("kserve: canary rollout")
    return select.outputs["Output"]


def build_training_pipeline(options: CompileOptions | None = None):
    """The training pipeline with ``options`` (image, retries, cluster names) applied to every task."""
    with compiling(options or CompileOptions()):
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(training_dag)


# built with the constant defaults (no environment read at import); compile with build_training_pipeline()
training_pipeline = build_training_pipeline()
