"""Cluster wiring shared by every pipeline: S3 credentials (Secret) and settings (ConfigMap) as env.

The Helm chart creates a Secret ``<release>-s3`` (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) and a
ConfigMap ``<release>-env``; with the default release name these are ``spx-kfp-s3`` / ``spx-kfp-env``.
Other names: set ``SPX_K8S_S3_SECRET`` / ``SPX_K8S_CONFIGMAP`` when compiling (the chart's upload Job
does). Local runs ignore these platform settings.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

from spx.core.settings import cluster_names

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# every key is present in helm/spx-kfp/templates/configmaps.yaml (a missing key would fail the pod)
ENV_CONFIGMAP_KEYS = (
    "SPX_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_REGION",
    "SPX_BUCKET",
    "MLFLOW_TRACKING_URI",
    "SPX_REGISTERED_MODEL",
    "SPX_COMPONENT_IMAGE",
    "SPX_SERVING_IMAGE",
    "SPX_FEAST_ONLINE_STORE",
    "SPX_FEAST_REDIS",
    "SPX_FEAST_REGISTRY",
    "SPX_INFERENCE_SERVICE",
    "SPX_INFERENCE_MODE",
    "SPX_PREDICTION_LOG",  # the deploy step: does the server clients call write the prediction log
    "SPX_PREDICTION_LOG_CLAIM",  # the deploy step: the claim that server keeps its local log on ("": emptyDir)
    "SPX_SERVING_RUNTIME",
    # release-dependent object names the deploy/canary steps put on the InferenceService
    "SPX_K8S_S3_SECRET",
    "SPX_K8S_CONFIGMAP",
    "SPX_KSERVE_SERVICE_ACCOUNT",
)


def s3_secret_name() -> str:
    return cluster_names().s3_secret


def config_map_name() -> str:
    return cluster_names().env_configmap


def use_cluster_env(
    task: dsl.PipelineTask, secret_name: str | None = None, config_map: str | None = None
) -> dsl.PipelineTask:
    """Inject S3 credentials and the spx settings into ``task``'s environment."""
    kubernetes.use_secret_as_env(
        task, secret_name=secret_name or s3_secret_name(), secret_key_to_env={k: k for k in S3_SECRET_KEYS}
    )
    kubernetes.use_config_map_as_env(
        task, config_map_name=config_map or config_map_name(), config_map_key_to_env={k: k for k in ENV_CONFIGMAP_KEYS}
    )
    return task
