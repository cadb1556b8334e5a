"""Fixtures for the serving -> prediction-log integration tests: the REAL sink process, the REAL
predictor and Feast transformer processes, a loopback S3 server and a sqlite MLflow registry."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from spx.core.processes import free_port, wait_http
from tests.envs import isolated_spx_env

ROOT = Path(__file__).resolve().parents[2]


def _serving_helpers():
    """tests/serving/helpers.py (an honest small champion), loaded under a name of its own."""
    spec = importlib.util.spec_from_file_location("spx_test_serving_helpers", ROOT / "tests/serving/helpers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serving_helpers = _serving_helpers()


class SinkProcess:
    """``python -m spx.components.monitoring.sink`` as a subprocess on loopback (what the Deployment runs)."""

    def __init__(
        self,
        wal_dir: Path,
        log_path: Path,
        port: int | None = None,
        batch_rows: int = 100_000,
        flush_interval: float = 3600.0,
        pair_timeout: float = 3600.0,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "spx.components.monitoring.sink",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--wal-dir",
            str(wal_dir),
            "--batch-rows",
            str(batch_rows),
            "--flush-interval",
            str(flush_interval),
            "--pair-timeout",
            str(pair_timeout),
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SinkProcess":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT
        )
        wait_http(f"{self.url}/healthz", timeout=60, proc=self.proc)
        return self

    def health(self) -> dict:
        return requests.get(f"{self.url}/healthz", timeout=5).json()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM: the sink flushes what it holds to the bucket, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc is not None else None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def integration_env(s3_server, tmp_path_factory):
    """Module-wide env: loopback S3 with a fresh bucket, sqlite MLflow, a private Feast home."""
    home = tmp_path_factory.mktemp("integration-home")
    mp, store = isolated_spx_env(s3_server, home, "spx-int")
    yield home, store
    mp.undo()


def fresh_frame() -> pd.DataFrame:
    """Bars up to one bar before now for the three test instruments (fresh for the transformer)."""
    end = pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(minutes=5)
    return serving_helpers.gold_frame(n_bars=300, seed=21, end=end)


@pytest.fixture(scope="module")
def champion(integration_env):
    home, store = integration_env
    return serving_helpers.make_champion(
        store,
        os.environ["MLFLOW_TRACKING_URI"],
        "xgboost",
        run_id=f"run-int-{home.name}",
        registered_model=os.environ["SPX_REGISTERED_MODEL"],
        frame=fresh_frame(),
    )
