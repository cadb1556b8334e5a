"""`spx buckets` (the chart's bucket Job, spx/core/buckets.py) against a real S3 server (SeaweedFS, as the
chart's seaweedfs option and KFP ship it): buckets created, the bronze no-delete policy set and enforced for the
credential that set it, an operator's own statements kept, a second run a no-op."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid

import pytest
from minio.error import S3Error
from pydantic import SecretStr

from spx.core.buckets import WRITE_ONCE_SID, merged_policy, minio_client, prepare_buckets
from spx.core.errors import ServiceError
from spx.core.settings import S3Settings


@pytest.fixture()
def s3(s3_server) -> S3Settings:
    return S3Settings.model_construct(
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=SecretStr(s3_server.secret_key),
        region="us-east-1",
        bucket=f"b-{uuid.uuid4().hex[:10]}",
    )


def test_buckets_and_the_bronze_policy_are_made_once(s3):
    extra = f"x-{uuid.uuid4().hex[:10]}"
    first = prepare_buckets(s3, [extra], write_once_bucket=s3.bucket, timeout=10)
    assert first.created == [s3.bucket, extra] and first.policy_set
    again = prepare_buckets(s3, [extra], write_once_bucket=s3.bucket, timeout=10)
    assert again.existing == [s3.bucket, extra] and again.created == [] and not again.policy_set

    client = minio_client(s3)
    client.put_object(s3.bucket, "bronze/market/x.parquet", io.BytesIO(b"raw"), 3)
    with pytest.raises(S3Error) as refused:  # SeaweedFS enforces bucket policies for every credential
        client.remove_object(s3.bucket, "bronze/market/x.parquet")
    assert refused.value.code == "AccessDenied"
    client.put_object(s3.bucket, "silver/x.parquet", io.BytesIO(b"s"), 1)
    client.remove_object(s3.bucket, "silver/x.parquet")  # everything outside bronze/ stays deletable


def test_an_operators_own_statements_are_kept(s3):
    client = minio_client(s3)
    client.make_bucket(s3.bucket)
    theirs = {
        "Sid": "TheirRead",
        "Effect": "Allow",
        "Principal": {"AWS": ["*"]},
        "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{s3.bucket}/public/*"],
    }
    client.set_bucket_policy(s3.bucket, json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    assert prepare_buckets(s3, [], write_once_bucket=s3.bucket, timeout=10).policy_set
    sids = [st.get("Sid") for st in json.loads(client.get_bucket_policy(s3.bucket))["Statement"]]
    assert sorted(sids) == sorted(["TheirRead", WRITE_ONCE_SID])


def test_merged_policy_replaces_only_its_own_statement():
    old = json.dumps({"Statement": {"Sid": WRITE_ONCE_SID, "Effect": "Deny", "Action": "s3:DeleteObject"}})
    doc = merged_policy(old, "spx")
    assert [st["Sid"] for st in doc["Statement"]] == [WRITE_ONCE_SID]
    assert doc["Statement"][0]["Resource"] == ["arn:aws:s3:::spx/bronze/*"] and doc["Version"] == "2012-10-17"


def test_an_endpoint_that_never_answers_is_one_clear_error():
    s3 = S3Settings.model_construct(
        endpoint_url="http://127.0.0.1:9", access_key="a", secret_key=SecretStr("b"), region="us-east-1", bucket="spx"
    )
    with pytest.raises(ServiceError, match="did not answer within 0 s"):
        prepare_buckets(s3, [], write_once_bucket="spx", timeout=0, say=lambda _: None)


def test_the_cli_is_what_the_job_runs(s3_server, tmp_path):
    bucket = f"c-{uuid.uuid4().hex[:10]}"
    env = {
        **s3_server.env(),
        "SPX_BUCKET": bucket,
        "HOME": str(tmp_path),
        "SPX_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "buckets", "--bucket", "mlflow-c", "--timeout", "30"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"created bucket {bucket}" in proc.stdout and f"policy {WRITE_ONCE_SID} on {bucket}" in proc.stdout
