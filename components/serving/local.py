"""Start the predictor and the transformer as local processes on loopback (``spx serve``, tests,
bench): the console scripts the images run (``spx-predictor``, ``spx-transformer``); only the host names differ.

Each server is a :class:`spx.core.services.ManagedProcess`: its output goes to a size-rotated log
file, and it can be stopped and started again on the same port (``spx serve`` supervises them). They
bind ``$SPX_SERVE_HOST`` (default ``127.0.0.1``)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spx.core.processes import ManagedProcess, free_port
from spx.core.settings import child_env

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess(ManagedProcess):
    """A managed server on ``port`` (``url`` is always the loopback address)."""

    def __init__(self, name: str, port: int, cmd: list[str], log_path: Path, ready_path: str, env: dict | None = None):
        self.port = port
        super().__init__(
            name, cmd, log_path, env=_env(env), cwd=REPO_ROOT, ready_url=f"http://127.0.0.1:{port}{ready_path}"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# Importing Feast (this process materializes) points prometheus_client's multiprocess mode at a temp
# directory through these variables; a server inheriting them would store every metric value in
# mmapped files of a directory owned (and deleted at exit) by this process, at a cost per request.
_FEAST_PROMETHEUS_VARS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = child_env()
    for name in _FEAST_PROMETHEUS_VARS:
        if Path(env.get(name, "")).name.startswith("feast_metrics_"):
            env.pop(name)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def _host() -> str:
    from spx.core.settings import settings

    return settings().serving.host


def _script(name: str) -> str:
    """A console script of this environment (beside its python)."""
    return str(Path(sys.executable).with_name(name))


def start_predictor(
    model_dir: Path,
    model_name: str = "spx-direction",
    port: int | None = None,
    log_dir: Path | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> ServerProcess:
    port = port or free_port()
    log_dir = Path(log_dir or model_dir)
    cmd = [
        _script("spx-predictor"),
        "--model_dir",
        str(model_dir),
        "--model_name",
        model_name,
        "--http_port",
        str(port),
        "--host",
        _host(),
        *(extra_args or []),
    ]
    server = ServerProcess(
        "predictor", port, cmd, log_dir / f"predictor-{port}.log", f"/v2/models/{model_name}/ready", env
    )
    return server.start(timeout=timeout)


def start_transformer(
    predictor_port: int,
    model_name: str = "spx-direction",
    port: int | None = None,
    log_dir: Path | None = None,
    max_feature_age_seconds: float | None = None,
    prediction_log: bool = False,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> ServerProcess:
    port = port or free_port()
    log_dir = Path(log_dir or ".")
    cmd = [
        _script("spx-transformer"),
        "--predictor_host",
        f"127.0.0.1:{predictor_port}",
        "--model_name",
        model_name,
        "--http_port",
        str(port),
        "--host",
        _host(),
    ]
    if max_feature_age_seconds is not None:
        cmd += ["--max_feature_age_seconds", str(max_feature_age_seconds)]
    cmd += extra_args or []
    env = {**(env or {}), "SPX_PREDICTION_LOG": "true" if prediction_log else "false"}
    server = ServerProcess(
        "transformer", port, cmd, log_dir / f"transformer-{port}.log", f"/v2/models/{model_name}/ready", env
    )
    return server.start(timeout=timeout)


@dataclass
class LocalServing:
    predictor: ServerProcess
    transformer: ServerProcess | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.transformer is not None:
            self.transformer.stop()
        self.predictor.stop()
