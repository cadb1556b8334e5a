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
class ServingSettings:
    """Serving and prediction-log settings (``spx serve``, the model servers, the sink).

    * ``SPX_SERVE_HOST`` — address the locally started predictor, transformer and sink bind to
      (default ``127.0.0.1``: loopback only; the container images pass ``--host 0.0.0.0``).
    * ``SPX_SINK_TOKEN`` — shared secret the sink's writers present as ``Authorization: Bearer …``
      (empty: the sink accepts anonymous writers only when it listens on loopback).
    * ``SPX_SINK_WAL_DIR`` — the sink's write-ahead log (default ``$SPX_HOME/sink-wal``, the same
      directory ``spx serve`` uses, so a restart with defaults replays it).
    * ``SPX_LOGGER_SPILL_DIR`` — where the transformer's inference logger spills events the sink has
      not acknowledged (default ``$SPX_HOME/logger-spill``).
    """

    host: str
    sink_token: str
    sink_wal_dir: Path
    logger_spill_dir: Path

    @classmethod
    def from_env(cls) -> "ServingSettings":
        home = Settings.from_env().home
        return cls(
            host=_env("SPX_SERVE_HOST", "127.0.0.1"),
            sink_token=_env("SPX_SINK_TOKEN", ""),
            sink_wal_dir=Path(_env("SPX_SINK_WAL_DIR", str(home / "sink-wal"))),
            logger_spill_dir=Path(_env("SPX_LOGGER_SPILL_DIR", str(home / "logger-spill"))),
        )


def serving_settings() -> ServingSettings:
    return ServingSettings.from_env()
