"""The adapter between the two models (predictor, transformer) and KServe's model server: the only module that
touches KServe's or uvicorn's internals. Written against kserve 0.21.0 and uvicorn 0.55.0, the versions
pyproject.toml pins; ``tests/serving/test_adapter.py`` fails when either changes what this module uses.

KServe's ``ModelServer`` serves the models (its FastAPI app, routes, exception handlers, data plane); this adds
what it lacks:

* **Bind address.** KServe binds 0.0.0.0; local servers bind loopback (``--host``).
* **Only the V2 data plane.** :class:`Guard`, the outermost ASGI app: the model repository extension
  (``/v2/repository/…``, unauthenticated load/unload) is 403, the V1 endpoints and the OpenAPI document 404;
  ``/v2/models/{m}/versions/{v}/…`` serves the advertised version only; an ``/infer`` body over
  ``--max_body_bytes`` is 413 and one slower than ``--body_timeout`` 408, both with ``Connection: close``. Unknown
  paths (404) and wrong methods (405 with ``Allow``) are KServe's router's own answers, in JSON.
* **Header limits.** uvicorn has none for httptools: a 431 above ``--max_header_bytes`` and a closed connection
  when the headers take longer than ``--header_timeout`` (a subclass of uvicorn's ``HttpToolsProtocol``).
* **JSON everywhere.** Every error is ``{"error": ...}``; ``/infer`` decodes with KServe's own parser and any
  parse failure is a 400; requested ``outputs`` are honoured (an unknown one is 400); no ``"parameters": null``;
  the model metadata carries the model's ``parameters`` (the feature names); readiness is 503 JSON, and a model
  with an upstream (the transformer's predictor) is ready only while that upstream is.

The speed-up here, behind ``--speedups`` (``bench/serve.py --shares`` measures it): ``infer``, the guard answers
``/infer`` itself with the same steps as our FastAPI route, without the router and KServe's middleware (about
half the predictor's CPU per request). Holding a response's head until its body (one write instead of two) saved
8–9% and is not needed for the targets: removed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
from typing import Callable

import orjson
from fastapi import Request  # module level: FastAPI resolves the route's annotations in these globals

from spx.core.errors import SpxError
from spx.core.settings import settings

log = logging.getLogger(__name__)

SPEEDUPS = ("infer", "client", "booster")  # client: transformer.py; booster: predictor.py


class ServingError(SpxError):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


_VERSIONED = re.compile(r"^/v2/models/([^/]+)/versions/([^/]+)(/ready|/infer)?$")
_INFER = re.compile(r"^/v2/models/([^/]+)/infer$")
_HIDDEN = ("/v1/", "/openapi.json", "/docs", "/redoc")  # KServe's V1 routes, FastAPI's documents


async def _send_json(send, status: int, message: str, close: bool = False) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + [(b"connection", b"close")] * close}
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The outermost ASGI app (see the module docstring); everything it lets through goes to KServe's app."""

    def __init__(self, app, models: dict, dataplane, args, fast_infer: bool):
        self.app, self.models, self.dataplane, self.fast_infer = app, models, dataplane, fast_infer
        self.max_bytes, self.body_timeout = args.max_body_bytes, args.body_timeout

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if path.startswith("/v2/repository"):
            return await _send_json(send, 403, "the model repository extension (load/unload) is disabled", True)
        if path.startswith(_HIDDEN):
            return await _send_json(send, 404, f"no such endpoint: {path} (this server speaks V2 under /v2)")
        if versioned := _VERSIONED.match(path):
            name, version, rest = versioned.groups()
            served = str(getattr(self.models.get(name), "model_version", "") or "")
            if version != served:
                message = f"version {version!r} of model {name!r} is not served; this server serves {served or 'none'}"
                return await _send_json(send, 404, message)
            path = f"/v2/models/{name}{rest or ''}"
            scope = dict(scope, path=path, raw_path=path.encode())
        infer_path = _INFER.match(path)
        if infer_path is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = await self._body(scope, receive, send)
        if body is None:
            return None
        if not self.fast_infer:
            return await self.app(scope, _replay(body, receive), send)  # our FastAPI route, the same steps
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            content, media_type, extra = await infer(self.dataplane, infer_path[1], body, headers)
        except Exception as exc:  # noqa: BLE001 - answered by the app's own exception handlers
            handlers = self.app.exception_handlers
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
            if handler is None:
                raise
            return await (await handler(Request(scope), exc))(scope, _replay(b"", receive), send)
        out = [(b"content-type", media_type.encode()), (b"content-length", b"%d" % len(content))]
        out += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": content})

    async def _body(self, scope, receive, send) -> bytes | None:
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if not declared.isdigit():
            return await _send_json(send, 400, "invalid Content-Length header", True)
        if int(declared) > self.max_bytes:
            message = f"request body of {int(declared)} bytes exceeds the limit of {self.max_bytes} bytes"
            return await _send_json(send, 413, message, True)
        chunks, seen = [], 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunks.append(message.get("body", b""))
                    seen += len(chunks[-1])
                    if seen > self.max_bytes:
                        return await _send_json(
                            send, 413, f"request body exceeds the limit of {self.max_bytes} bytes", True
                        )
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            return await _send_json(send, 408, f"request body not received within {self.body_timeout:g} s", True)


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that yields ``body`` (already read), then the connection's own messages."""
    first = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return first.pop() if first else await receive()

    return replay


def decode(body: bytes, headers: dict, model_name: str):
    """KServe's ``InferRequest`` for a JSON or binary-tensor body; anything it cannot parse is a 400."""
    from kserve import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from pydantic import ValidationError

    length = headers.get("inference-header-content-length")
    try:
        if length is None:
            if not body.strip():
                raise ServingError('empty request body; expected a V2 inference request {"inputs": [...]}')
            request = InferRequest.from_inference_request(InferenceRequest.model_validate_json(body), model_name)
        else:
            if not length.strip().isdigit() or not 0 < int(length) <= len(body):
                raise ServingError(f"Inference-Header-Content-Length {length!r} is not a length inside the body")
            header = orjson.loads(body[: int(length)])
            sizes = [(t.get("parameters") or {}).get("binary_data_size", 0) for t in header["inputs"]]
            if not all(type(s) is int and s >= 0 for s in sizes) or sum(sizes) != len(body) - int(length):
                raise ServingError(f"the inputs' binary_data_size {sizes} do not add up to the tensor bytes sent")
            request = InferRequest.from_bytes(body, int(length), model_name)
            for tensor in request.inputs:  # decode every tensor now: a malformed one is the client's error
                tensor.as_numpy()
    except ServingError:
        raise
    except ValidationError as exc:
        raise ServingError(_describe(exc.errors(include_url=False))) from None
    except KeyError as exc:
        raise ServingError(f"not a V2 inference request: missing {exc}") from None
    except Exception as exc:  # noqa: BLE001 - KServe's decoder raises plain errors on malformed input
        raise ServingError(f"malformed V2 inference request: {type(exc).__name__}: {exc}") from None
    if not request.inputs:
        raise ServingError('"inputs" must be a non-empty list of input tensors')
    for i, tensor in enumerate(request.inputs):
        if any(d < 0 for d in tensor.shape):
            raise ServingError(f"inputs[{i}].shape must be a list of non-negative integers, got {tensor.shape}")
    return request


def _describe(errors: list[dict]) -> str:
    """pydantic's validation errors of a V2 request, said the way a client can act on."""
    if any(e["type"] == "json_invalid" for e in errors):
        return f"request body is not valid JSON ({errors[0]['msg']})"
    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
        return 'request body must be a JSON object with an "inputs" list'
    said = []
    for e in errors[:5]:
        loc = e["loc"]
        if e["type"] == "missing" and loc == ("inputs",):
            said.append('missing "inputs": a V2 request needs a list of input tensors')
        elif e["type"] == "missing" and len(loc) == 3 and loc[0] == "inputs":
            said.append(f"inputs[{loc[1]}] lacks {[loc[2]]}")
        else:
            said.append(f"{'.'.join(str(p) for p in loc) or 'body'}: {e['msg']}")
    return "invalid V2 inference request: " + "; ".join(said)


async def infer(dataplane, name: str, body: bytes, headers: dict) -> tuple[bytes, str, dict]:
    """The steps of KServe's V2 infer handler, then our output selection: (body, media type, headers)."""
    from kserve.errors import ModelNotReady

    request = decode(body, headers, name)
    if not await dataplane.model_ready(name, True):
        raise ModelNotReady(name)
    response, response_headers = await dataplane.infer(model_name=name, request=request, headers=headers)
    wanted = request.request_outputs
    if wanted and hasattr(response, "outputs"):
        by_name = {o.name: o for o in response.outputs}
        unknown = [o.name for o in wanted if o.name not in by_name]
        if unknown:
            raise ServingError(f"unknown requested outputs {unknown}; this model returns {sorted(by_name)}")
        response.outputs = [by_name[o.name] for o in wanted]
        for o in wanted:  # a per-output binary_data request
            if o.parameters and "binary_data" in o.parameters:
                out = by_name[o.name]
                out.parameters = {**(out.parameters or {}), "binary_data": bool(o.parameters["binary_data"])}
    response, encoded_headers = dataplane.encode(model_name=name, response=response, headers=headers, req_attributes={})
    extra = {
        k: v
        for k, v in {**response_headers, **encoded_headers}.items()
        if k.lower() not in ("content-length", "content-type")
    }
    if isinstance(response, bytes):
        return response, "application/octet-stream", extra
    response = {k: v for k, v in response.items() if v is not None}
    response["outputs"] = [{k: v for k, v in o.items() if v is not None} for o in response.get("outputs", [])]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), "application/json", extra


async def _ready(models: dict) -> bool:
    for model in models.values():
        upstream = getattr(model, "upstream_ready", None)
        if not model.ready or (upstream is not None and not await upstream()):
            return False
    return True


def _install(app, models: dict, dataplane) -> None:
    """Our routes and error handlers on KServe's FastAPI app (before KServe adds its own, so ours win)."""
    from fastapi import Response
    from kserve.errors import ModelNotFound
    from starlette.exceptions import HTTPException

    def json(content: dict, status: int = 200, headers: dict | None = None) -> Response:
        return Response(orjson.dumps(content), status, headers, media_type="application/json")

    def error(status: int, message: str, headers: dict | None = None) -> Response:
        return json({"error": message}, status, headers)

    async def serving_error(_, exc: ServingError):
        return error(exc.status, str(exc))

    async def http_error(request: Request, exc: HTTPException):
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path} (this server speaks V2 under /v2)"
        return error(exc.status_code, detail, exc.headers)

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(HTTPException, http_error)

    async def infer_route(request: Request, model_name: str):
        content, media_type, extra = await infer(dataplane, model_name, await request.body(), dict(request.headers))
        return Response(content, media_type=media_type, headers=extra)

    def model(name: str):
        if name not in models:
            raise ModelNotFound(name)
        return models[name]

    async def model_metadata(model_name: str):
        return json(model(model_name).metadata())

    async def model_ready(model_name: str):
        if await _ready({model_name: model(model_name)}):
            return json({"name": model_name, "ready": True})
        return error(503, f"{model_name} is not ready")

    async def server_ready():
        return json({"ready": True}) if await _ready(models) else error(503, "server is not ready")

    async def server_metadata():
        meta = dataplane.metadata()
        return json({**meta, "extensions": [e for e in meta["extensions"] if "repository" not in e]})

    app.add_api_route("/v2/models/{model_name}/infer", infer_route, methods=["POST"])
    app.add_api_route("/v2/models/{model_name}", model_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/ready", model_ready, methods=["GET"])
    app.add_api_route("/v2/health/ready", server_ready, methods=["GET"])
    app.add_api_route("/v2", server_metadata, methods=["GET"])
    app.add_api_route("/v2/", server_metadata, methods=["GET"])


def _protocol(max_header_bytes: int, header_timeout: float):
    """uvicorn's httptools protocol with a cap on the request line + headers (431) and on the time they may take
    (the connection is closed): uvicorn has neither for httptools."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TooLarge(Exception):
        pass

    class Protocol(HttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_bytes, self._too_large = 0, False
            self._timer = self.loop.call_later(header_timeout, self._timed_out)

        def _timed_out(self):
            self._timer = None
            self.transport.close()

        def _stop_timer(self):
            self._timer = self._timer and self._timer.cancel()  # cancel() returns None

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return
            if self._timer is None and (self.cycle is None or self.cycle.response_complete):
                self._timer = self.loop.call_later(header_timeout, self._timed_out)  # the next request's headers
            super().data_received(data)

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > max_header_bytes:
                self._too_large = True
                raise TooLarge()

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
            self._stop_timer()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                return super().send_400_response(msg)
            body = orjson.dumps({"error": f"request line and headers exceed {max_header_bytes} bytes"})
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()

        def connection_lost(self, exc) -> None:
            self._stop_timer()
            super().connection_lost(exc)

    return Protocol


def serve(models: list, args, on_startup: tuple[Callable, ...] = (), on_shutdown: tuple[Callable, ...] = ()) -> None:
    """Serve ``models`` (loaded, ready) with KServe's ModelServer, REST only, until SIGTERM/SIGINT."""
    import kserve
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    server = kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for model in models:
        server.register_model(model)
    by_name = {m.name: m for m in models}
    _install(app, by_name, server.dataplane)
    app.router.on_startup.extend(on_startup)
    app.router.on_shutdown.extend(on_shutdown)
    for name in ("kserve.trace", "uvicorn.access"):  # a line per request: for debugging only
        logging.getLogger(name).setLevel(settings().serving.trace_log_level)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        args.http_port,
        timeout_keep_alive=args.keep_alive_timeout,
    )
    rest.config.app = Guard(app, by_name, server.dataplane, args, fast_infer="infer" in args.speedups)
    rest.config.host = args.host
    rest.config.http = _protocol(args.max_header_bytes, args.header_timeout)
    import uvloop  # uvicorn[standard], a KServe dependency

    gc.collect()
    gc.freeze()  # what is loaded now lives as long as the server: keep it out of full collections
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        asyncio.set_event_loop(runner.get_loop())
        server.setup_event_loop()  # KServe's executor and exception handler, on the loop that serves
        runner.run(rest.start())


def parser(description: str | None) -> argparse.ArgumentParser:
    """KServe's model-server arguments (``--http_port``, ``--model_name`` …, what a ServingRuntime passes) and ours."""
    from kserve.model_server import parser as kserve_parser

    p = argparse.ArgumentParser(
        description=description,
        parents=[kserve_parser],
        conflict_handler="resolve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--http_port", type=int, default=8080)
    p.add_argument("--host", default="0.0.0.0", help="bind address (local launchers pass 127.0.0.1)")
    p.add_argument("--model_name", default=settings().mlflow.registered_model)
    p.add_argument("--max_body_bytes", type=int, default=4 << 20, help="larger request bodies: 413")
    p.add_argument("--max_header_bytes", type=int, default=64 << 10, help="a larger request line + headers: 431")
    p.add_argument("--header_timeout", type=float, default=10.0, help="headers not complete by then: connection closed")
    p.add_argument("--body_timeout", type=float, default=30.0, help="a body not complete by then: 408")
    p.add_argument("--keep_alive_timeout", type=int, default=15, help="idle connections are closed after this")
    p.add_argument(
        "--speedups",
        type=lambda s: {x for x in s.split(",") if x and x != "none"},
        default=set(SPEEDUPS),
        help=f"comma list of {','.join(SPEEDUPS)} (none: KServe's plain path); bench/serve.py measures each",
    )
    return p
