"""Start a process, wait until it is ready, stop it: one helper for every server spx runs locally.

Readiness polling and retries use tenacity (one policy, :func:`poll`); children run in their own session so
a stop reaches their whole process group, and each child's output goes to a log file.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Callable, Sequence

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from spx.core.errors import ServiceError

log = logging.getLogger(__name__)


class NotReady(Exception):
    """Raised by a readiness check that should be tried again."""


def free_port(host: str = "127.0.0.1") -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], object], *, timeout: float, interval: float = 0.2,
         alive: Callable[[], bool] | None = None, what: str = "service") -> object:
    """Call ``check`` until it returns without raising :class:`NotReady` (or any ``OSError``/``requests``
    error), for at most ``timeout`` seconds; ``alive`` returning False stops early."""

    def attempt() -> object:
        if alive is not None and not alive():
            raise ServiceError(f"{what} exited before it was ready")
        return check()

    try:
        for tried in Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval), reraise=True,
                              retry=retry_if_exception_type((NotReady, OSError, requests.RequestException))):
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


def wait_http(url: str, timeout: float = 30.0, ok: Sequence[int] = (200,),
              proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers one of ``ok`` (and ``proc``, if given, is still running)."""
    poll(http_ok(url, ok), timeout=timeout, what=url,
         alive=(lambda: proc.poll() is None) if proc is not None else None)


class ManagedProcess:
    """A child process with a log file, a readiness check and a clean stop (TERM, then KILL)."""

    def __init__(self, name: str, cmd: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, ready: Callable[[], object] | None = None, ready_timeout: float = 60.0):
        self.name, self.cmd, self.log_path, self.env, self.cwd = name, list(cmd), Path(log_path), env, cwd
        self.ready, self.ready_timeout = ready, ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        if self.ready is not None:
            try:
                poll(self.ready, timeout=self.ready_timeout, alive=self.alive, what=self.name)
            except ServiceError as exc:
                self.stop()
                raise ServiceError(f"{exc}; see {self.log_path}") from None
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
        code = self.proc.returncode
        self.proc = None
        return code

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

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
