"""Real-world shapes against the real S3 server (issue 19): one dataset per bronze prefix, a second source never
mixed into the first, chunks that disagree refused by name, and a way out that keeps bronze write-once
(a tombstone, never a delete) — through the library and the ``spx bronze`` commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from spx.components.bronze.market import (
    bronze_prefix,
    ingest_market,
    list_chunks,
    read_bronze,
    retire_chunk,
    write_chunk,
)
from spx.core.errors import DataValidationError, ObjectNotFoundError
from tests.shapes import builders as B


@pytest.fixture(scope="module")
def jan() -> pd.DataFrame:
    return B.january(B.minute_2011())


def test_a_second_file_under_the_same_instrument_gets_its_own_dataset(store, tmp_path, jan):
    spy = B.write(jan, tmp_path / "spy.parquet")
    index = spx_like(B.regular_only(jan))
    spx = B.write(index, tmp_path / "spx.parquet")
    a = ingest_market(store, source="file", path=str(spy), instrument="SPX500_USD", granularity="M1")
    b = ingest_market(store, source="file", path=str(spx), instrument="SPX500_USD", granularity="M1")
    assert a != b and "/file-spy-" in a and "/file-spx-" in b
    # each prefix holds one series: nothing concatenated, no duplicate stamps
    assert read_bronze(store, a, granularity="M1")["close"].tolist() == jan["close"].tolist()
    assert read_bronze(store, b, granularity="M1")["close"].tolist() == index["close"].tolist()
    # the same file again: the same prefix, nothing new written
    keys = store.list(a)
    assert ingest_market(store, source="file", path=str(spy), instrument="SPX500_USD", granularity="M1") == a
    assert store.list(a) == keys


def test_overlapping_windows_of_one_file_are_read_once(store, tmp_path, jan):
    path = B.write(jan, tmp_path / "spy.parquet")
    first = ingest_market(store, source="file", path=str(path), instrument="X", granularity="M1", end="2011-01-14")
    second = ingest_market(store, source="file", path=str(path), instrument="X", granularity="M1", start="2011-01-10")
    assert first == second and len(store.list(first)) == 2
    assert read_bronze(store, first, granularity="M1")["timestamp"].tolist() == jan["timestamp"].tolist()


def test_two_sources_in_one_prefix_are_refused_by_name_and_a_tombstone_retires_one(store, jan):
    """The old layout put every file under bronze/market/file/{instrument}/: silver then found duplicate stamps and
    the prefix failed every later run, with no way to remove the chunk."""
    prefix = bronze_prefix("file", "SPX500_USD", "M1")
    spy = write_chunk(store, prefix, jan, source="spy.csv", granularity="M1")
    other = spx_like(jan)
    other = other[other["timestamp"] >= "2011-01-10"].reset_index(drop=True)
    es = write_chunk(store, prefix, other, source="spx.csv", granularity="M1")
    with pytest.raises(DataValidationError, match="chunks disagree on the bar ending .*spx bronze retire") as err:
        read_bronze(store, prefix, granularity="M1")
    assert spy in str(err.value) and es in str(err.value)
    before = store.get_bytes(es)
    tomb = retire_chunk(store, es, reason="the SPX index file ingested under the SPY instrument by mistake")
    assert tomb.endswith("/_retired/" + es.rsplit("/", 1)[1].removesuffix(".parquet") + ".json")
    assert read_bronze(store, prefix, granularity="M1")["timestamp"].tolist() == jan["timestamp"].tolist()
    assert store.get_bytes(es) == before  # write-once: the chunk is kept, byte for byte
    chunks = {c.key: c for c in list_chunks(store, prefix)}
    assert chunks[es].retired["reason"].startswith("the SPX index") and chunks[spy].retired is None
    assert retire_chunk(store, es, reason="again") == tomb  # the first tombstone stays
    assert store.get_json(tomb)["reason"].startswith("the SPX index")
    with pytest.raises(ObjectNotFoundError, match="spx bronze list"):
        retire_chunk(store, prefix + "20990101T000000Z_20990102T000000Z.parquet", reason="x")
    with pytest.raises(DataValidationError, match="not a bronze market chunk"):
        retire_chunk(store, "gold/run/features.parquet", reason="x")
    # the same bars can come back under the retired key's name: written beside it, the retired one untouched
    again = write_chunk(store, prefix, other, source="es.csv", granularity="M1")
    assert again != es and again.rsplit("/", 1)[1].startswith(es.rsplit("/", 1)[1].removesuffix(".parquet") + "-")


def test_two_instruments_that_do_not_overlap_are_not_joined_into_one_series(store, minute):
    """Had the dates not overlapped, the old reader concatenated two instruments into one series without a word."""
    prefix = bronze_prefix("file", "SPX500_USD", "M1")
    jan, march = B.january(minute), minute[minute["timestamp"] >= "2011-03-01"].reset_index(drop=True)
    write_chunk(store, prefix, jan, source="spy.csv", granularity="M1")
    index = write_chunk(store, prefix, spx_like(march), source="spx.csv", granularity="M1")
    with pytest.raises(DataValidationError, match="chunks do not join — the price goes from 128.* to 13[0-9][0-9]"):
        read_bronze(store, prefix, granularity="M1", start="2011-01-20")
    retire_chunk(store, index, reason="another instrument")
    assert len(read_bronze(store, prefix, granularity="M1", start="2011-01-20", end="2011-01-31")) > 0


def spx_like(bars: pd.DataFrame) -> pd.DataFrame:
    """An SPX-like index from the real SPY bars: prices x10, no volume (another instrument at another level)."""
    return bars.assign(**{c: bars[c] * 10 for c in B.PRICES}, volume=0.0)


@pytest.fixture(scope="module")
def minute() -> pd.DataFrame:
    return B.minute_2011()


def test_spx_bronze_list_and_retire(store, s3_env, jan):
    from spx.cli import app

    prefix = bronze_prefix("oanda", "SPX500_USD", "M1")
    key = write_chunk(store, prefix, jan.iloc[:2000], source="oanda", granularity="M1")
    runner = CliRunner()
    listed = runner.invoke(app, ["bronze", "list", prefix])
    assert listed.exit_code == 0, listed.output
    assert key.rsplit("/", 1)[1] in listed.output and "1 live chunk(s), 0 retired" in listed.output
    retired = runner.invoke(app, ["bronze", "retire", key, "--reason", "revised by the broker"])
    assert retired.exit_code == 0, retired.output
    listed = runner.invoke(app, ["bronze", "list", prefix, "--all"])
    assert "retired" in listed.output and "revised by the broker" in listed.output
    assert "0 live chunk(s), 1 retired" in listed.output


def test_spx_run_refuses_bad_input_before_any_server_starts(tmp_path, jan):
    """The pre-flight: ``spx run`` on a start-stamped hourly file with too long a horizon, a missing path, ...
    stops in this process with one line (exit 1), and no S3 server was started (nothing under $SPX_HOME/s3)."""
    home = tmp_path / "home"
    starts = B.start_stamped(jan, pd.Timedelta(minutes=1))
    path = B.write(starts, tmp_path / "starts.parquet")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPX_", "AWS_"))} | {"SPX_HOME": str(home)}
    cases = [
        (["--market-path", str(tmp_path / "missing.csv")], "market data file not found"),
        (["--market-path", str(path)], "pass --timestamps start"),
        (
            ["--market-path", str(path), "--timestamps", "start", "--horizon-short", "400"],
            "horizon 400 bars never fits",
        ),
    ]
    for extra, expected in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "spx.cli", "run", "--source", "file", "--news-source", "none", *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and last.startswith("spx: ") and expected in last, proc.stderr
    assert not (home / "s3").exists() and not (home / "runs").exists()
