"""The transformer's one HTTP client to its predictor (infer, metadata, readiness): :func:`client`.

With the ``client`` speed-up (``--speedups``), :class:`KeepAliveClient`: it writes the request bytes on a
pooled connection and parses the answer with ``httptools`` (uvicorn's parser, a KServe dependency through
``uvicorn[standard]``); without it, ``httpx`` (what KServe's own REST client uses). Both return
``(status, body)`` and raise :class:`TransportError`; ``bench/serve.py`` measures the difference.

* Connections are kept alive and reused (at most ``max_idle`` idle ones); a connection the server
  closed (idle timeout, restart) is dropped, and a request that fails on a *reused* connection
  before any byte of the answer arrived is sent once more on a new connection (inference is
  idempotent).
* ``timeout`` bounds the whole call (connect + answer); on expiry the connection is closed.
* Any transport failure is raised as :class:`TransportError`; HTTP errors are returned as statuses.
"""

from __future__ import annotations

import asyncio

import httptools


class TransportError(ConnectionError):
    """The request could not be sent or its answer not read (refused, reset, timeout, bad HTTP)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.received = False
        self.keep_alive = True
        self.status = 0
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(TransportError(f"connection closed by the server{f' ({exc})' if exc else ''}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(b"".join(self._body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self._body = []
        self.received = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            body = await self.waiter
        finally:
            self.waiter = None
        return self.status, body

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveClient:
    """POSTs to one ``host:port`` over pooled keep-alive connections."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, max_idle: int = 64):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return conn

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> bytes:
        head = [
            method.encode(),
            b" ",
            path.encode(),
            b" HTTP/1.1\r\nhost: ",
            self._host_header,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for key, value in (headers or {}).items():
            head += [key.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        head += [b"\r\n", body]
        return b"".join(head)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)`` of ``method path``; raises :class:`TransportError`."""
        request = self._request(method, path, body, headers)
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    conn = None
                    while self._idle:
                        candidate = self._idle.pop()
                        if not candidate.closed:
                            conn = candidate
                            break
                    reused = conn is not None
                    if conn is None:
                        conn = await self._connect()
                    try:
                        status, data = await conn.exchange(request)
                    except TransportError:
                        conn.close()
                        if reused and not conn.received:
                            continue  # the server closed an idle connection under us: once more, fresh
                        raise
                    break
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise TransportError(f"no answer from {self.host}:{self.port} within {self.timeout:g}s") from None
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()
            raise
        if conn.keep_alive and not conn.closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return status, data

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class HttpxClient:
    """The same interface on ``httpx.AsyncClient`` (kept-alive connections as well)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=timeout)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            answer = await self._client.request(
                method, path, content=body, headers={"content-type": "application/json", **(headers or {})}
            )
        except self._httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return answer.status_code, answer.content

    async def aclose(self) -> None:
        await self._client.aclose()


def client(host_port: str, timeout: float, own: bool) -> KeepAliveClient | HttpxClient:
    host, _, port = host_port.rpartition(":")
    return (KeepAliveClient if own else HttpxClient)(host or "127.0.0.1", int(port or 80), timeout=timeout)
