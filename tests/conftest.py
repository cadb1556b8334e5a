"""Shared fixtures: a real S3 server (SeaweedFS) on loopback, started once per session.

Every test gets one cost marker (``--strict-markers``; see pyproject's ``markers``): ``e2e`` and ``cluster``
are set by the tests themselves; a test that uses a fixture starting a real server (or lives in a folder
whose tests start servers in their bodies) is ``integration``; everything else is ``unit`` — the inner loop
is ``python -m pytest -m unit``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from spx.core.services import LocalS3Server
from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore
from tests.support import ROOT  # noqa: E402,F401 - re-exported for fixtures

COST_MARKERS = ("unit", "integration", "cluster", "e2e")
SERVER_FIXTURES = {"s3_server", "kube_api", "kfp_api", "news_http", "helm_bin", "kubectl_bin", "kube_cluster"}
SERVER_FOLDERS = {"integration", "serving"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in COST_MARKERS):
            continue
        folder = Path(str(item.fspath)).parent.name
        if folder in SERVER_FOLDERS or SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = LocalS3Server(data_dir=tmp_path_factory.mktemp("seaweedfs"), buckets=("spx", "spx-test"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch, tmp_path):
    """Point spx at the loopback S3 server, with a fresh, empty bucket per test."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SPX_BUCKET", bucket)
    ObjectStore(S3Settings.from_env()).ensure_bucket()
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "spx-home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return s3_server


@pytest.fixture()
def store(s3_env) -> ObjectStore:
    return ObjectStore(S3Settings.from_env())
