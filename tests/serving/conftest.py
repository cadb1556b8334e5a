"""Fixtures for the serving tests: a loopback S3 server (the shared session fixture), a real
MLflow registry in sqlite, an honest champion, and the real servers started as subprocesses."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.envs import isolated_spx_env  # noqa: E402
from tests.serving.helpers import gold_frame, make_champion


@pytest.fixture(scope="module")
def serving_env(s3_server, tmp_path_factory):
    """Module-wide environment: loopback S3, sqlite MLflow, a private Feast home."""
    home = tmp_path_factory.mktemp("serving-home")
    mp, store = isolated_spx_env(s3_server, home, "spx-serving")
    yield home
    mp.undo()
    store.delete_bucket()


@pytest.fixture(scope="module")
def serving_store(serving_env):
    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    return ObjectStore(S3Settings.from_env())


def fresh_and_stale_frame() -> pd.DataFrame:
    """Three instruments with bars up to now, and OLD_USD whose newest bar is two days old."""
    # newest bar one bar back, so "as_of = newest bar + 1 minute" is never in the future
    fresh = gold_frame(n_bars=300, seed=11, end=pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(minutes=5))
    old = gold_frame(
        n_bars=100,
        seed=12,
        end=pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(days=2),
        instruments=("OLD_USD",),
    )
    return pd.concat([fresh, old], ignore_index=True)


@pytest.fixture(scope="module")
def xgb_champion(serving_env, serving_store):
    import os

    return make_champion(
        serving_store,
        os.environ["MLFLOW_TRACKING_URI"],
        "xgboost",
        run_id=f"run-xgb-{serving_env.name}",
        registered_model=os.environ["SPX_REGISTERED_MODEL"],
        frame=fresh_and_stale_frame(),
    )


@pytest.fixture(scope="module")
def lgb_champion(serving_env, serving_store, xgb_champion):
    """A second registered version (LightGBM), not aliased: the XGBoost one stays champion."""
    import os

    return make_champion(
        serving_store,
        os.environ["MLFLOW_TRACKING_URI"],
        "lightgbm",
        run_id=f"run-lgb-{serving_env.name}",
        registered_model=os.environ["SPX_REGISTERED_MODEL"],
        frame=fresh_and_stale_frame(),
        alias=False,
    )
