"""Runtime configuration, read from environment variables.

Every stage reads its settings here, so the same component code runs in the local
embedded mode (env set by ``spx run``) and in the cluster (env injected from a Secret
and a ConfigMap by the pipeline). Defaults match a MinIO/SeaweedFS dev install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @classmethod
    def from_env(cls) -> "S3Settings":
        return cls(
            endpoint_url=_env("SPX_S3_ENDPOINT", _env("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")),
            access_key=_env("AWS_ACCESS_KEY_ID", "minioadmin"),
            secret_key=_env("AWS_SECRET_ACCESS_KEY", "minioadmin"),
            region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1")),
            bucket=_env("SPX_BUCKET", "spx"),
        )


@dataclass(frozen=True)
class Settings:
    s3: S3Settings
    home: Path
    mlflow_tracking_uri: str
    mlflow_experiment: str
    registered_model: str
    component_image: str
    feature_delay_bars: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(_env("SPX_HOME", str(Path.cwd() / ".spx"))).resolve()
        return cls(
            s3=S3Settings.from_env(),
            home=home,
            mlflow_tracking_uri=_env("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            mlflow_experiment=_env("SPX_MLFLOW_EXPERIMENT", "spx-direction"),
            registered_model=_env("SPX_REGISTERED_MODEL", "spx-direction"),
            component_image=_env("SPX_COMPONENT_IMAGE", "ghcr.io/spx-kfp/spx-component:0.1.0"),
        )


def settings() -> Settings:
    """Settings as of now (environment is re-read on every call; cheap)."""
    return Settings.from_env()


@dataclass(frozen=True)
class ClusterNames:
    """Names of the objects the Helm release creates that pipeline steps refer to.

    They depend on the release name (``<release>-s3``, ``<release>-env``, ``<release>-kserve-s3``), so the
    chart writes them into its env ConfigMap and the upload Job's environment; the defaults are the names
    for the release ``spx-kfp``.
    """

    s3_secret: str  # SPX_K8S_S3_SECRET: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ KServe s3 annotations)
    env_configmap: str  # SPX_K8S_CONFIGMAP: the settings every component reads
    kserve_service_account: str  # SPX_KSERVE_SERVICE_ACCOUNT: the model server's account carrying the Secret


def cluster_names() -> ClusterNames:
    return ClusterNames(
        s3_secret=_env("SPX_K8S_S3_SECRET", "spx-kfp-s3"),
        env_configmap=_env("SPX_K8S_CONFIGMAP", "spx-kfp-env"),
        kserve_service_account=_env("SPX_KSERVE_SERVICE_ACCOUNT", "spx-kfp-kserve-s3"),
    )


@dataclass(frozen=True)
class KubeTestTools:
    """The real kube-apiserver the ``cluster`` test tier starts (tests/cluster/apiserver.py)."""

    tools_dir: Path  # SPX_KUBE_TOOLS: apiserver.sh, crds/kserve-v0.20.0/, kfp-2.5.0/ (default ../shared/tools/k8s)
    apiserver_bin: str  # SPX_KUBE_APISERVER_BIN: a kube-apiserver binary to use instead (e.g. envtest's)
    ci: bool  # CI=true: a missing API server fails the tier instead of skipping it


def kube_test_tools(project_root: Path) -> KubeTestTools:
    default = (project_root / ".." / "shared" / "tools" / "k8s").resolve()
    return KubeTestTools(
        tools_dir=Path(_env("SPX_KUBE_TOOLS", str(default))).resolve(),
        apiserver_bin=_env("SPX_KUBE_APISERVER_BIN", ""),
        ci=_env("CI", "").lower() in ("1", "true", "yes"),
    )
