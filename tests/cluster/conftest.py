"""Fixtures for the cluster tests: loopback HTTP peers that record API calls, and the helm binary.

The peers speak just enough of the Kubernetes and KFP REST APIs for the official clients
(``kubernetes.client``, ``kfp.Client``) to run unchanged against them; every request is recorded with
its method, path, query, content type and JSON body so tests assert the exact calls.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from tests.cluster.support import CHART, ROOT, merge_patch  # noqa: F401 - fixtures use them


@dataclass
class Call:
    method: str
    path: str
    query: dict
    content_type: str
    body: object


class _Server:
    handler_cls: type

    def __init__(self):
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self):
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type", "")
                body: object = None
                if raw and "json" in ctype:
                    body = json.loads(raw)
                elif raw:
                    body = raw
                call = Call(self.command, parsed.path, parse_qs(parsed.query), ctype, body)
                with outer.lock:
                    outer.calls.append(call)
                    status, payload = outer.respond(call, self.headers)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def respond(self, call: Call, headers):  # pragma: no cover - overridden
        raise NotImplementedError

    def mutating(self) -> list[Call]:
        return [c for c in self.calls if c.method not in ("GET",)]


class FakeKubeAPI(_Server):
    """InferenceServices in memory: GET, POST (create), PATCH (merge patch, resourceVersion checks)."""

    PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/]+))?$")

    def __init__(self):
        super().__init__()
        self.objects: dict[tuple[str, str], dict] = {}
        self.rv = itertools.count(1)
        self.fail_next: list[int] = []  # statuses to answer the next mutating calls with
        self.lose_next_response = False  # apply the next mutating call, then answer 503 (lost reply)

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md["resourceVersion"] = str(next(self.rv))
        self.objects[(md["namespace"], md["name"])] = obj
        return obj

    @staticmethod
    def _status(code: int, reason: str, message: str):
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": code,
        }

    def _maybe_lose(self, status, obj):
        if self.lose_next_response:
            self.lose_next_response = False
            return self._status(503, "ServiceUnavailable", "reply lost after the write was applied")
        return status, obj

    def respond(self, call, headers):
        m = self.PATH.match(call.path)
        if not m:
            return self._status(404, "NotFound", f"no route {call.path}")
        ns, name = m.groups()
        if call.method != "GET" and self.fail_next:
            code = self.fail_next.pop(0)
            return self._status(code, "ServiceUnavailable" if code >= 500 else "Conflict", "injected")
        if call.method == "GET" and name:
            obj = self.objects.get((ns, name))
            return (200, obj) if obj else self._status(404, "NotFound", f"{name} not found")
        if call.method == "POST" and not name:
            key = (ns, call.body["metadata"]["name"])
            if key in self.objects:
                return self._status(409, "AlreadyExists", f"{key[1]} already exists")
            return self._maybe_lose(201, self.put(call.body))
        if call.method == "PATCH" and name:
            obj = self.objects.get((ns, name))
            if obj is None:
                return self._status(404, "NotFound", f"{name} not found")
            if call.content_type != "application/merge-patch+json":
                return self._status(415, "UnsupportedMediaType", call.content_type)
            want_rv = (call.body.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", "the object has been modified")
            patched = merge_patch(obj, call.body)
            return self._maybe_lose(200, self.put(patched))
        return self._status(405, "MethodNotAllowed", call.method)


@pytest.fixture()
def kube_api():
    server = FakeKubeAPI().start()
    yield server
    server.stop()


@pytest.fixture()
def custom_api(kube_api):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = kube_api.url
    api_client = client.ApiClient(cfg)
    yield client.CustomObjectsApi(api_client)
    api_client.close()


class FakeKFPAPI(_Server):
    """The KFP v2beta1 REST endpoints ``kfp.Client`` uses for pipelines, versions, experiments and runs."""

    def __init__(self):
        super().__init__()
        self.ids = itertools.count(1)
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.uploads: list[dict] = []

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"

    @staticmethod
    def _filtered(items, query):
        flt = query.get("filter", [None])[0]
        if not flt:
            return list(items)
        preds = json.loads(flt).get("predicates", [])
        out = []
        for item in items:
            ok = True
            for p in preds:
                assert p["operation"] in ("EQUALS", 1), p
                value = p.get("stringValue", p.get("string_value"))
                if item.get(p["key"]) != value:
                    ok = False
            if ok:
                out.append(item)
        return out

    def _multipart(self, call, headers):
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + call.content_type.encode() + b"\r\n\r\n" + call.body
        )
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "uploadfile":
                return part.get_filename(), part.get_payload(decode=True)
        raise AssertionError("multipart upload without an 'uploadfile' field")

    def respond(self, call, headers):
        p, q = call.path, call.query
        if p == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False, "commit_sha": "test", "tag_name": "2.5.0"}
        if p == "/apis/v2beta1/pipelines" and call.method == "GET":
            return 200, {"pipelines": self._filtered(self.pipelines.values(), q) or None}
        if p == "/apis/v2beta1/pipelines/upload" and call.method == "POST":
            filename, data = self._multipart(call, headers)
            pid = self._id("pipeline")
            name = q.get("name", [filename])[0]
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": name}
            vid = self._id("version")
            self.versions[vid] = {
                "pipeline_id": pid,
                "pipeline_version_id": vid,
                "display_name": name,
                "created_at": f"2026-01-01T00:00:{len(self.versions):02d}Z",
            }
            self.uploads.append({"kind": "pipeline", "name": name, "bytes": data})
            return 200, self.pipelines[pid]
        if p == "/apis/v2beta1/pipelines/upload_version" and call.method == "POST":
            _, data = self._multipart(call, headers)
            pid = q["pipelineid"][0]
            vid = self._id("version")
            self.versions[vid] = {
                "pipeline_id": pid,
                "pipeline_version_id": vid,
                "display_name": q["name"][0],
                "created_at": f"2026-01-01T00:00:{len(self.versions):02d}Z",
            }
            self.uploads.append({"kind": "version", "name": q["name"][0], "bytes": data})
            return 200, self.versions[vid]
        m = re.match(r"^/apis/v2beta1/pipelines/([^/]+)/versions$", p)
        if m and call.method == "GET":
            items = [v for v in self.versions.values() if v["pipeline_id"] == m.group(1)]
            items = self._filtered(items, q)
            if q.get("sort_by", [""])[0] == "created_at desc":
                items.sort(key=lambda v: v["created_at"], reverse=True)
            size = int(q.get("page_size", ["100"])[0])
            return 200, {"pipeline_versions": items[:size] or None, "total_size": len(items)}
        if p == "/apis/v2beta1/experiments" and call.method == "GET":
            return 200, {"experiments": self._filtered(self.experiments.values(), q) or None}
        if p == "/apis/v2beta1/experiments" and call.method == "POST":
            eid = self._id("experiment")
            self.experiments[eid] = {**call.body, "experiment_id": eid}
            return 200, self.experiments[eid]
        if p == "/apis/v2beta1/runs" and call.method == "POST":
            rid = self._id("run")
            self.runs[rid] = {**call.body, "run_id": rid}
            return 200, self.runs[rid]
        if p == "/apis/v2beta1/recurringruns" and call.method == "GET":
            items = list(self.recurring.values())
            if "experiment_id" in q:
                items = [r for r in items if r.get("experiment_id") == q["experiment_id"][0]]
            return 200, {"recurringRuns": self._filtered(items, q) or None}
        if p == "/apis/v2beta1/recurringruns" and call.method == "POST":
            rid = self._id("recurring")
            self.recurring[rid] = {**call.body, "recurring_run_id": rid}
            return 200, self.recurring[rid]
        m = re.match(r"^/apis/v2beta1/recurringruns/([^/]+)$", p)
        if m and call.method == "DELETE":
            self.recurring.pop(m.group(1), None)
            return 200, {}
        return 404, {"error": f"no route {call.method} {p}", "code": 5}


@pytest.fixture()
def kfp_api(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client keeps a context file under ~/.config/kfp
    server = FakeKFPAPI().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kube(tmp_path_factory, helm_bin, kubectl_bin):
    """The real kube-apiserver (one per session) with the KServe CRDs and KFP 2.5.0 installed.

    Skipped where none can start (with how to get one); in CI (CI=true) that is a failure instead.
    """
    from spx.core.settings import kube_test_tools
    from tests.cluster import apiserver

    tools = kube_test_tools(ROOT)
    workdir = tmp_path_factory.mktemp("kube")
    try:
        cluster = apiserver.start(tools.kube_tools, workdir, kubectl_bin, helm_bin, tools.kube_apiserver_bin)
    except apiserver.Unavailable as exc:
        message = f"no Kubernetes API server for the cluster tier: {exc}. To get one: {apiserver.HOW_TO}"
        if tools.ci:
            pytest.fail(message)
        pytest.skip(message)
    yield cluster
    apiserver.stop(tools.kube_tools, workdir)
