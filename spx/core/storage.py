"""S3 object store used by every stage (MinIO in the cluster, SeaweedFS locally).

Bronze objects are write-once: :meth:`ObjectStore.put_bytes` with ``write_once=True``
uses a conditional ``If-None-Match: *`` PUT, so an existing key is never overwritten even
by two racing writers. Re-writing identical content is a no-op (the SHA-256 is kept in the
object's metadata); different content raises :class:`ImmutableObjectError`.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import boto3
import pandas as pd
from botocore.config import Config
from botocore.exceptions import ClientError

from spx.core.errors import ImmutableObjectError, ObjectNotFoundError, ServiceError
from spx.core.settings import S3Settings

__all__ = ["ImmutableObjectError", "ObjectNotFoundError", "ObjectStore", "PutResult", "parse_uri", "sha256"]

log = logging.getLogger(__name__)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


@dataclass
class PutResult:
    uri: str
    sha256: str
    written: bool  # False when identical content was already there


class ObjectStore:
    def __init__(self, s3: S3Settings | None = None):
        self.settings = s3 or S3Settings.from_env()
        self.bucket = self.settings.bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=self.settings.endpoint_url,
            aws_access_key_id=self.settings.access_key,
            aws_secret_access_key=self.settings.secret_key.get_secret_value(),
            region_name=self.settings.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    # -- addressing -------------------------------------------------------------------
    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _split(self, key_or_uri: str) -> tuple[str, str]:
        if key_or_uri.startswith("s3://"):
            return parse_uri(key_or_uri)
        return self.bucket, key_or_uri

    # -- bucket -----------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
            log.info("created bucket %s", self.bucket)

    def delete_bucket(self, bucket: str | None = None) -> int:
        """Delete every object of ``bucket`` (default: this store's), then the bucket; returns the objects
        deleted. On the embedded SeaweedFS this also frees the bucket's volumes. Never used on the data path:
        bronze stays write-once; this is for scratch buckets (tests, ``spx`` state you remove on purpose)."""
        bucket = bucket or self.bucket
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
            self.client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchBucket", "404"}:
                raise
        return deleted

    # -- raw bytes --------------------------------------------------------------------
    def exists(self, key_or_uri: str) -> bool:
        bucket, key = self._split(key_or_uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise

    def head(self, key_or_uri: str) -> dict[str, Any]:
        bucket, key = self._split(key_or_uri)
        try:
            return self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFoundError(f"s3://{bucket}/{key} does not exist") from exc
            raise

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        write_once: bool = False,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        digest = sha256(data)
        bucket, key = self._split(key)
        kwargs: dict[str, Any] = dict(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata={"sha256": digest}
        )
        if write_once:
            kwargs["IfNoneMatch"] = "*"
        try:
            self.client.put_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if write_once and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                existing = self.head(f"s3://{bucket}/{key}").get("Metadata", {}).get("sha256")
                if existing is None:
                    existing = sha256(self.get_bytes(f"s3://{bucket}/{key}"))
                if existing == digest:
                    log.info("s3://%s/%s already holds identical content; skipped", bucket, key)
                    return PutResult(f"s3://{bucket}/{key}", digest, written=False)
                raise ImmutableObjectError(
                    f"refusing to overwrite write-once object s3://{bucket}/{key}: it exists with "
                    f"different content (sha256 {existing[:12]}… vs new {digest[:12]}…)"
                ) from exc
            self._explain_server_error(exc, f"s3://{bucket}/{key}")
            raise
        return PutResult(f"s3://{bucket}/{key}", digest, written=True)

    def _explain_server_error(self, exc: ClientError, where: str) -> None:
        """A 5xx from the embedded SeaweedFS is most often a full volume table: say so instead of a bare
        ``InternalError`` (boto3 has already retried)."""
        if exc.response.get("Error", {}).get("Code") not in {"InternalError", "500", "503", "ServiceUnavailable"}:
            return
        from spx.core.services import out_of_volumes_message

        problem = out_of_volumes_message(self.settings.embedded_master)
        if problem:
            raise ServiceError(f"writing {where} failed: {problem}") from exc

    def get_bytes(self, key_or_uri: str) -> bytes:
        bucket, key = self._split(key_or_uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFoundError(f"s3://{bucket}/{key} does not exist") from exc
            raise

    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix (within this store's bucket), sorted."""
        return sorted(self.iter_keys(prefix))

    def iter_keys(self, prefix: str) -> Iterator[str]:
        bucket, prefix = self._split(prefix) if prefix.startswith("s3://") else (self.bucket, prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def recent_keys(self, prefix: str, suffix: str = "", n: int = 1) -> builtins.list[str]:
        """The ``n`` most recently written keys under ``prefix`` ending in ``suffix``, newest first."""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found += [(o["LastModified"], o["Key"]) for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
        return [key for _, key in sorted(found, reverse=True)[:n]]

    def latest_key(self, prefix: str, suffix: str = "") -> str | None:
        """The most recently written key under ``prefix`` ending in ``suffix`` (None when there is none)."""
        keys = self.recent_keys(prefix, suffix, 1)
        return keys[0] if keys else None

    def delete(self, key_or_uri: str) -> None:
        bucket, key = self._split(key_or_uri)
        self.client.delete_object(Bucket=bucket, Key=key)

    # -- typed helpers ----------------------------------------------------------------
    def put_parquet(self, key: str, df: pd.DataFrame, *, write_once: bool = False) -> PutResult:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return self.put_bytes(key, buf.getvalue(), write_once=write_once, content_type="application/vnd.apache.parquet")

    def read_parquet(self, key_or_uri: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.get_bytes(key_or_uri)), columns=columns)

    def put_json(self, key: str, obj: Any, *, write_once: bool = False) -> PutResult:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        return self.put_bytes(key, data, write_once=write_once, content_type="application/json")

    def get_json(self, key_or_uri: str) -> Any:
        return json.loads(self.get_bytes(key_or_uri))

    def put_text(self, key: str, text: str, content_type: str = "text/plain") -> PutResult:
        return self.put_bytes(key, text.encode(), content_type=content_type)

    def upload_file(self, path: str, key: str) -> str:
        bucket, key = self._split(key)
        self.client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def download_file(self, key_or_uri: str, path: str) -> str:
        bucket, key = self._split(key_or_uri)
        self.client.download_file(bucket, key, str(path))
        return str(path)
