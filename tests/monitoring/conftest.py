"""Monitoring tests get a bucket of their own per test (the shared fixture reuses one bucket)."""

from __future__ import annotations

import uuid

import pytest

from spx.core.settings import S3Settings
from spx.core.storage import ObjectStore


@pytest.fixture()
def store(s3_env, monkeypatch) -> ObjectStore:
    bucket = f"spx-mon-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SPX_BUCKET", bucket)
    st = ObjectStore(S3Settings.from_env())
    st.ensure_bucket()
    return st
