"""The local durable prediction log, and the thread that ships it to the bucket.

A server appends the rows of each answered request (:func:`~.schema.encode_rows`) to its open segment with one
``write(2)`` **before** the answer is sent. From then on the kernel holds the bytes: a SIGKILL, an OOM kill or
a crash of the server loses no row of an answered prediction. Segments are ``fsync``ed when sealed, so a crash
of the whole machine loses at most the rows written since the last seal (``flush_seconds``).

The segments of one directory (``$SPX_PREDICTION_LOG_DIR``, on the pod's volume):

* ``{name}.open``: the one segment a process appends to, ``flock``ed while that process lives;
* ``{name}.jsonl``: sealed, immutable, waiting to be shipped.

A thread seals the open segment every ``flush_seconds`` and ships the sealed ones, oldest first: each becomes
one parquet object per day, ``predictions/date=YYYY-MM-DD/{name}.parquet`` (:mod:`spx.core.layout`), PUT
write-once, and only then is the segment deleted. A segment is immutable and owns its keys, so shipping it
again after any failure (the bucket away, the process killed between the PUT and the delete) writes the same
object, which the write-once PUT turns into a no-op: every row reaches the bucket exactly once. On start, a
process seals the open segments of dead processes (their lock is free) and ships them with its own.

Bounded: with more than ``max_bytes`` not yet shipped (the bucket away for long), :meth:`PredictionLog.write`
raises :class:`LogUnavailable` and the server answers 503: no prediction is answered without its row.
"""

from __future__ import annotations

import fcntl
import functools
import io
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from spx.components.prediction_log.schema import LINE, TABLE
from spx.core import layout
from spx.core.errors import ImmutableObjectError, ServiceError

log = logging.getLogger(__name__)


class LogUnavailable(ServiceError):
    """The local log cannot take a row (full, or its disk refuses): the prediction is refused with 503."""


@functools.cache
def _metrics():
    """Prometheus metrics in the default registry (the servers' ``/metrics``), once per process."""
    from prometheus_client import Counter, Gauge

    rows = Counter("spx_prediction_log_rows", "prediction-log rows by outcome", ["outcome"])
    return rows, Gauge("spx_prediction_log_pending_bytes", "prediction-log bytes not yet shipped")


def _default_store():
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    store.ensure_bucket()
    return store


class PredictionLog:
    def __init__(
        self, directory, store_factory: Callable[[], object] = _default_store, flush_seconds=10.0, max_bytes=1 << 30
    ):
        self.dir, self.flush_seconds, self.max_bytes = Path(directory), flush_seconds, max_bytes
        self._store_factory, self._store = store_factory, None
        self._lock, self._stop, self._thread = threading.Lock(), threading.Event(), None
        self._fd: int | None = None
        self._path: Path | None = None
        self._rows_open = 0  # rows in the open segment
        self._pending = 0  # bytes on disk not yet shipped
        self._failing = False

    @classmethod
    def from_settings(cls) -> "PredictionLog | None":
        """The opened log a server writes when ``SPX_PREDICTION_LOG`` is on, else None."""
        from spx.core.settings import settings

        cfg = settings()
        serving = cfg.serving
        if serving.prediction_log:
            return cls(
                cfg.prediction_log_dir, flush_seconds=serving.log_flush_seconds, max_bytes=serving.log_max_bytes
            ).open()
        return None

    # -- the server's side ------------------------------------------------------------------------
    def open(self, background: bool = True) -> "PredictionLog":
        """Seal dead processes' segments (their lock is free), open ours, start the shipping thread."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in self.dir.glob("*.open"):
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(path, path.with_suffix(".jsonl"))
            except (BlockingIOError, FileNotFoundError):
                pass  # a live process owns it, or another process sealed it first
            finally:
                os.close(fd)
        self._pending = sum(p.stat().st_size for p in self.dir.glob("*.jsonl"))
        with self._lock:
            self._open_segment()
        if background:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def _open_segment(self) -> None:
        path = self.dir / f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}.open"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path, self._rows_open = fd, path, 0

    def write(self, lines: bytes, rows: int = 1) -> None:
        """Append the rows of one answered request (raises :class:`LogUnavailable`)."""
        with self._lock:
            if self._fd is None or self._pending + len(lines) > self.max_bytes:
                raise LogUnavailable(
                    f"the prediction log holds {self._pending} unshipped bytes in {self.dir} (limit {self.max_bytes}); "
                    "the bucket has not taken them: check the S3 endpoint"
                )
            try:
                written = os.write(self._fd, lines)
            except OSError as exc:
                raise LogUnavailable(f"cannot append to the prediction log {self._path}: {exc}") from None
            self._pending += written
            if written != len(lines):  # a full disk: the torn line is skipped when shipped
                raise LogUnavailable(f"the prediction log {self._path} took {written} of {len(lines)} bytes")
            self._rows_open += rows

    # -- sealing and shipping ----------------------------------------------------------------------
    def seal(self) -> None:
        """Close the open segment (when it holds rows) and start a new one."""
        with self._lock:
            if self._fd is None or not self._rows_open:
                return
            fd, path = self._fd, self._path
            self._open_segment()
            os.rename(path, path.with_suffix(".jsonl"))  # while we still hold its lock
        os.fsync(fd)
        os.close(fd)

    def ship(self, deadline: float | None = None) -> int:
        """Ship sealed segments, oldest first; returns the rows shipped. Raises what the store raises."""
        shipped = 0
        for path in sorted(self.dir.glob("*.jsonl")):
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # another process shipped it
            table = _table(data, path.name)
            self._store = self._store or self._store_factory()
            days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
            for day in pc.unique(days).to_pylist():
                buf = io.BytesIO()
                pq.write_table(table.filter(pc.equal(days, day)), buf)
                try:
                    self._store.put_bytes(layout.prediction_key(day, path.stem), buf.getvalue(), write_once=True)
                except ImmutableObjectError:  # shipped before, by another pyarrow: the key holds this segment
                    log.warning("prediction log: %s was shipped before; keeping it", path.stem)
            path.unlink(missing_ok=True)
            shipped += table.num_rows
            with self._lock:
                self._pending = max(0, self._pending - len(data))
        return shipped

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._cycle()

    def _cycle(self, deadline: float | None = None) -> None:
        rows, pending = _metrics()
        try:
            self.seal()
            rows.labels("shipped").inc(self.ship(deadline))
            if self._failing:
                log.info("prediction log: shipping again")
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - the rows stay on disk; the next cycle retries
            rows.labels("ship_failed").inc()
            if not self._failing:
                log.warning("prediction log: shipping to the bucket failed (%s); rows kept in %s", exc, self.dir)
            self._failing = True
        pending.set(self._pending)

    def close(self, timeout: float = 20.0) -> None:
        """Stop the thread, seal, ship for up to ``timeout`` seconds; what is left is shipped by the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._cycle(deadline=time.monotonic() + timeout)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                if not self._rows_open:
                    self._path.unlink(missing_ok=True)  # an empty segment: nothing to keep
                self._fd = None


def _table(data: bytes, name: str) -> pa.Table:
    """The rows of a segment with the parquet types. A torn or damaged line (a process killed in mid-write, a
    full disk: never answered) is skipped and reported; the other rows are kept."""
    try:
        options = pajson.ParseOptions(explicit_schema=LINE, unexpected_field_behavior="ignore")
        table = pajson.read_json(io.BytesIO(data), parse_options=options) if data.strip() else LINE.empty_table()
    except pa.ArrowInvalid:
        rows, bad = [], 0
        for line in filter(bytes.strip, data.split(b"\n")):
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                bad += 1
        log.warning("prediction log: %s: skipped %d torn line(s)", name, bad)
        table = pa.Table.from_pylist(rows, schema=LINE)
    return table.select(LINE.names).cast(TABLE)
