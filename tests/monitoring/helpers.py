"""Builders for the monitoring tests: a synthetic training run in the bucket, and served predictions written
through the real prediction-log writer (what the transformer or predictor-only server writes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# -- a synthetic "training run" in the bucket, laid out as docs/ARCHITECTURE.md says ----------------


GOLD_FEATURES = ["f_ret", "f_rsi", "f_vol", "f_macd", "f_atr", "f_news"]


def gold_frame(n: int, start: str, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    df = pd.DataFrame({"timestamp": ts, "instrument": "SPX500_USD"})
    for j, c in enumerate(GOLD_FEATURES):
        df[c] = rng.normal(0.0, 1.0 + 0.2 * j, n) + (shift or {}).get(c, 0.0) * (1.0 + 0.2 * j)
    df["y_up_h1"] = (rng.uniform(size=n) < 0.5).astype(float)
    df["y_ret_h1"] = rng.normal(0.0, 0.1, n)
    return df


def seed_training_run(
    store, run_id: str = "run-a", variant: str = "xgb_base_h1", n: int = 4000, seed: int = 0
) -> pd.DataFrame:
    gold = gold_frame(n, "2026-01-05", seed)
    store.put_parquet(f"gold/{run_id}/features.parquet", gold)
    store.put_json(
        f"gold/{run_id}/manifest.json",
        {
            "feature_columns": GOLD_FEATURES,
            "base_feature_columns": GOLD_FEATURES[:5],
            "news_feature_columns": ["f_news"],
            "horizons": [1],
            "bar_interval": "5min",
        },
    )
    rng = np.random.default_rng(seed + 1)
    oot = gold.iloc[-n // 4 :]
    prob = np.clip(0.5 + 0.05 * (oot["y_up_h1"].to_numpy() - 0.5) + rng.normal(0, 0.05, len(oot)), 0, 1)
    prefix = f"models/{run_id}/{variant}/"
    store.put_parquet(
        prefix + "oot_predictions.parquet",
        pd.DataFrame(
            {
                "timestamp": oot["timestamp"].to_numpy(),
                "y_true": oot["y_up_h1"].astype(int).to_numpy(),
                "y_prob": prob,
                "ret": oot["y_ret_h1"].to_numpy(),
            }
        ),
    )
    store.put_json(prefix + "importance.json", {c: float(i + 1) for i, c in enumerate(GOLD_FEATURES)})
    store.put_json(
        prefix + "metrics.json",
        {
            "variant": variant,
            "run_id": run_id,
            "horizon": 1,
            "features": GOLD_FEATURES,
            "task": "classification",
            "model_format": "xgboost",
            "cost_bps": 1.0,
            "metrics": {},
        },
    )
    store.put_json(
        f"selection/{run_id}/best_model_selection.json",
        {"run_id": run_id, "champion": {"variant": variant, "horizon": 1}, "ranking": []},
    )
    return gold


def log_served(
    store,
    directory,
    gold_rows: pd.DataFrame,
    probs,
    start_index: int = 0,
    versions=None,
    latencies_ms=None,
    features=None,
    times=None,
) -> None:
    """Predictions made on the given gold bars, each answered by model version ``versions[k]`` (default "1")
    after ``latencies_ms[k]`` (default 3 ms), written and shipped by the real prediction-log writer (what the
    transformer or a predictor-only server writes). ``features`` default to GOLD_FEATURES, the request
    ``times`` (datetimes) to two seconds after each bar."""
    features = list(features or GOLD_FEATURES)
    from spx.components.prediction_log import PredictionLog, encode_rows

    log = PredictionLog(directory, store_factory=lambda: store).open(background=False)
    for k, (_, row) in enumerate(gold_rows.iterrows()):
        p = float(probs[k])
        log.write(
            encode_rows(
                request_id=f"srv-{start_index + k:06d}",
                arrived=times[k].timestamp() if times is not None else row["timestamp"].timestamp() + 2,
                model_name="spx-direction",
                model_version="1" if versions is None else str(versions[k]),
                inference_service="spx-direction",
                namespace="spx",
                inputs=[{c: float(row[c]) for c in features}],
                outputs=[{"probability": p}],
                probabilities=[p],
                predictions=[float(p >= 0.5)],
                latency_ms=3.0 if latencies_ms is None else float(latencies_ms[k]),
                bar_times_us=[int(row["timestamp"].timestamp() * 1e6)],
            )
        )
    log.close()
