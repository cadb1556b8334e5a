import pandas as pd
import pytest

from spx.core.storage import ImmutableObjectError, ObjectNotFoundError, parse_uri


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
