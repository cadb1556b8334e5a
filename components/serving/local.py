"""Start the predictor and the transformer as local processes (``spx serve``, tests, bench): the console scripts
the serving image runs (``spx-predictor``, ``spx-transformer``), bound to ``$SPX_SERVE_HOST`` (default loopback).

Each server is a :class:`spx.core.processes.ManagedProcess`: its output goes to a size-rotated log file, and it
can be stopped and started again on the same port (``spx serve`` supervises them)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from spx.core.processes import ManagedProcess, free_port
from spx.core.settings import child_env, settings

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess(ManagedProcess):
    """``spx-{name}`` serving ``model_name`` on ``port`` (``url`` is always the loopback address)."""

    def __init__(self, name: str, model_name: str, port: int, args: list[str], log_dir: Path, env: dict | None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        cmd = [str(Path(sys.executable).with_name(f"spx-{name}")), *args, "--model_name", model_name]
        cmd += ["--http_port", str(port), "--host", settings().serving.host]
        ready = f"{self.url}/v2/models/{model_name}/ready"
        super().__init__(name, cmd, Path(log_dir) / f"{name}-{port}.log", env=_env(env), cwd=REPO_ROOT, ready_url=ready)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = child_env()
    # importing Feast (this process materializes) points prometheus_client's multiprocess mode at a directory this
    # process owns; a server inheriting it would write every metric update to mmapped files there
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        if Path(env.get(name, "")).name.startswith("feast_metrics_"):
            env.pop(name)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, **(extra or {})}


def start_predictor(
    model_dir: Path,
    model_name: str = "spx-direction",
    port: int | None = None,
    log_dir: Path | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,  # startup imports KServe (and Feast): a minute on a loaded 2-core machine
) -> ServerProcess:
    args = ["--model_dir", str(model_dir), *(extra_args or [])]
    return ServerProcess("predictor", model_name, port or free_port(), args, log_dir or model_dir, env).start(timeout)


def start_transformer(
    predictor_port: int,
    model_name: str = "spx-direction",
    port: int | None = None,
    log_dir: Path | None = None,
    max_feature_age_seconds: float | None = None,
    prediction_log: bool = False,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> ServerProcess:
    args = ["--predictor_host", f"127.0.0.1:{predictor_port}", *(extra_args or [])]
    if max_feature_age_seconds is not None:
        args += ["--max_feature_age_seconds", str(max_feature_age_seconds)]
    env = {**(env or {}), "SPX_PREDICTION_LOG": "true" if prediction_log else "false"}
    return ServerProcess("transformer", model_name, port or free_port(), args, log_dir or ".", env).start(timeout)


@dataclass
class LocalServing:
    predictor: ServerProcess
    transformer: ServerProcess | None = None

    def stop(self) -> None:
        if self.transformer is not None:
            self.transformer.stop()  # first: it ships its prediction log
        self.predictor.stop()
