"""The one retry policy for outbound HTTP (news APIs, OANDA): tenacity, exponential backoff with jitter, and a
server's ``Retry-After`` honoured. A client raises :class:`RetryableHTTP` for an outcome worth retrying
(429/5xx, a dropped connection, a body its check refuses); anything else propagates at once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryableHTTP(Exception):
    """A retryable outcome, with the server's ``Retry-After`` (seconds) when it sent one."""

    def __init__(self, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def backoff_delay(attempt: int, retry_after: str | None, *, backoff: float, max_backoff: float) -> float:
    """``Retry-After`` when given, else ``backoff`` × 2^attempt plus up to 25 % jitter, capped."""
    if retry_after:
        try:
            return min(max_backoff, max(0.0, float(retry_after)))
        except ValueError:
            pass
    base = backoff * (2**attempt)
    return min(max_backoff, base + random.uniform(0, base / 4))


def http_retrying(
    *,
    max_retries: int,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "request",
) -> Retrying:
    """Retry :class:`RetryableHTTP` up to ``max_retries`` times; the last one is re-raised."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_delay(
            state.attempt_number - 1, getattr(exc, "retry_after", None), backoff=backoff, max_backoff=max_backoff
        )

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s; retry %d/%d in %.1fs",
            what,
            exc,
            state.attempt_number,
            max_retries,
            state.next_action.sleep if state.next_action else 0.0,
        )

    return Retrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait,
        sleep=sleep,
        reraise=True,
        retry=retry_if_exception_type(RetryableHTTP),
        before_sleep=warn,
    )
