"""Every setting of spx, typed, in one place: the only module that reads the environment.

The same component code runs locally (``spx run`` sets the environment) and in the cluster (a Secret and
a ConfigMap injected by the pipeline). Settings are grouped (S3, MLflow, Feast, serving, pipeline,
news, market, cluster, dev); each field names the environment variable(s) it is read from, and the README's
configuration table is checked against these models by a test. CLI options and server flags take their
defaults from here.

``settings()`` re-reads the environment on every call (cheap), so tests and ``spx run`` may change it.
Third-party libraries that read the environment themselves (boto3 inside MLflow, s3fs inside Feast/dask,
the KFP launcher) get the *resolved* values through :func:`library_env` / :func:`export_library_env`, so a
default (say, the documented ``minioadmin`` credentials) reaches every library, not only our own client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from spx.core.errors import ConfigError

DEFAULT_COMPONENT_IMAGE = "ghcr.io/spx-kfp/spx-component:0.1.0"


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class _Group(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)


_G = TypeVar("_G", bound=BaseSettings)


class S3Settings(_Group):
    """The object store (MinIO/SeaweedFS in the cluster, SeaweedFS on loopback locally)."""

    endpoint_url: str = Field(
        "http://127.0.0.1:9000",
        validation_alias=_alias("SPX_S3_ENDPOINT", "AWS_ENDPOINT_URL"),
        description="S3 endpoint, e.g. http://minio:9000 (unset locally: spx run starts SeaweedFS on loopback)",
    )
    access_key: str = Field("minioadmin", validation_alias=_alias("AWS_ACCESS_KEY_ID"), description="S3 access key")
    secret_key: SecretStr = Field(
        SecretStr("minioadmin"), validation_alias=_alias("AWS_SECRET_ACCESS_KEY"), description="S3 secret key"
    )
    region: str = Field(
        "us-east-1", validation_alias=_alias("AWS_REGION", "AWS_DEFAULT_REGION"), description="S3 region"
    )
    bucket: str = Field(
        "spx", validation_alias=_alias("SPX_BUCKET"), description="bucket holding bronze/silver/gold/models/predictions"
    )
    max_volumes: int = Field(
        1000,
        ge=1,
        validation_alias=_alias("SPX_S3_MAX_VOLUMES"),
        description="embedded S3 (SeaweedFS): most volumes it may create; every bucket takes at least one "
        "(its own default, free disk / volume size, ran out at ~75 buckets on an 80 GB disk)",
    )
    volume_size_mb: int = Field(
        128,
        ge=8,
        validation_alias=_alias("SPX_S3_VOLUME_SIZE_MB"),
        description="embedded S3 (SeaweedFS): a volume takes writes up to this size, then a new one is made "
        "(not preallocated: an empty volume uses no disk)",
    )
    embedded_master: str = Field(
        "",
        validation_alias=_alias("SPX_S3_EMBEDDED_MASTER"),
        description="set by spx for its children: the embedded SeaweedFS master, asked for free volumes "
        "when a write fails",
    )

    @classmethod
    def from_env(cls) -> S3Settings:
        return read_group(cls)


class MlflowSettings(_Group):
    tracking_uri: str = Field(
        "", validation_alias=_alias("MLFLOW_TRACKING_URI"), description="default: SQLite under SPX_HOME"
    )
    experiment: str = Field(
        "spx-direction",
        validation_alias=_alias("SPX_MLFLOW_EXPERIMENT"),
        description="MLflow experiment of the training runs",
    )
    registered_model: str = Field(
        "spx-direction",
        validation_alias=_alias("SPX_REGISTERED_MODEL"),
        description="MLflow registered model (alias champion)",
    )


class FeastSettings(_Group):
    home: Path | None = Field(None, validation_alias=_alias("SPX_FEAST_HOME"), description="default: SPX_HOME/feast")
    online_store: Literal["sqlite", "redis"] = Field(
        "sqlite",
        validation_alias=_alias("SPX_FEAST_ONLINE_STORE"),
        description="Feast online store: sqlite (local) or redis (cluster)",
    )
    redis: str = Field(
        "redis:6379",
        validation_alias=_alias("SPX_FEAST_REDIS"),
        description="Redis host:port for the Feast online store",
    )
    registry: str = Field(
        "", validation_alias=_alias("SPX_FEAST_REGISTRY"), description="default: registry.db in the Feast home"
    )


class ServingSettings(_Group):
    host: str = Field(
        "127.0.0.1",
        validation_alias=_alias("SPX_SERVE_HOST"),
        description="address spx serve's predictor and transformer bind to (loopback; the images pass --host 0.0.0.0)",
    )
    prediction_log: bool = Field(
        False,
        validation_alias=_alias("SPX_PREDICTION_LOG"),
        description="log every prediction this server answers (the chart and the deploy step set it on the one "
        "server that answers clients: the transformer, else the predictor)",
    )
    log_dir: Path | None = Field(
        None,
        validation_alias=_alias("SPX_PREDICTION_LOG_DIR"),
        description="the server's local prediction log, shipped to the bucket (default SPX_HOME/prediction-log)",
    )
    log_flush_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias=_alias("SPX_PREDICTION_LOG_FLUSH_SECONDS"),
        description="seconds between the prediction log's parquet batches to the bucket",
    )
    log_max_bytes: int = Field(
        1 << 30,
        gt=0,
        validation_alias=_alias("SPX_PREDICTION_LOG_MAX_BYTES"),
        description="unshipped prediction-log bytes above which a server answers 503 (the bucket is away)",
    )
    model_dir: Path = Field(
        Path("/mnt/models"),
        validation_alias=_alias("SPX_MODEL_DIR"),
        description="predictor: directory holding the native model file",
    )
    model_version: str = Field(
        "",
        validation_alias=_alias("SPX_MODEL_VERSION"),
        description="predictor: registered version reported in V2 responses",
    )
    predictor_nthread: int = Field(
        1,
        ge=1,
        validation_alias=_alias("SPX_PREDICTOR_NTHREAD"),
        description="predictor: XGBoost/LightGBM threads per request",
    )
    max_feature_age_seconds: float = Field(
        900.0,
        gt=0,
        validation_alias=_alias("SPX_MAX_FEATURE_AGE_SECONDS"),
        description="transformer: refuse online features older than this",
    )
    manifest_uri: str = Field(
        "", validation_alias=_alias("SPX_MANIFEST_URI"), description="Feast CLI repo: gold manifest.json to serve"
    )
    gold_uri: str = Field(
        "", validation_alias=_alias("SPX_GOLD_URI"), description="Feast CLI repo: gold features.parquet to serve"
    )
    trace_log_level: str = Field(
        "WARNING",
        validation_alias=_alias("SPX_TRACE_LOG_LEVEL"),
        description="log level of the model servers' access/trace loggers",
    )


class EvidentlySettings(_Group):
    """The Evidently workspace the monitoring runs write and ``spx ui`` / the chart's UI serve."""

    workspace: str = Field(
        "",
        validation_alias=_alias("SPX_EVIDENTLY_WORKSPACE"),
        description="Evidently workspace of the monitoring runs: a directory or s3://bucket/prefix "
        "(default: s3://$SPX_BUCKET/evidently in a pod, SPX_HOME/evidently elsewhere)",
    )
    project: str = Field(
        "spx-monitoring",
        validation_alias=_alias("SPX_EVIDENTLY_PROJECT"),
        description="Evidently project the monitoring snapshots and the dashboard belong to",
    )
    ui_url: str = Field(
        "",
        validation_alias=_alias("SPX_EVIDENTLY_UI_URL"),
        description="where users open the Evidently UI; the monitoring run's HTML pages link there "
        "(empty: they name the project and the snapshot)",
    )
    retention_days: float = Field(
        30.0,
        gt=0,
        validation_alias=_alias("SPX_EVIDENTLY_RETENTION_DAYS"),
        description="monitoring snapshots older than this are deleted from the workspace",
    )
    full_report_hours: float = Field(
        24.0,
        ge=0,
        validation_alias=_alias("SPX_EVIDENTLY_FULL_REPORT_HOURS"),
        description="keep a served-traffic drift report in full at most this often (the other runs keep "
        "their values; a run that decides to retrain always keeps its reports)",
    )


class PipelineSettings(_Group):
    component_image: str = Field(
        DEFAULT_COMPONENT_IMAGE,
        validation_alias=_alias("SPX_COMPONENT_IMAGE"),
        description="image of every KFP component (spx compile --image)",
    )
    serving_image: str = Field(
        "", validation_alias=_alias("SPX_SERVING_IMAGE"), description="image of the transformer (deploy step)"
    )
    serving_runtime: str = Field(
        "",
        validation_alias=_alias("SPX_SERVING_RUNTIME"),
        description="KServe ServingRuntime of the predictor (deploy step)",
    )
    retries: int = Field(
        3,
        ge=0,
        validation_alias=_alias("SPX_PIPELINE_RETRIES"),
        description="retries of top-level cluster tasks, exponential backoff from 30 s (KFP 2.5 ignores them inside dsl.If; 0 under spx run)",
    )
    pipeline_root: str = Field(
        "",
        validation_alias=_alias("SPX_PIPELINE_ROOT"),
        description="KFP pipeline root (default s3://$SPX_BUCKET/pipeline-root)",
    )
    threads: int = Field(
        0, ge=0, validation_alias=_alias("SPX_THREADS"), description="XGBoost/LightGBM threads (0: all cores)"
    )
    warm_start: bool = Field(
        True,
        validation_alias=_alias("SPX_WARM_START"),
        description="spx run: fork each task process from one interpreter that imported the libraries once "
        "(false: a fresh interpreter per task, as KFP's SubprocessRunner starts them)",
    )
    local_concurrency: int = Field(
        0,
        ge=0,
        validation_alias=_alias("SPX_LOCAL_CONCURRENCY"),
        description="spx run: tasks of the pipeline's top level run at once when independent (0: the cores, at "
        "least 2; 1: one after another, as KFP's local runner does)",
    )


class NewsSettings(_Group):
    news_file: str = Field(
        "",
        validation_alias=_alias("SPX_NEWS_FILE"),
        description="news file (CSV/parquet/JSONL) for --news-source file (unset: ../shared/data/news/reuters_markets_2011q1.parquet if present)",
    )
    finbert_model: str = Field(
        "",
        validation_alias=_alias("SPX_FINBERT_MODEL"),
        description="FinBERT: local directory or s3:// prefix (unset: the FinVADER lexicon scorer)",
    )
    gdelt_url: str = Field(
        "",
        validation_alias=_alias("SPX_GDELT_URL"),
        description="GDELT DOC 2.0 API base URL (tests point it at a loopback server)",
    )
    torch_threads: int = Field(
        0, ge=0, validation_alias=_alias("SPX_TORCH_THREADS"), description="FinBERT: torch threads (0: torch default)"
    )
    allow_hub_download: bool = Field(
        False,
        validation_alias=_alias("SPX_ALLOW_HUB_DOWNLOAD"),
        description="let FinBERT be downloaded from the Hugging Face hub by id "
        "(off: models come from a directory or s3://)",
    )
    hf_hub_offline: bool = Field(
        False, validation_alias=_alias("HF_HUB_OFFLINE"), description="never contact the Hugging Face hub"
    )


class MarketSettings(_Group):
    """Market data sources (the bundled data needs none)."""

    oanda_api_url: str = Field("", validation_alias=_alias("OANDA_API_URL"), description="OANDA v20 REST base URL")
    oanda_api_token: SecretStr = Field(
        SecretStr(""), validation_alias=_alias("OANDA_API_TOKEN"), description="OANDA v20 API token"
    )


class ClusterSettings(_Group):
    s3_secret: str = Field(
        "spx-kfp-s3",
        validation_alias=_alias("SPX_K8S_S3_SECRET"),
        description="Secret the compiled tasks read S3 credentials from (chart: `<release>-s3`)",
    )
    env_configmap: str = Field(
        "spx-kfp-env",
        validation_alias=_alias("SPX_K8S_CONFIGMAP"),
        description="ConfigMap the compiled tasks read settings from (chart: `<release>-env`)",
    )
    kserve_service_account: str = Field(
        "spx-kfp-kserve-s3",
        validation_alias=_alias("SPX_KSERVE_SERVICE_ACCOUNT"),
        description="model server's ServiceAccount carrying the S3 Secret (chart: `<release>-kserve-s3`)",
    )
    prediction_log_claim: str = Field(
        "",
        validation_alias=_alias("SPX_PREDICTION_LOG_CLAIM"),
        description="PersistentVolumeClaim the server that writes the prediction log keeps its local log on, so that "
        "rows not yet shipped outlive a deleted pod (chart: `<release>-prediction-log`; empty: the pod's /tmp emptyDir)",
    )
    inference_service: str = Field(
        "spx-direction",
        validation_alias=_alias("SPX_INFERENCE_SERVICE"),
        description="InferenceService the deploy/canary steps manage",
    )
    inference_mode: str = Field(
        "",
        validation_alias=_alias("SPX_INFERENCE_MODE"),
        description="KServe deployment mode: serverless or raw (empty: from the object)",
    )
    namespace: str = Field(
        "default", validation_alias=_alias("POD_NAMESPACE"), description="namespace of this pod (set by the chart)"
    )
    kubeconfig: str = Field(
        "", validation_alias=_alias("KUBECONFIG"), description="kubeconfig for spx deploy/promote outside the cluster"
    )
    kubernetes_service_host: str = Field(
        "", validation_alias=_alias("KUBERNETES_SERVICE_HOST"), description="set by Kubernetes in every pod"
    )
    kfp_sa_token_path: str = Field(
        "/var/run/secrets/kubeflow/pipelines/token",
        validation_alias=_alias("KF_PIPELINES_SA_TOKEN_PATH"),
        description="projected token the retrain trigger calls the KFP API with",
    )

    @property
    def in_cluster(self) -> bool:
        return bool(self.kubernetes_service_host)


class DevSettings(_Group):
    """Test tooling: the real kube-apiserver of the ``cluster`` test tier (tests/cluster/apiserver.py) and the
    one-node Kubernetes of the ``node`` tier (tests/node)."""

    kube_tools: Path | None = Field(
        None,
        validation_alias=_alias("SPX_KUBE_TOOLS"),
        description="apiserver.sh, KServe CRDs, KFP manifests (default ../shared/tools/k8s)",
    )
    kube_apiserver_bin: str = Field(
        "",
        validation_alias=_alias("SPX_KUBE_APISERVER_BIN"),
        description="a kube-apiserver binary to use instead (e.g. envtest's)",
    )
    ci: bool = Field(
        False,
        validation_alias=_alias("CI"),
        description="CI=true: a missing API server (cluster tier) or node (node tier) fails the tier instead of "
        "skipping it",
    )
    node_dir: Path = Field(
        Path("/var/tmp/spx-node"),
        validation_alias=_alias("SPX_NODE_DIR"),
        description="node tier: the one-node Kubernetes' state folder (kept between runs: loaded images stay)",
    )
    node_image_tag: str = Field(
        "dev",
        validation_alias=_alias("SPX_NODE_IMAGE_TAG"),
        description="node tier: tag of the localhost/spx-component and spx-serving images it loads "
        "(scripts/build-images-offline.sh's SPX_IMAGE_TAG)",
    )
    update_screenshots: bool = Field(
        False,
        validation_alias=_alias("SPX_UPDATE_SCREENSHOTS"),
        description="tests write their browser screenshots into docs/screenshots/ (the README's) instead of a temp dir",
    )


class GeneralSettings(_Group):
    home: Path = Field(
        Path(".spx"),
        validation_alias=_alias("SPX_HOME"),
        description="local state: S3 data, MLflow DB, Feast, logs (default ./.spx)",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class Settings(BaseModel):
    """Every group, each read only from the variables its fields name. A plain model, not a settings
    source itself: no group is bound to a variable of its own name (``S3=…`` or ``serving=…`` in a shell is
    not ours to read)."""

    model_config = ConfigDict(frozen=True)

    general: GeneralSettings
    s3: S3Settings
    mlflow: MlflowSettings
    feast: FeastSettings
    serving: ServingSettings
    evidently: EvidentlySettings
    pipeline: PipelineSettings
    news: NewsSettings
    market: MarketSettings
    cluster: ClusterSettings
    dev: DevSettings

    @property
    def home(self) -> Path:
        return self.general.home

    # -- derived values (one rule each) -------------------------------------------------------
    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_experiment(self) -> str:
        return self.mlflow.experiment

    @property
    def registered_model(self) -> str:
        return self.mlflow.registered_model

    @property
    def component_image(self) -> str:
        return self.pipeline.component_image

    @property
    def feast_home(self) -> Path:
        return (self.feast.home or self.home / "feast").expanduser().resolve()

    @property
    def feast_registry(self) -> str:
        return self.feast.registry or str(self.feast_home / "registry.db")

    @property
    def prediction_log_dir(self) -> Path:
        return (self.serving.log_dir or self.home / "prediction-log").expanduser().resolve()

    @property
    def evidently_workspace(self) -> str:
        """The Evidently workspace: as configured, else the bucket's ``evidently/`` in a pod (the monitoring
        task and the UI Deployment both reach it), else a directory under ``SPX_HOME``."""
        if self.evidently.workspace:
            return self.evidently.workspace
        if self.cluster.in_cluster:
            return f"s3://{self.s3.bucket}/evidently"
        return str(self.home / "evidently")

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def library_env(self) -> dict[str, str]:
        """What third-party libraries read from the environment, resolved from these settings."""
        s3 = self.s3
        return {
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key.get_secret_value(),
            "AWS_REGION": s3.region,
            "AWS_DEFAULT_REGION": s3.region,
            "AWS_ENDPOINT_URL": s3.endpoint_url,
            "SPX_S3_ENDPOINT": s3.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
            "FEAST_S3_ENDPOINT_URL": s3.endpoint_url,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "SPX_HOME": str(self.home),
            # MLflow >= 3 sends usage events to mlflow-telemetry.io unless told not to; nothing of ours phones home
            # (set MLFLOW_DISABLE_TELEMETRY=false yourself to allow it: a value already set wins)
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }


def cluster_names() -> ClusterSettings:
    """Names of the release-dependent objects pipeline steps refer to (``<release>-s3``, ``<release>-env``,
    ``<release>-kserve-s3``): the chart writes them into its env ConfigMap; defaults fit the release spx-kfp."""
    return settings().cluster


def kube_test_tools(project_root: Path) -> DevSettings:
    """The cluster test tier's tools, ``kube_tools`` defaulting to ``<project>/../shared/tools/k8s``."""
    dev = settings().dev
    tools = dev.kube_tools or project_root / ".." / "shared" / "tools" / "k8s"
    return dev.model_copy(update={"kube_tools": tools.expanduser().resolve()})


def _variables(model: type[BaseSettings], field: str) -> list[str]:
    """The environment variable(s) a field of a group is read from."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return [str(a) for a in alias.choices]
    return [str(alias)] if alias else [field]


def read_group(model: type[_G]) -> _G:
    """One group from the environment; a bad value is a :class:`ConfigError` naming its variable."""
    try:
        return model()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            field = next((n for n in model.model_fields if loc == n or loc in _variables(model, n)), loc)
            names = [v for v in _variables(model, field) if os.environ.get(v) is not None] or _variables(model, field)
            problems.append(f"{names[0]}={err.get('input')!r}: {err['msg']}")
        raise ConfigError(f"invalid setting in the environment: {'; '.join(problems)}") from None
    except SettingsError as exc:  # a value pydantic-settings could not even parse
        raise ConfigError(f"invalid setting in the environment: {exc}") from None


def settings() -> Settings:
    """Settings as of now (the environment is re-read on every call); a bad value is a :class:`ConfigError`."""
    return Settings.model_validate({group: read_group(model) for group, model in GROUPS.items()})


def export_library_env(cfg: Settings | None = None, *, override: bool = False) -> dict[str, str]:
    """Put :meth:`Settings.library_env` into this process's environment (children inherit it).

    Without ``override`` a value already set wins (it is what the settings were read from anyway, except
    for the derived keys)."""
    env = (cfg or settings()).library_env()
    for key, value in env.items():
        if override or not os.environ.get(key):
            os.environ[key] = value
    return env


@contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in this process's environment for the duration, then restore what was there."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def set_environ(**values: str) -> None:
    """Set variables for this process and its children (a server flag that overrides a setting)."""
    os.environ.update({k: str(v) for k, v in values.items()})


def s3_endpoint_configured() -> bool:
    """True when ``SPX_S3_ENDPOINT`` names an existing S3 server (else local mode starts one)."""
    return bool(os.environ.get("SPX_S3_ENDPOINT"))


def process_env(**overrides: str) -> dict[str, str]:
    """This process's environment exactly as a child started now inherits it (no settings resolved), then
    ``overrides``."""
    return {**os.environ, **{k: str(v) for k, v in overrides.items()}}


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process: this one's, the resolved library settings, then overrides."""
    env = dict(os.environ)
    env.update(settings().library_env())
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def env_var_names() -> set[str]:
    """Every environment variable any setting reads (the README's configuration table is checked against it)."""
    names: set[str] = set()
    for model in GROUPS.values():  # every group: one added later cannot escape the README's check
        for field in model.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(a) for a in alias.choices)
            elif isinstance(alias, str):
                names.add(alias)
    return names


GROUPS: dict[str, type[BaseSettings]] = {
    "general": GeneralSettings,
    "s3": S3Settings,
    "mlflow": MlflowSettings,
    "feast": FeastSettings,
    "serving": ServingSettings,
    "evidently": EvidentlySettings,
    "pipeline": PipelineSettings,
    "news": NewsSettings,
    "market": MarketSettings,
    "cluster": ClusterSettings,
    "dev": DevSettings,
}


def describe(current: Settings | None = None) -> list[dict[str, str]]:
    """One row per setting: group, environment variable(s), default, current value (secrets masked), meaning."""
    cfg = current or settings()
    rows = []
    for group, model in GROUPS.items():
        values = getattr(cfg, group)
        for name, info in model.model_fields.items():
            alias = info.validation_alias
            env = [str(a) for a in alias.choices] if isinstance(alias, AliasChoices) else [name]
            default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
            value = getattr(values, name)
            shown = (
                "********"
                if isinstance(value, SecretStr) and value.get_secret_value()
                else ("" if isinstance(value, SecretStr) else str(value))
            )
            rows.append(
                {
                    "group": group,
                    "env": " / ".join(env),
                    "default": "" if default is None else str(default),
                    "value": shown,
                    "meaning": info.description or "",
                }
            )
    return rows


def markdown_table() -> str:
    """The README's configuration table (``python -m spx.core.settings``)."""
    lines = ["| group | variable | default | meaning |", "|---|---|---|---|"]
    groups: dict[str, Any] = {group: model.model_construct() for group, model in GROUPS.items()}
    defaults = Settings.model_construct(**groups)
    for row in describe(defaults):
        env = " / ".join(f"`{e}`" for e in row["env"].split(" / "))
        default = f"`{row['default']}`" if row["default"] else "—"
        lines.append(f"| {row['group']} | {env} | {default} | {row['meaning']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
