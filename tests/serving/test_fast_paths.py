"""The serving hot path's own pieces, against real servers and a real booster: the transformer's
keep-alive client to the predictor, the predictor's direct XGBoost call, the logger's batching."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from spx.components.serving.http_client import KeepAliveClient, TransportError


class _Server:
    """A real HTTP/1.1 server on loopback (asyncio streams). ``drop_second``: on each connection, the
    second request is read and the connection closed without an answer (what a keep-alive server
    does when its idle timeout fires as the request arrives)."""

    def __init__(self, drop_second: bool = False, close_after_answer: bool = False):
        self.drop_second = drop_second
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.drop_second and served == 1:
                    break
                answer = b'{"echo": ' + body + b"}"
                extra = b"connection: close\r\n" if self.close_after_answer else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + extra
                    + b"content-length: "
                    + str(len(answer)).encode()
                    + b"\r\n\r\n"
                    + answer
                )
                await writer.drain()
                served += 1
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _with_server(server: _Server, fn):
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        return await fn(port)
    finally:
        srv.close()
        await srv.wait_closed()


def test_keep_alive_client_reuses_one_connection_and_forwards_headers():
    server = _Server()

    async def run(port):
        client = KeepAliveClient("127.0.0.1", port, timeout=5)
        answers = [
            await client.post("/v2/models/m/infer", b'{"n": %d}' % i, {"x-request-id": f"r{i}"}) for i in range(5)
        ]
        client.close()
        return answers

    answers = asyncio.run(_with_server(server, run))
    assert [a[0] for a in answers] == [200] * 5
    assert answers[3][1] == b'{"echo": {"n": 3}}'
    assert server.connections == 1  # kept alive
    assert b"POST /v2/models/m/infer HTTP/1.1\r\n" in server.requests[0]
    assert b"x-request-id: r2\r\n" in server.requests[2]


def test_a_connection_the_server_drops_under_a_request_is_replaced_once():
    server = _Server(drop_second=True)

    async def run(port):
        client = KeepAliveClient("127.0.0.1", port, timeout=5)
        first = await client.post("/p", b"{}")
        second = await client.post("/p", b'{"again": true}')  # the pooled connection dies: a fresh one answers
        return first, second

    first, second = asyncio.run(_with_server(server, run))
    assert first[0] == second[0] == 200
    assert second[1] == b'{"echo": {"again": true}}'
    assert server.connections == 2


def test_connection_close_answers_are_not_pooled_and_failures_are_transport_errors():
    server = _Server(close_after_answer=True)

    async def run(port):
        client = KeepAliveClient("127.0.0.1", port, timeout=5)
        answers = [await client.post("/p", b"{}") for _ in range(3)]
        assert not client._idle
        return answers

    assert [a[0] for a in asyncio.run(_with_server(server, run))] == [200] * 3
    assert server.connections == 3

    async def refused():
        from spx.core.processes import free_port

        await KeepAliveClient("127.0.0.1", free_port(), timeout=2).post("/p", b"{}")

    with pytest.raises(TransportError, match="cannot connect"):
        asyncio.run(refused())

    async def silent():
        async def never(reader, writer):
            await asyncio.sleep(10)

        srv = await asyncio.start_server(never, "127.0.0.1", 0)
        try:
            await KeepAliveClient("127.0.0.1", srv.sockets[0].getsockname()[1], timeout=0.3).post("/p", b"{}")
        finally:
            srv.close()

    with pytest.raises(TransportError, match="no answer"):
        asyncio.run(silent())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_xgboost_call_equals_inplace_predict(tmp_path, dtype):
    import xgboost as xgb

    from spx.components.serving.predictor import _dense_predictor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 7))
    y = (X[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=15)
    booster.save_model(tmp_path / "model.json")
    booster = xgb.Booster(params={"nthread": 1}, model_file=str(tmp_path / "model.json"))
    predict = _dense_predictor(booster)
    assert predict is not None
    for rows in (X[:1], X[:37], X[::-2]):  # one row, many, and a non-contiguous view
        arr = rows.astype(dtype)
        got = predict(arr)
        assert got.dtype == np.float32 and got.shape == (len(rows),)
        np.testing.assert_array_equal(got, booster.inplace_predict(np.ascontiguousarray(arr), validate_features=False))


class _EventSink:
    """A real HTTP server on loopback that acknowledges CloudEvents batches and keeps their ids."""

    def __init__(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ids: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.ids += [e["id"] for e in json.loads(body)]
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_logger_close_during_the_linger_sends_the_held_batch(tmp_path):
    """Events the sender has taken off the queue while it waits for the batch to fill are still
    sent when the server shuts down (close() used to cancel the sender and lose them)."""
    from spx.components.serving.cloudevents import InferenceLogger

    sink = _EventSink()

    async def run():
        logger = InferenceLogger(sink.url, "svc", spill_dir=tmp_path / "spill", linger=2.0, namespace="ns")
        await logger.start()
        for i in range(5):
            logger.emit(f"r{i}", "request", {"id": f"r{i}", "inputs": []})
        await asyncio.sleep(0.3)  # the sender holds the 5 events and lingers for more
        assert logger._queue.qsize() == 0
        await logger.close()
        return logger.stats()

    try:
        stats = asyncio.run(run())
    finally:
        sink.stop()
    assert sorted(sink.ids) == [f"r{i}" for i in range(5)]
    assert stats["emitted"] == 5 and stats["sent"] == 5 and stats["spilled"] == 0 and stats["dropped"] == 0


def test_logged_event_record_is_the_dataclass_as_a_dict():
    from dataclasses import asdict

    from spx.components.serving.prediction_log import REQUEST_TYPE, LoggedEvent

    event = LoggedEvent(
        id="r1",
        type=REQUEST_TYPE,
        time="2026-01-05T15:30:00+00:00",
        source="s",
        inference_service="svc",
        namespace="ns",
        component="transformer",
        data={"inputs": [{"name": "instrument", "data": ["SPX500_USD"]}]},
        received_at=1.5,
        extra={"endpoint": "transformer"},
    )
    record = event.to_record()
    assert record == asdict(event)
    assert record["extra"] is not event.extra
