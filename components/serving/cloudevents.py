"""Asynchronous inference logger speaking KServe's logger format (binary-mode CloudEvents).

KServe's agent logs each request and response as an HTTP POST whose body is the V2 JSON and whose
headers carry the CloudEvent attributes: ``ce-specversion``, ``ce-id`` (the request id, shared by
the request and its response), ``ce-type`` (``org.kubeflow.serving.inference.request`` /
``…response``), ``ce-source``, ``ce-time``, ``ce-inferenceservicename``, ``ce-namespace``,
``ce-component``, ``ce-endpoint``. The monitoring sink consumes exactly these.

Logging never blocks or fails a prediction: events go to a bounded queue drained by one
background task. An event the sink does not acknowledge (connection refused, timeout, 5xx, 429) is
retried with backoff for up to ``retry_seconds`` (a sink restart loses nothing: it answers 200 only
after its write-ahead log holds the event, and de-duplicates by ``ce-id``); after that, or when the
queue is full, events are dropped and counted. A 4xx other than 429 is not retried (the sink said the
event is unusable).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone

import httpx

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class InferenceLogger:
    def __init__(self, url: str, inference_service: str, source: str | None = None,
                 component: str = "transformer", namespace: str | None = None,
                 max_queue: int = 10_000, timeout: float = 2.0, retry_seconds: float = 30.0):
        self.url = url
        self.inference_service = inference_service
        self.source = source or f"http://localhost/{inference_service}/{component}"
        self.component = component
        self.namespace = namespace or os.environ.get("POD_NAMESPACE", "default")
        self.max_queue = max_queue
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.retried = 0
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def emit(self, request_id: str, kind: str, body: bytes, endpoint: str = "") -> None:
        """Queue one event (``kind`` = ``request`` | ``response``); returns at once."""
        try:
            self._ensure_started()
            headers = {
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": request_id,
                "ce-type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
                "ce-source": self.source,
                "ce-time": datetime.now(timezone.utc).isoformat(),
                "ce-inferenceservicename": self.inference_service,
                "ce-namespace": self.namespace,
                "ce-component": self.component,
                "ce-endpoint": endpoint or self.component,
            }
            self._queue.put_nowait((headers, body))
        except asyncio.QueueFull:
            self.dropped += 1
        except Exception:  # noqa: BLE001 - logging must never break inference
            self.dropped += 1
            log.debug("could not queue inference log event", exc_info=True)

    async def _drain(self) -> None:
        assert self._queue is not None and self._client is not None
        while True:
            headers, body = await self._queue.get()
            try:
                await self._deliver(headers, body)
            finally:
                self._queue.task_done()

    async def _deliver(self, headers: dict, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_seconds
        delay = 0.1
        while True:
            try:
                resp = await self._client.post(self.url, content=body, headers=headers)
                if resp.status_code < 300:
                    self.sent += 1
                    return
                problem = f"answered {resp.status_code}"
                retry = resp.status_code >= 500 or resp.status_code == 429
            except Exception as exc:  # noqa: BLE001 - sink down or restarting: retry, then count
                problem, retry = f"unreachable ({exc})", True
            if not retry or loop.time() + delay > deadline:
                self.failed += 1
                if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                    log.warning("inference logger sink %s %s; event %s dropped, %d failures so far",
                                self.url, problem, headers.get("ce-id"), self.failed)
                return
            self.retried += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "failed": self.failed, "retried": self.retried,
                "queued": self._queue.qsize() if self._queue else 0}
