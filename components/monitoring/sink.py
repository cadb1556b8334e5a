"""Prediction-log sink: receives KServe inference-logger CloudEvents, writes parquet batches.

Delivery guarantee: **at-least-once into the bucket, de-duplicated by request id.**

* Every accepted event is appended to a local write-ahead log (one JSON line, ``fsync``'d) *before*
  the HTTP 200 is returned. A CloudEvents JSON batch (``application/cloudevents-batch+json``, what
  the spx transformer's logger sends) is appended with one ``fsync`` for the whole batch and
  acknowledged only once all of it is durable. The sender must retry what gets no 200: the spx
  transformer's logger does (with backoff, then a durable spill it replays). **KServe's own HTTP
  inference logger does not**: it sends each CloudEvent once and only logs a non-200
  (``pkg/logger/worker.go``), so events it posts while the sink is down are lost (docs/monitoring.md).
* Writers authenticate with a shared token (``Authorization: Bearer <token>``, ``--token`` /
  ``$SPX_SINK_TOKEN``); without a token the sink only listens on loopback.
* Requests and responses are paired by ``ce-id``; complete pairs are buffered and written as one
  parquet object per day, ``predictions/date=YYYY-MM-DD/{batch-id}.parquet``, when the buffer holds
  ``batch_rows`` rows or every ``flush_interval`` seconds.
* A flush first *rotates* the WAL (a new segment receives copies of the still-unpaired events), then
  writes the batch, then records the written request ids in ``committed.log`` (``fsync``'d), and
  only then deletes the old segments. On start the WAL is replayed: ids already committed are
  skipped, everything else is re-buffered. A crash at any point therefore loses nothing; the only
  window that can write a row twice (between the PUT and the commit record) is covered by
  :func:`~spx.components.serving.prediction_log.read_predictions`, which de-duplicates on read.
* An event whose partner never arrives is written after ``pair_timeout`` seconds with status
  ``no_response`` / ``no_request`` rather than kept forever.

Run it: ``python -m spx.components.monitoring.sink --port 8085 --wal-dir /var/lib/spx-sink`` or
``spx sink`` (WAL default ``$SPX_HOME/sink-wal``, the directory ``spx serve`` uses). Endpoints:
``POST /`` (any path) for events, ``GET /healthz``, ``POST /flush`` (token required for both POSTs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from spx.components.serving.prediction_log import (
    PREFIX,
    EventError,
    LoggedEvent,
    batch_key,
    is_batch,
    parse_batch,
    parse_event,
    rows_from_pair,
    rows_to_frame,
)

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Append-only JSON-lines segments ``wal-{seq:012d}.jsonl``; each append is fsync'd."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = None
        self.seq = 0

    def segments(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.dir.glob("wal-*.jsonl"):
            try:
                out.append((int(p.stem.split("-", 1)[1]), p))
            except ValueError:
                continue
        return sorted(out)

    def replay(self) -> Iterator[dict]:
        """Records of all existing segments, oldest first. A torn last line (a write that was
        never fsync'd, hence never acknowledged) is skipped."""
        for _, path in self.segments():
            with open(path, "rb") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.endswith(b"\n"):
                        log.warning("WAL %s: skipping torn final line %d (never acknowledged)", path, lineno)
                        break
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        log.warning("WAL %s: skipping unreadable line %d", path, lineno)

    def open_new(self, carry: list[dict] | None = None) -> int:
        """Start a new segment (optionally seeded with ``carry`` records); returns its number."""
        segs = self.segments()
        seq = (segs[-1][0] + 1) if segs else 1
        path = self.dir / f"wal-{seq:012d}.jsonl"
        fh = open(path, "ab", buffering=0)
        if carry:
            fh.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in carry))
        os.fsync(fh.fileno())
        _fsync_dir(self.dir)
        old, self._fh, self.seq = self._fh, fh, seq
        if old is not None:
            old.close()
        return seq

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """Append ``records`` with one write and one fsync."""
        if self._fh is None:
            raise RuntimeError("WAL not open")
        if not records:
            return
        self._fh.write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
        os.fsync(self._fh.fileno())

    def drop_before(self, seq: int) -> None:
        for s, path in self.segments():
            if s < seq:
                path.unlink(missing_ok=True)
        _fsync_dir(self.dir)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class CommitLog:
    """Request ids already written to the bucket (bounded; used to skip replays and retries)."""

    def __init__(self, path: Path, keep: int = 200_000):
        self.path = Path(path)
        self.keep = keep
        self.ids: OrderedDict[str, None] = OrderedDict()
        if self.path.exists():
            with open(self.path, "rb") as fh:
                for line in fh:
                    if line.endswith(b"\n"):
                        self.ids[line[:-1].decode()] = None
            while len(self.ids) > keep:
                self.ids.popitem(last=False)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(b"".join(i.encode() + b"\n" for i in self.ids))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        self._fh = open(self.path, "ab", buffering=0)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self.ids

    def add(self, request_ids: list[str]) -> None:
        if not request_ids:
            return
        self._fh.write(b"".join(i.encode() + b"\n" for i in request_ids))
        os.fsync(self._fh.fileno())
        for i in request_ids:
            self.ids[i] = None
        while len(self.ids) > self.keep:
            self.ids.popitem(last=False)

    def close(self) -> None:
        self._fh.close()


class PredictionSink:
    """The sink's state machine, independent of HTTP (the web app below is a thin shell)."""

    def __init__(
        self,
        wal_dir: str | Path,
        store_factory: Callable[[], object] | None = None,
        batch_rows: int = 500,
        flush_interval: float = 30.0,
        pair_timeout: float = 300.0,
        prefix: str = PREFIX,
    ):
        self.wal = WriteAheadLog(wal_dir)
        self.commits = CommitLog(Path(wal_dir) / "committed.log")
        self._store_factory = store_factory or _default_store
        self._store = None
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.pair_timeout = pair_timeout
        self.prefix = prefix
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, dict[str, dict]] = {}  # id -> {type: wal record}
        self._complete: dict[str, dict[str, dict]] = {}  # id -> {type: wal record}
        self._buffered_rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {
            "accepted": 0,
            "duplicates": 0,
            "rejected": 0,
            "rows_written": 0,
            "batches_written": 0,
            "flush_errors": 0,
            "replayed": 0,
        }
        self.last_error: str | None = None

    @property
    def store(self):
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, background: bool = True) -> "PredictionSink":
        replayed = 0
        for record in self.wal.replay():
            rid, typ = record.get("id"), record.get("type")
            if not rid or rid in self.commits:
                continue
            slot = self._complete.get(rid) or self._pending.setdefault(rid, {})
            if typ in slot:
                continue
            slot[typ] = record
            replayed += 1
            self._promote(rid)
        self.stats["replayed"] = replayed
        # new segment seeded with nothing: the replayed segments stay until the next good flush
        self.wal.open_new()
        if replayed:
            log.info(
                "replayed %d events from the WAL (%d complete, %d waiting for a partner)",
                replayed,
                len(self._complete),
                len(self._pending),
            )
        if background:
            self._thread = threading.Thread(target=self._run, name="sink-flusher", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        try:
            self.flush()
        finally:
            self.wal.close()
            self.commits.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep the flusher alive; state is intact
                log.exception("flush failed; will retry")

    # -- ingest ---------------------------------------------------------------------------------
    def _promote(self, rid: str) -> None:
        slot = self._pending.get(rid)
        if slot is not None and len(slot) == 2:
            self._complete[rid] = self._pending.pop(rid)
            first = next(iter(slot.values()))
            self._buffered_rows += max(1, int(first.get("n_rows") or 1))

    def accept(self, event: LoggedEvent) -> str:
        """Make ``event`` durable (WAL) and buffer it. Returns ``accepted`` or ``duplicate``."""
        return self.accept_many([event])[0]

    def accept_many(self, events: list[LoggedEvent]) -> list[str]:
        """Make ``events`` durable (one WAL write + fsync) and buffer them; ``accepted`` or
        ``duplicate`` per event."""
        records = []
        for event in events:
            record = event.to_record()
            if event.is_request:
                record["n_rows"] = _n_rows(event.data)
            records.append(record)
        out: list[str] = []
        with self._lock:
            fresh = []
            seen = set()
            for event, record in zip(events, records):
                rid, typ = event.id, event.type
                if (
                    rid in self.commits
                    or typ in self._complete.get(rid, {})
                    or typ in self._pending.get(rid, {})
                    or (rid, typ) in seen
                ):
                    self.stats["duplicates"] += 1
                    out.append("duplicate")
                    continue
                seen.add((rid, typ))
                fresh.append((event, record))
                out.append("accepted")
            self.wal.append_many([r for _, r in fresh])  # durable before we acknowledge
            for event, record in fresh:
                self._pending.setdefault(event.id, {})[event.type] = record
                self._promote(event.id)
            self.stats["accepted"] += len(fresh)
            full = self._buffered_rows >= self.batch_rows
        if full:
            self._wake.set()
        return out

    # -- flush ----------------------------------------------------------------------------------
    def flush(self, include_unpaired: bool = False) -> list[str]:
        """Write buffered pairs (and timed-out halves) to the bucket. Returns the object URIs."""
        with self._flush_lock:
            now = time.time()
            with self._lock:
                batch = self._complete
                self._complete = {}
                self._buffered_rows = 0
                for rid in list(self._pending):
                    slot = self._pending[rid]
                    age = now - min(float(r.get("received_at") or now) for r in slot.values())
                    if include_unpaired or age >= self.pair_timeout:
                        batch[rid] = self._pending.pop(rid)
                carry = [r for slot in self._pending.values() for r in slot.values()]
                if not batch:
                    return []
                new_seq = self.wal.open_new(carry)
            try:
                uris = self._write(batch)
            except Exception as exc:
                with self._lock:  # put it back; its WAL segments were not deleted
                    for rid, slot in batch.items():
                        self._complete.setdefault(rid, {}).update(slot)
                        self._buffered_rows += max(1, int(next(iter(slot.values())).get("n_rows") or 1))
                self.stats["flush_errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("writing %d logged inferences failed (kept in WAL): %s", len(batch), exc)
                raise
            self.commits.add(list(batch))
            self.wal.drop_before(new_seq)
            return uris

    def _write(self, batch: dict[str, dict[str, dict]]) -> list[str]:
        rows = []
        for rid, slot in batch.items():
            req = slot.get("org.kubeflow.serving.inference.request")
            resp = slot.get("org.kubeflow.serving.inference.response")
            try:
                rows.extend(
                    rows_from_pair(
                        LoggedEvent.from_record(req) if req else None, LoggedEvent.from_record(resp) if resp else None
                    )
                )
            except EventError as exc:  # keep the evidence rather than dropping it
                log.warning("request %s: payload not understood (%s); logged as status=unparsed", rid, exc)
                first = req or resp
                rows.append(
                    {
                        "request_id": rid,
                        "row_index": 0,
                        "timestamp": pd.Timestamp(first.get("received_at") or time.time(), unit="s", tz="UTC"),
                        "inputs": json.dumps(req.get("data") if req else None, default=str),
                        "outputs": json.dumps(resp.get("data") if resp else None, default=str),
                        "status": "unparsed",
                    }
                )
        df = rows_to_frame(rows)
        batch_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}"
        uris = []
        for day, part in df.groupby(df["timestamp"].dt.date, sort=True):
            key = batch_key(day, batch_id, self.prefix)
            uris.append(self.store.put_parquet(key, part.reset_index(drop=True), write_once=True).uri)
        self.stats["rows_written"] += len(df)
        self.stats["batches_written"] += 1
        log.info("wrote %d rows (%d inferences) -> %s", len(df), len(batch), ", ".join(uris))
        return uris

    def health(self) -> dict:
        with self._lock:
            return {
                "status": "ok",
                "pending": len(self._pending),
                "buffered": len(self._complete),
                "wal_segment": self.wal.seq,
                "last_error": self.last_error,
                **self.stats,
            }


def _n_rows(body: object) -> int:
    """Instances in a request body (V2 first tensor's leading dim, or V1 ``instances``)."""
    if not isinstance(body, dict):
        return 1
    try:
        inputs = body.get("inputs")
        if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
            shape = inputs[0].get("shape") or [1]
            return max(1, int(shape[0]))
        if isinstance(body.get("instances"), list):
            return max(1, len(body["instances"]))
    except (TypeError, ValueError):
        pass
    return 1


def _default_store():
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    store.ensure_bucket()
    return store


# -- HTTP shell -----------------------------------------------------------------------------------


def _authorized(request, token: str | None) -> bool:
    import hmac

    if not token:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def create_app(sink: PredictionSink, manage_lifecycle: bool = True, token: str | None = None):
    """A Starlette app around ``sink``. With ``manage_lifecycle`` the app starts and closes it.
    With ``token`` every POST must carry ``Authorization: Bearer <token>`` (else 401)."""
    import contextlib

    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"error": "missing or wrong bearer token (Authorization: Bearer <SPX_SINK_TOKEN>)"},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    async def receive(request: Request) -> JSONResponse:
        if not _authorized(request, token):
            return unauthorized()
        body = await request.body()
        now = time.time()
        if is_batch(request.headers):
            try:
                events, rejected = parse_batch(body, received_at=now)
            except EventError as exc:
                sink.stats["rejected"] += 1
                return JSONResponse({"error": str(exc)}, status_code=400)
            sink.stats["rejected"] += len(rejected)
            try:
                statuses = await anyio.to_thread.run_sync(sink.accept_many, events)
            except OSError as exc:  # WAL not writable: refuse, so the sender keeps the events
                log.error("WAL append failed: %s", exc)
                return JSONResponse({"error": f"cannot persist events: {exc}"}, status_code=503)
            return JSONResponse(
                {
                    "accepted": statuses.count("accepted"),
                    "duplicates": statuses.count("duplicate"),
                    "rejected": rejected,
                }
            )
        try:
            event = parse_event(request.headers, body, received_at=now)
        except EventError as exc:
            sink.stats["rejected"] += 1
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            status = sink.accept(event)
        except OSError as exc:  # WAL not writable: refuse, so the sender keeps the event
            log.error("WAL append failed: %s", exc)
            return JSONResponse({"error": f"cannot persist event: {exc}"}, status_code=503)
        return JSONResponse({"status": status, "id": event.id})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(sink.health())

    async def flush(request: Request) -> JSONResponse:
        if not _authorized(request, token):
            return unauthorized()
        all_ = request.query_params.get("all", "") in ("1", "true", "yes")
        try:
            uris = await anyio.to_thread.run_sync(lambda: sink.flush(include_unpaired=all_))
        except Exception as exc:  # noqa: BLE001
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=503)
        return JSONResponse({"written": uris})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if manage_lifecycle:
            sink.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                sink.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/flush", flush, methods=["POST"]),
        Route("/", receive, methods=["POST"]),
        Route("/{path:path}", receive, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def serve(
    host: str = "127.0.0.1",
    port: int = 8085,
    wal_dir: str | Path | None = None,
    batch_rows: int = 500,
    flush_interval: float = 30.0,
    pair_timeout: float = 300.0,
    prefix: str = PREFIX,
    token: str | None = None,
    allow_anonymous: bool = False,
) -> None:
    import uvicorn

    from spx.core.settings import serving_settings

    cfg = serving_settings()
    token = cfg.sink_token if token is None else token
    if not token and not _loopback(host) and not allow_anonymous:
        raise SystemExit(
            f"refusing to listen on {host} without a writer token: set SPX_SINK_TOKEN (or --token), "
            "bind 127.0.0.1, or pass --allow-anonymous (only for KServe's own logger, which cannot "
            "send a token)"
        )
    if not token:
        log.warning("no writer token (SPX_SINK_TOKEN): anyone who can reach %s:%d may post events", host, port)
    wal_dir = Path(wal_dir) if wal_dir else cfg.sink_wal_dir
    log.info("prediction-log sink on %s:%d, write-ahead log %s", host, port, wal_dir)
    sink = PredictionSink(
        wal_dir, batch_rows=batch_rows, flush_interval=flush_interval, pair_timeout=pair_timeout, prefix=prefix
    )
    uvicorn.run(
        create_app(sink, token=token),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_keep_alive=15,
        h11_max_incomplete_event_size=64 * 1024,
    )


def main(argv: list[str] | None = None) -> None:
    from spx.core.logs import setup_logging
    from spx.core.settings import settings

    cfg = settings()
    p = argparse.ArgumentParser(description="spx prediction-log sink (KServe inference logger target)")
    p.add_argument(
        "--host",
        default=cfg.sink.host or cfg.serving.host,
        help="bind address (default loopback; 0.0.0.0 in a pod, which requires a token)",
    )
    p.add_argument("--port", type=int, default=cfg.sink.port)
    p.add_argument("--wal-dir", default=str(cfg.sink_wal_dir))
    p.add_argument("--batch-rows", type=int, default=cfg.sink.batch_rows)
    p.add_argument("--flush-interval", type=float, default=cfg.sink.flush_interval)
    p.add_argument("--pair-timeout", type=float, default=cfg.sink.pair_timeout)
    p.add_argument("--prefix", default=PREFIX)
    p.add_argument("--token", default=None, help="writers' bearer token (default $SPX_SINK_TOKEN)")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="accept unauthenticated writers on a non-loopback address (KServe's agent logger "
        "cannot send a token); insecure",
    )
    a = p.parse_args(argv)
    setup_logging()
    serve(
        a.host,
        a.port,
        a.wal_dir,
        a.batch_rows,
        a.flush_interval,
        a.pair_timeout,
        a.prefix,
        token=a.token,
        allow_anonymous=a.allow_anonymous,
    )


if __name__ == "__main__":
    main()
