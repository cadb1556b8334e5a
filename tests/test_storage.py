from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from pydantic import SecretStr

from spx.core.errors import ServiceError
from spx.core.services import LocalS3Server
from spx.core.settings import S3Settings, settings
from spx.core.storage import ImmutableObjectError, ObjectNotFoundError, ObjectStore, parse_uri


def test_write_once_refuses_different_content_and_skips_identical(store):
    key = "bronze/test/write-once.bin"
    first = store.put_bytes(key, b"candles-v1", write_once=True)
    assert first.written and first.uri == f"s3://{store.bucket}/{key}"
    again = store.put_bytes(key, b"candles-v1", write_once=True)
    assert not again.written and again.sha256 == first.sha256
    with pytest.raises(ImmutableObjectError, match="refusing to overwrite"):
        store.put_bytes(key, b"candles-v2", write_once=True)
    assert store.get_bytes(key) == b"candles-v1"


def test_parquet_roundtrip_and_listing(store):
    df = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="UTC"), "x": [1.0, 2.0, 3.0]})
    store.put_parquet("silver/t/a.parquet", df)
    store.put_parquet("silver/t/b.parquet", df)
    assert store.list("silver/t/") == ["silver/t/a.parquet", "silver/t/b.parquet"]
    pd.testing.assert_frame_equal(store.read_parquet(store.uri("silver/t/a.parquet")), df)


def test_missing_object_is_a_clear_error(store):
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        store.get_bytes("nope/missing.parquet")


def test_parse_uri():
    assert parse_uri("s3://b/k/x.parquet") == ("b", "k/x.parquet")
    with pytest.raises(ValueError):
        parse_uri("/local/path")


def _fill_buckets(server: LocalS3Server, n: int, prefix: str) -> list[str]:
    """Create ``n`` buckets on ``server`` and write one object to each (8 at a time); returns their names."""
    env = server.env()
    base = S3Settings.model_construct(
        endpoint_url=env["SPX_S3_ENDPOINT"],
        access_key=server.access_key,
        secret_key=SecretStr(server.secret_key),
        embedded_master=env["SPX_S3_EMBEDDED_MASTER"],
    )
    names = [f"{prefix}-{i:04d}" for i in range(n)]

    def one(name: str) -> str:
        st = ObjectStore(base.model_copy(update={"bucket": name}))
        st.ensure_bucket()
        st.put_bytes("probe.bin", name.encode())
        assert st.get_bytes("probe.bin") == name.encode()
        return name

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, names))


def test_more_buckets_than_seaweedfs_own_limit_allows(tmp_path):
    """Issue 20: left to itself, `weed mini` allows free-disk / volume-size volumes (76 on an 80 GB disk) and
    every bucket takes one, so the suite's bucket-per-test filled it. The embedded server now sets its
    limits: more buckets than SeaweedFS's own limit on this machine all take writes."""
    with LocalS3Server(data_dir=tmp_path / "auto", max_volumes=0, volume_size_mb=0) as auto:
        own_max, _ = auto.capacity()
    with LocalS3Server(data_dir=tmp_path / "ours") as ours:
        allowed, _ = ours.capacity()
        assert allowed == settings().s3.max_volumes
        n = min(own_max + 5, allowed - len(ours.buckets))
        assert n > own_max or allowed <= own_max, (own_max, allowed)
        assert len(_fill_buckets(ours, n, "many")) == n
        _, free = ours.capacity()
        assert free == allowed - n - len(ours.buckets)


def test_out_of_volumes_names_the_cause(tmp_path):
    """When the volumes are all used, a write says so and names the setting, not a bare InternalError."""
    with LocalS3Server(data_dir=tmp_path / "small", max_volumes=3) as server:
        assert server.capacity() == (3, 2)  # the server's own bucket took one
        _fill_buckets(server, 2, "fits")
        with pytest.raises(ServiceError, match=r"no free volume left: all 3 are in use.*SPX_S3_MAX_VOLUMES \(now 3\)"):
            _fill_buckets(server, 1, "one-too-many")
