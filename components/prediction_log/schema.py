"""One row per served instance: the request's inputs with the features the model received, the answer, the
model version and the latency. A server appends one JSON line per row (times as epoch microseconds); the
writer turns the lines into parquet with :data:`TABLE` types, which :func:`~.read.read_predictions` returns."""

from __future__ import annotations

from typing import Any, Sequence

import orjson
import pyarrow as pa

OK = "ok"
KEY = ["request_id", "row_index"]
_TIME = pa.timestamp("us", tz="UTC")
TABLE = pa.schema(
    [
        ("request_id", pa.string()),
        ("row_index", pa.int64()),
        ("timestamp", _TIME),  # when the request arrived
        ("bar_timestamp", _TIME),  # the bar the features belong to (None: unknown)
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("inference_service", pa.string()),
        ("namespace", pa.string()),
        ("inputs", pa.string()),  # JSON object: the request's inputs for this instance + the features used
        ("outputs", pa.string()),  # JSON object: the answer for this instance
        ("probability", pa.float64()),  # P(up)
        ("prediction", pa.float64()),  # 1 up, 0 down
        ("latency_ms", pa.float64()),  # request arrival -> row written, in the server that answered
        ("status", pa.string()),  # "ok": only answered predictions are logged
    ]
)
COLUMNS = TABLE.names
# the same columns as the JSON lines carry them: times as epoch microseconds
LINE = pa.schema([pa.field(f.name, pa.int64() if f.type == _TIME else f.type) for f in TABLE])


def encode_rows(
    *,
    request_id: str,
    arrived: float,
    model_name: str,
    model_version: str,
    inference_service: str,
    namespace: str,
    inputs: Sequence[dict[str, Any]],
    outputs: Sequence[dict[str, Any]],
    probabilities: Sequence[float],
    predictions: Sequence[float],
    latency_ms: float,
    bar_times_us: Sequence[int | None] | None = None,
    status: str = OK,
) -> bytes:
    """The JSON lines of one answered request (``arrived``: epoch seconds), one per instance."""
    common = {
        "request_id": request_id,
        "timestamp": int(arrived * 1e6),
        "model_name": model_name,
        "model_version": model_version or None,
        "inference_service": inference_service,
        "namespace": namespace,
        "latency_ms": latency_ms,
        "status": status,
    }
    return b"".join(
        orjson.dumps(
            {
                **common,
                "row_index": i,
                "bar_timestamp": bar_times_us[i] if bar_times_us is not None else None,
                "inputs": orjson.dumps(inputs[i]).decode(),
                "outputs": orjson.dumps(outputs[i]).decode(),
                "probability": float(probabilities[i]),
                "prediction": float(predictions[i]),
            }
        )
        + b"\n"
        for i in range(len(inputs))
    )
