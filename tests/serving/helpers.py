"""Test helpers: an honest, small champion — a real XGBoost / LightGBM classifier trained on a
gold-like frame, its native file uploaded to the loopback S3 server, registered in a real MLflow
(sqlite tracking URI) with the tags and the ``champion`` alias of docs/ARCHITECTURE.md."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MARKET = ["ret_1", "ret_3", "ret_6", "rsi_14", "atr_14", "vol_20", "spread_bps", "volume_z", "macd", "bb_pos"]
NEWS = ["news_sentiment", "news_count"]
FEATURES = MARKET + NEWS
HORIZON = 6
INSTRUMENTS = ("SPX500_USD", "NAS100_USD", "US30_USD")


def gold_frame(
    n_bars: int = 400, seed: int = 7, end: str | pd.Timestamp | None = None, instruments=INSTRUMENTS
) -> pd.DataFrame:
    """A gold-contract frame: 5-minute bars per instrument, float features, labels per horizon."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(end) if end is not None else pd.Timestamp.now(tz="UTC").floor("5min")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    ts = pd.date_range(end=end, periods=n_bars, freq="5min")
    frames = []
    for inst in instruments:
        x = rng.normal(size=(n_bars, len(FEATURES)))
        x[:, FEATURES.index("rsi_14")] = rng.uniform(5, 95, n_bars)
        x[:, FEATURES.index("news_count")] = rng.poisson(3, n_bars)
        signal = 0.8 * x[:, 0] - 0.5 * x[:, 2] + 0.02 * (x[:, 3] - 50) + 0.3 * x[:, -2]
        ret = signal * 0.05 + rng.normal(scale=0.1, size=n_bars)
        df = pd.DataFrame(x, columns=FEATURES)
        df.insert(0, "instrument", inst)
        df.insert(0, "timestamp", ts)
        df[f"y_ret_h{HORIZON}"] = ret
        df[f"y_up_h{HORIZON}"] = (ret > 0).astype(int)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return out


def manifest(features=FEATURES) -> dict:
    return {
        "feature_columns": list(features),
        "base_feature_columns": [c for c in features if not c.startswith("news_")],
        "news_feature_columns": [c for c in features if c.startswith("news_")],
        "horizons": [HORIZON],
        "bar_interval": "5min",
    }


@dataclass
class Champion:
    model: object  # the fitted scikit-learn wrapper (XGBClassifier / LGBMClassifier)
    model_format: str
    version: str
    native_uri: str
    features: list[str]
    gold_uri: str
    manifest_uri: str
    frame: pd.DataFrame
    run_id: str

    def predict_proba(self, X) -> np.ndarray:
        return self.model.predict_proba(pd.DataFrame(np.asarray(X), columns=self.features))[:, 1]


def train(frame: pd.DataFrame, model_format: str, features=FEATURES, seed: int = 0):
    X = frame[features]
    y = frame[f"y_up_h{HORIZON}"]
    if model_format == "xgboost":
        import xgboost as xgb

        model = xgb.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.1, random_state=seed, n_jobs=1)
    else:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=40, num_leaves=15, learning_rate=0.1, random_state=seed, n_jobs=1, verbose=-1
        )
    model.fit(X, y)
    return model


def save_native(model, model_format: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if model_format == "xgboost":
        path = directory / "model.json"
        model.get_booster().save_model(str(path))
    else:
        path = directory / "model.bst"
        model.booster_.save_model(str(path))
    return path


def make_champion(
    store,
    tracking_uri: str,
    model_format: str = "xgboost",
    run_id: str = "run-test",
    registered_model: str = "spx-direction",
    frame: pd.DataFrame | None = None,
    alias: bool = True,
) -> Champion:
    """Train, upload gold + native model to S3, log and register in MLflow with tags + alias."""
    import mlflow
    from mlflow import MlflowClient

    frame = gold_frame() if frame is None else frame
    gold_uri = store.put_parquet(f"gold/{run_id}/features.parquet", frame).uri
    manifest_uri = store.put_json(f"gold/{run_id}/manifest.json", manifest()).uri
    model = train(frame, model_format)
    variant = f"{model_format}_test"
    with tempfile.TemporaryDirectory() as tmp:
        path = save_native(model, model_format, Path(tmp))
        native_prefix = f"models/{run_id}/{variant}"
        store.upload_file(str(path), f"{native_prefix}/{path.name}")
    native_uri = store.uri(native_prefix)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("spx-serving-test")
    exp_id = exp.experiment_id if exp else client.create_experiment("spx-serving-test")
    run = client.create_run(exp_id, tags={"variant": variant})
    client.log_param(run.info.run_id, "model_format", model_format)
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(registered_model)
    except Exception:  # noqa: BLE001 - already registered
        pass
    tags = {
        "variant": variant,
        "model_format": model_format,
        "native_uri": native_uri,
        "feature_columns": json.dumps(FEATURES),
        "task": "classification",
        "horizon": str(HORIZON),
        "run_id": run_id,
    }
    mv = client.create_model_version(registered_model, source=native_uri, run_id=run.info.run_id, tags=tags)
    if alias:
        client.set_registered_model_alias(registered_model, "champion", mv.version)
    return Champion(
        model=model,
        model_format=model_format,
        version=str(mv.version),
        native_uri=native_uri,
        features=list(FEATURES),
        gold_uri=gold_uri,
        manifest_uri=manifest_uri,
        frame=frame,
        run_id=run_id,
    )
