"""Start a process, wait until it is ready, stop it: one helper for every server spx runs locally.

Readiness polling and retries use tenacity (one policy, :func:`poll`); children run in their own session so
a stop reaches their whole process group, and each child's output goes to a log file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import random
import signal
import socket
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential, wait_fixed

from spx.core.errors import ServiceError

log = logging.getLogger(__name__)


class NotReady(Exception):
    """Raised by a readiness check that should be tried again."""


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, for a server started next.

    Chosen at random *below* the kernel's ephemeral range: ``bind(0)`` hands out ports from that range,
    where every outgoing connection on the machine also draws its local port, so a port picked that way
    could be taken by some client's socket before the server binds it (seen in CI: "address already in
    use"). Ports handed out once in this process are not handed out again.
    """
    low, high = 15000, max(_ephemeral_low() - 1, 15001)
    with _ports_lock:
        for _ in range(200):
            port = random.randint(low, high)
            if port in _handed_out:
                continue
            with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:  # crowded machine: any free port
        sock.bind((host, 0))
        return sock.getsockname()[1]


def poll(
    check: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.2,
    alive: Callable[[], bool] | None = None,
    what: str = "service",
) -> object:
    """Call ``check`` until it returns without raising :class:`NotReady` (or any ``OSError``/``requests``
    error), for at most ``timeout`` seconds; ``alive`` returning False stops early."""

    def attempt() -> object:
        if alive is not None and not alive():
            raise ServiceError(f"{what} exited before it was ready")
        return check()

    try:
        for tried in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            reraise=True,
            retry=retry_if_exception_type((NotReady, OSError, requests.RequestException)),
        ):
            with tried:
                return attempt()
    except (NotReady, OSError, requests.RequestException) as exc:
        raise ServiceError(f"{what} not ready after {timeout:.0f}s (last error: {exc})") from None
    raise AssertionError("unreachable")


def http_ok(url: str, ok: Sequence[int] = (200,)) -> Callable[[], None]:
    def check() -> None:
        status = requests.get(url, timeout=2).status_code
        if status not in ok:
            raise NotReady(f"{url} answered {status}")

    return check


def wait_http(
    url: str, timeout: float = 30.0, ok: Sequence[int] = (200,), proc: subprocess.Popen | None = None
) -> None:
    """Wait until ``url`` answers one of ``ok`` (and ``proc``, if given, is still running)."""
    poll(http_ok(url, ok), timeout=timeout, what=url, alive=(lambda: proc.poll() is None) if proc is not None else None)


class ManagedProcess:
    """A child process in its own session: output to a size-rotated log (``log_path``, ``.1`` … ``.{backups}``),
    an optional readiness check, a clean stop of its whole process group (TERM, then KILL), and restartable
    (:class:`Supervisor` starts it again after it exits).

    ``ready`` is a callable that raises (e.g. :class:`NotReady`) until the process serves; ``ready_url`` is a
    shortcut for :func:`http_ok` on that URL.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], object] | None = None,
        ready_url: str | None = None,
        ready_timeout: float = 60.0,
        max_log_bytes: int = 10 * 1024 * 1024,
        backups: int = 3,
    ):
        self.name, self.cmd, self.log_path, self.env, self.cwd = name, list(cmd), Path(log_path), env, cwd
        self.ready = ready or (http_ok(ready_url) if ready_url else None)
        self.ready_timeout, self.max_log_bytes, self.backups = ready_timeout, max_log_bytes, backups
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._pump: threading.Thread | None = None
        self._logger: logging.Logger | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _log(self) -> logging.Logger:
        if self._logger is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            logger = logging.getLogger(f"spx.child.{self.name}.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            handler = logging.handlers.RotatingFileHandler(
                self.log_path, maxBytes=self.max_log_bytes, backupCount=self.backups
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            self._logger = logger
        return self._logger

    def start(self, timeout: float | None = None) -> "ManagedProcess":
        logger = self._log()
        self.proc = proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.starts += 1

        def pump() -> None:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                logger.info(line.decode("utf-8", "replace").rstrip("\n"))
            proc.stdout.close()

        self._pump = threading.Thread(target=pump, name=f"log-{self.name}", daemon=True)
        self._pump.start()
        if self.ready is not None:
            try:
                poll(self.ready, timeout=timeout or self.ready_timeout, alive=self.alive, what=self.name)
            except ServiceError as exc:
                self.stop()
                raise ServiceError(f"{exc}; see {self.log_path}\n--- log tail ---\n{self.log_tail()}") from None
        log.debug("%s started (pid %s)", self.name, self.pid)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the process group; returns the exit code (None when it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._pump is not None:
            self._pump.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once (fault injection, or a stop that must not wait)."""
        if self.alive():
            self._signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(timeout=5)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Supervisor:
    """Keeps :class:`ManagedProcess` children running: one that exits is started again after an exponential
    backoff (tenacity's ``wait_exponential``: 1 s, 2 s, 4 s … ``max_backoff``; reset after ``stable_after``
    seconds of uptime). Call :meth:`check` periodically; ``report`` gets one line per event."""

    def __init__(
        self,
        children: list[ManagedProcess],
        report: Callable[[str], object] = print,
        max_backoff: float = 30.0,
        stable_after: float = 60.0,
        start_timeout: float = 90.0,
    ):
        self.children = list(children)
        self.report = report
        self.wait = wait_exponential(multiplier=1, min=1, max=max_backoff)
        self.stable_after = stable_after
        self.start_timeout = start_timeout
        self.restarts: dict[str, int] = {c.name: 0 for c in self.children}
        self._failures: dict[str, int] = {c.name: 0 for c in self.children}
        self._due: dict[str, float] = {}
        self._up_since: dict[str, float] = {c.name: time.monotonic() for c in self.children}

    def _backoff(self, name: str) -> float:
        return float(self.wait(SimpleNamespace(attempt_number=self._failures[name])))  # type: ignore[arg-type]

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.alive():
                if now - self._up_since.get(child.name, now) >= self.stable_after:
                    self._failures[child.name] = 0
                continue
            if child.name not in self._due:
                self._failures[child.name] += 1
                delay = self._backoff(child.name)
                self._due[child.name] = now + delay
                self.report(
                    f"{child.name} exited with code {child.returncode}; restarting in {delay:.0f}s "
                    f"(see {child.log_path})"
                )
                continue
            if now < self._due[child.name]:
                continue
            del self._due[child.name]
            try:
                child.start(timeout=self.start_timeout)
            except ServiceError as exc:  # try again after a longer wait
                self.report(f"{child.name} failed to restart: {str(exc).splitlines()[0]}")
                continue
            self.restarts[child.name] += 1
            self._up_since[child.name] = time.monotonic()
            self.report(f"{child.name} restarted (restart #{self.restarts[child.name]})")
