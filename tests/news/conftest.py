"""Fixtures for the news tests: a loopback HTTP server replaying GDELT / RSS / article responses,
and a tiny BERT sequence classifier built from a config (random weights; plumbing, not accuracy)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.news.helpers import FIXTURES, build_tiny_model


@dataclass
class Recorder:
    """What the loopback server saw and what it should do next."""

    requests: list[tuple[str, dict]] = field(default_factory=list)
    rate_limit_first: int = 0  # answer the first N GDELT calls with GDELT's rate-limit text
    server_errors_first: int = 0  # answer the first N GDELT calls with HTTP 503
    full_windows: bool = False  # answer windows longer than 1 h with 250 articles
    gdelt_error_text: str = ""  # answer GDELT with this plain-text error


def _gdelt_body(params: dict, rec: Recorder) -> tuple[int, str, str]:
    start = params["startdatetime"][0]
    end = params["enddatetime"][0]
    if rec.gdelt_error_text:
        return 200, "text/html", rec.gdelt_error_text
    if rec.rate_limit_first > 0:
        rec.rate_limit_first -= 1
        return (
            429,
            "text/plain",
            ("Please limit requests to one every 5 seconds or contact kalev.leetaru5@gmail.com for larger queries."),
        )
    if rec.server_errors_first > 0:
        rec.server_errors_first -= 1
        return 503, "text/plain", "Service Unavailable"
    if rec.full_windows:
        from datetime import datetime

        a = datetime.strptime(start, "%Y%m%d%H%M%S")
        b = datetime.strptime(end, "%Y%m%d%H%M%S")
        n = 250 if (b - a).total_seconds() > 3600 else 3
        arts = [
            {
                "url": f"https://full.example.com/{start}/{i}",
                "url_mobile": "",
                "title": f"Stocks story {i} in window {start}",
                "seendate": start[:8] + "T" + start[8:] + "Z",
                "socialimage": "",
                "domain": "full.example.com",
                "language": "English",
                "sourcecountry": "United States",
            }
            for i in range(n)
        ]
        return 200, "application/json", json.dumps({"articles": arts})
    day = f"{start[:4]}-{start[4:6]}-{start[6:8]}"
    fixture = FIXTURES / f"gdelt_artlist_{day}.json"
    if not fixture.exists():
        return 200, "application/json", "{}"
    data = json.loads(fixture.read_text())
    lo, hi = start[:8] + "T" + start[8:] + "Z", end[:8] + "T" + end[8:] + "Z"
    # undated articles (malformed on purpose) come with the first window of their day only
    data["articles"] = [
        a for a in data["articles"] if (lo <= a["seendate"] < hi) or (not a["seendate"] and start.endswith("000000"))
    ]
    return 200, "application/json", json.dumps(data)


@pytest.fixture()
def news_http():
    """A loopback server: /api/v2/doc/doc (GDELT), /feeds/*.xml (RSS), /article/*, /broken."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            params = parse_qs(parts.query)
            rec.requests.append((parts.path, params))
            if parts.path == "/api/v2/doc/doc":
                status, ctype, body = _gdelt_body(params, rec)
            elif parts.path == "/feeds/markets.xml":
                status, ctype, body = 200, "application/rss+xml", (FIXTURES / "rss_markets.xml").read_text()
            elif parts.path.startswith("/article/"):
                status, ctype, body = 200, "text/html", (FIXTURES / "article_page.html").read_text()
            elif parts.path == "/feeds/garbage.xml":
                status, ctype, body = 200, "text/html", "<html><body>not a feed"
            else:
                status, ctype, body = 404, "text/plain", "not found"
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-finbert"))


@pytest.fixture()
def store(s3_env, monkeypatch):
    """An ObjectStore on a fresh bucket of the loopback S3 server (tests here share no objects)."""
    import uuid

    from spx.core.settings import S3Settings
    from spx.core.storage import ObjectStore

    monkeypatch.setenv("SPX_BUCKET", f"news-{uuid.uuid4().hex[:12]}")
    st = ObjectStore(S3Settings.from_env())
    st.ensure_bucket()
    return st
