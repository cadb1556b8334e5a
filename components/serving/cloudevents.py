"""The transformer's inference logger: KServe-logger CloudEvents, batched, durable, never silent.

Each request and each response becomes one CloudEvent (built with the ``cloudevents`` SDK) with
KServe's logger attributes: ``id`` (the request id, shared by the request and its response),
``type`` (``org.kubeflow.serving.inference.request`` / ``…response``), ``source``, ``time`` and the
extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint``; the data is the
V2 JSON. The monitoring sink consumes exactly these.

Off the request path and batched:

* :meth:`InferenceLogger.emit` (called while serving) only puts ``(attributes, data)`` on an
  in-memory queue — no I/O, no serialisation.
* One background task takes up to ``batch_size`` events at a time and POSTs them as one CloudEvents
  JSON batch (``Content-Type: application/cloudevents-batch+json``), with ``Authorization: Bearer
  <token>`` when a token is set. The sink answers 200 only once every event of the batch is in its
  write-ahead log (it de-duplicates by ``id`` + ``type``), so one fsync covers a whole batch and
  logging keeps up with serving.
* A batch the sink does not acknowledge (refused, timeout, 5xx, 429, 401/403) is retried with
  exponential backoff (tenacity) for ``retry_seconds``; after that it is **spilled** to disk, not
  dropped.

Bounded memory, durable spill, counted drops:

* The queue holds at most ``max_queue`` events; beyond that (the sink is away or slower than the
  serving rate) events go straight to the spill.
* The spill is a directory of JSON-lines segments (``spill-*.jsonl``, each locked with ``flock``
  while a process owns it); when the sink answers again, segments are replayed oldest first and
  deleted once the sink has acknowledged all of their events. A restarted transformer replays what
  an earlier one left (a segment nobody holds a lock on).
* :meth:`close` (server shutdown) sends what is queued for up to ``close_timeout`` seconds and
  spills the rest, so a stop or restart loses nothing.
* An event is dropped only when the spill itself fails (disk full or unwritable) or would exceed
  ``max_spill_bytes``; every drop is counted, logged and exported as the Prometheus counter
  ``spx_inference_log_events_total{outcome="dropped"}`` on the server's ``/metrics``.

What is not covered: events still in the in-memory queue when the transformer process is killed
with SIGKILL (at most about one batch interval, ``linger`` seconds, at normal load).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson

from spx.core.settings import settings

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    """Prometheus metrics in the default registry (what KServe's ``/metrics`` exports); created once."""
    if not _METRICS:
        from prometheus_client import Counter, Gauge

        _METRICS["events"] = Counter(
            "spx_inference_log_events",
            "inference-log events by outcome (emitted, sent, spilled, replayed, rejected, dropped)",
            ["outcome"],
        )
        _METRICS["queue"] = Gauge("spx_inference_log_queue_depth", "inference-log events waiting in memory")
        _METRICS["spill"] = Gauge(
            "spx_inference_log_spill_bytes",
            "bytes of inference-log events spilled to disk and not yet acknowledged by the sink",
        )
    return _METRICS


class _Unacknowledged(Exception):
    """The sink did not take the batch (retryable)."""


class Spill:
    """Append-only JSON-lines segments of events the sink has not acknowledged yet."""

    def __init__(self, directory: str | Path, max_bytes: int):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._fh = None
        self._path: Path | None = None

    def size(self) -> int:
        try:
            return sum(p.stat().st_size for p in self.dir.glob("spill-*.jsonl"))
        except OSError:
            return 0

    def write(self, events: list[tuple[dict, Any]], sync: bool = True) -> None:
        """Append ``events``; raises OSError when the disk refuses or the spill is full."""
        lines = b"".join(
            orjson.dumps({"attributes": a, "data": d}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for a, d in events
        )
        if self.size() + len(lines) > self.max_bytes:
            raise OSError(f"spill {self.dir} would exceed {self.max_bytes} bytes")
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._path = self.dir / f"spill-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
            self._fh = open(self._path, "ab")
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fh.write(lines)
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def seal(self) -> None:
        """Close the segment being written, so that it can be replayed."""
        if self._fh is not None:
            self.sync()
            self._fh.close()  # releases the lock
            self._fh = None
            self._path = None

    def segments(self) -> list[Path]:
        """Sealed segments, oldest first (ours, and any an earlier process left behind)."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("spill-*.jsonl") if p != self._path)

    @staticmethod
    def read(path: Path) -> tuple[Any, list[tuple[dict, Any]]] | None:
        """(locked file handle, events) of a segment nobody else holds, else None."""
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return None
        events = []
        for line in fh.read().split(b"\n"):
            if not line:
                continue
            try:
                rec = orjson.loads(line)
                events.append((rec["attributes"], rec["data"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("spill %s: skipping a torn or unreadable line", path)
        return fh, events


class InferenceLogger:
    def __init__(
        self,
        url: str,
        inference_service: str,
        source: str | None = None,
        component: str = "transformer",
        namespace: str | None = None,
        max_queue: int = 10_000,
        timeout: float = 5.0,
        retry_seconds: float = 30.0,
        batch_size: int = 256,
        linger: float = 0.05,
        spill_dir: str | Path | None = None,
        token: str | None = None,
        max_spill_bytes: int = 1 << 30,
        close_timeout: float = 10.0,
        replay_interval: float = 2.0,
    ):
        self.url = url
        self.inference_service = inference_service
        self.source = source or f"http://localhost/{inference_service}/{component}"
        self.component = component
        self.namespace = namespace or settings().cluster.namespace
        self.max_queue = max_queue
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.batch_size = batch_size
        self.linger = linger
        self.token = token or None
        self.close_timeout = close_timeout
        self.replay_interval = replay_interval
        if spill_dir is None:
            from spx.core.settings import serving_settings

            spill_dir = serving_settings().logger_spill_dir
        self.spill = Spill(spill_dir, max_spill_bytes)
        self.counts = {"emitted": 0, "sent": 0, "spilled": 0, "replayed": 0, "rejected": 0, "dropped": 0, "retried": 0}
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None
        self._closing = False
        self._inflight: list[tuple[dict, Any]] = []
        self._sink_up = True
        self._last_replay_check = 0.0
        self._metrics = _metrics()
        self._emitted_unexported = 0  # emitted events not yet added to the Prometheus counter

    # -- request path -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the sender now (server startup), so that an earlier spill is replayed at once."""
        self._ensure_started()
        self._sink_up = False  # probe before replaying

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            if (
                self._task is not None
                and self._task.done()
                and not self._task.cancelled()
                and self._task.exception() is not None
            ):
                log.error("inference logger task died: %r; restarting it", self._task.exception())
            if self._queue is None:
                self._queue = asyncio.Queue(maxsize=self.max_queue)
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout)
            self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(self, request_id: str, kind: str, data: Any, endpoint: str = "") -> None:
        """Queue one event (``kind`` = ``request`` | ``response``; ``data`` = the V2 JSON as a dict
        or as bytes); returns at once."""
        if isinstance(data, (bytes, bytearray)):
            data = orjson.loads(data)
        attributes = {
            "specversion": "1.0",
            "id": request_id,
            "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
            "source": self.source,
            "time": datetime.now(timezone.utc).isoformat(),
            "inferenceservicename": self.inference_service,
            "namespace": self.namespace,
            "component": self.component,
            "endpoint": endpoint or self.component,
        }
        # counted here, exported by the sender with its next batch (no Prometheus call per request)
        self.counts["emitted"] += 1
        self._emitted_unexported += 1
        try:
            self._ensure_started()
            self._queue.put_nowait((attributes, data))
        except asyncio.QueueFull:  # the sink is away or slower than serving: keep it on disk
            self._to_spill([(attributes, data)], sync=False)
        except RuntimeError:  # no running event loop (e.g. called from a worker thread)
            self._to_spill([(attributes, data)], sync=True)

    def _export_counts(self) -> None:
        if self._emitted_unexported:
            n, self._emitted_unexported = self._emitted_unexported, 0
            self._metrics["events"].labels("emitted").inc(n)
        self._metrics["queue"].set(self._queue.qsize() if self._queue else 0)

    # -- background -----------------------------------------------------------------------------
    def _count(self, outcome: str, n: int = 1) -> None:
        self._export_counts()  # an event is counted emitted before it is counted anything else
        self.counts[outcome] += n
        self._metrics["events"].labels(outcome).inc(n)

    def _to_spill(self, events: list[tuple[dict, Any]], sync: bool = True) -> None:
        try:
            self.spill.write(events, sync=sync)
            self._count("spilled", len(events))
        except Exception as exc:  # noqa: BLE001 - the last resort failed: count and say so
            self._count("dropped", len(events))
            log.error(
                "inference logger: %d events DROPPED (spill failed: %s); %d dropped so far",
                len(events),
                exc,
                self.counts["dropped"],
            )
        self._metrics["spill"].set(self.spill.size())

    async def _next_batch(self, wait: float) -> list[tuple[dict, Any]]:
        assert self._queue is not None
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout=wait)
        except asyncio.TimeoutError:
            return []
        batch = [first]
        self._inflight = batch  # held events are never only in this frame (close() keeps them)
        self._drain_into(batch)
        if len(batch) < self.batch_size and not self._closing:
            # let the batch fill for ``linger`` seconds (one sleep, not one wait per event)
            await asyncio.sleep(self.linger)
            self._drain_into(batch)
        self._export_counts()
        return batch

    def _drain_into(self, batch: list) -> None:
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    def _body(self, events: list[tuple[dict, Any]]) -> bytes:
        from cloudevents.conversion import to_dict
        from cloudevents.http import CloudEvent

        return orjson.dumps([to_dict(CloudEvent(dict(a), d)) for a, d in events], option=orjson.OPT_SERIALIZE_NUMPY)

    async def _post(self, body: bytes) -> None:
        headers = {"content-type": BATCH_CONTENT_TYPE}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            resp = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Unacknowledged(f"unreachable ({type(exc).__name__}: {exc})") from None
        if resp.status_code >= 500 or resp.status_code in (401, 403, 408, 429):
            raise _Unacknowledged(f"answered {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 300:  # the sink says the batch itself is unusable: never retried
            self._count("rejected", body.count(b'"specversion"'))
            log.error(
                "inference logger: sink %s rejected a batch (%s): %s", self.url, resp.status_code, resp.text[:300]
            )
            return
        rejected = len((resp.json() or {}).get("rejected") or [])
        if rejected:
            self._count("rejected", rejected)
            log.error("inference logger: sink rejected %d events: %s", rejected, resp.text[:300])

    async def _send(self, events: list[tuple[dict, Any]], window: float) -> bool:
        """POST ``events`` as one batch, retried for ``window`` seconds. True when acknowledged."""
        from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_delay, wait_exponential

        body = self._body(events)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(window),
                reraise=False,
                wait=wait_exponential(multiplier=0.1, max=2.0),
                retry=retry_if_exception_type(_Unacknowledged),
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.counts["retried"] += 1
                    await self._post(body)
        except RetryError as exc:
            if self._sink_up:
                log.warning(
                    "inference logger: sink %s did not acknowledge %d events for %.0fs (%s); spilling to %s",
                    self.url,
                    len(events),
                    window,
                    exc.last_attempt.exception(),
                    self.spill.dir,
                )
            self._sink_up = False
            return False
        if not self._sink_up:
            log.info("inference logger: sink %s acknowledges again", self.url)
        self._sink_up = True
        return True

    async def _replay(self) -> None:
        """Send spilled segments (oldest first) while the sink acknowledges them."""
        self.spill.seal()
        for path in self.spill.segments():
            held = await asyncio.to_thread(Spill.read, path)
            if held is None:
                continue
            fh, events = held
            try:
                for i in range(0, len(events), self.batch_size):
                    chunk = events[i : i + self.batch_size]
                    if not await self._send(chunk, window=min(self.retry_seconds, 5.0)):
                        return  # the sink went away again; the segment stays
                    self._count("replayed", len(chunk))
                path.unlink(missing_ok=True)
                log.info("inference logger: replayed %d spilled events from %s", len(events), path.name)
            finally:
                fh.close()
        self._metrics["spill"].set(self.spill.size())

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch(wait=self.replay_interval)
            self._inflight = batch
            if batch:
                # a sink known to be away gets one attempt per batch (then the batch is spilled), so
                # the queue keeps draining; the full retry window applies while it is answering
                if await self._send(batch, window=self.retry_seconds if self._sink_up else 0.0):
                    self._count("sent", len(batch))
                else:
                    await asyncio.to_thread(self._to_spill, batch)
            self._inflight = []
            now = time.monotonic()
            if now - self._last_replay_check >= self.replay_interval and (self._queue.qsize() < self.batch_size):
                self._last_replay_check = now
                if self.spill.segments() or (self.spill._fh is not None):
                    if await self._probe():
                        await self._replay()

    async def _probe(self) -> bool:
        """Is the sink answering? (a cheap request, so that a dead sink is not retried at length)."""
        if self._sink_up:
            return True
        try:
            await self._post(self._body([]))
        except _Unacknowledged:
            return False
        self._sink_up = True
        return True

    async def close(self) -> None:
        """Send what is queued (for up to ``close_timeout`` seconds), spill the rest. The batch being
        sent when the sender is stopped is kept too (the sink de-duplicates a re-send)."""
        self._closing = True
        deadline = time.monotonic() + self.close_timeout
        if self._task is not None and not self._task.done():
            # let the sender drain the queue while the sink answers
            while (
                self._queue is not None
                and (not self._queue.empty() or self._inflight)
                and self._sink_up
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        pending: list[tuple[dict, Any]] = list(self._inflight)
        self._inflight = []
        if self._queue is not None:
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
        while pending and self._client is not None and time.monotonic() < deadline:
            chunk, pending = pending[: self.batch_size], pending[self.batch_size :]
            window = max(0.0, min(2.0, deadline - time.monotonic())) if self._sink_up else 0.0
            if await self._send(chunk, window=window):
                self._count("sent", len(chunk))
            else:
                pending = chunk + pending
                break
        if pending:
            self._to_spill(pending)
            log.warning(
                "inference logger: %d events spilled to %s at shutdown (sink %s)",
                len(pending),
                self.spill.dir,
                self.url,
            )
        elif self._client is not None and time.monotonic() < deadline and (self.spill.segments() or self.spill._fh):
            try:  # the sink answers: hand it what an earlier outage left on disk
                await asyncio.wait_for(self._replay(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        self.spill.seal()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        log.info("inference logger closed: %s", self.stats())

    def stats(self) -> dict:
        self._export_counts()
        return {**self.counts, "queued": self._queue.qsize() if self._queue else 0, "spill_bytes": self.spill.size()}
