"""Parsing KServe logger CloudEvents into prediction-log rows, and the in-process sink."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from spx.components.monitoring.sink import PredictionSink, WriteAheadLog
from spx.components.serving.prediction_log import (
    EventError,
    parse_event,
    read_predictions,
    rows_from_pair,
)

from .helpers import FEATURES, REQUEST, RESPONSE, event_pair, headers, v2_request


def test_binary_event_pair_becomes_rows_with_features_outputs_and_latency():
    (rh, rb), (sh, sb) = event_pair(7)
    req = parse_event(rh, rb)
    resp = parse_event(sh, sb)
    assert req.id == resp.id == "req-00007"
    assert req.inference_service == "spx-direction" and req.namespace == "spx"
    rows = rows_from_pair(req, resp)
    assert len(rows) == 1
    row = rows[0]
    assert json.loads(row["inputs"]) == {
        "ret_1": pytest.approx(0.007),
        "rsi_14": 50.0,
        "vol_20": 0.1,
        "bar_timestamp": "2026-03-02T14:29:07+00:00",
    }
    assert row["probability"] == pytest.approx(0.59)
    assert row["prediction"] == 1.0
    assert row["model_name"] == "spx-direction" and row["model_version"] == "3"
    assert row["latency_ms"] == pytest.approx(4.0)
    assert row["bar_timestamp"] == pd.Timestamp("2026-03-02T14:29:07Z")
    assert row["status"] == "ok"


def test_batch_request_gives_one_row_per_instance_and_predict_proba_outputs():
    req = parse_event(
        headers("b1", REQUEST, pd.Timestamp("2026-03-02T15:00Z")),
        json.dumps(v2_request("b1", [[0.1, 40.0, 0.2], [0.2, 60.0, 0.3]])).encode(),
    )
    body = {
        "model_name": "m",
        "outputs": [{"name": "output-0", "shape": [2, 2], "datatype": "FP32", "data": [0.7, 0.3, 0.2, 0.8]}],
    }
    resp = parse_event(headers("b1", RESPONSE, pd.Timestamp("2026-03-02T15:00:00.010Z")), json.dumps(body).encode())
    rows = rows_from_pair(req, resp)
    assert [r["row_index"] for r in rows] == [0, 1]
    assert [r["probability"] for r in rows] == pytest.approx([0.3, 0.8])
    assert [r["prediction"] for r in rows] == [0.0, 1.0]
    assert json.loads(rows[1]["inputs"]) == dict(zip(FEATURES, [0.2, 60.0, 0.3]))


def test_structured_mode_and_bad_input_errors():
    envelope = {
        "specversion": "1.0",
        "id": "s1",
        "type": RESPONSE,
        "source": "x",
        "inferenceservicename": "isvc",
        "data": {"outputs": []},
    }
    ev = parse_event({"Content-Type": "application/cloudevents+json"}, json.dumps(envelope).encode())
    assert ev.id == "s1" and ev.inference_service == "isvc" and ev.data == {"outputs": []}
    with pytest.raises(EventError, match="ce-id"):
        parse_event({"ce-type": REQUEST}, b"{}")
    with pytest.raises(EventError, match="unsupported CloudEvent type"):
        parse_event({"ce-id": "x", "ce-type": "com.example.other"}, b"{}")
    with pytest.raises(EventError, match="not valid JSON"):
        parse_event({"ce-id": "x", "ce-type": REQUEST}, b"{nope")


def test_in_process_sink_writes_pairs_and_keeps_half_pairs_in_the_wal(store, tmp_path):
    sink = PredictionSink(tmp_path / "wal", store_factory=lambda: store, batch_rows=1000, flush_interval=3600).start(
        background=False
    )
    for i in range(5):
        (rh, rb), (sh, sb) = event_pair(i)
        assert sink.accept(parse_event(rh, rb, time.time())) == "accepted"
        if i != 4:  # request 4's response has not arrived yet
            assert sink.accept(parse_event(sh, sb, time.time())) == "accepted"
    (rh, rb), _ = event_pair(0)
    assert sink.accept(parse_event(rh, rb, time.time())) == "duplicate"
    uris = sink.flush()
    assert len(uris) == 1 and "/predictions/date=2026-03-02/" in uris[0]
    df = read_predictions(store)
    assert sorted(df["request_id"]) == [f"req-{i:05d}" for i in range(4)]
    assert set(FEATURES) <= set(df.columns)
    assert df["probability"].tolist() == pytest.approx([0.0, 0.37, 0.74, 0.11])
    # the half pair survives in the (rotated) WAL; the flushed segments are gone
    records = list(WriteAheadLog(tmp_path / "wal").replay())
    assert [(r["id"], r["type"]) for r in records] == [("req-00004", REQUEST)]
    sink.close()


def test_torn_wal_tail_is_skipped(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open_new()
    wal.append({"id": "a", "type": REQUEST})
    wal.close()
    seg = wal.segments()[-1][1]
    with open(seg, "ab") as fh:
        fh.write(b'{"id": "b", "ty')  # a write that was never acknowledged
    assert [r["id"] for r in WriteAheadLog(tmp_path).replay()] == ["a"]
