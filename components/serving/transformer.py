"""KServe V2 transformer: instrument in, direction call out, features from Feast's online store.

Request (V2)::

    {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]},
                {"name": "as_of", "datatype": "BYTES", "shape": [1], "data": ["2026-01-05T15:30:00Z"]}]}

``instrument`` may hold several instruments (shape ``[n]``); ``as_of`` is optional (default: now)
and may also be given as the request parameter ``as_of``. ``preprocess`` reads each instrument's
latest feature vector (the champion's ``feature_columns``, in order, learned from the predictor's
metadata) from Feast, refuses features older than ``--max_feature_age_seconds`` (422) or newer than
``as_of`` (409; the online store holds only the latest values), and sends the matrix to the
predictor over V2. ``postprocess`` answers, per instrument: ``prediction`` (``up``/``down``),
``probability`` (P(up)), ``confidence`` (max(p, 1-p)), ``signal_strength`` (|2p-1|),
``model_version``, ``features_used`` (JSON object), ``feature_time``, ``feature_age_seconds`` and
``latency_ms`` (time spent in this transformer, including the Feast lookup and the predictor call).

With ``SPX_PREDICTION_LOG=true`` each answered instrument is a row of the prediction log, written before the
answer leaves (the request's inputs, the features sent to the predictor, the answer, the model version, the
latency; :mod:`spx.components.prediction_log`); a row that cannot be written makes the answer a 503.

Run: ``spx-transformer --predictor_host HOST:PORT [--http_port 8080] [--model_name spx-direction]
[--max_feature_age_seconds 900] [--speedups client,infer]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
from kserve import InferRequest, InferResponse, Model
from kserve.protocol.infer_type import InferOutput

from spx.components.prediction_log import LogUnavailable, PredictionLog, encode_rows
from spx.components.serving.client import TransportError, client
from spx.components.serving.features import FeatureLookupError, OnlineFeatureReader, OnlineFeatures, feature_store
from spx.components.serving.server import ServingError, parser, serve
from spx.core.settings import settings

log = logging.getLogger(__name__)

CTX_KEY = "spx-transformer-context"  # private key in the per-request headers dict (never forwarded)
MAX_INSTRUMENTS = 256
FUTURE_TOLERANCE = timedelta(seconds=5)
FORWARDED_HEADERS = ("x-request-id", "x-b3-traceid", "authorization")  # what KServe's transformer forwards
DEFAULT_FEATURE_CACHE_SECONDS = 1.0


@dataclass
class RequestContext:
    request_id: str
    started: float
    arrived: float  # epoch seconds
    instruments: list[str]
    as_of: datetime
    requested_outputs: bool = False  # the request names its outputs
    as_of_raw: Any = None  # as given in the request (logged)
    features: list[OnlineFeatures] = field(default_factory=list)  # per instrument, as sent to the predictor


def parse_time(value: Any) -> datetime:
    """ISO-8601 string (``Z`` or offset; naive means UTC) or epoch seconds -> aware UTC datetime."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise ServingError("as_of is not valid UTF-8") from None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        if not isinstance(value, str) or not value.strip():
            raise ServingError(f"as_of must be an ISO-8601 timestamp or epoch seconds, got {value!r}")
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ServingError(
            f"as_of {value!r} is not an ISO-8601 timestamp (e.g. 2026-01-05T15:30:00Z) or epoch seconds in range"
        ) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _strings(tensor) -> list[str]:
    data = tensor.data
    if isinstance(data, np.ndarray):
        data = data.tolist()
    out = []
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    try:
        return [x.decode() if isinstance(x, bytes) else x for x in out]
    except UnicodeDecodeError:
        raise ServingError(f"input {tensor.name!r} holds a value that is not valid UTF-8") from None


class FeastTransformer(Model):
    def __init__(
        self,
        name: str,
        predictor_host: str,
        max_feature_age: timedelta,
        feature_reader: OnlineFeatureReader | None = None,
        prediction_log: PredictionLog | None = None,
        threshold: float = 0.5,
        predictor_wait_seconds: float = 120.0,
        feature_cache_seconds: float = DEFAULT_FEATURE_CACHE_SECONDS,
        predictor_timeout: float = 60.0,
        own_client: bool = True,
    ):
        super().__init__(name)
        self.predictor_host = predictor_host
        self.max_feature_age = max_feature_age
        self.reader = feature_reader
        self.feature_cache_seconds = feature_cache_seconds
        self.predictor_timeout = predictor_timeout
        self.own_client = own_client
        self._client = None  # created on the serving loop
        self.log = prediction_log
        cluster = settings().cluster  # read once: settings() parses the environment (milliseconds)
        self.logged_as = {"inference_service": cluster.inference_service, "namespace": cluster.namespace}
        self.threshold = threshold
        self.predictor_wait_seconds = predictor_wait_seconds
        self.feature_names: list[str] = []
        self.model_version = ""

    # -- startup -----------------------------------------------------------------------
    def load(self) -> bool:
        if self.reader is None:
            self.reader = OnlineFeatureReader(feature_store(), cache_seconds=self.feature_cache_seconds)
        try:
            asyncio.run(self._wait_for_predictor())
        except TimeoutError:
            wait = f"{self.predictor_wait_seconds:g}s"
            raise RuntimeError(f"no metadata from the predictor {self.predictor_host} in {wait}") from None
        self._client = None  # that loop's connections: the serving loop opens its own
        try:  # Feast's registry and online store opened now, not on the first request
            self.reader.read("__warm_up__", self.feature_names)
        except FeatureLookupError:
            pass  # expected: no such instrument (or nothing materialized yet)
        except Exception as exc:  # noqa: BLE001 - serving starts anyway; requests will say why
            log.warning("feature store warm-up failed: %s", exc)
        self.ready = True
        return self.ready

    async def _wait_for_predictor(self) -> None:
        """The predictor's metadata, waiting up to ``predictor_wait_seconds`` for the predictor to start."""
        async with asyncio.timeout(self.predictor_wait_seconds):
            while True:
                try:
                    return await self.refresh_predictor_metadata()
                except (TransportError, ServingError) as exc:
                    log.info("waiting for the predictor at %s: %s", self.predictor_host, exc)
                    await asyncio.sleep(0.5)

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.predictor_host, self.predictor_timeout, self.own_client)
        return self._client

    async def refresh_predictor_metadata(self) -> None:
        """Learn the champion's feature order and version from the predictor's V2 metadata."""
        status, body = await self.client.request("GET", f"/v2/models/{self.name}")
        meta = orjson.loads(body) if status == 200 else {}
        names = (meta.get("parameters") or {}).get("feature_names")
        if not names:
            raise ServingError(f"predictor metadata lists no feature_names ({status}: {body[:200]!r})", 503)
        self.feature_names = list(names)
        self.model_version = str(meta["parameters"].get("model_version") or (meta.get("versions") or [""])[0])
        log.info("predictor %s: model version %s, %d features", self.predictor_host, self.model_version, len(names))

    async def upstream_ready(self) -> bool:
        """Ready only while the predictor is (a load balancer then stops sending this transformer traffic)."""
        try:
            async with asyncio.timeout(5):  # a probe must not wait for the predictor's full request timeout
                status, _ = await self.client.request("GET", f"/v2/models/{self.name}/ready")
        except (TransportError, TimeoutError):
            return False
        return status == 200

    # -- metadata ----------------------------------------------------------------------
    def get_input_types(self) -> list[dict]:
        return [
            {"name": "instrument", "datatype": "BYTES", "shape": [-1]},
            {"name": "as_of", "datatype": "BYTES", "shape": [1]},
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": n, "datatype": d, "shape": [-1]} for n, d in OUTPUTS]

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.model_version] if self.model_version else [],
            "platform": "spx_feast_transformer",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
            "parameters": {
                "feature_names": self.feature_names,
                "feature_count": len(self.feature_names),
                "model_version": self.model_version,
                "max_feature_age_seconds": self.max_feature_age.total_seconds(),
                "optional_inputs": ["as_of"],
                "predictor": self.predictor_host,
            },
        }

    # -- request path --------------------------------------------------------------------
    def preprocess(self, payload: InferRequest | dict, headers: dict | None = None) -> dict:
        started, arrived = time.perf_counter(), time.time()
        if isinstance(payload, dict):
            raise ServingError("this server speaks the V2 protocol: POST /v2/models/{name}/infer")
        headers = headers if headers is not None else {}
        request_id = payload.id or headers.get("x-request-id") or str(uuid.uuid4())
        by_name = {t.name: t for t in payload.inputs or []}
        unknown = sorted(set(by_name) - {"instrument", "as_of"})
        if unknown:
            raise ServingError(
                f'unknown inputs {unknown}; expected "instrument" (BYTES) and optional "as_of" (BYTES ISO-8601)'
            )
        tensor = by_name.get("instrument")
        if tensor is None:
            raise ServingError('missing input "instrument" (BYTES, shape [n]) naming the instrument(s)')
        if str(tensor.datatype).upper() != "BYTES":
            raise ServingError(f'input "instrument" has datatype {tensor.datatype}; expected BYTES')
        instruments = _strings(tensor)
        shape = list(tensor.shape or [])
        if not instruments or int(np.prod(shape or [0])) != len(instruments):
            raise ServingError(f'input "instrument" has shape {shape} but holds {len(instruments)} values')
        if len(instruments) > MAX_INSTRUMENTS:
            raise ServingError(f"{len(instruments)} instruments exceed the limit of {MAX_INSTRUMENTS}", 413)
        if not all(isinstance(i, str) and i.strip() for i in instruments):
            raise ServingError('input "instrument" must hold non-empty strings')
        as_of_raw = None
        if "as_of" in by_name:
            values = _strings(by_name["as_of"])
            if len(values) != 1:
                raise ServingError('input "as_of" must hold exactly one timestamp')
            as_of_raw = values[0]
        elif payload.parameters and payload.parameters.get("as_of") is not None:
            as_of_raw = payload.parameters.get("as_of")
        now = datetime.now(timezone.utc)
        as_of = parse_time(as_of_raw) if as_of_raw is not None else now
        if as_of > now + FUTURE_TOLERANCE:
            raise ServingError(f"as_of {as_of.isoformat()} is in the future")

        ctx = RequestContext(
            request_id=request_id,
            started=started,
            arrived=arrived,
            instruments=instruments,
            as_of=as_of,
            requested_outputs=bool(getattr(payload, "request_outputs", None)),
            as_of_raw=as_of_raw,
        )
        rows = []
        for instrument in instruments:
            try:
                found = self.reader.read(instrument, self.feature_names)
            except FeatureLookupError as exc:
                raise ServingError(str(exc), exc.status) from None
            age = as_of - found.event_time
            if found.event_time > as_of + FUTURE_TOLERANCE:
                raise ServingError(
                    f"the online store's features for {instrument} are from {found.event_time.isoformat()}, "
                    f"after as_of {as_of.isoformat()}; the online store only holds the latest values "
                    "(use the offline store for point-in-time lookups)",
                    409,
                )
            if age > self.max_feature_age:
                raise ServingError(
                    f"stale features for {instrument}: newest bar {found.event_time.isoformat()} is "
                    f"{age.total_seconds():.0f}s older than as_of {as_of.isoformat()} "
                    f"(limit {self.max_feature_age.total_seconds():.0f}s); run materialization",
                    422,
                )
            ctx.features.append(found)
            rows.extend(found.row)
        headers[CTX_KEY] = ctx
        # the V2 request to the predictor, as the JSON document it is sent as (see predict)
        return {
            "id": request_id,
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP64",
                    "shape": [len(instruments), len(self.feature_names)],
                    "data": rows,
                }
            ],
        }

    async def predict(self, payload, headers=None, response_headers=None) -> dict:
        """POST the V2 request to the predictor; its V2 JSON answer."""
        forwarded = {k: headers[k] for k in FORWARDED_HEADERS if headers and k in headers}
        path = f"/v2/models/{self.name}/infer"
        try:
            status, body = await self.client.request("POST", path, orjson.dumps(payload), forwarded)
        except TransportError as exc:
            raise ServingError(f"predictor unreachable at {self.predictor_host}: {exc}", 503) from None
        if status != 200:
            if 400 <= status < 500:  # the champion may have changed under us: learn its features again
                try:
                    await self.refresh_predictor_metadata()
                except (TransportError, ServingError):
                    pass
            raise ServingError(f"predictor answered {status}: {body[:500].decode('utf-8', 'replace')}", 502)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ServingError(f"predictor answered 200 with a body that is not JSON: {body[:200]!r}", 502) from None

    def postprocess(
        self, result: dict, headers: dict | None = None, response_headers: dict | None = None
    ) -> InferResponse | dict:
        ctx: RequestContext = (headers or {}).pop(CTX_KEY)
        proba = _probabilities(result)
        if proba.shape[0] != len(ctx.instruments):
            raise ServingError(
                f"predictor returned {proba.shape[0]} probabilities for {len(ctx.instruments)} instruments", 502
            )
        version = str(result.get("model_version") or self.model_version or "")
        times = [f.event_time for f in ctx.features]
        ages = [(ctx.as_of - t).total_seconds() for t in times]
        latency_ms = (time.perf_counter() - ctx.started) * 1000.0
        n = len(ctx.instruments)
        values = {
            "instrument": ctx.instruments,
            "prediction": ["up" if p >= self.threshold else "down" for p in proba],
            "probability": proba,
            "confidence": np.maximum(proba, 1.0 - proba),
            "signal_strength": np.abs(2.0 * proba - 1.0),
            "model_version": [version] * n,
            "features_used": [f.values_json for f in ctx.features],
            "feature_time": [t.isoformat() for t in times],
            "feature_age_seconds": np.asarray(ages, dtype=np.float64),
            "latency_ms": np.full(n, latency_ms, dtype=np.float64),
        }
        data = {
            name: list(values[name]) if dtype == "BYTES" else np.asarray(values[name], dtype=np.float64).tolist()
            for name, dtype in OUTPUTS
        }
        parameters = {"as_of": ctx.as_of.isoformat(), "feature_names": ",".join(self.feature_names)}
        # the V2 JSON answer, built once: it is what the client gets and what is logged
        doc = {
            "id": ctx.request_id,
            "model_name": self.name,
            "model_version": version or None,
            "outputs": [{"name": name, "shape": [n], "datatype": dtype, "data": data[name]} for name, dtype in OUTPUTS],
            "parameters": parameters,
        }
        if self.log is not None:
            self._log(ctx, data, times, latency_ms)
        if not ctx.requested_outputs:
            return doc
        # outputs named in the request: KServe's InferResponse, on which the server selects them
        # (and honours a per-output binary_data)
        outputs = []
        for name, dtype in OUTPUTS:
            tensor = InferOutput(name=name, shape=[n], datatype=dtype)
            tensor.data = data[name]
            outputs.append(tensor)
        return InferResponse(
            response_id=ctx.request_id,
            model_name=self.name,
            model_version=version or None,
            infer_outputs=outputs,
            parameters=parameters,
        )

    def _log(self, ctx: RequestContext, data: dict, times: list[datetime], latency_ms: float) -> None:
        """One prediction-log row per instrument, written before the answer leaves (else a 503)."""
        n = len(ctx.instruments)
        request = {"as_of": ctx.as_of_raw} if ctx.as_of_raw is not None else {}
        answers = [{k: data[k][i] for k, _ in OUTPUTS if k not in ("instrument", "features_used")} for i in range(n)]
        lines = encode_rows(
            request_id=ctx.request_id,
            arrived=ctx.arrived,
            model_name=self.name,
            model_version=data["model_version"][0],
            **self.logged_as,
            inputs=[{"instrument": ctx.instruments[i], **request, **ctx.features[i].values} for i in range(n)],
            outputs=answers,
            probabilities=data["probability"],
            predictions=[1.0 if p == "up" else 0.0 for p in data["prediction"]],
            latency_ms=latency_ms,
            bar_times_us=[int(t.timestamp() * 1e6) for t in times],
        )
        try:
            self.log.write(lines, n)
        except LogUnavailable as exc:
            raise ServingError(str(exc), 503) from None


def _probabilities(answer: dict) -> np.ndarray:
    """P(up) per row from the predictor's V2 JSON answer (its first output), read straight from the
    document :meth:`FeastTransformer.predict` decoded (no InferResponse parse)."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ServingError("predictor answered without a V2 outputs list", 502)
    if not outputs:
        raise ServingError("predictor returned no output", 502)
    try:
        return np.asarray(outputs[0].get("data"), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ServingError("predictor returned a probability output that is not numeric", 502) from None


OUTPUTS = [
    ("instrument", "BYTES"),
    ("prediction", "BYTES"),
    ("probability", "FP64"),
    ("confidence", "FP64"),
    ("signal_strength", "FP64"),
    ("model_version", "BYTES"),
    ("features_used", "BYTES"),
    ("feature_time", "BYTES"),
    ("feature_age_seconds", "FP64"),
    ("latency_ms", "FP64"),
]


def main(argv: list[str] | None = None) -> None:
    cfg = settings()
    p = parser(__doc__)
    p.add_argument("--predictor_host", required=True, help="host[:port] of the V2 predictor (port 80 by default)")
    p.add_argument("--predictor_protocol", default="v2", choices=["v2"])
    p.add_argument("--max_feature_age_seconds", type=float, default=cfg.serving.max_feature_age_seconds)
    p.add_argument("--threshold", type=float, default=0.5, help="P(up) at or above which we say up")
    p.add_argument("--predictor_wait_seconds", type=float, default=120.0)
    p.add_argument(
        "--feature_cache_seconds",
        type=float,
        default=DEFAULT_FEATURE_CACHE_SECONDS,
        help="reuse an instrument's online feature row for this many seconds (0: read Feast on every request)",
    )
    args, _ = p.parse_known_args(argv)
    prediction_log = PredictionLog.from_settings()
    model = FeastTransformer(
        args.model_name,
        args.predictor_host,
        timedelta(seconds=args.max_feature_age_seconds),
        prediction_log=prediction_log,
        threshold=args.threshold,
        predictor_wait_seconds=args.predictor_wait_seconds,
        feature_cache_seconds=args.feature_cache_seconds,
        own_client="client" in args.speedups,
    )
    model.load()
    serve([model], args, on_shutdown=(prediction_log.close,) if prediction_log else ())


if __name__ == "__main__":
    main()
