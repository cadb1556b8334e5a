"""Pieces shared by the predictor and the transformer on top of the KServe SDK model server.

* :class:`ServingError` — a client error with an HTTP status; rendered as ``{"error": "..."}``.
* :class:`RequestGuard` — 413 above a body size limit, 404 for unknown models and 400 for bodies
  that are not V2 JSON requests, before KServe parses anything.
* JSON error handlers for FastAPI's request-validation errors (missing ``inputs`` etc.), so every
  4xx carries ``{"error": ...}`` like KServe's own errors.
* :func:`install` — wires all of this into KServe's FastAPI app before ``ModelServer.start``, and
  serves ``GET /v2/models/{name}`` from the model's own ``metadata()`` so the metadata can carry
  the feature names (KServe's pydantic response model would drop them).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class ServingError(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class RequestGuard:
    """Pure ASGI middleware in front of KServe's routes.

    * 413 for bodies over ``max_bytes`` (declared or streamed); KServe has no limit of its own.
    * For ``POST /v2/models/{name}/infer``: 404 for an unknown model, 400 for a body that is not
      JSON or not a V2 inference request (``inputs`` missing or malformed) — with a message that
      says what is wrong, instead of KServe's generic decode errors. Requests using the binary
      tensor extension (``Inference-Header-Content-Length``) pass through to KServe's decoder.
    """

    def __init__(self, app, models: dict[str, Any], max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.models = models
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await _send_json(send, 400, "invalid Content-Length header")
            if size > self.max_bytes:
                return await _send_json(send, 413, f"request body of {size} bytes exceeds the limit "
                                                   f"of {self.max_bytes} bytes")
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.max_bytes:
                return await _send_json(send, 413, f"request body exceeds the limit of {self.max_bytes} bytes")
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        path = scope.get("path", "")
        parts = path.strip("/").split("/")
        if len(parts) >= 4 and parts[0] == "v2" and parts[1] == "models" and parts[-1] == "infer":
            name = parts[2]
            if name not in self.models:
                return await _send_json(send, 404, f"model {name!r} does not exist; this server serves "
                                                   f"{sorted(self.models)}")
            if b"inference-header-content-length" not in headers:
                problem = check_v2_request(body)
                if problem:
                    return await _send_json(send, 400, problem)
                # a valid JSON body: make sure FastAPI parses it as JSON whatever the client said
                scope = dict(scope)
                scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope["headers"].append((b"content-type", b"application/json"))

        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def check_v2_request(body: bytes) -> str | None:
    """None if ``body`` is a well-formed V2 JSON inference request, else what is wrong with it."""
    import orjson

    if not body:
        return "empty request body; expected a V2 inference request {\"inputs\": [...]}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"request body is not valid JSON ({exc})"
    if not isinstance(doc, dict):
        return "request body must be a JSON object with an \"inputs\" list"
    inputs = doc.get("inputs")
    if inputs is None:
        return "missing \"inputs\": a V2 request needs a list of input tensors"
    if not isinstance(inputs, list) or not inputs:
        return "\"inputs\" must be a non-empty list of input tensors"
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            return f"inputs[{i}] must be an object with name, datatype, shape and data"
        missing = [k for k in ("name", "datatype", "shape") if k not in tensor]
        binary = isinstance(tensor.get("parameters"), dict) and "binary_data_size" in tensor["parameters"]
        if "data" not in tensor and not binary:
            missing.append("data")
        if missing:
            return f"inputs[{i}] lacks {missing}"
        if not isinstance(tensor["name"], str) or not isinstance(tensor["datatype"], str):
            return f"inputs[{i}].name and .datatype must be strings"
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            return f"inputs[{i}].shape must be a list of non-negative integers, got {shape!r}"
        if "data" in tensor and not isinstance(tensor["data"], list):
            return f"inputs[{i}].data must be a list"
    return None


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _describe_validation(exc) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "invalid V2 inference request: " + "; ".join(parts)


def install(app, models: dict[str, Any], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Add our middleware, error handlers and metadata route to KServe's FastAPI ``app``.

    Must run before ``ModelServer.start``: routes added now take precedence over KServe's, which
    it registers when it starts.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse

    app.add_middleware(RequestGuard, models=models, max_bytes=max_body_bytes)

    async def serving_error(_, exc: ServingError):
        log.info("refused request: %s %s", exc.status, exc.message)
        return ORJSONResponse(status_code=exc.status, content={"error": exc.message})

    async def validation_error(_, exc: RequestValidationError):
        return ORJSONResponse(status_code=422, content={"error": _describe_validation(exc)})

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    async def model_metadata(model_name: str):
        model = models.get(model_name)
        if model is None:
            return ORJSONResponse(status_code=404,
                                  content={"error": f"Model with name {model_name} does not exist."})
        return ORJSONResponse(content=model.metadata())

    app.add_api_route("/v2/models/{model_name}", model_metadata, methods=["GET"])


def run_server(models: list[Any], http_port: int, max_body_bytes: int, workers: int = 1,
               predictor_config: Any = None) -> None:
    """Start KServe's ModelServer (REST only) with our additions installed."""
    import kserve
    from kserve.model_server import app

    install(app, {m.name: m for m in models}, max_body_bytes=max_body_bytes)
    server = kserve.ModelServer(http_port=http_port, enable_grpc=False, workers=workers,
                                enable_latency_logging=False, predictor_config=predictor_config)
    # KServe logs two timing lines per request at INFO; keep them for debugging only
    logging.getLogger("kserve.trace").setLevel(os.environ.get("SPX_TRACE_LOG_LEVEL", "WARNING"))
    server.start(models)


def add_common_args(parser, default_port: int = 8080) -> None:
    parser.add_argument("--http_port", type=int, default=default_port)
    parser.add_argument("--model_name", default="spx-direction")
    parser.add_argument("--max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="reject larger request bodies with 413")

