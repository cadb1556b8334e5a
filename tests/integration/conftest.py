"""Fixtures for the serving -> prediction-log integration tests: the REAL
predictor and Feast transformer processes, a loopback S3 server and a sqlite MLflow registry."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from spx.components.feature_store import store as F
from spx.components.selection import champion as champ
from spx.components.serving.local import start_predictor
from tests.envs import isolated_spx_env
from tests.serving import helpers as serving_helpers


@pytest.fixture(scope="module")
def integration_env(s3_server, tmp_path_factory):
    """Module-wide env: loopback S3 with a fresh bucket, sqlite MLflow, a private Feast home."""
    home = tmp_path_factory.mktemp("integration-home")
    mp, store = isolated_spx_env(s3_server, home, "spx-int")
    yield home, store
    mp.undo()
    store.delete_bucket()


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


@pytest.fixture(scope="module")
def online_features(champion):
    """The champion's features materialized in Feast's online store: what a transformer serves from."""
    F.materialize_logic(champion.gold_uri, champion.manifest_uri, champion.run_id)
    return champion


@pytest.fixture(scope="module")
def predictor(integration_env, online_features):
    """The real V2 predictor serving the registered champion (its features materialized in Feast)."""
    home, _ = integration_env
    info = champ.resolve()
    model_dir = champ.download(info, home / "models" / "champion")
    server = start_predictor(model_dir, info.name, log_dir=home)
    try:
        yield server, info
    finally:
        server.stop()
