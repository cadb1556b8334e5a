"""Pieces shared by the predictor and the transformer on top of the KServe SDK model server.

* :class:`ServingError` — a client error with an HTTP status; rendered as ``{"error": "..."}``.
* :class:`RequestGuard` — the server's front door, before KServe routes anything:

  - only the V2 data-plane endpoints are served (health, server/model metadata, model ready,
    infer, ``/metrics``); the model repository extension (``/v2/repository/...load|unload``),
    the V1 endpoints and FastAPI's docs are refused, so nobody can unload the model;
  - a wrong method on a known path is 405 (with ``Allow``), an unknown path 404;
  - the versioned paths ``/v2/models/{m}/versions/{v}/...`` are served for the advertised
    version (404 for any other);
  - request bodies over a size limit are 413 and bodies that trickle in slower than a read
    timeout are 408, both answered with ``Connection: close``.
* :func:`decode_infer_request` — KServe's own parser (``InferRequest.from_bytes`` for the binary
  tensor extension, ``InferenceRequest`` + ``InferRequest.from_inference_request`` for JSON),
  preceded by structural checks, with every parse failure mapped to a 400 ``{"error": ...}``.
* our ``/infer`` route (the same steps as KServe's V2 handler) that honours the requested
  ``outputs`` and never answers ``"parameters": null``; JSON error bodies for FastAPI's own errors.
* :func:`run_server` — KServe's ``ModelServer`` with the uvicorn settings above: bind address
  (``--host``), a request-header size limit and header read timeout (uvicorn's httptools protocol
  with a size/time cap; ``h11_max_incomplete_event_size`` when h11 is used), ``timeout_keep_alive``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import re
from typing import Any

import orjson

from spx.core.errors import SpxError
from spx.core.settings import settings

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_KEEP_ALIVE = 15

V2_DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}


class ServingError(SpxError):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


# (regex, allowed methods, kind); {m} = model name, {v} = version
_ROUTES = [
    (re.compile(r"^/v2/models/(?P<m>[^/]+)(/versions/(?P<v>[^/]+))?/infer$"), {"POST"}, "infer"),  # hot path first
    (re.compile(r"^/$"), {"GET"}, "live"),
    (re.compile(r"^/metrics$"), {"GET"}, "metrics"),
    (re.compile(r"^/v2/?$"), {"GET"}, "server"),
    (re.compile(r"^/v2/health/(live|ready)$"), {"GET"}, "health"),
    (re.compile(r"^/v2/models$"), {"GET"}, "models"),
    (re.compile(r"^/v2/models/(?P<m>[^/]+)(/versions/(?P<v>[^/]+))?$"), {"GET"}, "model"),
    (re.compile(r"^/v2/models/(?P<m>[^/]+)(/versions/(?P<v>[^/]+))?/ready$"), {"GET"}, "model"),
]


class RequestGuard:
    """Pure ASGI middleware in front of KServe's routes (see the module docstring)."""

    def __init__(
        self,
        app,
        models: dict[str, Any],
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        infer: InferEndpoint | None = None,
    ):
        self.app = app
        self.models = models
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.infer = infer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        if path.startswith("/v2/repository"):
            return await _send_json(
                send, 403, "the model repository extension (load/unload) is disabled on this server", close=True
            )
        for pattern, methods, kind in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            allowed = methods | ({"HEAD"} if "GET" in methods else set())
            if method not in allowed:
                return await _send_json(
                    send,
                    405,
                    f"method {method} is not allowed on {path}; use {' or '.join(sorted(methods))}",
                    close=True,
                    extra=[(b"allow", ", ".join(sorted(allowed)).encode())],
                )
            groups = match.groupdict()
            if groups.get("m") is not None:
                name = groups["m"]
                model = self.models.get(name)
                if model is None:
                    return await _send_json(
                        send, 404, f"model {name!r} does not exist; this server serves {sorted(self.models)}"
                    )
                version = groups.get("v")
                if version is not None:
                    served = str(getattr(model, "model_version", "") or "")
                    if version != served:
                        return await _send_json(
                            send,
                            404,
                            f"version {version!r} of model {name!r} is not "
                            f"served; this server serves version "
                            f"{served or '(unversioned)'}",
                        )
                    scope = dict(scope)
                    scope["path"] = path.replace(f"/versions/{version}", "", 1)
                    scope["raw_path"] = scope["path"].encode()
            if kind == "infer":
                return await self._infer(scope, receive, send, groups["m"])
            return await self.app(scope, receive, send)
        return await _send_json(
            send, 404, f"no such endpoint: {method} {path} (this server speaks the V2 inference protocol under /v2)"
        )

    async def _infer(self, scope, receive, send, model_name: str):
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                declared = value
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await _send_json(send, 400, "invalid Content-Length header", close=True)
            if size > self.max_bytes:
                return await _send_json(
                    send, 413, f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes", close=True
                )
        chunks: list[bytes] = []
        seen = 0
        # one timer for the whole body (asyncio.timeout, not a wait_for task per message)
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body = message.get("body", b"")
                    seen += len(body)
                    if seen > self.max_bytes:
                        return await _send_json(
                            send, 413, f"request body exceeds the limit of {self.max_bytes} bytes", close=True
                        )
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await _send_json(send, 408, f"request body not received within {self.body_timeout:g} s", close=True)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.infer is not None:
            return await self.infer(scope, body, send, model_name)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class InferEndpoint:
    """``POST /v2/models/{name}/infer``, served by :class:`RequestGuard` itself (the hot path), not
    through FastAPI's router and middleware stack: the same steps as KServe's V2 handler (decode with
    KServe's parser, ``dataplane.infer`` = the model's preprocess/predict/postprocess with its
    Prometheus timings, ``dataplane.encode``), then our output selection and an orjson body. An
    exception is answered by the app's own exception handlers (KServe's and ours), so errors are
    the same ``{"error": ...}`` bodies as on every other route."""

    def __init__(self, app, dataplane):
        self.app = app
        self.dataplane = dataplane

    async def __call__(self, scope, body: bytes, send, model_name: str) -> None:
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
            infer_request = decode_infer_request(body, headers, model_name)
            if not await self.dataplane.model_ready(model_name, True):
                from kserve.errors import ModelNotReady

                raise ModelNotReady(model_name)
            response, response_headers = await self.dataplane.infer(
                model_name=model_name, request=infer_request, headers=headers
            )
            response = select_outputs(response, infer_request)
            response, res_headers = self.dataplane.encode(
                model_name=model_name, response=response, headers=headers, req_attributes={}
            )
            if isinstance(response, bytes):
                content, media_type = response, b"application/octet-stream"
            else:
                content = orjson.dumps(_clean(response), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
                media_type = b"application/json"
        except Exception as exc:  # noqa: BLE001 - answered by the app's exception handlers
            return await self._error(scope, send, exc)
        out = [(b"content-type", media_type), (b"content-length", str(len(content)).encode())]
        for k, v in {**response_headers, **res_headers}.items():
            if k.lower() not in ("content-length", "content-type"):
                out.append((k.lower().encode("latin-1"), str(v).encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": content})

    async def _error(self, scope, send, exc: Exception) -> None:
        import inspect

        from starlette.requests import Request

        handlers = getattr(self.app, "exception_handlers", {})
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        if not isinstance(exc, ServingError):
            log.info("infer failed: %s: %s", type(exc).__name__, exc, exc_info=not _is_client_error(exc))
        response = handler(Request(scope), exc)
        if inspect.isawaitable(response):
            response = await response

        async def no_body():
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


def _is_client_error(exc: Exception) -> bool:
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

    return isinstance(exc, (InvalidInput, ModelNotFound, ModelNotReady))


def check_v2_request(body: bytes | dict, binary_bytes: int | None = None) -> str | None:
    """None if ``body`` (bytes or an already decoded JSON header) is a well-formed V2 inference
    request, else what is wrong with it. ``binary_bytes``: bytes after the JSON header in a binary
    tensor extension request (their sizes must add up to it)."""
    if isinstance(body, (bytes, bytearray)):
        if not body:
            return 'empty request body; expected a V2 inference request {"inputs": [...]}'
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return f"request body is not valid JSON ({exc})"
    else:
        doc = body
    if not isinstance(doc, dict):
        return 'request body must be a JSON object with an "inputs" list'
    if "id" in doc and doc["id"] is not None and not isinstance(doc["id"], str):
        return '"id" must be a string'
    if doc.get("parameters") is not None and not isinstance(doc["parameters"], dict):
        return '"parameters" must be an object'
    inputs = doc.get("inputs")
    if inputs is None:
        return 'missing "inputs": a V2 request needs a list of input tensors'
    if not isinstance(inputs, list) or not inputs:
        return '"inputs" must be a non-empty list of input tensors'
    binary_total = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            return f"inputs[{i}] must be an object with name, datatype, shape and data"
        params = tensor.get("parameters")
        if params is not None and not isinstance(params, dict):
            return f"inputs[{i}].parameters must be an object"
        binary = isinstance(params, dict) and "binary_data_size" in params
        missing = [k for k in ("name", "datatype", "shape") if k not in tensor]
        if "data" not in tensor and not binary:
            missing.append("data")
        if missing:
            return f"inputs[{i}] lacks {missing}"
        if not isinstance(tensor["name"], str) or not isinstance(tensor["datatype"], str):
            return f"inputs[{i}].name and .datatype must be strings"
        if tensor["datatype"] not in V2_DATATYPES:
            return f"inputs[{i}].datatype {tensor['datatype']!r} is not a V2 datatype ({sorted(V2_DATATYPES)})"
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            return f"inputs[{i}].shape must be a list of non-negative integers, got {shape!r}"
        count = 1
        for d in shape:
            count *= d
        if count > 100_000_000:
            return f"inputs[{i}].shape {shape} is too large"
        if binary:
            size = params["binary_data_size"]
            if "data" in tensor:
                return f"inputs[{i}] has both data and parameters.binary_data_size"
            if binary_bytes is None:
                return (
                    f"inputs[{i}] declares binary_data_size but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                return f"inputs[{i}].parameters.binary_data_size must be a non-negative integer"
            width = _DTYPE_BYTES.get(tensor["datatype"])
            if width is not None and size != count * width:
                return (
                    f"inputs[{i}]: binary_data_size {size} does not match shape {shape} of "
                    f"{tensor['datatype']} ({count * width} bytes)"
                )
            binary_total += size
        else:
            data = tensor["data"]
            if not isinstance(data, list):
                return f"inputs[{i}].data must be a list"
            n = _count_leaves(data)
            if n is None:
                return f"inputs[{i}].data must hold numbers, strings or booleans (nested lists allowed)"
            if n != count:
                return f"inputs[{i}] holds {n} values but shape {shape} needs {count}"
    if binary_bytes is not None and binary_total != binary_bytes:
        return (
            f"the binary tensor data is {binary_bytes} bytes but the inputs' binary_data_size add up to {binary_total}"
        )
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            return '"outputs" must be a list of {"name": ...} objects'
        for j, out in enumerate(outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                return f'outputs[{j}] must be an object with a string "name"'
            if out.get("parameters") is not None and not isinstance(out["parameters"], dict):
                return f"outputs[{j}].parameters must be an object"
    return None


_DTYPE_BYTES = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
}


def _count_leaves(data: list) -> int | None:
    n = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, (int, float, str, bool)):
            n += 1
        else:
            return None
    return n


def decode_infer_request(body: bytes, headers: dict, model_name: str):
    """The KServe ``InferRequest`` for ``body`` (JSON or binary tensor extension), or a 400."""
    from kserve import InferRequest
    from kserve.errors import InvalidInput
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from pydantic import ValidationError

    raw_length = headers.get("inference-header-content-length")
    if raw_length is None:
        problem = check_v2_request(body)
        if problem:
            raise ServingError(problem)
        try:
            request = InferenceRequest.model_validate_json(body)
            return InferRequest.from_inference_request(request, model_name)
        except ValidationError as exc:
            raise ServingError(_describe_validation(exc)) from None
        except InvalidInput as exc:
            raise ServingError(str(exc)) from None
    text = raw_length.strip()
    if not text.isdigit():
        raise ServingError(f"Inference-Header-Content-Length must be a non-negative integer, got {raw_length!r}")
    json_length = int(text)
    if json_length == 0 or json_length > len(body):
        raise ServingError(f"Inference-Header-Content-Length {json_length} is outside the body ({len(body)} bytes)")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise ServingError(f"the JSON header of the binary request is not valid JSON ({exc})") from None
    problem = check_v2_request(header, binary_bytes=len(body) - json_length)
    if problem:
        raise ServingError(problem)
    try:
        request = InferRequest.from_bytes(body, json_length, model_name)
        for tensor in request.inputs:  # decode every binary tensor now (BYTES: UTF-8 and lengths)
            arr = tensor.as_numpy()
            if tensor.datatype == "BYTES":
                for item in arr.reshape(-1):
                    if isinstance(item, bytes):
                        item.decode("utf-8")
    except InvalidInput as exc:
        raise ServingError(str(exc)) from None
    except UnicodeDecodeError:
        raise ServingError("a BYTES tensor element is not valid UTF-8") from None
    except Exception as exc:  # noqa: BLE001 - KServe's decoder raises plain errors on malformed bytes
        raise ServingError(f"malformed binary tensor data: {type(exc).__name__}: {exc}") from None
    return request


def select_outputs(response, request):
    """Keep only the outputs the request asked for (all when it named none); 400 for unknown ones."""
    wanted = getattr(request, "request_outputs", None)
    if not wanted or not hasattr(response, "outputs"):
        return response
    by_name = {o.name: o for o in response.outputs}
    unknown = [o.name for o in wanted if o.name not in by_name]
    if unknown:
        raise ServingError(f"unknown requested outputs {unknown}; this model returns {sorted(by_name)}")
    response.outputs = [by_name[o.name] for o in wanted]
    for o in wanted:  # honour a per-output binary_data request
        if o.parameters and "binary_data" in o.parameters:
            params = dict(by_name[o.name].parameters or {})
            params["binary_data"] = bool(o.parameters["binary_data"])
            by_name[o.name].parameters = params
    return response


def _clean(doc: dict) -> dict:
    """A V2 response with no null optional fields (``parameters`` is an object when present)."""
    out = {k: v for k, v in doc.items() if v is not None}
    if "outputs" in out:
        out["outputs"] = [{k: v for k, v in o.items() if v is not None} for o in out["outputs"]]
    return out


async def _send_json(send, status: int, message: str, close: bool = False, extra: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _describe_validation(exc) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "invalid V2 inference request: " + "; ".join(parts)


def install(
    app,
    models: dict[str, Any],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    dataplane=None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> RequestGuard:
    """Add our error handlers and routes to KServe's FastAPI ``app`` and return the ASGI app to
    serve: :class:`RequestGuard` in front of ``app`` (it serves ``/infer`` itself when ``dataplane``
    is given, see :class:`InferEndpoint`).

    Must run before ``ModelServer.start``: routes added now take precedence over KServe's, which
    it registers when it starts.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    guard = RequestGuard(
        app,
        models,
        max_bytes=max_body_bytes,
        body_timeout=body_timeout,
        infer=InferEndpoint(app, dataplane) if dataplane is not None else None,
    )

    async def serving_error(_, exc: ServingError):
        log.info("refused request: %s %s", exc.status, exc.message)
        headers = {"connection": "close"} if exc.status == 413 else None
        return ORJSONResponse(status_code=exc.status, content={"error": exc.message}, headers=headers)

    async def validation_error(_, exc: RequestValidationError):
        return ORJSONResponse(status_code=422, content={"error": _describe_validation(exc)})

    async def http_error(_, exc: StarletteHTTPException):
        return ORJSONResponse(
            status_code=exc.status_code, content={"error": str(exc.detail)}, headers=getattr(exc, "headers", None)
        )

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    async def model_metadata(model_name: str):
        model = models.get(model_name)
        if model is None:
            return ORJSONResponse(status_code=404, content={"error": f"Model with name {model_name} does not exist."})
        return ORJSONResponse(content=model.metadata())

    app.add_api_route("/v2/models/{model_name}", model_metadata, methods=["GET"])
    if dataplane is None:
        return guard

    async def server_metadata():
        meta = dict(dataplane.metadata())
        meta["extensions"] = [e for e in meta.get("extensions", []) if e != "model_repository_extension"]
        return ORJSONResponse(content=meta)

    async def server_ready():
        try:
            ready = await dataplane.ready() and all([await dataplane.model_ready(name) for name in models])
        except Exception as exc:  # noqa: BLE001 - e.g. the transformer's predictor is unreachable
            log.info("not ready: %s", exc)
            ready = False
        if not ready:
            return ORJSONResponse(status_code=503, content={"error": "server is not ready"})
        return ORJSONResponse(content={"ready": True})

    app.add_api_route("/v2", server_metadata, methods=["GET"])
    app.add_api_route("/v2/", server_metadata, methods=["GET"])
    app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
    return guard


class _CorkedTransport:
    """The transport of one uvicorn request cycle, holding back the response's status line and
    headers until the first body write (or the end of the response), so that a response leaves in
    one write (one system call, one TCP segment) instead of two. ``100 Continue`` is not held."""

    __slots__ = ("_transport", "_held")

    def __init__(self, transport):
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
            self._transport.write(data)
        elif data[:9] == b"HTTP/1.1 " and data[9:12] != b"100" and data[-4:] == b"\r\n\r\n":
            self._held = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _protocol_class(max_header_bytes: int, header_timeout: float):
    """uvicorn's httptools protocol with a cap on the request line + headers (431) and on the time a
    client may take to send them (the connection is closed). uvicorn has no setting for either with
    httptools (``h11_max_incomplete_event_size`` covers h11 only)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _TooLarge(Exception):
        pass

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_bytes = 0
            self._too_large = False
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _header_timed_out(self):
            self._header_timer = None
            if not self.transport.is_closing():
                log.info("closing a connection that sent no complete request headers within %gs", header_timeout)
                self.transport.close()

        def _cancel_header_timer(self):
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return
            if getattr(self, "_header_timer", None) is None and (self.cycle is None or self.cycle.response_complete):
                # the first bytes of the next request on a keep-alive connection: time its headers too
                self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)
            super().data_received(data)

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > max_header_bytes:
                self._too_large = True
                raise _TooLarge()

        def on_message_begin(self) -> None:
            self._header_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()
            if self.cycle is not None:  # status line + headers go out with the body, in one write
                self.cycle.transport = _CorkedTransport(self.cycle.transport)

        def on_response_complete(self) -> None:
            if self.cycle is not None and isinstance(self.cycle.transport, _CorkedTransport):
                self.cycle.transport.flush()  # a response without body bytes (HEAD)
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                return super().send_400_response(msg)
            body = json.dumps({"error": f"request line and headers exceed {max_header_bytes} bytes"}).encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


def run_server(
    models: list[Any],
    http_port: int,
    max_body_bytes: int,
    workers: int = 1,
    predictor_config: Any = None,
    host: str = "0.0.0.0",
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    keep_alive: int = DEFAULT_KEEP_ALIVE,
    on_startup: list | None = None,
    on_shutdown: list | None = None,
) -> None:
    """Start KServe's ModelServer (REST only) with our additions installed, bound to ``host``."""
    import kserve
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    server = kserve.ModelServer(
        http_port=http_port,
        enable_grpc=False,
        workers=workers,
        enable_latency_logging=False,
        predictor_config=predictor_config,
    )
    guard = install(
        app,
        {m.name: m for m in models},
        max_body_bytes=max_body_bytes,
        dataplane=server.dataplane,
        body_timeout=body_timeout,
    )
    for hook in on_startup or []:
        app.router.on_startup.append(hook)
    for hook in on_shutdown or []:
        app.router.on_shutdown.append(hook)
    # KServe logs two timing lines per request at INFO and uvicorn one access line: for debugging only
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(settings().serving.trace_log_level)
    # what ModelServer.start does, with uvicorn's Config adjusted (KServe hard-codes host 0.0.0.0
    # and exposes no header limit or header timeout)
    server._register_and_check_atleast_one_model_is_ready(models)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        http_port,
        access_log_format=server.access_log_format,
        workers=1,
        grace_period=server.grace_period,
        event_loop=server.event_loop,
        timeout_keep_alive=keep_alive,
    )
    rest.config.app = guard  # our guard is the outermost ASGI app (uvicorn adds only its proxy-headers layer)
    rest.config.host = host
    rest.config.h11_max_incomplete_event_size = max_header_bytes
    try:
        import httptools  # noqa: F401

        rest.config.http = _protocol_class(max_header_bytes, header_timeout)
    except ImportError:  # h11: uvicorn's own size limit applies
        rest.config.http = "h11"
    server._rest_server = rest
    server.servers.append(rest.start())
    try:  # uvicorn[standard] (a KServe dependency) brings uvloop; plain asyncio otherwise
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    # everything loaded so far (KServe, FastAPI, Feast, the model) lives as long as the server: keep it
    # out of the garbage collector's full collections, which otherwise walk it all under load
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        asyncio.set_event_loop(runner.get_loop())
        server.setup_event_loop()  # executor and exception handler on the loop that serves
        server.register_signal_handler()
        runner.run(server._serve())


def server_parser(description: str | None = None) -> argparse.ArgumentParser:
    """KServe's own model-server argument parser (``kserve.model_server.parser``: ``--http_port``,
    ``--model_name``, ``--workers`` …, so a ServingRuntime's usual args are understood) with our options
    on top (:func:`add_common_args`)."""
    from kserve.model_server import parser as kserve_parser

    parser = argparse.ArgumentParser(
        description=description,
        parents=[kserve_parser],
        conflict_handler="resolve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    return parser


def add_common_args(parser, default_port: int = 8080) -> None:
    parser.add_argument("--http_port", type=int, default=default_port)
    parser.add_argument(
        "--host", default="0.0.0.0", help="bind address (the container default; local launchers pass 127.0.0.1)"
    )
    parser.add_argument("--model_name", default="spx-direction")
    parser.add_argument(
        "--max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="reject larger request bodies with 413"
    )
    parser.add_argument(
        "--max_header_bytes",
        type=int,
        default=DEFAULT_MAX_HEADER_BYTES,
        help="reject a larger request line + headers with 431",
    )
    parser.add_argument(
        "--header_timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help="close connections that do not send complete headers within this many seconds",
    )
    parser.add_argument(
        "--body_timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        help="answer 408 when a request body takes longer than this many seconds",
    )
    parser.add_argument(
        "--keep_alive_timeout",
        type=int,
        default=DEFAULT_KEEP_ALIVE,
        help="close idle keep-alive connections after this many seconds",
    )


def server_kwargs(args) -> dict:
    """The run_server keyword arguments from :func:`add_common_args`'s options."""
    return {
        "host": args.host,
        "max_header_bytes": args.max_header_bytes,
        "header_timeout": args.header_timeout,
        "body_timeout": args.body_timeout,
        "keep_alive": args.keep_alive_timeout,
    }
