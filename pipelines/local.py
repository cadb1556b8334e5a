"""Run the training pipeline on this machine with KFP's local runner — no cluster.

Starts the embedded services (a real S3 server on loopback; MLflow tracks into SQLite under ``$SPX_HOME``),
then executes the *same* components with ``kfp.local.SubprocessRunner`` in this Python environment.

KFP's local runner prints every task's output (and its executor-input JSON) to stdout. :class:`TaskLogRouter`
takes that stream instead: each task's lines go to ``$SPX_HOME/runs/<run_id>/<task>.log`` and the caller gets
one :class:`TaskEvent` when a task starts and one when it ends, to show a compact table (``spx run``) or to
echo everything (``spx run --verbose``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from spx.core import layout
from spx.core.services import embedded_s3
from spx.core.settings import export_library_env, settings
from spx.core.storage import ObjectStore
from spx.pipelines.options import CompileOptions

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


@dataclass
class TaskEvent:
    task: str
    status: str  # RUNNING | SUCCESS | FAILURE
    seconds: float = 0.0
    log_path: Path | None = None


@dataclass
class TaskLogRouter(io.TextIOBase):
    """A text stream that files KFP local-runner output per task and reports task starts and ends."""

    run_dir: Path
    on_event: Callable[[TaskEvent], None] = lambda event: None
    echo: TextIO | None = None
    current: str | None = None
    started: float = 0.0
    tasks: dict[str, TaskEvent] = field(default_factory=dict)
    _buffer: str = ""
    _file: TextIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._line(line)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()
        if self._file is not None:
            self._file.flush()

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw)
        if (m := _START.search(line)) is not None:
            self._open(m.group(1))
        if self._file is not None:
            self._file.write(line + "\n")
        if (m := _END.search(line)) is not None and m.group(1) in self.tasks:
            event = self.tasks[m.group(1)]
            event.status = m.group(2).upper()
            event.seconds = time.perf_counter() - self.started
            self._close()
            self.on_event(event)

    def _open(self, task: str) -> None:
        self._close()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / f"{task}.log"
        self._file = open(path, "a", encoding="utf-8")
        self.current, self.started = task, time.perf_counter()
        self.tasks[task] = event = TaskEvent(task, "RUNNING", 0.0, path)
        self.on_event(event)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def last_lines(self, task: str, n: int = 25) -> list[str]:
        event = self.tasks.get(task)
        if event is None or event.log_path is None or not event.log_path.exists():
            return []
        return event.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]

    def failed(self) -> TaskEvent | None:
        return next((e for e in self.tasks.values() if e.status not in ("SUCCESS", "RUNNING")), None) or next(
            (e for e in self.tasks.values() if e.status == "RUNNING"), None
        )


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-local"


def run_local(
    *,
    run_id: str = "",
    on_event: Callable[[TaskEvent], None] | None = None,
    verbose: bool = False,
    router: TaskLogRouter | None = None,
    **params: Any,
) -> dict:
    """Execute the training pipeline locally; returns the selection (``best_model_selection.json``) as a dict,
    with ``selection_uri``, ``elapsed_s``, ``run_dir`` and ``s3_endpoint`` added.

    Task output is filed under ``$SPX_HOME/runs/<run_id>/`` (echoed too when ``verbose``)."""
    from kfp import local

    from spx.pipelines.training import build_training_pipeline

    # the local runner's notices: cluster-only task settings, and our (non-python:*) component image
    warnings.filterwarnings("ignore", message=r"(?s).*have no effect in the current local runner", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"(?s).*non-Python base image", category=RuntimeWarning)
    cfg = settings()
    cfg.home.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    router = router or TaskLogRouter(cfg.runs_dir / run_id)
    if on_event is not None:
        router.on_event = on_event
    if verbose:
        router.echo = sys.stdout
    started = time.perf_counter()
    with embedded_s3(cfg.home) as endpoint:
        export_library_env(cfg)  # MLflow/Feast/boto3 in the task subprocesses see the same settings
        store = ObjectStore()
        store.ensure_bucket()
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(cfg.home / "kfp-local"),
            raise_on_error=True,
        )
        # locally a failure is deterministic: no retries (the local runner ignores them anyway)
        pipeline = build_training_pipeline(CompileOptions(image=cfg.pipeline.component_image, retries=0))
        with contextlib.redirect_stdout(router):
            task = pipeline(run_id=run_id, **params)
        selection_uri = task.output
        selection = store.get_json(selection_uri)
        manifest_key = layout.gold_manifest_key(selection["run_id"])
        if store.exists(manifest_key):  # what the run trained on, for the summary
            manifest = store.get_json(manifest_key)
            selection["news"] = {
                **manifest.get("news", {}),
                "news_features": len(manifest.get("news_feature_columns") or []),
            }
    selection["selection_uri"] = selection_uri
    selection["elapsed_s"] = round(time.perf_counter() - started, 1)
    selection["run_dir"] = str(router.run_dir)
    selection["s3_endpoint"] = endpoint
    return selection
