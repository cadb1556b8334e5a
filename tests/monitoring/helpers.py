"""Builders for KServe inference-logger events (as KServe's agent sends them: binary CloudEvents)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
FEATURES = ["ret_1", "rsi_14", "vol_20"]


def v2_request(rid: str, rows: list[list[float]], bar_ts: str | None = None) -> dict:
    body = {"id": rid, "inputs": [{
        "name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
        "data": [v for r in rows for v in r], "parameters": {"feature_names": FEATURES},
    }]}
    if bar_ts is not None:
        body["parameters"] = {"bar_timestamp": bar_ts}
    return body


def v2_response(rid: str, probs: list[float], model: str = "spx-direction", version: str = "3") -> dict:
    return {"id": rid, "model_name": model, "model_version": version, "outputs": [{
        "name": "probability", "shape": [len(probs)], "datatype": "FP32", "data": probs,
    }]}


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
    return ((headers(rid, REQUEST, t), json.dumps(req).encode()),
            (headers(rid, RESPONSE, t + timedelta(milliseconds=4)), json.dumps(resp).encode()))
