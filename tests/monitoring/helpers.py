"""Builders for KServe inference-logger events (as KServe's agent sends them: binary CloudEvents)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
FEATURES = ["ret_1", "rsi_14", "vol_20"]


def v2_request(rid: str, rows: list[list[float]], bar_ts: str | None = None) -> dict:
    body = {
        "id": rid,
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP32",
                "data": [v for r in rows for v in r],
                "parameters": {"feature_names": FEATURES},
            }
        ],
    }
    if bar_ts is not None:
        body["parameters"] = {"bar_timestamp": bar_ts}
    return body


def v2_response(rid: str, probs: list[float], model: str = "spx-direction", version: str = "3") -> dict:
    return {
        "id": rid,
        "model_name": model,
        "model_version": version,
        "outputs": [
            {
                "name": "probability",
                "shape": [len(probs)],
                "datatype": "FP32",
                "data": probs,
            }
        ],
    }


def headers(rid: str, typ: str, when: datetime, isvc: str = "spx-direction") -> dict:
    return {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": rid,
        "ce-type": typ,
        "ce-source": "http://localhost:9081/",
        "ce-time": when.isoformat().replace("+00:00", "Z"),
        "ce-inferenceservicename": isvc,
        "ce-namespace": "spx",
        "ce-endpoint": "",
    }


def event_pair(i: int, base: datetime | None = None) -> tuple[tuple[dict, bytes], tuple[dict, bytes]]:
    base = base or datetime(2026, 3, 2, 14, 30, tzinfo=timezone.utc)
    rid = f"req-{i:05d}"
    t = base + timedelta(seconds=i)
    req = v2_request(rid, [[0.001 * i, 50.0 + i % 7, 0.1]], bar_ts=(t - timedelta(minutes=1)).isoformat())
    resp = v2_response(rid, [((i * 37) % 100) / 100.0])
    return (
        (headers(rid, REQUEST, t), json.dumps(req).encode()),
        (headers(rid, RESPONSE, t + timedelta(milliseconds=4)), json.dumps(resp).encode()),
    )


# -- a synthetic "training run" in the bucket, laid out as docs/ARCHITECTURE.md says ----------------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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


def served_events(
    gold_rows: pd.DataFrame, probs, start_index: int = 0, versions=None, latencies_ms=None, features=None, times=None
):
    """Logger events for predictions made on the given gold bars (features as a V2 [1, F] tensor), each
    answered by model version ``versions[k]`` (default "1") after ``latencies_ms[k]`` (default 3 ms);
    ``features`` default to GOLD_FEATURES, the request ``times`` to two seconds after each bar."""
    from datetime import timedelta

    features = list(features or GOLD_FEATURES)
    out = []
    for k, (_, row) in enumerate(gold_rows.iterrows()):
        rid = f"srv-{start_index + k:06d}"
        version = "1" if versions is None else str(versions[k])
        latency = 3.0 if latencies_ms is None else float(latencies_ms[k])
        t = times[k] if times is not None else row["timestamp"].to_pydatetime() + timedelta(seconds=2)
        req = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, len(features)],
                    "datatype": "FP64",
                    "data": [float(row[c]) for c in features],
                    "parameters": {"feature_names": features},
                }
            ],
            "parameters": {"bar_timestamp": row["timestamp"].isoformat()},
        }
        resp = {
            "model_name": "spx-direction",
            "model_version": version,
            "outputs": [{"name": "probability", "shape": [1], "datatype": "FP64", "data": [float(probs[k])]}],
        }
        out.append(
            (
                (headers(rid, REQUEST, t), json.dumps(req).encode()),
                (headers(rid, RESPONSE, t + timedelta(milliseconds=latency)), json.dumps(resp).encode()),
            )
        )
    return out
