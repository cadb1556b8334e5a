"""The transformer's one HTTP client to its predictor (infer, metadata, readiness): :func:`client`.

With the ``client`` speed-up (``--speedups``), :class:`KeepAliveClient`: HTTP/1.1 on pooled asyncio streams,
reading what a KServe server answers (a status line, ``content-length``); without it, ``httpx`` (what KServe's own
REST client uses, at several times the CPU per call: ``bench/serve.py --shares``). Both return
``(status, body)`` and raise :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx


class TransportError(ConnectionError):
    """The request could not be sent or its answer not read (refused, reset, timeout, bad HTTP)."""


class KeepAliveClient:
    """Requests to one ``host:port`` over kept-alive connections (at most ``max_idle`` idle ones). A request that
    fails on a reused connection before any byte of the answer (the server closed it while idle) is sent once more
    on a new one; ``timeout`` bounds the whole call."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, max_idle: int = 64):
        self.host, self.port, self.timeout, self.max_idle = host, port, timeout, max_idle
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address in brackets
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.authority}\r\ncontent-type: application/json\r\n"
        request = f"{head}content-length: {len(body)}\r\n{extra}\r\n".encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    reused = bool(self._idle)
                    reader, writer = self._idle.pop() if reused else await self._connect()
                    try:
                        writer.write(request)
                        return await self._answer(reader, writer)
                    except (ConnectionError, asyncio.IncompleteReadError) as exc:
                        writer.close()
                        if not (reused and isinstance(exc, asyncio.IncompleteReadError) and not exc.partial):
                            raise TransportError(f"{type(exc).__name__}: {exc}") from None
                    except BaseException:  # a timeout or a cancelled request: the connection is in an unknown state
                        writer.close()
                        raise
        except TimeoutError:
            raise TransportError(f"no answer from {self.host}:{self.port} within {self.timeout:g}s") from None

    async def _connect(self):
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from None

    async def _answer(self, reader, writer) -> tuple[int, bytes]:
        try:
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        except (ValueError, IndexError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise TransportError(f"malformed HTTP response: {exc}") from None
        length = fields.get("content-length")
        body = await (reader.readexactly(int(length)) if length is not None else reader.read())
        if length is not None and fields.get("connection", "").lower() != "close" and len(self._idle) < self.max_idle:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, body

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


class HttpxClient:
    """The same interface on ``httpx.AsyncClient`` (kept-alive connections as well)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        url, headers = httpx.URL(scheme="http", host=host, port=port), {"content-type": "application/json"}
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, bytes]:
        try:
            answer = await self._client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return answer.status_code, answer.content

    async def aclose(self) -> None:
        await self._client.aclose()


def client(host_port: str, timeout: float, own: bool) -> KeepAliveClient | HttpxClient:
    """A client for ``host[:port]`` (port 80 when none: KServe passes ``--predictor_host <isvc>-predictor.<ns>``)."""
    url = urlsplit(f"//{host_port}")  # also "[::1]:8080"
    return (KeepAliveClient if own else HttpxClient)(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout)
