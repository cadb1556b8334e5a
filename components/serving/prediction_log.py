"""The prediction log: KServe inference-logger CloudEvents -> one parquet row per served prediction.

KServe's ``logger`` (``mode: all``) POSTs two CloudEvents per inference to a URL, in HTTP *binary*
mode: headers ``ce-id`` (the request id, identical for the request and its response), ``ce-type``
(``org.kubeflow.serving.inference.request`` / ``…response``), ``ce-source``, ``ce-time``,
``ce-specversion`` and the extensions ``ce-inferenceservicename``, ``ce-namespace``,
``ce-endpoint`` (and ``ce-component`` in recent releases); the body is the JSON payload the model
server saw (here the Open Inference / V2 request and response). Structured mode
(``Content-Type: application/cloudevents+json``) is accepted too.

This module is the pure logic: parse an event, pair a request with its response, and turn a pair
into rows (a V2 request may carry a batch of ``n`` instances, so one pair gives ``n`` rows keyed by
``(request_id, row_index)``). :func:`read_predictions` reads the log back from the bucket,
de-duplicated by that key (the sink is at-least-once).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from spx.core.errors import SpxError

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
EVENT_TYPES = (REQUEST_TYPE, RESPONSE_TYPE)
PREFIX = "predictions"

# Row schema of the parquet batches (order matters only for readability).
COLUMNS = [
    "request_id",
    "row_index",
    "timestamp",
    "bar_timestamp",
    "model_name",
    "model_version",
    "inference_service",
    "namespace",
    "inputs",
    "outputs",
    "probability",
    "prediction",
    "latency_ms",
    "status",
]
KEY = ["request_id", "row_index"]

_BAR_TIME_NAMES = ("bar_timestamp", "timestamp", "as_of", "event_timestamp")
_PROB_NAMES = ("probability", "probabilities", "proba", "predict_proba", "prob", "y_prob", "score")
_LABEL_NAMES = ("prediction", "predictions", "label", "predict", "class", "y_pred")
# direction words a label output may hold instead of 0/1 (the spx transformer answers "up"/"down")
_LABEL_WORDS = {"up": 1.0, "down": 0.0, "true": 1.0, "false": 0.0}
# response outputs of the spx Feast transformer (components/serving/transformer.py): the feature vector
# the model actually received (JSON object per instance) and the bar time of those features
_FEATURES_USED = "features_used"
_FEATURE_TIME = "feature_time"


class EventError(SpxError, ValueError):
    """A posted event is not a usable inference-logger CloudEvent (the message says why)."""


@dataclass
class LoggedEvent:
    id: str
    type: str
    time: str | None
    source: str | None
    inference_service: str | None
    namespace: str | None
    component: str | None
    data: Any  # decoded JSON body
    received_at: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def is_request(self) -> bool:
        return self.type == REQUEST_TYPE

    def to_record(self) -> dict:
        """The event as a plain dict (a shallow copy: ``dataclasses.asdict`` would deep-copy the
        decoded body, the sink's main cost per event; the body is decoded per event and not shared)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["extra"] = dict(self.extra)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "LoggedEvent":
        return cls(
            **{
                k: record.get(k)
                for k in (
                    "id",
                    "type",
                    "time",
                    "source",
                    "inference_service",
                    "namespace",
                    "component",
                    "data",
                )
            },
            received_at=float(record.get("received_at") or 0.0),
            extra=dict(record.get("extra") or {}),
        )


def _decode_json(body: bytes | str, what: str) -> Any:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not body.strip():
        raise EventError(f"{what} is empty")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise EventError(f"{what} is not valid JSON: {exc}") from None


def parse_event(headers: Mapping[str, str], body: bytes, received_at: float = 0.0) -> LoggedEvent:
    """Parse one HTTP POST from the KServe logger (binary or structured CloudEvents mode)."""
    h = {k.lower(): v for k, v in headers.items()}
    ctype = h.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/cloudevents+json":
        envelope = _decode_json(body, "structured CloudEvent")
        if not isinstance(envelope, dict):
            raise EventError("structured CloudEvent must be a JSON object")
        attrs = {k.lower(): v for k, v in envelope.items() if k not in ("data", "data_base64")}
        if "data_base64" in envelope:
            data = _decode_json(base64.b64decode(envelope["data_base64"]), "CloudEvent data_base64")
        else:
            data = envelope.get("data")
            if isinstance(data, str):
                data = _decode_json(data, "CloudEvent data")
    else:
        attrs = {k[3:]: v for k, v in h.items() if k.startswith("ce-")}
        data = _decode_json(body, "event body")
    event_id = str(attrs.get("id") or "").strip()
    event_type = str(attrs.get("type") or "").strip()
    if not event_id:
        raise EventError("missing CloudEvent id (header ce-id): cannot pair request and response")
    if event_type not in EVENT_TYPES:
        raise EventError(f"unsupported CloudEvent type {event_type!r}; expected one of {EVENT_TYPES}")
    if not isinstance(data, dict):
        raise EventError("event body must be a JSON object (an inference request or response)")
    known = {
        "id",
        "type",
        "time",
        "source",
        "inferenceservicename",
        "namespace",
        "component",
        "specversion",
        "datacontenttype",
    }
    return LoggedEvent(
        id=event_id,
        type=event_type,
        time=attrs.get("time"),
        source=attrs.get("source"),
        inference_service=attrs.get("inferenceservicename"),
        namespace=attrs.get("namespace"),
        component=attrs.get("component"),
        data=data,
        received_at=received_at,
        extra={k: str(v) for k, v in attrs.items() if k not in known},
    )


BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def is_batch(headers: Mapping[str, str]) -> bool:
    """True for a CloudEvents JSON batch (``Content-Type: application/cloudevents-batch+json``)."""
    h = {k.lower(): v for k, v in headers.items()}
    return h.get("content-type", "").split(";")[0].strip().lower() == BATCH_CONTENT_TYPE


def event_from_cloudevent(ce, received_at: float = 0.0) -> LoggedEvent:
    """A :class:`LoggedEvent` from a ``cloudevents`` SDK event (validated like :func:`parse_event`)."""
    attrs = dict(ce.get_attributes())
    data = ce.get_data()
    if isinstance(data, (bytes, str)):
        data = _decode_json(data, "CloudEvent data")
    event_id = str(attrs.get("id") or "").strip()
    event_type = str(attrs.get("type") or "").strip()
    if not event_id:
        raise EventError("missing CloudEvent id: cannot pair request and response")
    if event_type not in EVENT_TYPES:
        raise EventError(f"unsupported CloudEvent type {event_type!r}; expected one of {EVENT_TYPES}")
    if not isinstance(data, dict):
        raise EventError("event data must be a JSON object (an inference request or response)")
    known = {
        "id",
        "type",
        "time",
        "source",
        "inferenceservicename",
        "namespace",
        "component",
        "specversion",
        "datacontenttype",
    }
    return LoggedEvent(
        id=event_id,
        type=event_type,
        time=str(attrs["time"]) if attrs.get("time") else None,
        source=attrs.get("source"),
        inference_service=attrs.get("inferenceservicename"),
        namespace=attrs.get("namespace"),
        component=attrs.get("component"),
        data=data,
        received_at=received_at,
        extra={k: str(v) for k, v in attrs.items() if k not in known},
    )


def parse_batch(body: bytes, received_at: float = 0.0) -> tuple[list[LoggedEvent], list[dict]]:
    """Parse a CloudEvents JSON batch with the ``cloudevents`` SDK: (usable events, rejected
    ``{"index", "error"}``). The whole batch is refused (:class:`EventError`) only when it is not a
    JSON array."""
    from cloudevents.http import from_dict

    doc = _decode_json(body, "CloudEvents batch") if body.strip() else []
    if not isinstance(doc, list):
        raise EventError("a CloudEvents JSON batch must be a JSON array of structured events")
    events, rejected = [], []
    for i, item in enumerate(doc):
        try:
            if not isinstance(item, dict):
                raise EventError("not a JSON object")
            events.append(event_from_cloudevent(from_dict(item), received_at=received_at))
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own errors on a bad envelope
            rejected.append({"index": i, "error": f"{type(exc).__name__}: {exc}"})
    return events, rejected


# -- V2 payload -> rows ---------------------------------------------------------------------------


def _parse_time(value: Any) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _tensor_matrix(tensor: Mapping[str, Any]) -> tuple[list[list[Any]], int]:
    """A V2 tensor as rows x columns (lists). 1-D tensors become one column."""
    data = tensor.get("data")
    if data is None:
        return [], 0
    arr = np.asarray(data, dtype=object)
    shape = [int(s) for s in tensor.get("shape") or [arr.size]]
    flat = arr.reshape(-1)
    if len(shape) <= 1:
        return [[v] for v in flat.tolist()], 1
    n = shape[0]
    width = int(np.prod(shape[1:])) if n else 0
    if n * width != flat.size:
        raise EventError(f"tensor {tensor.get('name')!r}: shape {shape} does not match {flat.size} values")
    return [flat[i * width : (i + 1) * width].tolist() for i in range(n)], width


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def request_instances(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-instance feature dicts from a V2 inference request.

    * one tensor per feature (``shape [n]`` or ``[n, 1]``) -> ``{feature: value}``;
    * one 2-D tensor ``[n, F]`` -> names from the tensor's (or the request's) ``parameters``
      (``feature_names`` / ``columns``), else ``{tensor}_{j}``.
    * V1 ``{"instances": [...]}`` bodies are accepted too (dicts or lists).
    """
    if "inputs" not in body and "instances" in body:
        out = []
        for inst in body["instances"]:
            if isinstance(inst, dict):
                out.append({k: _plain(v) for k, v in inst.items()})
            else:
                vals = inst if isinstance(inst, list) else [inst]
                out.append({f"input_{j}": _plain(v) for j, v in enumerate(vals)})
        return out
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise EventError("inference request has no 'inputs' list")
    req_params = body.get("parameters") or {}
    rows: list[dict[str, Any]] = []
    single: dict[str, Any] = {}  # one-value tensors (e.g. the transformer's "as_of"): apply to every row
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise EventError("each V2 input must be an object with name/shape/datatype/data")
        name = str(tensor.get("name") or "input")
        matrix, width = _tensor_matrix(tensor)
        params = tensor.get("parameters") or {}
        names = (
            params.get("feature_names")
            or params.get("columns")
            or req_params.get("feature_names")
            or req_params.get("columns")
        )
        if width == 1:
            cols = [name]
        elif names and len(names) == width:
            cols = [str(c) for c in names]
        else:
            cols = [f"{name}_{j}" for j in range(width)]
        while len(rows) < len(matrix):
            rows.append({})
        for i, vals in enumerate(matrix):
            for c, v in zip(cols, vals):
                rows[i][c] = _plain(v)
        if len(matrix) == 1:
            single.update({c: _plain(v) for c, v in zip(cols, matrix[0])})
    for r in rows[1:]:
        for key, value in single.items():
            r.setdefault(key, value)
    # request-level scalars (e.g. the bar timestamp the features belong to) apply to every row
    for key in _BAR_TIME_NAMES:
        if key in req_params:
            for r in rows:
                r.setdefault(key, _plain(req_params[key]))
    return rows


def response_outputs(body: Mapping[str, Any], n_rows: int) -> tuple[list[dict], list[float | None], list[float | None]]:
    """(raw outputs per row, probability per row, 0/1 prediction per row) from a V2/V1 response."""
    raw: list[dict] = [{} for _ in range(n_rows)]
    if "outputs" not in body and "predictions" in body:
        tensors = [
            {
                "name": "predictions",
                "data": body["predictions"],
                "shape": list(np.asarray(body["predictions"], dtype=object).shape),
            }
        ]
    else:
        tensors = body.get("outputs") or []
    prob_col: list | None = None
    label_col: list | None = None
    generic: list | None = None
    for tensor in tensors:
        if not isinstance(tensor, dict):
            continue
        name = str(tensor.get("name") or "output")
        matrix, width = _tensor_matrix(tensor)
        if len(raw) < len(matrix):
            raw.extend({} for _ in range(len(matrix) - len(raw)))
        for i, vals in enumerate(matrix):
            raw[i][name] = _plain(vals[0]) if width == 1 else [_plain(v) for v in vals]
        lname = name.lower()
        if width == 2:  # predict_proba style [p0, p1]
            col = [vals[1] for vals in matrix]
        else:
            col = [vals[0] for vals in matrix]
        if any(k in lname for k in _PROB_NAMES) or width == 2:
            prob_col = prob_col or col
        elif lname in _LABEL_NAMES:
            label_col = label_col or col
        else:
            generic = generic or col
    n = len(raw)
    probs: list[float | None] = [None] * n
    labels: list[float | None] = [None] * n
    if prob_col is None and generic is not None:
        # a single unnamed output (e.g. xgbserver's "output-0"): probabilities if fractional in [0,1]
        vals = [v for v in generic if isinstance(v, (int, float)) and v is not None]
        if vals and all(0.0 <= float(v) <= 1.0 for v in vals) and any(float(v) not in (0.0, 1.0) for v in vals):
            prob_col = generic
        elif label_col is None:
            label_col = generic
    if prob_col is None and label_col is not None:
        vals = [v for v in label_col if isinstance(v, (int, float))]
        if vals and all(0.0 <= float(v) <= 1.0 for v in vals) and any(float(v) not in (0.0, 1.0) for v in vals):
            prob_col, label_col = label_col, None
    for i in range(n):
        if prob_col is not None and i < len(prob_col) and isinstance(prob_col[i], (int, float)):
            probs[i] = float(prob_col[i])
        word = (
            label_col[i].strip().lower()
            if label_col is not None and i < len(label_col) and isinstance(label_col[i], str)
            else None
        )
        if label_col is not None and i < len(label_col) and isinstance(label_col[i], (int, float, bool)):
            labels[i] = float(label_col[i])
        elif word in _LABEL_WORDS:
            labels[i] = _LABEL_WORDS[word]
        elif probs[i] is not None:
            labels[i] = float(probs[i] >= 0.5)
    return raw, probs, labels


def rows_from_pair(request: LoggedEvent | None, response: LoggedEvent | None) -> list[dict[str, Any]]:
    """Rows for one logged inference (either side may be missing after the pairing timeout)."""
    if request is None and response is None:
        raise ValueError("need a request or a response")
    first = request or response
    assert first is not None
    instances = request_instances(request.data) if request is not None else []
    resp_body = response.data if response is not None else {}
    raw, probs, labels = response_outputs(resp_body, len(instances))
    n = max(len(instances), len(raw)) or 1
    req_time = _parse_time(request.time) if request is not None else None
    resp_time = _parse_time(response.time) if response is not None else None
    latency = None
    if req_time is not None and resp_time is not None:
        latency = (resp_time - req_time).total_seconds() * 1000.0
    ts = (
        req_time
        or resp_time
        or pd.Timestamp(first.received_at or datetime.now(timezone.utc).timestamp(), unit="s", tz="UTC")
    )
    model_name = resp_body.get("model_name") if isinstance(resp_body, dict) else None
    model_version = resp_body.get("model_version") if isinstance(resp_body, dict) else None
    if request is None:
        status = "no_request"
    elif response is None:
        status = "no_response"
    elif isinstance(resp_body, dict) and ("error" in resp_body and "outputs" not in resp_body):
        status = "error"
    else:
        status = "ok"
    rows = []
    for i in range(n):
        inst = dict(instances[i]) if i < len(instances) else {}
        out_i = raw[i] if i < len(raw) else {}
        # a transformer request names only the instrument; the features the model received come back
        # in its "features_used" output: log them as the instance's inputs (request values win)
        used = out_i.get(_FEATURES_USED)
        if isinstance(used, str):
            try:
                used = json.loads(used)
            except json.JSONDecodeError:
                used = None
        if isinstance(used, dict):
            for key, value in used.items():
                inst.setdefault(str(key), _plain(value))
        bar_ts = _parse_time(inst.get("bar_timestamp"))
        if bar_ts is None:  # the bar the features belong to, when the response says so
            bar_ts = _parse_time(out_i.get(_FEATURE_TIME))
        if bar_ts is None:
            for key in _BAR_TIME_NAMES:
                if key in inst:
                    bar_ts = _parse_time(inst[key])
                    if bar_ts is not None:
                        break
        rows.append(
            {
                "request_id": first.id,
                "row_index": i,
                "timestamp": ts,
                "bar_timestamp": bar_ts,
                "model_name": model_name or first.inference_service,
                "model_version": None if model_version is None else str(model_version),
                "inference_service": first.inference_service,
                "namespace": first.namespace,
                "inputs": json.dumps(inst, sort_keys=True, default=str),
                "outputs": json.dumps(raw[i] if i < len(raw) else {}, sort_keys=True, default=str),
                "probability": probs[i] if i < len(probs) else None,
                "prediction": labels[i] if i < len(labels) else None,
                "latency_ms": latency,
                "status": status,
            }
        )
    return rows


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df["bar_timestamp"] = pd.to_datetime(df["bar_timestamp"], utc=True)
    df["row_index"] = df["row_index"].astype("int64")
    for col in ("probability", "prediction", "latency_ms"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in (
        "request_id",
        "model_name",
        "model_version",
        "inference_service",
        "namespace",
        "inputs",
        "outputs",
        "status",
    ):
        df[col] = df[col].astype("string")
    return df


def batch_key(day: date | str, batch_id: str, prefix: str = PREFIX) -> str:
    day_s = day if isinstance(day, str) else day.isoformat()
    return f"{prefix}/date={day_s}/{batch_id}.parquet"


# -- reading the log back --------------------------------------------------------------------------


def _date_of_key(key: str) -> date | None:
    for part in key.split("/"):
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


def read_predictions(
    store,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    prefix: str = PREFIX,
    flatten: bool = True,
    raw: bool = False,
) -> pd.DataFrame:
    """The prediction log between ``start`` and ``end`` (UTC, inclusive), de-duplicated.

    ``raw=True`` keeps duplicate rows (what the bucket physically holds), for auditing the sink.
    ``flatten=True`` adds the logged input features as columns (``inputs`` JSON is kept too).
    """
    start_ts = _parse_time(start) if start is not None else None
    end_ts = _parse_time(end) if end is not None else None
    frames = []
    for key in store.list(f"{prefix}/"):
        if not key.endswith(".parquet"):
            continue
        day = _date_of_key(key)
        if day is not None:
            if start_ts is not None and day < start_ts.date():
                continue
            if end_ts is not None and day > end_ts.date():
                continue
        frames.append(store.read_parquet(key))
    if not frames:
        return rows_to_frame([])
    df = pd.concat(frames, ignore_index=True)
    if start_ts is not None:
        df = df[df["timestamp"] >= start_ts]
    if end_ts is not None:
        df = df[df["timestamp"] <= end_ts]
    if not raw:
        # prefer a complete row over a half one if both were written for the same key
        rank = df["status"].map({"ok": 0, "error": 1}).fillna(2)
        df = (
            df.assign(_rank=rank)
            .sort_values(["_rank", "timestamp"], kind="stable")
            .drop_duplicates(KEY, keep="first")
            .drop(columns="_rank")
        )
    df = df.sort_values(["timestamp", "request_id", "row_index"], kind="stable").reset_index(drop=True)
    if flatten and len(df):
        feats = pd.json_normalize([json.loads(s) if isinstance(s, str) else {} for s in df["inputs"]])
        feats.index = df.index
        clash = [c for c in feats.columns if c in df.columns]
        feats = feats.rename(columns={c: f"input_{c}" for c in clash})
        df = pd.concat([df, feats], axis=1)
    return df
