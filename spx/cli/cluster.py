"""Cluster commands: ``spx submit``, ``spx schedule``, ``spx deploy``, ``spx promote``, and the chart's Jobs:
``spx buckets`` (the bucket Job) and ``spx check`` (the `helm test` pod)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from spx.core.choices import ModelFormat, ServingMode


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _params(values: list[str] | None) -> dict:
    params: dict = {}
    for item in values or []:
        if "=" not in item:
            _fail(f"--param expects NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _serving_config(
    namespace: str,
    name: str,
    mode: str,
    service_account: str,
    transformer_image: str,
    transformer_env_configmap: str,
    raw_deployment_mode: str,
    transformer_env_secret: str = "",
):
    from spx.components.deploy.canary import RolloutError, ServingConfig
    from spx.core.settings import cluster_names

    try:
        return ServingConfig(
            namespace=namespace,
            name=name,
            mode=mode,
            service_account=service_account or cluster_names().kserve_service_account,
            transformer_image=transformer_image,
            transformer_env_configmap=transformer_env_configmap,
            transformer_env_secret=transformer_env_secret,
            raw_deployment_mode=raw_deployment_mode,
        )
    except RolloutError as exc:
        _fail(str(exc))


def _k8s_api(api_server: str | None):
    from spx.components.deploy.canary import custom_objects_api

    if api_server:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = api_server
        return custom_objects_api(client.ApiClient(cfg))
    from kubernetes.config import ConfigException

    try:
        return custom_objects_api()
    except ConfigException as exc:
        _fail(f"no Kubernetes API configured (not in a pod; kubeconfig: {exc}); give --api-server or set KUBECONFIG")


def register(app: typer.Typer) -> None:
    @app.command("submit")
    def submit_cmd(
        host: str = typer.Option(..., help="KFP API endpoint, e.g. http://localhost:8080"),
        pipeline_name: str = typer.Option("spx-training", help="KFP pipeline (display) name"),
        package: Optional[Path] = typer.Option(None, help="compiled pipeline YAML; compiled now if omitted"),
        image: Optional[str] = typer.Option(None, help="component image (default: SPX_COMPONENT_IMAGE)"),
        version_name: Optional[str] = typer.Option(None, help="pipeline version name (default: content hash)"),
        experiment: str = typer.Option("spx-direction", help="KFP experiment"),
        run_name: Optional[str] = typer.Option(None, help="run name (default: the version name)"),
        param: Optional[list[str]] = typer.Option(None, help="pipeline parameter NAME=VALUE (JSON values)"),
        service_account: Optional[str] = typer.Option(None, help="ServiceAccount the run's pods use"),
        namespace: Optional[str] = typer.Option(None, help="KFP namespace (multi-user installs)"),
        no_run: bool = typer.Option(False, "--no-run", help="upload the version only"),
        pipeline_root: Optional[str] = typer.Option(
            None, help="s3:// artifact root (default: SPX_PIPELINE_ROOT or s3://$SPX_BUCKET/pipeline-root)"
        ),
    ) -> None:
        """Upload a pipeline version to KFP and start a run."""
        from spx.pipelines.submit import kfp_client, submit

        if package is not None and not package.is_file():
            _fail(f"pipeline package {package} not found")
        result = submit(
            kfp_client(host, namespace),
            pipeline_name=pipeline_name,
            package_path=str(package) if package else None,
            image=image,
            version_name=version_name,
            experiment_name=experiment,
            run_name=run_name,
            params=_params(param),
            service_account=service_account,
            start_run=not no_run,
            namespace=namespace,
            pipeline_root=pipeline_root,
        )
        typer.echo(json.dumps(result.__dict__, sort_keys=True))

    @app.command("schedule")
    def schedule_cmd(
        cron: str = typer.Option(..., help="cron, 5 fields ('0 2 * * *') or KFP's 6 (seconds first)"),
        host: str = typer.Option(..., help="KFP API endpoint"),
        pipeline_name: str = typer.Option("spx-training", help="pipeline to schedule"),
        job_name: str = typer.Option("spx-training-recurring", help="recurring run display name"),
        experiment: str = typer.Option("spx-direction", help="KFP experiment"),
        version_id: Optional[str] = typer.Option(None, help="pipeline version id (default: latest)"),
        param: Optional[list[str]] = typer.Option(None, help="pipeline parameter NAME=VALUE"),
        max_concurrency: int = typer.Option(1, help="runs allowed at once (KFP: 1-10)"),
        catchup: bool = typer.Option(False, "--catchup/--no-catchup", help="backfill missed runs"),
        service_account: Optional[str] = typer.Option(None, help="ServiceAccount the runs' pods use"),
        namespace: Optional[str] = typer.Option(None, help="KFP namespace (multi-user installs)"),
        pipeline_root: Optional[str] = typer.Option(
            None, help="s3:// artifact root (default: SPX_PIPELINE_ROOT or s3://$SPX_BUCKET/pipeline-root)"
        ),
    ) -> None:
        """Create or update the recurring run (max concurrency 1, no catch-up by default)."""
        from spx.pipelines.schedule import ScheduleError, create_or_update_schedule
        from spx.pipelines.submit import kfp_client

        try:
            result = create_or_update_schedule(
                kfp_client(host, namespace),
                cron=cron,
                pipeline_name=pipeline_name,
                job_name=job_name,
                experiment_name=experiment,
                version_id=version_id,
                params=_params(param),
                max_concurrency=max_concurrency,
                no_catchup=not catchup,
                service_account=service_account,
                namespace=namespace,
                pipeline_root=pipeline_root,
            )
        except (ScheduleError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(json.dumps(result.__dict__, sort_keys=True))

    @app.command("deploy")
    def deploy_cmd(
        selection_uri: Optional[str] = typer.Option(None, help="s3://…/selection/{run_id}/best_model_selection.json"),
        native_uri: Optional[str] = typer.Option(None, help="deploy this s3:// model prefix instead"),
        model_format: ModelFormat = typer.Option("xgboost", help="the model's format (with --native-uri)"),
        namespace: str = typer.Option("spx", help="namespace of the InferenceService"),
        name: str = typer.Option("spx-direction", help="InferenceService name"),
        canary_percent: int = typer.Option(10, help="traffic share of the new champion"),
        mode: ServingMode = typer.Option("serverless", help="serverless (canaryTrafficPercent) or raw (spec.canary)"),
        service_account: str = typer.Option(
            "",
            help="ServiceAccount holding the S3 secret (default: $SPX_KSERVE_SERVICE_ACCOUNT, else spx-kfp-kserve-s3)",
        ),
        transformer_image: str = typer.Option("", help="transformer image (empty: no transformer)"),
        transformer_env_configmap: str = typer.Option("", help="ConfigMap with the transformer's env"),
        transformer_env_secret: str = typer.Option("", help="Secret with the transformer's S3 keys"),
        raw_deployment_mode: str = typer.Option("RawDeployment", help="annotation value in raw mode"),
        api_server: Optional[str] = typer.Option(None, help="Kubernetes API URL (default: kubeconfig)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the exact request, change nothing"),
        allow_no_edge: bool = typer.Option(
            False, "--allow-no-edge", help="roll out a champion whose verdict is not 'credible edge'"
        ),
    ) -> None:
        """Create the InferenceService, or roll the new champion out as a canary (a champion from --selection-uri
        must carry the verdict "credible edge" unless --allow-no-edge)."""
        from spx.components.deploy.canary import ModelRef, RolloutError, deploy, edge_refusal, load_selection

        cfg = _serving_config(
            namespace,
            name,
            str(mode),
            service_account,
            transformer_image,
            transformer_env_configmap,
            raw_deployment_mode,
            transformer_env_secret,
        )
        try:
            if selection_uri:
                selection = load_selection(selection_uri)
                refusal = edge_refusal(selection, allow_no_edge)
                if refusal is not None:
                    _fail(refusal)
                candidate = ModelRef.from_selection(selection)
            elif native_uri:
                candidate = ModelRef(native_uri=native_uri, model_format=str(model_format))
            else:
                _fail("give --selection-uri or --native-uri")
            action = deploy(_k8s_api(api_server), candidate, cfg, canary_percent, dry_run=dry_run, printer=typer.echo)
        except RolloutError as exc:
            _fail(str(exc))
        if not dry_run:
            typer.echo(f"{action.verb}: {action.reason}")

    @app.command("promote")
    def promote_cmd(
        requests: Optional[int] = typer.Option(None, help="canary requests in the window"),
        errors: Optional[int] = typer.Option(None, help="canary 5xx/errored requests in the window"),
        p95_latency_ms: Optional[float] = typer.Option(None, help="canary p95 latency (ms)"),
        prediction_log: Optional[Path] = typer.Option(
            None, help="JSON-lines log of canary requests (latency_ms, status_code|error)"
        ),
        prometheus_url: Optional[str] = typer.Option(None, help="measure via Prometheus instead"),
        revision: Optional[str] = typer.Option(None, help="canary revision name (with --prometheus-url)"),
        window: str = typer.Option("15m", help="Prometheus window"),
        max_error_rate: float = typer.Option(0.01),
        max_p95_latency_ms: float = typer.Option(250.0),
        min_requests: int = typer.Option(100),
        namespace: str = typer.Option("spx"),
        name: str = typer.Option("spx-direction"),
        mode: ServingMode = typer.Option("serverless", help="serverless (canaryTrafficPercent) or raw (spec.canary)"),
        service_account: str = typer.Option("", help="default: $SPX_KSERVE_SERVICE_ACCOUNT, else spx-kfp-kserve-s3"),
        transformer_image: str = typer.Option(""),
        transformer_env_configmap: str = typer.Option(""),
        transformer_env_secret: str = typer.Option(""),
        raw_deployment_mode: str = typer.Option("RawDeployment"),
        api_server: Optional[str] = typer.Option(None, help="Kubernetes API URL (default: kubeconfig)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the exact request, change nothing"),
    ) -> None:
        """Promote the canary to 100% or roll back, from measured canary health."""
        from spx.components.deploy.canary import (
            CanaryHealth,
            HealthThresholds,
            RolloutError,
            health_from_prometheus,
            health_from_records,
            promote,
        )

        cfg = _serving_config(
            namespace,
            name,
            str(mode),
            service_account,
            transformer_image,
            transformer_env_configmap,
            raw_deployment_mode,
            transformer_env_secret,
        )
        try:
            if prediction_log is not None:
                lines = prediction_log.read_text().splitlines()
                health = health_from_records(json.loads(line) for line in lines if line.strip())
            elif prometheus_url:
                if not revision:
                    _fail("--prometheus-url needs --revision")
                health = health_from_prometheus(prometheus_url, namespace=namespace, revision=revision, window=window)
            elif None not in (requests, errors, p95_latency_ms):
                health = CanaryHealth(requests=requests, errors=errors, p95_latency_ms=p95_latency_ms)
            else:
                _fail("give --requests/--errors/--p95-latency-ms, --prediction-log or --prometheus-url")
            decision = promote(
                _k8s_api(api_server),
                health,
                HealthThresholds(max_error_rate, max_p95_latency_ms, min_requests),
                cfg,
                dry_run=dry_run,
                printer=typer.echo,
            )
        except RolloutError as exc:
            _fail(str(exc))
        summary = decision.to_dict()
        summary.pop("body")
        typer.echo(json.dumps(summary, sort_keys=True), file=sys.stdout)

    @app.command("buckets")
    def buckets_cmd(
        bucket: Optional[list[str]] = typer.Option(None, help="a further bucket to create (repeat); SPX_BUCKET always"),
        timeout: float = typer.Option(600.0, help="seconds to wait for the S3 endpoint to answer"),
    ) -> None:
        """Create the buckets and the policy that keeps bronze write-once (the chart's bucket Job runs this)."""
        from spx.core.buckets import prepare_buckets
        from spx.core.settings import S3Settings

        s3 = S3Settings.from_env()
        report = prepare_buckets(s3, list(bucket or []), write_once_bucket=s3.bucket, timeout=timeout, say=typer.echo)
        for line in report.lines(s3.bucket):
            typer.echo(line)

    @app.command("check")
    def check_cmd(
        bucket: Optional[list[str]] = typer.Option(None, help="a further bucket that must exist (repeat)"),
    ) -> None:
        """Check every service the pipeline's tasks use, by the names they use (the chart's `helm test` pod)."""
        from spx.cli.checks import run_checks

        results = run_checks(list(bucket or []))
        for result in results:
            typer.echo(result.line())
        failed = [r.name for r in results if not r.ok]
        if failed:
            typer.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
            raise typer.Exit(code=1)
        typer.echo(f"all {len(results)} checks passed")
