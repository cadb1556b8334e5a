"""Helpers that attach the cluster's Secret/ConfigMap to KFP tasks (kfp-kubernetes).

The Helm chart creates a Secret ``<release>-s3`` with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` and a
ConfigMap ``<release>-env`` with ``SPX_S3_ENDPOINT``, ``SPX_BUCKET``, ``MLFLOW_TRACKING_URI`` …; every
component reads them through :mod:`spx.config`.
"""

from __future__ import annotations

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ENV_CONFIGMAP_KEYS = (
    "SPX_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_REGION",
    "SPX_BUCKET",
    "MLFLOW_TRACKING_URI",
    "SPX_REGISTERED_MODEL",
    "SPX_COMPONENT_IMAGE",
)


def use_cluster_env(task, secret_name: str = "spx-kfp-s3", config_map_name: str = "spx-kfp-env"):
    """Inject S3 credentials (Secret) and endpoints/settings (ConfigMap) as env vars into ``task``."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(task, secret_name=secret_name,
                                 secret_key_to_env={k: k for k in S3_SECRET_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=config_map_name,
                                     config_map_key_to_env={k: k for k in ENV_CONFIGMAP_KEYS})
    return task
