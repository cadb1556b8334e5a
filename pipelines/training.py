"""The training pipeline: bronze -> silver -> gold -> six variants (a ``dsl.ParallelFor``) -> champion.

Every step is a containerized KFP v2 component from ``components/``. The medallion stages pass their tables as
typed ``Dataset`` artifacts (manifests of the tables in the bucket, ``spx.core.artifacts``), each training task
outputs its ``Model``, ``Metrics``, ``ClassificationMetrics``, HTML report and Markdown summary, and selection
its ranking and verdict (Markdown) and the champion's report (HTML): the KFP UI's run graph follows
bronze -> silver -> gold -> model. In the cluster, S3 credentials come from a Secret and settings from a
ConfigMap (kfp-kubernetes); locally (``spx run``) KFP's SubprocessRunner runs the same components with the env
of ``spx run``.

The variants are the iterations of one ``dsl.ParallelFor`` over ``plan_variants``'s list: the cluster runs them
side by side as before, and KFP's local runner runs two at a time (its only concurrency: a DAG's other tasks
run one after another). KFP 2.5 applies no retry policy inside a ParallelFor (as inside ``dsl.If``): a
training task that fails fails the run, and the next scheduled run trains again; S3 and MLflow calls retry
inside the task (boto3, MLflow's HTTP client).

Caching: ``spx run`` compiles with ``CompileOptions(local=True)``: the run id and both bronze tasks are then
cacheable, keyed on ``run_key`` (a fingerprint of the parameters, the code and the input files), so an
unchanged rerun takes every task from KFP's local cache. The cluster build never caches them (new bars every
day), as before.
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
from spx.pipelines.options import CompileOptions, compiling, configure, current_options
from spx.pipelines.steps import plan_variants, resolve_run_id

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
    timestamps: str = "auto",
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
    news_tz: str = "",
    news_model_location: str = "",
    news_precision: str = "int8",
    materialize_features: bool = True,
    deploy: bool = False,
    namespace: str = "spx",
    isvc_name: str = "spx-direction",
    canary_percent: int = 10,
    serving_mode: str = "serverless",
    deploy_without_edge: bool = False,
    run_key: str = "",
) -> str:
    local = current_options().local  # spx run: the run id and bronze may come from KFP's local cache
    rid = resolve_run_id(requested=run_id, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, run_key=run_key)
    rid.set_caching_options(local)
    _configure(rid, cpu="100m", memory="128M", cpu_limit="500m", memory_limit="256M")
    rid.set_display_name("run id")
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
        cache_token=run_key,
    )
    bronze.set_caching_options(local)  # cluster: never (new bars arrive every day)
    _configure(bronze).set_display_name("bronze: market candles")

    silver_args = dict(
        bronze=bronze.outputs["market"], granularity=granularity, start=start, end=end, run_id=run, session=session
    )
    technical = _configure(silver_technical(**silver_args)).set_display_name("silver: technical")
    micro = _configure(silver_microstructure(**silver_args)).set_display_name("silver: microstructure")
    vol = _configure(silver_volatility(**silver_args)).set_display_name("silver: volatility")

    # news: every step returns "" when there is no news, and gold then trains on market features only
    nb = news_bronze(source=news_source, start=start, end=end, path=news_path, tz=news_tz, cache_token=run_key)
    nb.set_caching_options(local)
    _configure(nb, memory="1G", memory_limit="2G").set_display_name("bronze: news")
    ns = _configure(news_silver(bronze=nb.outputs["news"], run_id=run), memory="1G", memory_limit="2G")
    ns.set_display_name("silver: news tone")
    ng = news_gold(
        silver=ns.outputs["tone"],
        run_id=run,
        window_minutes=news_window_minutes,
        model_location=news_model_location,
        precision=news_precision,
    )
    _configure(ng, cpu="2", memory="4G", cpu_limit="2", memory_limit="6G").set_display_name(
        "gold: news signals (FinVADER lexicon, or FinBERT when configured)"
    )

    gold = gold_features(
        market=bronze.outputs["market"],
        technical=technical.outputs["features"],
        microstructure=micro.outputs["features"],
        volatility=vol.outputs["features"],
        news=ng.outputs["signals"],
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

    plan = plan_variants(run_id=run, horizon_short=horizon_short, horizon_long=horizon_long)
    _configure(plan, cpu="100m", memory="256M", cpu_limit="500m", memory_limit="512M").set_display_name(
        "plan: training variants"
    )
    with dsl.ParallelFor(plan.output, name="train-variants") as v:
        train = train_variant(
            gold=gold.outputs["gold"],
            variant=v.variant,
            model=v.model,
            task=v.objective,
            features=v.features,
            horizon=v.horizon,
            run_id=v.run_id,  # from the item: see plan_variants
            n_folds=n_folds,
            oot_frac=oot_frac,
            n_boot=n_boot,
            cost_bps=cost_bps,
            max_fit_rows=max_fit_rows,
        )
        _configure(train, cpu="2", memory="4G", cpu_limit="2", memory_limit="8G", retry=False)
        train.set_display_name("train: variant")

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
    select.after(train)
    _configure(select).set_display_name("select + register champion")

    with dsl.If(materialize_features == True):  # noqa: E712 - KFP condition, not a Python bool
        feast = feast_materialize(
            gold_uri=gold.outputs["gold_uri"], manifest_uri=gold.outputs["manifest_uri"], run_id=run
        )
        _configure(feast, retry=False).set_display_name("feast: apply + materialize")
        feast.set_caching_options(local)  # cluster: always write the online store (Redis may have lost it)

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
