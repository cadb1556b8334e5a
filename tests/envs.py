"""Environment set-up shared by module-scoped fixtures (serving, integration)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore


def isolated_spx_env(s3_server, home: Path, bucket_prefix: str = "spx-mod") -> tuple[pytest.MonkeyPatch, ObjectStore]:
    """Point spx at the loopback S3 server with a fresh bucket, SQLite MLflow, a private Feast home and
    registered-model name under ``home``. Call ``mp.undo()`` when done."""
    mp = pytest.MonkeyPatch()
    for key, value in s3_server.env().items():
        mp.setenv(key, value)
    mp.setenv("SPX_BUCKET", f"{bucket_prefix}-{uuid.uuid4().hex[:10]}")
    mp.setenv("SPX_HOME", str(home))
    mp.setenv("SPX_FEAST_HOME", str(home / "feast"))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    mp.setenv("SPX_REGISTERED_MODEL", f"spx-direction-{home.name}")
    store = ObjectStore(S3Settings.from_env())
    store.ensure_bucket()
    return mp, store
