"""A loopback HTTP peer speaking the KFP v2beta1 REST API subset the trigger uses; records every call."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PIPELINE_ID = "pl-0001"
VERSION_ID = "pv-0042"


class KfpRecorder:
    def __init__(self, pipelines: dict[str, str] | None = None):
        self.calls: list[dict] = []
        self.pipelines = dict(pipelines if pipelines is not None else {"spx-training": PIPELINE_ID})
        self.experiments: dict[str, str] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, method: str) -> tuple[str, dict, bytes]:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = None
                if raw and self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw)
                recorder.calls.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "body": body,
                        "content_type": self.headers.get("Content-Type"),
                        "raw_len": len(raw),
                    }
                )
                return url.path, parse_qs(url.query), raw

            def do_GET(self):
                path, query, _ = self._record("GET")
                if path == "/apis/v2beta1/healthz":
                    return self._reply(200, {"multi_user": False, "pipeline_store": "database"})
                if path == "/apis/v2beta1/pipelines":
                    flt = json.loads(query.get("filter", ["{}"])[0] or "{}")
                    name = next(
                        (p.get("string_value") or p.get("stringValue") for p in flt.get("predicates", [])), None
                    )
                    pid = recorder.pipelines.get(name)
                    return self._reply(
                        200, {"pipelines": [{"pipeline_id": pid, "display_name": name}], "total_size": 1} if pid else {}
                    )
                if path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions"):
                    pid = path.split("/")[4]
                    return self._reply(
                        200,
                        {
                            "pipeline_versions": [
                                {"pipeline_id": pid, "pipeline_version_id": VERSION_ID, "display_name": "v42"}
                            ],
                            "total_size": 1,
                        },
                    )
                if path == "/apis/v2beta1/experiments":
                    flt = json.loads(query.get("filter", ["{}"])[0] or "{}")
                    name = next(
                        (p.get("string_value") or p.get("stringValue") for p in flt.get("predicates", [])), None
                    )
                    eid = recorder.experiments.get(name)
                    return self._reply(
                        200,
                        {"experiments": [{"experiment_id": eid, "display_name": name}], "total_size": 1} if eid else {},
                    )
                if path == "/apis/v2beta1/recurringruns":  # none scheduled yet
                    return self._reply(200, {})
                return self._reply(404, {"error": f"no route {path}"})

            def do_POST(self):
                path, query, raw = self._record("POST")
                body = recorder.calls[-1]["body"] or {}
                if path == "/apis/v2beta1/experiments":
                    eid = f"exp-{len(recorder.experiments) + 1}"
                    recorder.experiments[body["display_name"]] = eid
                    return self._reply(200, {"experiment_id": eid, "display_name": body["display_name"]})
                if path == "/apis/v2beta1/runs":
                    return self._reply(
                        200,
                        {
                            "run_id": "run-777",
                            "display_name": body.get("display_name"),
                            "experiment_id": body.get("experiment_id"),
                            "state": "PENDING",
                        },
                    )
                if path == "/apis/v2beta1/pipelines/upload":
                    name = query.get("name", ["uploaded"])[0]
                    recorder.pipelines[name] = "pl-uploaded"
                    return self._reply(200, {"pipeline_id": "pl-uploaded", "display_name": name})
                if path == "/apis/v2beta1/pipelines/upload_version":
                    return self._reply(
                        200, {"pipeline_id": query.get("pipelineid", [""])[0], "pipeline_version_id": "pv-new"}
                    )
                if path == "/apis/v2beta1/recurringruns":
                    return self._reply(200, {"recurring_run_id": "rr-1", **body})
                return self._reply(404, {"error": f"no route {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "KfpRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self, path: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == "POST" and c["path"] == path]
