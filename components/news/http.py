"""A polite HTTP getter: a minimum interval between requests, retries with exponential backoff.

Retries connection errors, timeouts, HTTP 429 and 5xx (honouring ``Retry-After``); any other
4xx is final. Shared by the GDELT and RSS clients and the optional full-text fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

from spx.core.errors import ServiceError
from spx.core.http import RetryableHTTP, http_retrying

log = logging.getLogger(__name__)

USER_AGENT = "spx-kfp-news/0.1 (+research; respects rate limits)"


class FetchError(ServiceError):
    """A request that failed for good (after retries, or with a final status)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetryableResponse(RuntimeError):
    """Raised by a response check to ask for a retry (e.g. GDELT's plain-text rate-limit reply)."""


@dataclass
class PoliteSession:
    min_interval: float = 0.0  # seconds between request starts
    max_retries: int = 4
    backoff: float = 1.0  # first retry waits backoff, then x2 each time (+ jitter)
    max_backoff: float = 60.0
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    _last: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.session.headers.setdefault("User-Agent", USER_AGENT)

    def _throttle(self) -> None:
        with self._lock:
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last = time.monotonic()

    def get(
        self, url: str, *, params: dict | None = None, check: Callable[[requests.Response], None] | None = None
    ) -> requests.Response:
        """GET with throttling and retries (tenacity; 429/5xx/connection errors, or ``check`` raising
        RetryableResponse); a server's ``Retry-After`` sets the wait."""

        def once() -> requests.Response:
            self._throttle()
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RetryableHTTP(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                raise RetryableHTTP(f"HTTP {resp.status_code}", resp.headers.get("Retry-After"))
            if resp.status_code >= 400:
                raise FetchError(
                    f"GET {resp.url} failed with HTTP {resp.status_code}: {resp.text[:200]!r}", resp.status_code
                )
            try:
                if check is not None:
                    check(resp)
            except RetryableResponse as exc:
                raise RetryableHTTP(str(exc)) from exc
            return resp

        retrying = http_retrying(
            max_retries=self.max_retries,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            sleep=self.sleep,
            what=f"GET {url}",
        )
        try:
            return retrying(once)
        except RetryableHTTP as exc:
            raise FetchError(f"GET {url} failed after {self.max_retries + 1} attempts: {exc}") from None
