"""Run the training pipeline on this machine with KFP's local runner — no cluster.

Starts the embedded services (a real S3 server on loopback; MLflow tracks into SQLite under ``$SPX_HOME``),
then executes the *same* components with ``kfp.local.SubprocessRunner`` in this Python environment.

What KFP's local runner (kfp 2.17, ``kfp/local/orchestrator/enhanced_dag_orchestrator.py``) does and does
not do, and what this module adds:

* It runs a DAG's tasks **one after another** in topological order; its only concurrency is the iterations
  of a ``dsl.ParallelFor``, on a thread pool of at most two workers (``ParallelExecutor.conservative_max``),
  and every task is a fresh ``python`` that imports its libraries again. ``spx run`` changes both for the
  run (``spx.pipelines.local_runner``): independent top-level tasks run side by side (the news chain beside
  the market chain, Feast beside the training loop; ``SPX_LOCAL_CONCURRENCY``), the training variants stay
  two at a time, and each task process is a fork of a warm interpreter that imported the libraries once
  (``spx.pipelines.warm``; ``SPX_WARM_START=false`` turns it off). The components and their command lines
  are unchanged.
* It **caches** task outputs (``local.init(enable_caching=True)``, since kfp 2.17) under
  ``$SPX_HOME/kfp-local/.kfp_cache``, keyed on each task's component, command and inputs. The pipeline
  passes :func:`run_key` — a fingerprint of the parameters, the code and the input files — to the run id and
  bronze tasks, so an unchanged rerun takes every task from the cache (``--no-cache`` turns this off).
* It prints every task's output (and its executor-input JSON) to stdout, and logs task starts, ends and
  cache hits through the root logger. :class:`TaskLogRouter` takes that stream instead: each task's lines
  go to ``$SPX_HOME/runs/<invocation>/<task>.log`` and the caller gets one :class:`TaskEvent` when a task
  starts and one when it ends or comes from the cache, to show a compact table (``spx run``) or to echo
  everything (``spx run --verbose``). Lines are attributed by thread, so concurrent tasks keep separate
  logs.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import logging
import re
import resource
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from spx.core import layout
from spx.core.services import embedded_s3
from spx.core.settings import Settings, export_library_env, patched_environ, process_env, settings
from spx.core.storage import ObjectStore
from spx.pipelines.local_runner import local_runner_patches
from spx.pipelines.options import CompileOptions
from spx.pipelines.warm import PREFIX as WARM_PREFIX
from spx.pipelines.warm import warm_interpreter

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task (\S+) cache hit \(key=")
_VARIANT = re.compile(r'"variant":\s*"([A-Za-z0-9_.-]+)"')
_WARM_CPU = re.compile(re.escape(WARM_PREFIX) + r" task process \d+ .*: ([\d.]+) s CPU")


@dataclass
class TaskEvent:
    task: str
    status: str  # RUNNING | SUCCESS | FAILURE | CACHED
    seconds: float = 0.0
    log_path: Path | None = None
    # None when another task ran at the same time and the task's process was not a fork of the warm
    # interpreter (which reports each task's CPU): this process's children's CPU cannot be split per task
    cpu_seconds: float | None = None
    detail: str = ""  # e.g. the variant a training task trained


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Running:
    event: TaskEvent
    started: float
    cpu_started: float
    file: TextIO
    alone: bool = True
    warm_cpu: float | None = None  # the task process's CPU as the warm interpreter reported it


@dataclass
class TaskLogRouter(io.TextIOBase):
    """A text stream that files KFP local-runner output per task and reports task starts, ends and cache
    hits. Output is attributed to the task running in the writing thread."""

    run_dir: Path
    on_event: Callable[[TaskEvent], None] = lambda event: None
    echo: TextIO | None = None
    tasks: dict[str, TaskEvent] = field(default_factory=dict)
    _buffers: dict[int, str] = field(default_factory=dict)
    _running: dict[int, _Running] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self.echo is not None:
                self.echo.write(text)
            tid = threading.get_ident()
            buffer = self._buffers.get(tid, "") + text
            while "\n" in buffer:
                line, buffer = buffer.split("\n", 1)
                self._line(tid, line)
            self._buffers[tid] = buffer
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self.echo is not None:
                self.echo.flush()
            for running in self._running.values():
                running.file.flush()

    def _unique(self, task: str) -> str:
        if task not in self.tasks:
            return task
        n = 2
        while f"{task}-{n}" in self.tasks:
            n += 1
        return f"{task}-{n}"

    def _line(self, tid: int, raw: str) -> None:
        line = _ANSI.sub("", raw)
        if (m := _START.search(line)) is not None:
            self._open(tid, m.group(1))
        running = self._running.get(tid)
        if running is not None:
            running.file.write(line + "\n")
            if not running.event.detail and (v := _VARIANT.search(line)) is not None:
                running.event.detail = v.group(1)
            if (w := _WARM_CPU.search(line)) is not None:
                running.warm_cpu = float(w.group(1))
        if (m := _END.search(line)) is not None and running is not None:
            self._close(tid, m.group(2).upper())
        elif (m := _CACHED.search(line)) is not None:
            self._cached(m.group(1))

    def _open(self, tid: int, task: str) -> None:
        if tid in self._running:  # a task that never said it ended (should not happen): close it as failed
            self._close(tid, "FAILURE")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        name = self._unique(task)
        path = self.run_dir / f"{name}.log"
        event = TaskEvent(name, "RUNNING", 0.0, path)
        self.tasks[name] = event
        for other in self._running.values():
            other.alone = False
        self._running[tid] = _Running(
            event, time.perf_counter(), _children_cpu(), open(path, "a", encoding="utf-8"), alone=not self._running
        )
        self.on_event(event)

    def _close(self, tid: int, status: str) -> None:
        running = self._running.pop(tid)
        running.file.close()
        for other in self._running.values():
            other.alone = False
        event = running.event
        event.status = status
        event.seconds = time.perf_counter() - running.started
        own = _children_cpu() - running.cpu_started if running.alone else None  # incl. its shell and client
        if running.warm_cpu is not None:  # a fork of the warm interpreter: its CPU, plus its shell's if known
            event.cpu_seconds = running.warm_cpu + (own or 0.0)
        else:
            event.cpu_seconds = own
        self.on_event(event)

    def _cached(self, task: str) -> None:
        name = self._unique(task)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / f"{name}.log"
        path.write_text(f"{task}: outputs reused from KFP's local cache (an earlier run with the same inputs)\n")
        event = TaskEvent(name, "CACHED", 0.0, path, 0.0)
        self.tasks[name] = event
        self.on_event(event)

    def close_all(self) -> None:
        """Close the log files of tasks that never reported an end (an interrupted run)."""
        with self._lock:
            for running in self._running.values():
                running.file.close()
            self._running.clear()

    def last_lines(self, task: str, n: int = 25) -> list[str]:
        event = self.tasks.get(task)
        if event is None or event.log_path is None or not event.log_path.exists():
            return []
        return event.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]

    def failed(self) -> TaskEvent | None:
        return next((e for e in self.tasks.values() if e.status not in ("SUCCESS", "RUNNING", "CACHED")), None) or next(
            (e for e in self.tasks.values() if e.status == "RUNNING"), None
        )

    def cached(self) -> list[str]:
        return [name for name, e in self.tasks.items() if e.status == "CACHED"]


@contextlib.contextmanager
def _kfp_output_to(router: TaskLogRouter) -> Iterator[None]:
    """KFP's local runner prints task output and logs through the root logger; both go to ``router`` for the
    duration. The root logger keeps a handler on the router at INFO, so the cache-hit lines (logged outside
    KFP's per-task logger context) arrive, and so do the end lines of concurrent tasks (each task's context
    saves and restores the root handlers, and two overlapping contexts restore each other's). ``print`` and
    the root logger are restored afterwards (KFP's per-task print indentation is global too)."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_print = root.handlers[:], root.level, builtins.print
    handler = logging.StreamHandler(router)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    with contextlib.redirect_stdout(router):
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            builtins.print = saved_print
            router.close_all()


TASK_LIBRARIES = ("pandas", "mlflow", "sklearn", "xgboost", "kfp")

# What the warm interpreter (spx.pipelines.warm) imports for the task processes, in the order the tasks need
# them (it imports one between requests): the first WARM_EAGER at once, the rest once a task has asked (a
# rerun whose tasks all come from KFP's cache imports only those). Taken from `PYTHONPROFILEIMPORTTIME=1
# spx run`: every module a default run's tasks import that costs more than ~20 ms. Not
# kfp.dsl.executor_main itself (each task runs it as __main__), not feast (~6 s with the torch it imports,
# for its one task: torch would then sit in every training process) nor torch (FinBERT, when configured).
WARM_PRELOAD = (
    "kfp.dsl.executor",
    "kfp.dsl.kfp_config",
    "kfp.dsl.utils",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "spx.core.settings",
    "spx.core.storage",
    "spx.core.artifacts",
    "spx.core.logs",  # (WARM_EAGER: up to here at once; every task imports these)
    "exchange_calendars",
    "spx.components.bronze.market",
    "spx.components.news.bronze",
    "spx.components.silver.stage",
    "spx.components.news.silver",
    "textblob.en",
    "spx.components.news.gold",
    "spx.components.gold.stage",
    "spx.components.training.variants",
    "spx.components.training.train",
    "spx.components.training.kfp_outputs",
    "spx.components.training.visuals",
    "xgboost",
    "lightgbm",
    "matplotlib.pyplot",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite",
    "mlflow.xgboost",
    "mlflow.lightgbm",
    "mlflow.sklearn",
    "mlflow.pyfunc.loaders",
    "mlflow.pyfunc.scoring_server",
    # log_model checks the model's pip requirements against the installed packages: it maps every installed
    # distribution's files to its modules first (~1 s a training task; MLflow caches it per process)
    "mlflow.utils.requirements_utils:_init_packages_to_modules_map",
    "git",
    "spx.components.selection.select",
    "spx.components.selection.champion",
)
WARM_EAGER = WARM_PRELOAD.index("spx.core.logs") + 1


def missing_bytecode(modules: tuple[str, ...] = TASK_LIBRARIES) -> list[str]:
    """The libraries every task imports that have no compiled bytecode while Python may not write it
    (``PYTHONDONTWRITEBYTECODE`` set, as in many containers and CI): then each of the ~18 task processes
    compiles every module it imports from source — measured here at 2-3x the CPU of the whole run (10.5 of a
    training task's 34 s went to ``compile``). Empty when bytecode is there or Python writes it itself."""
    import importlib.util

    if not sys.flags.dont_write_bytecode:
        return []
    missing = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and not Path(importlib.util.cache_from_source(spec.origin)).exists():
            missing.append(name)
    return missing


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-local"


# ------------------------------------------------------------------------------------------------ cache key

_LIVE_SOURCES = {"oanda", "gdelt", "rss"}  # new data on every call: never reused


def _stat(path: Path | str | None) -> list:
    if not path:
        return ["none"]
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return [str(p), "missing"]
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def code_fingerprint() -> str:
    """SHA-256 over the source of the installed ``spx`` package (stage logic, components, pipelines, package
    data) and the versions of every installed distribution: a change to either changes every task's key."""
    from importlib import metadata

    import spx

    digest = hashlib.sha256()
    root = Path(spx.__file__).resolve().parent
    for base in (root, (root / "components").resolve(), (root / "pipelines").resolve()):
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".log"):
                digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    digest.update("\n".join(versions).encode())
    return digest.hexdigest()


def run_key(params: dict[str, Any], cfg: Settings | None = None) -> str:
    """The cache key of a local run: a fingerprint of every pipeline parameter, the code
    (:func:`code_fingerprint`), the input files' identity (path, size, modification time) and the settings
    that shape outputs (bucket, MLflow tracking URI, experiment and registered model, FinBERT model, thread
    counts, Feast store). A run from a live source (OANDA, GDELT, RSS) gets a key of its own: never reused."""
    from spx.components.bronze.datasets import get_dataset
    from spx.components.news.bronze import default_news_file

    cfg = cfg or settings()
    market_source, news_source = params.get("source", "bundled"), params.get("news_source", "file")
    if market_source in _LIVE_SOURCES or news_source in _LIVE_SOURCES:
        return f"live-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')}"
    inputs: dict[str, Any] = {}
    if market_source == "file":
        inputs["market"] = _stat(params.get("market_path"))
    elif market_source == "bundled":
        name = params.get("dataset") or "spy_m1_2011q1"
        try:
            dataset = get_dataset(name)
            inputs["market"] = _stat(dataset.path()) if dataset.file else [dataset.name]
        except Exception as exc:  # noqa: BLE001 - the bronze task reports it, with its own message
            inputs["market"] = [name, f"unavailable: {exc}"]
    if news_source == "file":
        inputs["news"] = _stat(params.get("news_path") or default_news_file())
    model = params.get("news_model_location") or cfg.news.finbert_model
    inputs["finbert"] = _stat(model) if model and not str(model).startswith("s3://") else [model]
    shaping = {
        "bucket": cfg.s3.bucket,
        "mlflow": [cfg.mlflow_tracking_uri, cfg.mlflow_experiment, cfg.registered_model],
        "threads": [cfg.pipeline.threads, cfg.news.torch_threads],
        "feast": [str(cfg.feast_home), cfg.feast.online_store, cfg.feast.redis, cfg.feast_registry],
    }
    blob = json.dumps(
        {"params": params, "inputs": inputs, "settings": shaping, "code": code_fingerprint()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------------ the run


LOCAL_CONCURRENCY = 2  # kfp.local's ParallelExecutor runs at most two loop iterations at once


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def top_level_workers(cfg: Settings) -> int:
    """How many of the pipeline's top-level tasks run at once: ``SPX_LOCAL_CONCURRENCY``, else the cores
    (at least 2: most tasks use one core, and the news chain is as long as the market chain)."""
    return cfg.pipeline.local_concurrency or max(2, _cores())


def _thread_env(cfg: Settings) -> dict[str, str]:
    """``SPX_THREADS`` for the task processes when it is unset: this machine's cores shared by the training
    tasks that run at once, at least 1. XGBoost and LightGBM default to every core, and two of them side by
    side on two cores spend most of their CPU spinning in OpenMP (measured: 10-36 s of CPU per variant where
    one thread each needs 1-3 s), with identical results (hist and LightGBM give the same model for any thread
    count on these tables: every metric of the six variants compared equal)."""
    if cfg.pipeline.threads:
        return {}
    return {"SPX_THREADS": str(max(1, _cores() // LOCAL_CONCURRENCY))}


RUNNER_LOGS = "runner"  # under a run's log folder: the warm interpreter's and the MLflow preparation's logs

# the top-level tasks that use MLflow (the training loop, the selection): they wait for its database
MLFLOW_TASKS = ("for-loop-", "select-champion")


def needs_mlflow(task: str) -> bool:
    return task.startswith(MLFLOW_TASKS)


@contextlib.contextmanager
def _mlflow_prepared(cfg: Settings, bucket: str, python: str | None, log_path: Path) -> Iterator[Callable[[str], None]]:
    """Create a new local MLflow database and experiment (``spx.pipelines.mlflow_db``: ~2 s importing MLflow,
    ~2 s creating the schema) in a process of its own beside the first tasks, which do not use MLflow; yields
    the hook that holds an MLflow task until it has finished (and fails that task if it failed)."""
    import subprocess
    import threading

    from spx.pipelines.mlflow_db import needs_preparing

    if not needs_preparing(cfg):
        yield lambda task: None
        return
    with open(log_path, "a", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            [python or sys.executable, "-m", "spx.pipelines.mlflow_db", bucket],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    lock = threading.Lock()

    def before(task: str) -> None:
        if not needs_mlflow(task):
            return
        with lock:
            code = proc.wait()
        if code != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"creating the MLflow database failed (exit {code}, {log_path}): {tail[0]}")

    try:
        yield before
    finally:
        if proc.poll() is None:
            proc.wait()


def run_local(
    *,
    run_id: str = "",
    on_event: Callable[[TaskEvent], None] | None = None,
    verbose: bool = False,
    router: TaskLogRouter | None = None,
    cache: bool = True,
    **params: Any,
) -> dict:
    """Execute the training pipeline locally; returns the selection (``best_model_selection.json``) as a dict,
    with ``selection_uri``, ``elapsed_s``, ``run_dir``, ``s3_endpoint``, ``cached_tasks`` and ``run_key`` added.

    ``run_id``: the run's id (default: a new one, or the earlier run's when every input is unchanged and
    ``cache`` is on). Task output is filed under ``$SPX_HOME/runs/<invocation>/`` (echoed too when
    ``verbose``)."""
    from kfp import local

    from spx.pipelines.training import build_training_pipeline

    # the local runner's notices: cluster-only task settings, and our (non-python:*) component image
    warnings.filterwarnings("ignore", message=r"(?s).*have no effect in the current local runner", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"(?s).*non-Python base image", category=RuntimeWarning)
    cfg = settings()
    cfg.home.mkdir(parents=True, exist_ok=True)
    router = router or TaskLogRouter(cfg.runs_dir / new_run_id())
    if on_event is not None:
        router.on_event = on_event
    if verbose:
        router.echo = sys.stdout
    started = time.perf_counter()
    key = run_key(params, cfg) if cache else ""
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(embedded_s3(cfg.home))
        stack.enter_context(patched_environ(_thread_env(cfg)))
        export_library_env(cfg)  # MLflow/Feast/boto3 in the task subprocesses see the same settings
        python = None
        runner_logs = router.run_dir / RUNNER_LOGS  # the runner's own logs, apart from the tasks' <task>.log
        runner_logs.mkdir(parents=True, exist_ok=True)
        if cfg.pipeline.warm_start:  # forks of one interpreter that imports the libraries while tasks run
            python = stack.enter_context(
                warm_interpreter(
                    list(WARM_PRELOAD), process_env(), str(runner_logs / "warm-interpreter.log"), WARM_EAGER
                )
            )
        store = ObjectStore()
        store.ensure_bucket()
        workers = top_level_workers(cfg)
        before = stack.enter_context(_mlflow_prepared(cfg, store.bucket, python, runner_logs / "mlflow-prepare.log"))
        if workers == 1:  # KFP's own orchestrator: no hook before a task
            before(MLFLOW_TASKS[0])
        stack.enter_context(local_runner_patches(workers=workers, python=python, before_task=before))
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(cfg.home / "kfp-local"),
            raise_on_error=True,
            enable_caching=cache,
        )
        # locally a failure is deterministic: no retries (the local runner ignores them anyway)
        pipeline = build_training_pipeline(CompileOptions(image=cfg.pipeline.component_image, retries=0, local=True))
        with _kfp_output_to(router):
            task = pipeline(run_id=run_id, run_key=key, **params)
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
    selection["cached_tasks"] = router.cached()
    selection["tasks"] = len(router.tasks)
    selection["run_key"] = key
    return selection
