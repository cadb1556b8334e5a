"""The chart's bucket Job: create the buckets and the policy that keeps bronze write-once, with the MinIO SDK.

``spx buckets`` runs this from the component image (the chart's ``<release>-buckets-<revision>`` Job), so the
chart needs no third-party ``mc`` image. It waits for the S3 endpoint, creates every missing bucket, and puts
one statement into the project bucket's policy (keeping any statement of the operator's own):

    Deny s3:DeleteObject, s3:DeleteObjectVersion on arn:aws:s3:::<bucket>/bronze/*   (Principal "*")

so no credential can delete raw data. Overwrites are refused by the code itself: every bronze write is a
conditional PUT (``If-None-Match: *``, :meth:`spx.core.storage.ObjectStore.put_bytes`), which S3 policies
cannot express. Where the policy binds: SeaweedFS (>= 4.x, the chart's ``seaweedfs`` store and KFP's)
enforces bucket policies for every credential, the chart's own included; MinIO applies bucket policies to
anonymous requests only (authenticated users are governed by IAM policies), so on MinIO the conditional PUT
remains the guard. Known gap, measured on SeaweedFS 4.48: its multi-object delete (``POST ?delete``,
``DeleteObjects``) does not evaluate the bucket policy, so only single-object deletes are refused there. Idempotent:
a second run changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from spx.core.errors import ServiceError
from spx.core.settings import S3Settings

log = logging.getLogger(__name__)

WRITE_ONCE_SID = "SpxBronzeWriteOnce"
WRITE_ONCE_PREFIXES = ("bronze/",)
DELETE_ACTIONS = ["s3:DeleteObject", "s3:DeleteObjectVersion"]


def write_once_statement(bucket: str, prefixes: tuple[str, ...] = WRITE_ONCE_PREFIXES) -> dict:
    """The bucket-policy statement that refuses deletes under ``prefixes`` to everyone."""
    return {
        "Sid": WRITE_ONCE_SID,
        "Effect": "Deny",
        "Principal": {"AWS": ["*"]},
        "Action": list(DELETE_ACTIONS),
        "Resource": [f"arn:aws:s3:::{bucket}/{p.strip('/')}/*" for p in prefixes],
    }


def _statements(policy: str | None) -> list[dict]:
    if not policy:
        return []
    statements = json.loads(policy).get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def merged_policy(existing: str | None, bucket: str, prefixes: tuple[str, ...] = WRITE_ONCE_PREFIXES) -> dict:
    """``existing`` (a policy document, or None) with our statement added or replaced; others kept as they are."""
    doc = json.loads(existing) if existing else {"Version": "2012-10-17"}
    doc["Statement"] = [s for s in _statements(existing) if s.get("Sid") != WRITE_ONCE_SID] + [
        write_once_statement(bucket, prefixes)
    ]
    doc.setdefault("Version", "2012-10-17")
    return doc


def _same_statement(a: dict, b: dict) -> bool:
    """Servers normalise policies (a one-item list may come back as a string): compare what they mean."""

    def norm(s: dict) -> dict:
        out = {}
        for key, value in s.items():
            if isinstance(value, dict):
                value = {k: sorted(v) if isinstance(v, list) else [v] for k, v in value.items()}
            elif isinstance(value, list):
                value = sorted(value)
            elif key in ("Action", "Resource"):
                value = [value]
            out[key] = value
        return out

    return norm(a) == norm(b)


@dataclass
class BucketReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    policy_set: bool = False  # False: the statement was there already

    def lines(self, bucket: str) -> list[str]:
        out = [f"created bucket {b}" for b in self.created] + [f"bucket {b} exists" for b in self.existing]
        state = "set" if self.policy_set else "already in place"
        out.append(f"policy {WRITE_ONCE_SID} on {bucket} ({', '.join(WRITE_ONCE_PREFIXES)}: no delete): {state}")
        return out


def minio_client(s3: S3Settings):
    """A MinIO SDK client for ``s3`` (the endpoint URL's scheme decides TLS)."""
    from minio import Minio

    url = urlparse(s3.endpoint_url or "")
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ServiceError(f"S3 endpoint {s3.endpoint_url!r} is not an http(s) URL: set SPX_S3_ENDPOINT")
    return Minio(
        url.netloc,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=url.scheme == "https",
        region=s3.region,
    )


def wait_for_endpoint(client, endpoint: str, timeout: float, say: Callable[[str], None]) -> None:
    """Retry ``list_buckets`` until the store answers (it may still be starting) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, 503 while starting: all mean "not yet"
            if time.monotonic() >= deadline:
                raise ServiceError(f"S3 endpoint {endpoint} did not answer within {timeout:.0f} s: {exc}") from exc
            say(f"waiting for {endpoint}: {type(exc).__name__}")
            time.sleep(3)


def prepare_buckets(
    s3: S3Settings,
    buckets: list[str],
    *,
    write_once_bucket: str,
    timeout: float = 600.0,
    say: Callable[[str], None] = log.info,
) -> BucketReport:
    """Create the missing ``buckets`` and put the bronze write-once statement on ``write_once_bucket``."""
    from minio.error import S3Error

    client = minio_client(s3)
    wait_for_endpoint(client, s3.endpoint_url or "", timeout, say)
    report = BucketReport()
    for bucket in dict.fromkeys([write_once_bucket, *buckets]):
        if client.bucket_exists(bucket):
            report.existing.append(bucket)
        else:
            client.make_bucket(bucket)
            report.created.append(bucket)
    try:
        current = client.get_bucket_policy(write_once_bucket)
    except S3Error as exc:
        if exc.code != "NoSuchBucketPolicy":
            raise
        current = None
    wanted = write_once_statement(write_once_bucket)
    have = [s for s in _statements(current) if s.get("Sid") == WRITE_ONCE_SID]
    if not (len(have) == 1 and _same_statement(have[0], wanted)):
        client.set_bucket_policy(write_once_bucket, json.dumps(merged_policy(current, write_once_bucket)))
        report.policy_set = True
    return report
