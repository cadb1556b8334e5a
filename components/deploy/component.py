"""Thin KFP v2 component definitions for the canary rollout (logic in ``canary.py`` and ``health.py``).

The pipeline's ServiceAccount needs get/create/patch on ``inferenceservices`` in its namespace
(see ``helm/spx-kfp/templates/rbac.yaml`` and ``manifests/base/pipeline-rbac.yaml``).

``service_account`` / ``transformer_env_configmap`` / ``transformer_env_secret`` empty: the names the Helm
release wrote into its env ConfigMap (``SPX_KSERVE_SERVICE_ACCOUNT``, ``SPX_K8S_CONFIGMAP``,
``SPX_K8S_S3_SECRET``), so any release name works.
"""

from kfp.dsl import Markdown, Output

from spx.core.component import spx_component


@spx_component
def deploy_op(
    selection_uri: str,
    namespace: str,
    isvc_name: str = "spx-direction",
    canary_percent: int = 10,
    mode: str = "serverless",
    dry_run: bool = False,
    transformer_image: str = "",
    transformer_env_configmap: str = "",
    transformer_env_secret: str = "",
    service_account: str = "",
    allow_no_edge: bool = False,
) -> str:
    """Roll the selection's champion out: create the InferenceService, or canary it at ``canary_percent``.

    A champion whose selection verdict is not "credible edge" is refused unless ``allow_no_edge``."""
    import json

    from spx.components.deploy.canary import (
        ModelRef,
        ServingConfig,
        custom_objects_api,
        deploy,
        edge_refusal,
        load_selection,
    )

    selection = load_selection(selection_uri)
    if not selection.get("champion"):
        reason = selection.get("reason", "no champion in this run")
        print(f"deploy: nothing to roll out ({reason}); the InferenceService is left as it is")
        return json.dumps({"verb": "skip", "reason": reason, "body": None}, sort_keys=True)
    reason = edge_refusal(selection, allow_no_edge)
    if reason is not None:
        print(f"deploy: {reason}; the InferenceService is left as it is")
        return json.dumps({"verb": "refuse", "reason": reason, "body": None}, sort_keys=True)
    candidate = ModelRef.from_selection(selection)
    cfg = ServingConfig.in_cluster(
        namespace=namespace,
        name=isvc_name,
        mode=mode,
        service_account=service_account,
        transformer_image=transformer_image,
        transformer_env_configmap=transformer_env_configmap,
        transformer_env_secret=transformer_env_secret,
    )
    action = deploy(custom_objects_api(), candidate, cfg, canary_percent, dry_run=dry_run)
    return json.dumps({"verb": action.verb, "reason": action.reason, "body": action.body}, sort_keys=True)


@spx_component
def promote_op(
    namespace: str,
    canary_requests: int,
    canary_errors: int,
    canary_p95_latency_ms: float,
    isvc_name: str = "spx-direction",
    mode: str = "serverless",
    max_error_rate: float = 0.01,
    max_p95_latency_ms: float = 250.0,
    min_requests: int = 100,
    dry_run: bool = False,
    transformer_image: str = "",
    transformer_env_configmap: str = "",
    transformer_env_secret: str = "",
    service_account: str = "",
) -> str:
    """Promote the canary to 100% or roll back to the stable model, from measured canary health."""
    import json

    from spx.components.deploy.canary import CanaryHealth, HealthThresholds, ServingConfig, custom_objects_api, promote

    cfg = ServingConfig.in_cluster(
        namespace=namespace,
        name=isvc_name,
        mode=mode,
        service_account=service_account,
        transformer_image=transformer_image,
        transformer_env_configmap=transformer_env_configmap,
        transformer_env_secret=transformer_env_secret,
    )
    health = CanaryHealth(requests=canary_requests, errors=canary_errors, p95_latency_ms=canary_p95_latency_ms)
    thresholds = HealthThresholds(
        max_error_rate=max_error_rate, max_p95_latency_ms=max_p95_latency_ms, min_requests=min_requests
    )
    decision = promote(custom_objects_api(), health, thresholds, cfg, dry_run=dry_run)
    return json.dumps(decision.to_dict(), sort_keys=True)


@spx_component
def evaluate_canary_op(
    decision: Output[Markdown],
    namespace: str = "spx",
    isvc_name: str = "",
    mode: str = "",
    window_minutes: float = 60.0,
    max_error_rate: float = 0.01,
    max_p95_latency_ms: float = 250.0,
    min_requests: int = 100,
    prometheus_url: str = "",
    dry_run: bool = False,
    transformer_image: str = "",
    transformer_env_configmap: str = "",
    transformer_env_secret: str = "",
    service_account: str = "",
) -> str:
    """The canary promotion loop: measure the canary over the window, then promote, roll back or hold.

    ``isvc_name`` / ``mode`` empty: ``$SPX_INFERENCE_SERVICE`` / ``$SPX_INFERENCE_MODE`` (the chart's env
    ConfigMap), else ``spx-direction`` / ``serverless``. Health from Prometheus when ``prometheus_url`` is set,
    else from the prediction log in the bucket. Returns the decision as JSON (``decision``, ``reasons``, the
    exact patch ``body``, the ``measurement``); ``decision`` shows it in the KFP UI (Markdown: the
    measurement beside the thresholds, the models, the patch; the numbers also as its metadata).
    """
    import json
    from dataclasses import asdict

    from spx.components.deploy.canary import HealthThresholds, ServingConfig, custom_objects_api
    from spx.components.deploy.health import evaluate_canary, kubernetes_api_configured
    from spx.components.deploy.report import decision_markdown, decision_metadata

    thresholds = HealthThresholds(
        max_error_rate=max_error_rate, max_p95_latency_ms=max_p95_latency_ms, min_requests=min_requests
    )

    def publish(out: dict) -> str:
        with open(decision.path, "w") as fh:
            fh.write(decision_markdown(out, asdict(thresholds)))
        decision.metadata.update(decision_metadata(out, asdict(thresholds)))
        return json.dumps(out, sort_keys=True)

    if not kubernetes_api_configured():
        reason = "no Kubernetes API configured (not in a pod, no kubeconfig): canary step skipped"
        print(f"canary: {reason}")
        return publish({"decision": "no-cluster", "reasons": [reason], "verb": "noop", "body": None})
    cfg = ServingConfig.in_cluster(
        namespace=namespace,
        name=isvc_name,
        mode=mode,
        service_account=service_account,
        transformer_image=transformer_image,
        transformer_env_configmap=transformer_env_configmap,
        transformer_env_secret=transformer_env_secret,
    )
    result = evaluate_canary(
        custom_objects_api(),
        cfg,
        thresholds,
        window_minutes=window_minutes,
        prometheus_url=prometheus_url,
        dry_run=dry_run,
    )
    out = result.to_dict()
    print(f"canary {cfg.namespace}/{cfg.name}: {out['decision']} — " + "; ".join(out["reasons"]))
    return publish(out)
