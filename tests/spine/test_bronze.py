"""Bronze: validation failures name the problem and the object; bronze is never altered;
the OANDA v20 client paginates, retries, resumes — against a loopback HTTP server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from spx.components.bronze.datasets import get_dataset
from spx.components.bronze.market import (
    OandaClient,
    OandaError,
    bronze_prefix,
    ingest_market,
    newest_stored_bar,
    parse_oanda_candles,
    read_bronze,
)
from spx.components.bronze.sessions import prepare_bars
from spx.components.bronze.validation import validate_candles
from spx.core.errors import DataValidationError
from spx.core.storage import ImmutableObjectError
from tests.spine.helpers import real_bars

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oanda"


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["volume"]), "missing columns \\['volume'\\]"),
        (lambda d: d.assign(close=d["close"].where(d.index != 5)), "NaN/inf prices"),
        (lambda d: pd.concat([d.iloc[:10], d.iloc[9:]]).reset_index(drop=True), "duplicate timestamps"),
        (lambda d: d.iloc[[0, 1, 3, 2, 4]].reset_index(drop=True), "not strictly increasing"),
        (lambda d: d.drop(index=range(3, 12)).reset_index(drop=True), "no bar in 9 consecutive exchange sessions"),
        (lambda d: d.assign(high=d["low"] - 1), "high/low inconsistent"),
        (lambda d: d.assign(close=["x"] * len(d)), "not numeric"),
        (lambda d: d.iloc[0:0], "no candles"),
    ],
)
def test_malformed_candles_fail_with_the_problem_and_the_object(mutate, message):
    bars = real_bars(20, start=100)
    with pytest.raises(DataValidationError, match=message) as err:
        validate_candles(mutate(bars), source="s3://spx/bronze/x.parquet", bar=pd.Timedelta(days=1))
    assert "s3://spx/bronze/x.parquet" in str(err.value)


def test_bad_file_never_reaches_bronze_and_bronze_is_never_overwritten(store, tmp_path):
    good = real_bars(50)
    good_path = tmp_path / "good.csv"
    good.to_csv(good_path, index=False)
    prefix_uri = ingest_market(store, source="file", path=str(good_path), instrument="SPX", granularity="D")
    assert "/bronze/market/file-good-" in prefix_uri  # the dataset is named after the file and its content
    keys_before = store.list(prefix_uri)
    blobs_before = {k: store.get_bytes(k) for k in keys_before}
    # the same bars again: identical content, nothing written, no error
    assert ingest_market(store, source="file", path=str(good_path), instrument="SPX", granularity="D") == prefix_uri
    # corrupt file: fails loudly, nothing written
    bad = good.copy()
    bad.loc[10, "close"] = np.nan
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    with pytest.raises(DataValidationError, match="NaN/inf prices"):
        ingest_market(store, source="file", path=str(bad_path), instrument="SPX", granularity="D")
    # a revised history under the same file name: a dataset of its own, the first one is left as it was
    revised = good.copy()
    revised.loc[10, "close"] = revised.loc[10, "close"] + 0.25
    revised.to_csv(good_path, index=False)
    revised_uri = ingest_market(store, source="file", path=str(good_path), instrument="SPX", granularity="D")
    assert revised_uri != prefix_uri and "/bronze/market/file-good-" in revised_uri
    assert {k: store.get_bytes(k) for k in store.list(prefix_uri)} == blobs_before
    # the same key with different content is still refused by the store (write-once)
    key = keys_before[0]
    with pytest.raises(ImmutableObjectError, match="refusing to overwrite"):
        store.put_bytes(key, b"other bytes", write_once=True)
    # missing file
    with pytest.raises(DataValidationError, match="not found"):
        ingest_market(store, source="file", path=str(tmp_path / "nope.csv"), instrument="SPX", granularity="D")


def test_reading_missing_or_corrupt_bronze_fails_loudly(store):
    with pytest.raises(DataValidationError, match="no bronze candles"):
        read_bronze(store, "bronze/market/none/X/D/", granularity="D")
    store.put_bytes(
        "bronze/market/corrupt/X/D/20200101T000000Z_20200102T000000Z.parquet", b"not parquet", write_once=True
    )
    with pytest.raises(DataValidationError, match="unreadable bronze object"):
        read_bronze(store, "bronze/market/corrupt/X/D/", granularity="D")


def test_bundled_default_is_the_real_spy_minute_bars_with_their_documented_gap(store):
    uri = ingest_market(store, source="bundled", instrument="SPX500_USD")
    assert "/spy-m1-2011q1/SPX500_USD/M1/" in uri
    bars = read_bronze(store, uri, granularity="M1")
    assert len(bars) == 31_757
    # bar-end stamps: the first regular-session bar of 2011-01-03 (09:30-09:31 New York) ends 14:31 UTC
    assert pd.Timestamp("2011-01-03 14:31", tz="UTC") in set(bars["timestamp"])
    regular = prepare_bars(bars, pd.Timedelta(minutes=1)).bars  # 09:31 ... 16:00 New York, bar ends
    assert len(regular) == 16_770 == 43 * 390
    # February is missing from the source: accepted as a documented gap, and no bar is invented for it
    feb = bars[(bars["timestamp"] >= "2011-02-01 12:00") & (bars["timestamp"] < "2011-03-01")]
    assert feb.empty


def test_an_undocumented_month_long_hole_in_minute_bars_is_still_refused(store, tmp_path):
    bars = pd.read_parquet(get_dataset("spy_m1_2011q1").path())
    path = tmp_path / "spy.parquet"
    bars.to_parquet(path)
    with pytest.raises(
        DataValidationError, match="no bar in 19 consecutive exchange sessions, 2011-02-01 .. 2011-02-28"
    ):
        ingest_market(store, source="file", path=str(path), instrument="SPY", granularity="M1")


def test_naive_bar_start_and_new_york_wall_clock_stamps_are_refused_or_converted_by_option(store, tmp_path):
    jan = pd.read_parquet(get_dataset("spy_m1_2011q1").path()).iloc[:10_000]  # January only: no gap
    regular = jan[
        (jan["timestamp"].dt.tz_convert("America/New_York").dt.time > pd.Timestamp("09:30").time())
        & (jan["timestamp"].dt.tz_convert("America/New_York").dt.time <= pd.Timestamp("16:00").time())
    ]
    path = tmp_path / "bars.parquet"
    naive = regular.assign(timestamp=regular["timestamp"].dt.tz_convert("America/New_York").dt.tz_localize(None))
    naive.to_parquet(path)
    with pytest.raises(DataValidationError, match="naive time stamps"):
        ingest_market(store, source="file", path=str(path), instrument="A", granularity="M1")
    uri = ingest_market(
        store, source="file", path=str(path), instrument="A", granularity="M1", market_tz="America/New_York"
    )
    assert read_bronze(store, uri, granularity="M1")["timestamp"].tolist() == regular["timestamp"].tolist()

    starts = regular.assign(timestamp=regular["timestamp"] - pd.Timedelta(minutes=1))
    starts.to_parquet(path)
    with pytest.raises(
        DataValidationError, match="look like bar starts, as written, not bar ends.*pass --timestamps start"
    ):
        ingest_market(store, source="file", path=str(path), instrument="B", granularity="M1")
    uri = ingest_market(store, source="file", path=str(path), instrument="B", granularity="M1", timestamps="start")
    assert read_bronze(store, uri, granularity="M1")["timestamp"].tolist() == regular["timestamp"].tolist()

    wall = regular.assign(timestamp=naive["timestamp"].dt.tz_localize("UTC"))  # New York clock labelled UTC
    wall.to_parquet(path)
    with pytest.raises(
        DataValidationError, match="look like bar ends, America/New_York wall clock.*--market-tz America/New_York"
    ):
        ingest_market(store, source="file", path=str(path), instrument="C", granularity="M1")
    uri = ingest_market(
        store, source="file", path=str(path), instrument="C", granularity="M1", market_tz="America/New_York"
    )
    assert read_bronze(store, uri, granularity="M1")["timestamp"].tolist() == regular["timestamp"].tolist()


def test_bundled_arch_dataset_is_real_sp500(store):
    uri = ingest_market(store, source="bundled", dataset="arch", instrument="SPX500_USD")
    bars = read_bronze(store, uri, granularity="D")
    assert len(bars) == 5031
    assert bars["timestamp"].iloc[0] == pd.Timestamp("1999-01-04 21:00", tz="UTC")
    assert bars["close"].iloc[-1] == pytest.approx(2506.850098, rel=1e-6)
    sliced = read_bronze(store, uri, granularity="D", start="2018-01-01", end="2018-12-31")
    assert len(sliced) == 251
    # no dataset name but daily bars asked for (the image smoke check): the daily dataset
    assert ingest_market(store, source="bundled", instrument="SPX500_USD", granularity="D") == uri


# -- OANDA v20 against a loopback server -------------------------------------------------------


def test_parse_v20_wire_format_skips_incomplete_candles():
    df = parse_oanda_candles(json.loads((FIXTURES / "candles_M1_sample.json").read_text()))
    assert len(df) == 2
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-03-04T14:30:00Z")  # OANDA's time: the candle start
    assert df["close"].tolist() == [5132.1, 5132.9]
    assert df["bid"].iloc[1] == 5132.6 and df["ask"].iloc[1] == 5133.2


def _v20_candles(bars: pd.DataFrame) -> list[dict]:
    """The real bundled bars rendered in the v20 wire format (strings, nanosecond RFC3339)."""
    out = []
    for r in bars.itertuples():
        mid = {"o": f"{r.open:.1f}", "h": f"{r.high:.1f}", "l": f"{r.low:.1f}", "c": f"{r.close:.1f}"}
        c = round(r.close, 1)
        out.append(
            {
                "complete": True,
                "volume": int(r.volume // 1e6),
                "time": r.timestamp.strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
                "mid": mid,
                "bid": {**mid, "c": f"{c - 0.3:.1f}"},
                "ask": {**mid, "c": f"{c + 0.3:.1f}"},
            }
        )
    return out


class FakeV20:
    """A loopback v20 candles endpoint with scripted failures; records every request."""

    def __init__(self, candles: list[dict], token: str = "secret-token"):
        self.candles, self.token = candles, token
        self.requests: list[dict] = []
        self.fail_plan: list[int] = []  # status codes to answer before serving normally
        self.fail_after_pages: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append({"path": url.path, **q, "auth": self.headers.get("Authorization")})
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._send(401, {"errorMessage": "Insufficient authorization to perform request."})
                if outer.fail_plan:
                    code = outer.fail_plan.pop(0)
                    return self._send(code, {"errorMessage": "slow down"}, {"Retry-After": "0"})
                served = sum(1 for r in outer.requests[:-1] if r.get("status") == 200)
                if outer.fail_after_pages is not None and served >= outer.fail_after_pages:
                    return self._send(503, {"errorMessage": "service unavailable"})
                start = pd.Timestamp(q["from"])
                inc = q.get("includeFirst", "true") == "true"
                sel = [
                    c
                    for c in outer.candles
                    if (pd.Timestamp(c["time"]) >= start if inc else pd.Timestamp(c["time"]) > start)
                ]
                outer.requests[-1]["status"] = 200
                self._send(
                    200,
                    {"instrument": "SPX500_USD", "granularity": q["granularity"], "candles": sel[: int(q["count"])]},
                )

            def _send(self, code, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def v20():
    with FakeV20(_v20_candles(real_bars(260, start=4000))) as server:
        yield server


def _client(server, **kw) -> OandaClient:
    return OandaClient(token="secret-token", base_url=server.url, page_size=100, sleep=lambda s: None, **kw)


def test_oanda_paginates_retries_and_writes_bronze(store, v20):
    v20.fail_plan = [429, 503]
    uri = ingest_market(
        store,
        source="oanda",
        instrument="SPX500_USD",
        granularity="D",
        start="2014-01-01",
        end="2030-01-01",
        client=_client(v20),
    )
    bars = read_bronze(store, uri, granularity="D")
    assert len(bars) == 260
    # OANDA stamps candle starts; bronze stores bar ends (start + one bar)
    assert bars["timestamp"].tolist() == (real_bars(260, start=4000)["timestamp"] + pd.Timedelta(days=1)).tolist()
    assert np.allclose(bars["ask"] - bars["bid"], 0.6)
    ok = [r for r in v20.requests if r.get("status") == 200]
    assert ok[0]["includeFirst"] == "true" and all(r["includeFirst"] == "false" for r in ok[1:])
    assert all(r["price"] == "MBA" and r["granularity"] == "D" and r["count"] == "100" for r in ok)
    assert all(r["auth"] == "Bearer secret-token" for r in v20.requests)
    assert len(store.list(bronze_prefix("oanda", "SPX500_USD", "D"))) == 3  # 100 + 100 + 60


def test_oanda_resumes_after_a_crash_from_the_newest_stored_bar(store, v20):
    v20.fail_after_pages = 1
    with pytest.raises(OandaError, match="503"):
        ingest_market(
            store,
            source="oanda",
            instrument="SPX500_USD",
            granularity="D",
            start="2014-01-01",
            end="2030-01-01",
            client=_client(v20, max_retries=2),
        )
    prefix = bronze_prefix("oanda", "SPX500_USD", "D")
    newest = newest_stored_bar(store, prefix)
    assert len(store.list(prefix)) == 1 and newest is not None
    v20.fail_after_pages = None
    n_req = len(v20.requests)
    ingest_market(
        store, source="oanda", instrument="SPX500_USD", granularity="D", end="2030-01-01", client=_client(v20)
    )
    resumed = v20.requests[n_req]
    # the newest stored bar END is one bar after the start of the last stored candle: resume from that start
    assert pd.Timestamp(resumed["from"]) == newest - pd.Timedelta(days=1) and resumed["includeFirst"] == "false"
    bars = read_bronze(store, prefix, granularity="D")
    assert len(bars) == 260 and bars["timestamp"].is_unique


def test_oanda_auth_error_is_not_retried(store, v20):
    client = OandaClient(token="wrong", base_url=v20.url, sleep=lambda s: None)
    with pytest.raises(OandaError, match="401.*authorization"):
        ingest_market(
            store, source="oanda", instrument="SPX500_USD", granularity="D", start="2014-01-01", client=client
        )
    assert len(v20.requests) == 1


def test_oanda_token_required(monkeypatch):
    monkeypatch.delenv("OANDA_API_TOKEN", raising=False)
    with pytest.raises(OandaError, match="OANDA_API_TOKEN"):
        OandaClient.from_env()
