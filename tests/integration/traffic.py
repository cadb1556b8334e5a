"""Clients calling a server's V2 infer endpoint in threads while a test kills things, and the check of the
prediction log they are counted against. Shared by the kill tests of the transformer and of ``spx serve``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import requests

INSTRUMENTS = ("SPX500_USD", "NAS100_USD", "US30_USD")


def infer_body(rid: str, instrument: str = INSTRUMENTS[0]) -> dict:
    """A V2 request for one instrument's prediction, with the request id the prediction log is counted by."""
    return {"id": rid, "inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": [instrument]}]}


class Traffic:
    """``clients`` threads, each on its own connection, sending request ids ``{prefix}-{k}-{i:05d}`` until the
    block ends: ``answered`` holds the ids answered 200, ``unanswered`` those refused or broken."""

    def __init__(self, url: str, prefix: str, clients: int = 1) -> None:
        self.url, self.prefix, self.clients = url, prefix, clients
        self.answered: list[str] = []
        self.unanswered: list[str] = []
        self.last = ""  # the last refusal, for the message when nothing is answered
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(clients)]

    def _run(self, k: int) -> None:
        session, i = requests.Session(), 0
        while not self._stop.is_set():
            rid = f"{self.prefix}-{k}-{i:05d}"
            try:
                response = session.post(self.url, json=infer_body(rid, INSTRUMENTS[i % 3]), timeout=10)
                if response.status_code == 200:
                    self.answered.append(rid)
                else:
                    self.unanswered.append(rid)
                    self.last = f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as e:
                self.unanswered.append(rid)
                self.last = repr(e)[:200]
                time.sleep(0.05)  # the server is down
            i += 1

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_answered(self, more: int, timeout: float = 180) -> None:
        """Until ``more`` further requests are answered 200; a clear failure, not a hang, when they are not."""
        target, deadline = len(self.answered) + more, time.monotonic() + timeout
        while len(self.answered) < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.answered)} of {target} requests answered 200 in {timeout:.0f} s, "
                    f"{len(self.unanswered)} not; the last refusal: {self.last}"
                )
            time.sleep(0.05)

    def check_logged_once(self, logged: Iterable[str], kills: int) -> None:
        """Every request answered 200 has exactly one row. The row is written before the answer leaves, so a kill
        may catch a request between the two: it has a row and no answer. Those are the only other rows allowed,
        at most one per client and kill, and each must be a request whose client saw it fail."""
        got = list(logged)
        missing = set(self.answered) - set(got)
        caught = set(got) - set(self.answered)
        assert len(got) == len(set(got)), f"{len(got) - len(set(got))} rows are in the log twice"
        assert not missing, f"{len(missing)} of {len(self.answered)} answered are not logged: {sorted(missing)[:10]}"
        assert caught <= set(self.unanswered), f"rows for requests never sent: {sorted(caught - set(self.unanswered))}"
        assert len(caught) <= self.clients * kills, f"more rows without an answer than requests in flight: {caught}"
