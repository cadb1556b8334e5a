"""The serving speed-ups' own pieces, against real servers and a real booster: the transformer's keep-alive
client to the predictor (``--speedups client``), the predictor's direct XGBoost call (``booster``)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from spx.components.serving.client import HttpxClient, KeepAliveClient, TransportError, client


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


@pytest.mark.parametrize("own", [True, False])
@pytest.mark.parametrize(
    ("given", "host", "port"),
    [
        # what KServe's controller passes a transformer: the predictor Service's name, no port (80). The node tier
        # found the transformer crashing at start on it: int("spx-direction-predictor.spx")
        ("spx-direction-predictor.spx", "spx-direction-predictor.spx", 80),
        ("127.0.0.1:8081", "127.0.0.1", 8081),
        ("predictor.ns.svc.cluster.local:80", "predictor.ns.svc.cluster.local", 80),
        ("[::1]:8081", "::1", 8081),  # an IPv6 address: the brackets are not part of the host
    ],
)
def test_the_predictor_host_kserve_passes(given, host, port, own):
    c = client(given, 5.0, own)
    assert isinstance(c, KeepAliveClient if own else HttpxClient)
    if own:
        assert (c.host, c.port) == (host, port)
    else:
        url = c._client.base_url
        assert (url.host, url.port or 80) == (host, port)


def test_keep_alive_client_reuses_one_connection_and_forwards_headers():
    server = _Server()

    async def run(port):
        client = KeepAliveClient("127.0.0.1", port, timeout=5)
        answers = [
            await client.request("POST", "/v2/models/m/infer", b'{"n": %d}' % i, {"x-request-id": f"r{i}"})
            for i in range(5)
        ]
        await client.aclose()
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
        first = await client.request("POST", "/p", b"{}")
        second = await client.request(
            "POST", "/p", b'{"again": true}'
        )  # the pooled connection dies: a fresh one answers
        return first, second

    first, second = asyncio.run(_with_server(server, run))
    assert first[0] == second[0] == 200
    assert second[1] == b'{"echo": {"again": true}}'
    assert server.connections == 2


def test_connection_close_answers_are_not_pooled_and_failures_are_transport_errors():
    server = _Server(close_after_answer=True)

    async def run(port):
        client = KeepAliveClient("127.0.0.1", port, timeout=5)
        answers = [await client.request("POST", "/p", b"{}") for _ in range(3)]
        assert not client._idle
        return answers

    assert [a[0] for a in asyncio.run(_with_server(server, run))] == [200] * 3
    assert server.connections == 3

    async def refused():
        from spx.core.processes import free_port

        await KeepAliveClient("127.0.0.1", free_port(), timeout=2).request("POST", "/p", b"{}")

    with pytest.raises(TransportError, match="cannot connect"):
        asyncio.run(refused())

    async def silent():
        async def never(reader, writer):
            await asyncio.sleep(10)

        srv = await asyncio.start_server(never, "127.0.0.1", 0)
        try:
            port = srv.sockets[0].getsockname()[1]
            await KeepAliveClient("127.0.0.1", port, timeout=0.3).request("POST", "/p", b"{}")
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
