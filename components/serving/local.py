"""Start the predictor and the transformer as local processes on loopback (``spx serve``, tests,
bench). Both are the exact modules the cluster runs; only the host names differ."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spx.core.processes import free_port, wait_http

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def start_predictor(model_dir: Path, model_name: str = "spx-direction", port: int | None = None,
                    log_dir: Path | None = None, extra_args: list[str] | None = None,
                    env: dict[str, str] | None = None, timeout: float = 60.0) -> ServerProcess:
    port = port or free_port()
    log_dir = Path(log_dir or model_dir)
    log_path = log_dir / f"predictor-{port}.log"
    cmd = [sys.executable, "-m", "spx.components.serving.predictor", "--model_dir", str(model_dir),
           "--model_name", model_name, "--http_port", str(port), *(extra_args or [])]
    proc = subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=_env(env),
                            cwd=REPO_ROOT)
    server = ServerProcess("predictor", port, proc, log_path)
    _wait(server, f"/v2/models/{model_name}/ready", timeout)
    return server


def start_transformer(predictor_port: int, model_name: str = "spx-direction", port: int | None = None,
                      log_dir: Path | None = None, max_feature_age_seconds: float | None = None,
                      logger_url: str | None = None, extra_args: list[str] | None = None,
                      env: dict[str, str] | None = None, timeout: float = 90.0) -> ServerProcess:
    port = port or free_port()
    log_dir = Path(log_dir or ".")
    log_path = log_dir / f"transformer-{port}.log"
    cmd = [sys.executable, "-m", "spx.components.serving.transformer", "--predictor_host",
           f"127.0.0.1:{predictor_port}", "--model_name", model_name, "--http_port", str(port)]
    if max_feature_age_seconds is not None:
        cmd += ["--max_feature_age_seconds", str(max_feature_age_seconds)]
    if logger_url:
        cmd += ["--logger_url", logger_url]
    cmd += extra_args or []
    proc = subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=_env(env),
                            cwd=REPO_ROOT)
    server = ServerProcess("transformer", port, proc, log_path)
    _wait(server, f"/v2/models/{model_name}/ready", timeout)
    return server


def _wait(server: ServerProcess, path: str, timeout: float) -> None:
    try:
        wait_http(server.url + path, timeout=timeout, proc=server.proc)
    except Exception as exc:
        server.stop()
        tail = server.log_path.read_text(errors="replace")[-3000:] if server.log_path.exists() else ""
        raise RuntimeError(f"{server.name} did not become ready: {exc}\n--- log tail ---\n{tail}") from None


@dataclass
class LocalServing:
    predictor: ServerProcess
    transformer: ServerProcess | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.transformer is not None:
            self.transformer.stop()
        self.predictor.stop()
