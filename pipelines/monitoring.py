"""The monitoring pipeline: the canary promotion loop, drift + live hit rate, and (if needed) a retrain.

Runs as its own KFP recurring run (``create_monitoring_schedule``), e.g. hourly. Two independent branches:

* under ``dsl.If(manage_canary)``: ``evaluate_canary_op`` reads the InferenceService; if a canary is in
  progress it measures the canary's health over the last ``canary_window_minutes`` (Prometheus when
  ``prometheus_url`` is set, else the prediction log) and promotes it to 100%, rolls it back, or holds;
* ``detect_drift``, then under ``dsl.If(retrain)`` the trigger step, so a healthy model costs one short task.
  The retrain starts the *uploaded* training pipeline (``spx submit`` uploads ``spx-training``) through the
  KFP API with the pod's service account, so the monitoring pipeline needs no copy of the training pipeline.
"""

from kfp import dsl

from spx.components.deploy.component import evaluate_canary_op
from spx.components.monitoring.component import detect_drift, trigger_training
from spx.pipelines.options import CompileOptions, compiling, configure

PIPELINE_NAME = "spx-monitoring"

# No KFP retry policy here: KFP 2.5 applies retry policies only to top-level tasks, and the canary step sits
# inside `dsl.If(manage_canary)`. The canary step retries its own API calls instead (components/deploy/
# canary.py run_with_retries: re-read, re-plan, back off on 409/429/5xx or a dropped connection), which is
# safe because a retry after a lost reply finds the patch applied. The drift and trigger steps keep no
# retries: a retried trigger could start a second training run.
DESCRIPTION = (
    "Evidently drift of served traffic and new gold data vs the champion's training reference, live "
    "hit rate, and a conditional retrain of spx-training."
)


def monitoring_dag(
    reference_run_id: str = "",
    variant: str = "",
    lookback_days: float = 7.0,
    gold_window_days: float = 30.0,
    method: str = "wasserstein",
    threshold: float = 0.1,
    drift_threshold: float = 0.5,
    hit_rate_floor: float = 0.5,
    min_labeled: int = 100,
    min_served_rows: int = 50,
    training_pipeline: str = "spx-training",
    retrain_experiment: str = "spx-retrain",
    retrain_params_json: str = "{}",
    kfp_host: str = "",
    namespace: str = "",
    service_account: str = "",
    manage_canary: bool = True,
    isvc_namespace: str = "spx",
    isvc_name: str = "",
    serving_mode: str = "",
    canary_window_minutes: float = 60.0,
    canary_max_error_rate: float = 0.01,
    canary_max_p95_latency_ms: float = 250.0,
    canary_min_requests: int = 100,
    prometheus_url: str = "",
    canary_dry_run: bool = False,
):
    with dsl.If(manage_canary == True, name="manage-canary"):  # noqa: E712 - a KFP condition, not Python
        canary = evaluate_canary_op(
            namespace=isvc_namespace,
            isvc_name=isvc_name,
            mode=serving_mode,
            window_minutes=canary_window_minutes,
            max_error_rate=canary_max_error_rate,
            max_p95_latency_ms=canary_max_p95_latency_ms,
            min_requests=canary_min_requests,
            prometheus_url=prometheus_url,
            dry_run=canary_dry_run,
        ).set_display_name("kserve: canary promote / roll back")
        canary.set_caching_options(False)
        configure(canary, cpu="100m", cpu_limit="1", memory="512M", memory_limit="2G", retry=False)

    drift = detect_drift(
        monitor_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        reference_run_id=reference_run_id,
        variant=variant,
        lookback_days=lookback_days,
        gold_window_days=gold_window_days,
        method=method,
        threshold=threshold,
        drift_threshold=drift_threshold,
        hit_rate_floor=hit_rate_floor,
        min_labeled=min_labeled,
        min_served_rows=min_served_rows,
        canary_window_minutes=canary_window_minutes,
        canary_max_error_rate=canary_max_error_rate,
        canary_max_p95_latency_ms=canary_max_p95_latency_ms,
    ).set_display_name("drift + hit rate")
    drift.set_caching_options(False)
    configure(drift, cpu="500m", cpu_limit="2", memory="1G", memory_limit="4G", retry=False)
    with dsl.If(drift.outputs["Output"] == True, name="retrain-needed"):  # noqa: E712 - a KFP condition, not Python
        trig = trigger_training(
            monitor_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            kfp_host=kfp_host,
            namespace=namespace,
            pipeline_name=training_pipeline,
            experiment=retrain_experiment,
            params_json=retrain_params_json,
            service_account=service_account,
        ).set_display_name("start training run")
        trig.set_caching_options(False)
        configure(trig, cpu="100m", cpu_limit="500m", memory="256M", memory_limit="512M", retry=False)


def build_monitoring_pipeline(options: CompileOptions | None = None):
    """The monitoring pipeline with ``options`` (image, retries, cluster names) applied to every task."""
    with compiling(options or CompileOptions()):
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(monitoring_dag)


# built with the constant defaults (no environment read at import); compile with build_monitoring_pipeline()
monitoring_pipeline = build_monitoring_pipeline()


def compile_monitoring(output_path: str, image: str | None = None, *, retries: int | None = None) -> str:
    """Compile to ``output_path`` (YAML); ``image``/``retries`` override the settings for every task."""
    from kfp import compiler

    pipeline = build_monitoring_pipeline(CompileOptions.from_settings(image=image, retries=retries))
    compiler.Compiler().compile(pipeline, output_path)
    return output_path


def create_monitoring_schedule(
    client,
    package_path: str,
    *,
    cron: str = "0 * * * *",
    experiment: str = "spx-monitoring",
    job_name: str = "spx-monitoring",
    params: dict | None = None,
    service_account: str = "",
) -> str:
    """Upload the compiled monitoring pipeline and create (or update) its recurring run.

    The same mechanism as ``spx submit --no-run`` + ``spx schedule`` for the training pipeline: a 5-field
    cron is converted to KFP's 6-field form; ``max_concurrency=1`` and no catch-up, so a slow or paused
    cluster never piles up monitoring runs. Returns the recurring run id.
    """
    from spx.pipelines.schedule import create_or_update_schedule
    from spx.pipelines.submit import upload_version

    _, version_id, _, _ = upload_version(client, package_path, PIPELINE_NAME)
    result = create_or_update_schedule(
        client,
        cron=cron,
        pipeline_name=PIPELINE_NAME,
        job_name=job_name,
        experiment_name=experiment,
        version_id=version_id,
        params=params,
        service_account=service_account or None,
    )
    return result.recurring_run_id
