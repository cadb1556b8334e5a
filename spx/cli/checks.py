"""``spx check``: what the chart's ``helm test`` pod runs after an install — every service the pipeline's tasks
need, reached the way the tasks reach it (the env ConfigMap's Service names, the S3 Secret).

Each check prints one ``PASS``/``FAIL`` line; the command exits 1 when any failed. Checks:

* **s3**: the project bucket and the extra buckets exist; a write, read and delete round trip under
  ``checks/``; the bucket policy that keeps bronze write-once is there (and whether this store enforces it for
  the chart's credential: SeaweedFS does, MinIO applies bucket policies to anonymous requests only).
* **mlflow**: the tracking server answers ``/health`` and a REST search *by its Service name* (MLflow >= 3.5
  refuses unknown ``Host`` headers: the chart's ``--allowed-hosts``).
* **redis**: the Feast online store answers PING.
* **feast**: the registry object in the bucket, when the pipeline's Feast step has written it, loads and lists
  its feature views; before the first run it is reported as not written yet (not a failure).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _run(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except Exception as exc:  # noqa: BLE001 - a check reports any failure as one line, the next check still runs
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:400])


def check_s3(extra_buckets: list[str]) -> list[CheckResult]:
    from minio.error import S3Error

    from spx.core.buckets import WRITE_ONCE_SID, minio_client
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    s3 = settings().s3
    results = []

    def buckets() -> str:
        client = minio_client(s3)
        missing = [b for b in dict.fromkeys([s3.bucket, *extra_buckets]) if not client.bucket_exists(b)]
        if missing:
            raise RuntimeError(f"missing bucket(s) {missing} at {s3.endpoint_url}")
        return f"{', '.join(dict.fromkeys([s3.bucket, *extra_buckets]))} at {s3.endpoint_url}"

    def round_trip() -> str:
        store = ObjectStore(s3)
        key = f"checks/{uuid.uuid4().hex}"
        store.put_bytes(key, b"spx check")
        if store.get_bytes(key) != b"spx check":
            raise RuntimeError(f"s3://{s3.bucket}/{key} read back different bytes")
        store.delete(key)
        return f"write, read, delete s3://{s3.bucket}/checks/…"

    def bronze_policy() -> str:
        client = minio_client(s3)
        policy = client.get_bucket_policy(s3.bucket)
        if WRITE_ONCE_SID not in policy:
            raise RuntimeError(f"bucket {s3.bucket} has no {WRITE_ONCE_SID} statement: run `spx buckets`")
        try:  # a key that does not exist: S3 answers 204 when deletes are allowed, AccessDenied when refused
            client.remove_object(s3.bucket, f"bronze/.spx-check-{uuid.uuid4().hex}")
            enforced = "NOT enforced for this credential (MinIO: bucket policies bind anonymous requests only)"
        except S3Error as exc:
            if exc.code != "AccessDenied":
                raise
            enforced = "enforced: a delete under bronze/ is refused"
        return f"{WRITE_ONCE_SID} present; {enforced}"

    results.append(_run("s3 buckets", buckets))
    results.append(_run("s3 round trip", round_trip))
    results.append(_run("s3 bronze write-once policy", bronze_policy))
    return results


def check_mlflow() -> CheckResult:
    from urllib.parse import urlparse

    import requests

    from spx.core.settings import settings

    uri = settings().mlflow.tracking_uri

    def probe() -> str:
        if not uri.startswith("http"):
            raise RuntimeError(f"MLFLOW_TRACKING_URI={uri!r} is not a tracking server")
        health = requests.get(f"{uri.rstrip('/')}/health", timeout=10)
        health.raise_for_status()
        from mlflow.tracking import MlflowClient

        experiments = MlflowClient(tracking_uri=uri).search_experiments(max_results=5)
        return f"{urlparse(uri).netloc} answers ({len(experiments)} experiment(s) listed)"

    return _run("mlflow", probe)


def check_redis() -> CheckResult:
    from spx.core.settings import settings

    target = settings().feast.redis

    def ping() -> str:
        import redis

        host, _, port = target.partition(",")[0].rpartition(":")
        client = redis.Redis(host=host or target, port=int(port or 6379), socket_timeout=5, socket_connect_timeout=5)
        if not client.ping():
            raise RuntimeError("no PONG")
        return f"{target} answers PING"

    return _run("redis", ping)


def check_feast() -> CheckResult:
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    cfg = settings()

    def registry() -> str:
        path = cfg.feast.registry
        if not path.startswith("s3://"):
            raise RuntimeError(f"SPX_FEAST_REGISTRY={path!r}: the cluster's registry lives in the object store")
        if not ObjectStore(cfg.s3).exists(path):
            return f"{path} not written yet (the pipeline's Feast step writes it); its bucket is reachable"
        from spx.components.serving.features import feature_store

        views = sorted(v.name for v in feature_store().list_feature_views())
        return f"{path} loads: feature views {views}"

    return _run("feast registry", registry)


def run_checks(extra_buckets: list[str]) -> list[CheckResult]:
    return [*check_s3(extra_buckets), check_mlflow(), check_redis(), check_feast()]
