"""The Evidently UI over the monitoring workspace, read-only (``spx ui``; the chart's ``evidently-ui`` Deployment).

It is Evidently 0.7's own service (``evidently.ui.service.app.create_app``, the app ``evidently ui`` runs),
configured for this project:

* **read-only.** ``evidently ui`` without ``--secret`` accepts every write unauthenticated: creating and
  deleting projects and snapshots, rewriting dashboards, uploading datasets, prompts, artifacts and traces.
  Nothing here writes through the UI (the monitoring runs write the workspace directly), so every request
  that is not a read is refused with 403 before it reaches Evidently; the one read the dashboard makes by
  POST (``/api/v2/snapshots/{project}/data_series_batch``, the panels' points) is let through. Behind that,
  Evidently's own write guard is armed with a random secret that is never shown, so a write the filter
  missed would still be refused. The OpenAPI pages (``/schema``) are not served.
* **no telemetry.** Evidently's service sends a usage event per request to Evidently's collector unless told
  not to; it is switched off.
* **the workspace is re-read every** ``refresh_seconds`` (new snapshots and projects appear, snapshots the
  retention deleted disappear). Evidently watches only local directories (watchdog) and never notices new
  objects in a bucket; here one refresher serves both.
* ``GET /healthz`` answers without touching Evidently: projects and snapshots loaded, the last refresh, and
  its error if it failed (the probes of the chart's Deployment).

Reads are not authenticated: bind loopback (the default) or, in the cluster, keep the Service ClusterIP and
reach it with ``kubectl port-forward``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import time
from typing import Any

from evidently._pydantic_compat import PrivateAttr
from evidently.ui.service.base import Series, SeriesResponse
from evidently.ui.service.components.storage import LocalStorageComponent
from evidently.ui.service.storage.local.base import InMemoryDataStorage

from spx.components.monitoring.workspace import configure_fsspec_s3, workspace_location

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
# reads the UI makes with POST: the dashboard panels' points
READ_POSTS = (re.compile(r"^/api/v2/snapshots/[0-9a-fA-F-]{36}/data_series_batch/?$"),)
HIDDEN_PREFIXES = ("/schema",)


def request_allowed(method: str, path: str) -> bool:
    """Whether the read-only UI lets a request through to Evidently."""
    if any(path == p or path.startswith(p + "/") for p in HIDDEN_PREFIXES):
        return False
    if method in READ_METHODS:
        return True
    return method == "POST" and any(p.match(path) for p in READ_POSTS)


class WorkspaceRefresher:
    """Keeps Evidently's in-memory view of the workspace (its ``LocalState``) in step with the files."""

    def __init__(self, state):
        self.state = state
        self.last_refresh = 0.0
        self.error = ""

    def refresh(self) -> None:
        from evidently.ui.service.storage.common import NO_USER
        from evidently.ui.service.storage.local.base import load_project

        state = self.state
        location = state.location
        location.invalidate_cache("")
        listed = [p for p in location.listdir("") if state.location.isdir(p)]
        for name in listed:
            try:
                pid = _uuid(name)
            except ValueError:
                continue
            if pid not in state.projects:
                project = load_project(location, name)
                if project is not None:
                    state.projects[project.id] = project.bind(state.project_manager, NO_USER.id)
                    state.snapshots[project.id] = {}
        for pid in list(state.projects):
            state.reload_snapshots(pid, force=False)  # reads only snapshots it does not hold (callbacks add points)
            present = set(state.list_snapshots(pid))
            for sid in [s for s in state.snapshots[pid] if s not in present]:
                del state.snapshots[pid][sid]
        self.last_refresh = time.time()
        self.error = ""

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.refresh()  # on the event loop: no request handler iterates the state meanwhile
            except Exception as exc:  # noqa: BLE001 - a half-written file or a flaky bucket: try again next time
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("workspace refresh failed (retrying in %.0f s): %s", interval, self.error)

    def health(self) -> dict[str, Any]:
        snapshots = sum(len(s) for s in self.state.snapshots.values())
        return {
            "status": "ok",
            "workspace": self.state.path,
            "projects": len(self.state.projects),
            "snapshots": snapshots,
            "last_refresh": self.last_refresh,
            "refresh_error": self.error,
        }


def _uuid(text: str):
    import uuid

    return uuid.UUID(text)


class PerFilterDataStorage(InMemoryDataStorage):
    """Evidently's in-memory series store, asked one panel series at a time.

    Evidently 0.7's ``get_data_series`` adds a snapshot to its working list once *per series of the panel* whose
    tags it matches and then walks every point of every entry, so a panel of ten features over a month of
    hourly snapshots does ten times the work (measured by bench/evidently_ui.py: 7 s a panel). Asked with one
    series at a time it walks each snapshot once per series; the answers are merged onto the union of their
    snapshots (sorted by time, as Evidently sorts them). For panels whose series do not overlap (every panel
    of the dashboard) the result is Evidently's own."""

    async def get_data_series(self, project_id, series_filter, start_time, end_time) -> SeriesResponse:
        if len(series_filter) <= 1:
            return await super().get_data_series(project_id, series_filter, start_time, end_time)
        parts = []
        for one_filter in series_filter:  # (a loop: super() does not reach into a comprehension's scope)
            parts.append(await super().get_data_series(project_id, [one_filter], start_time, end_time))
        sources = {src.snapshot_id: src for part in parts for src in part.sources}
        ordered = sorted(sources.values(), key=lambda src: (src.timestamp, src.snapshot_id))
        position = {src.snapshot_id: i for i, src in enumerate(ordered)}
        series = []
        for index, part in enumerate(parts):
            for one in part.series:
                values: list[float | None] = [None] * len(ordered)
                for src, value in zip(part.sources, one.values):
                    values[position[src.snapshot_id]] = value
                series.append(Series(metric_type=one.metric_type, filter_index=index, params=one.params, values=values))
        return SeriesResponse(sources=ordered, series=series)


def project_manager(path: str, state):
    """Evidently's local project manager (``create_local_project_manager`` without its directory watcher) over
    ``state``, with :class:`PerFilterDataStorage` for the dashboard's series."""
    from evidently.ui.service.managers.projects import ProjectManager
    from evidently.ui.service.services.dashbord.file import JsonFileDashboardManager
    from evidently.ui.service.storage.common import NoopAuthManager
    from evidently.ui.service.storage.local.base import FSSpecBlobStorage, JsonFileProjectMetadataStorage

    manager = ProjectManager(
        project_metadata=JsonFileProjectMetadataStorage(path=path, local_state=state),
        blob_storage=FSSpecBlobStorage(base_path=path),
        data_storage=PerFilterDataStorage(path=path, local_state=state),
        auth_manager=NoopAuthManager(),
        dashboard_manager=JsonFileDashboardManager(path=path, local_state=state),
    )
    state.project_manager = manager
    return manager


class SharedStateStorage(LocalStorageComponent):
    """Evidently's local storage component, handing out one project manager built over a state we hold (and
    refresh) instead of one it builds (and, for a directory, watches) itself."""

    _manager: Any = PrivateAttr(default=None)

    def project_manager_provider(self):
        async def project_manager_factory():
            return self._manager

        return project_manager_factory


class ReadOnlyUI:
    """ASGI wrapper: ``/healthz``, then only reads reach the Evidently app (see the module doc)."""

    def __init__(self, app, refresher: WorkspaceRefresher):
        self.app = app
        self.refresher = refresher

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            method, path = scope["method"].upper(), scope["path"]
            if path == "/healthz" and method in READ_METHODS:
                await _json(send, 200, self.refresher.health())
                return
            if not request_allowed(method, path):
                await _json(send, 403, {"detail": "read-only Evidently UI: only reads are served"})
                return
        await self.app(scope, receive, send)


async def _json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def build_app(workspace: str | None = None, *, refresh_seconds: float = 30.0):
    """The read-only Evidently UI app over ``workspace`` (default: the configured one)."""
    from evidently._pydantic_compat import SecretStr
    from evidently.ui.service.app import create_app
    from evidently.ui.service.components.dashboard import DashboardComponent
    from evidently.ui.service.components.security import TokenSecurityComponent
    from evidently.ui.service.components.telemetry import TelemetryComponent
    from evidently.ui.service.local_service import LocalConfig
    from evidently.ui.service.storage.local.base import LocalState

    path = workspace_location(workspace)
    if path.startswith("s3://"):
        configure_fsspec_s3()
    state = LocalState.load(path, None)  # reads the workspace once; the refresher keeps it current
    storage = SharedStateStorage(path=path, autorefresh=False)
    storage._manager = project_manager(path, state)
    config = LocalConfig(
        # a secret nobody knows: Evidently's own guard refuses every write the read-only filter might let by
        security=TokenSecurityComponent(token=SecretStr(secrets.token_urlsafe(32))),
        storage=storage,
        dashboard=DashboardComponent(path=path),
        telemetry=TelemetryComponent(enabled=False),
    )
    app = create_app(config)
    refresher = WorkspaceRefresher(state)
    refresher.last_refresh = time.time()
    tasks: list[asyncio.Task] = []

    async def start_refresher() -> None:
        tasks.append(asyncio.get_running_loop().create_task(refresher.run(refresh_seconds)))

    async def stop_refresher() -> None:
        for task in tasks:
            task.cancel()

    app.on_startup.append(start_refresher)
    app.on_shutdown.append(stop_refresher)
    return ReadOnlyUI(app, refresher)


def serve(host: str, port: int, workspace: str | None = None, *, refresh_seconds: float = 30.0) -> None:
    """Run the UI in the foreground (uvicorn) until interrupted."""
    import uvicorn

    app = build_app(workspace, refresh_seconds=refresh_seconds)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    from spx.core.logs import setup_logging
    from spx.core.settings import settings

    cfg = settings()
    parser = argparse.ArgumentParser(description="Read-only Evidently UI over the spx monitoring workspace")
    parser.add_argument("--host", default=cfg.serving.host, help="bind address (default $SPX_SERVE_HOST: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workspace", default="", help="directory or s3://bucket/prefix (default: as configured)")
    parser.add_argument("--refresh-seconds", type=float, default=30.0, help="re-read the workspace this often")
    args = parser.parse_args(argv)
    setup_logging()
    path = workspace_location(args.workspace or None)
    log.info("Evidently UI (read-only) over %s on http://%s:%d", path, args.host, args.port)
    serve(args.host, args.port, path, refresh_seconds=args.refresh_seconds)


if __name__ == "__main__":
    main()
