"""``spx serve``: the MLflow champion on the KServe V2 protocol on localhost, with live features.

Resolves the ``champion`` alias (or ``--model-version N``) of ``$SPX_REGISTERED_MODEL``, copies
its native file from the object store (as KServe's storage initializer would), materializes the
champion's gold run into the local Feast online store, starts the predictor and the transformer
(the same modules the cluster runs) and prints how to call them. Ctrl-C stops both.

Every served prediction is logged: by default ``spx serve`` also starts the prediction-log sink
(``spx.components.monitoring.sink``, the process the cluster's sink Deployment runs) on loopback, points
the transformer's KServe-logger CloudEvents at it (authenticated with ``$SPX_SINK_TOKEN``, or a token
made up for this run), and on exit stops it, which flushes the last batch to
``predictions/date=…/*.parquet`` in the bucket. ``--logger-url URL`` sends the events to an external
sink instead; ``--no-log-predictions`` logs nothing.

All three processes bind ``$SPX_SERVE_HOST`` (default ``127.0.0.1``) and are supervised: one that
exits is restarted on the same port with exponential backoff while the others keep serving (the
transformer spills log events to disk while the sink is away and replays them when it is back).
Their output goes to size-rotated logs under ``$SPX_HOME/serving/logs``.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer


def _examples(info, predictor_url: str, transformer_url: str | None, as_of: str | None) -> str:
    name = info.name
    n = len(info.feature_columns)
    zeros = ", ".join(["0.0"] * n)
    lines = [
        f"Serving {name} version {info.version} ({info.model_format}, {n} features)",
        f"  predictor   {predictor_url}/v2/models/{name}",
    ]
    if transformer_url:
        lines.append(f"  transformer {transformer_url}/v2/models/{name}")
    lines += [
        "",
        "Predictor (a row of features, in the order listed by its metadata):",
        f"  curl -s {predictor_url}/v2/models/{name}",
        f"  curl -s -H 'content-type: application/json' {predictor_url}/v2/models/{name}/infer \\",
        f'    -d \'{{"inputs":[{{"name":"features","datatype":"FP64","shape":[1,{n}],"data":[{zeros}]}}]}}\'',
    ]
    if transformer_url:
        as_of_part = f',{{"name":"as_of","datatype":"BYTES","shape":[1],"data":["{as_of}"]}}' if as_of else ""
        lines += [
            "",
            "Transformer (features come from Feast's online store):",
            f"  curl -s -H 'content-type: application/json' {transformer_url}/v2/models/{name}/infer \\",
            f'    -d \'{{"inputs":[{{"name":"instrument","datatype":"BYTES","shape":[1],'
            f'"data":["SPX500_USD"]}}{as_of_part}]}}\'',
            "",
            "Python (tritonclient):",
            "  import numpy as np, tritonclient.http as http",
            f"  c = http.InferenceServerClient('{transformer_url.split('//', 1)[1]}')",
            "  x = http.InferInput('instrument', [1], 'BYTES')",
            "  x.set_data_from_numpy(np.array([b'SPX500_USD'], dtype=object))",
        ]
        inputs = "[x]"
        if as_of:  # the newest online row is older than the staleness limit: ask as of its time
            lines += [
                "  t = http.InferInput('as_of', [1], 'BYTES')",
                f"  t.set_data_from_numpy(np.array([b'{as_of}'], dtype=object))",
            ]
            inputs = "[x, t]"
        lines.append(f"  r = c.infer('{name}', {inputs}); print(r.as_numpy('prediction'), r.as_numpy('probability'))")
    return "\n".join(lines)


def serve(
    model_version: Optional[int] = typer.Option(None, "--model-version", help="serve this version, not the champion"),
    port: int = typer.Option(8080, help="transformer port (the entry point)"),
    predictor_port: int = typer.Option(8081, help="predictor port"),
    transformer: bool = typer.Option(True, "--transformer/--no-transformer", help="also start the Feast transformer"),
    materialize: bool = typer.Option(
        True, "--materialize/--no-materialize", help="materialize the champion's gold run into the online store first"
    ),
    max_feature_age: float = typer.Option(900.0, help="seconds after which features count as stale (422)"),
    log_predictions: bool = typer.Option(
        True, "--log-predictions/--no-log-predictions", help="start the prediction-log sink and log every prediction"
    ),
    logger_url: Optional[str] = typer.Option(
        None, "--logger-url", help="an external sink: POST KServe logger CloudEvents here (no local sink is started)"
    ),
    sink_port: int = typer.Option(8085, help="port of the local prediction-log sink (busy: a free one)"),
    sink_flush_interval: float = typer.Option(30.0, help="seconds between the local sink's parquet batches"),
    check: bool = typer.Option(False, "--check", help="send one request to each server, print, stop"),
) -> None:
    """Serve the MLflow champion on the KServe V2 protocol (predictor + Feast transformer)."""
    from spx.components.selection import champion
    from spx.components.serving import features
    from spx.components.serving.local import LocalServing, start_predictor, start_transformer
    from spx.core.services import embedded_s3
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    cfg = settings()
    with embedded_s3(cfg.home) as endpoint:  # the embedded S3 server unless SPX_S3_ENDPOINT names one
        typer.echo(f"S3 endpoint {endpoint} (bucket {settings().s3.bucket})")
        _serve(
            cfg,
            champion,
            features,
            LocalServing,
            start_predictor,
            start_transformer,
            ObjectStore,
            model_version=model_version,
            port=port,
            predictor_port=predictor_port,
            transformer=transformer,
            materialize=materialize,
            max_feature_age=max_feature_age,
            logger_url=logger_url,
            check=check,
            log_predictions=log_predictions,
            sink_port=sink_port,
            sink_flush_interval=sink_flush_interval,
        )


def _serve(
    cfg,
    champion,
    features,
    LocalServing,
    start_predictor,
    start_transformer,
    ObjectStore,
    *,
    model_version,
    port,
    predictor_port,
    transformer,
    materialize,
    max_feature_age,
    logger_url,
    check,
    log_predictions=True,
    sink_port=8085,
    sink_flush_interval=30.0,
) -> None:
    info = champion.resolve(version=model_version)
    model_dir = cfg.home / "serving" / "models" / info.name / info.version
    champion.download(info, model_dir, ObjectStore())
    typer.echo(f"model {info.name} v{info.version} ({info.model_format}) from {info.native_uri}")
    as_of = None
    if transformer and materialize:
        store = ObjectStore()
        gold_uri = store.uri(f"gold/{info.run_id}/features.parquet")
        manifest_uri = store.uri(f"gold/{info.run_id}/manifest.json")
        if info.run_id and store.exists(gold_uri) and store.exists(manifest_uri):
            summary = json.loads(features.materialize_logic(gold_uri, manifest_uri, info.run_id))
            newest = sorted(summary["instruments"].values())
            as_of = newest[-1] if newest else None
            typer.echo(f"materialized {summary['feature_views']} for {sorted(summary['instruments'])}")
        else:
            typer.echo(f"no gold run {info.run_id!r} in the object store; serving what the online store holds")
    log_dir = cfg.home / "serving" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    from spx.core.processes import Supervisor
    from spx.core.settings import serving_settings

    serving = serving_settings()
    # the writers' token: the configured one, else one made up for this run (the sink and the
    # transformer get it through their environment)
    token = serving.sink_token or secrets.token_urlsafe(24)
    child_env = {"SPX_SINK_TOKEN": token}
    sink = None
    if transformer and log_predictions and not logger_url:
        sink = start_sink(serving.sink_wal_dir, log_dir, sink_port, flush_interval=sink_flush_interval, token=token)
        logger_url = f"{sink.url}/"
    elif not serving.sink_token:
        child_env = {}
    try:
        running = LocalServing(start_predictor(model_dir, info.name, predictor_port, log_dir))
    except BaseException:
        if sink is not None:
            _stop_sink(sink)
        raise
    try:
        if transformer:
            running.transformer = start_transformer(
                predictor_port,
                info.name,
                port,
                log_dir,
                max_feature_age_seconds=max_feature_age,
                logger_url=logger_url if log_predictions else None,
                env=child_env,
            )
        typer.echo(
            _examples(info, running.predictor.url, running.transformer.url if running.transformer else None, as_of)
        )
        typer.echo(f"logs: {log_dir} (rotated at 10 MB, 3 kept)")
        typer.echo(_log_destination(sink, logger_url if (transformer and log_predictions) else None))
        if check:
            request_id = _check(info, running, as_of)
            if sink is not None and request_id:
                _wait_logged(sink, 2)
                running.stop()
                _stop_sink(sink)
                sink = None
                _report_logged(request_id)
            return
        typer.echo("Ctrl-C to stop.")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        children = [c for c in (sink, running.predictor, running.transformer) if c is not None]
        supervisor = Supervisor(children, report=lambda line: typer.echo(line, err=True))
        while not stop.is_set():
            supervisor.check()
            stop.wait(0.5)
    finally:
        # the transformer first: its logger sends (or spills) what it holds before the sink flushes
        running.stop()
        if sink is not None:
            _stop_sink(sink)


def _port_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_sink(
    wal_dir: Path,
    log_dir: Path,
    port: int = 8085,
    flush_interval: float = 30.0,
    timeout: float = 60.0,
    token: str | None = None,
):
    """The prediction-log sink (``python -m spx.components.monitoring.sink``) on ``$SPX_SERVE_HOST``
    (loopback by default), WAL in ``wal_dir``, writers authenticated with ``token``."""
    from spx.components.serving.local import ServerProcess
    from spx.core.processes import free_port
    from spx.core.settings import serving_settings

    if not _port_free(port):
        new = free_port()
        typer.echo(f"port {port} is busy; the prediction-log sink listens on {new}")
        port = new
    cmd = [
        sys.executable,
        "-m",
        "spx.components.monitoring.sink",
        "--host",
        serving_settings().host,
        "--port",
        str(port),
        "--wal-dir",
        str(wal_dir),
        "--flush-interval",
        str(flush_interval),
    ]
    server = ServerProcess(
        "sink",
        port,
        cmd,
        Path(log_dir) / f"sink-{port}.log",
        "/healthz",
        env={"SPX_SINK_TOKEN": token} if token else None,
    )
    try:
        return server.start(timeout=timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"the prediction-log sink did not start: {exc}") from None


def _stop_sink(sink) -> None:
    """SIGTERM: the sink flushes its buffer to the bucket (anything unflushed stays in its WAL)."""
    sink.stop(timeout=60.0)
    typer.echo(f"prediction-log sink stopped (flushed); its log: {sink.log_path}")


def _log_destination(sink, logger_url: str | None) -> str:
    from spx.core.settings import settings

    if logger_url is None:
        return "prediction log: off"
    if sink is None:
        return f"prediction log: KServe logger CloudEvents -> {logger_url} (external sink)"
    bucket = settings().s3.bucket
    return (
        f"prediction log: KServe logger CloudEvents -> sink {sink.url} -> s3://{bucket}/predictions/"
        f"date=YYYY-MM-DD/*.parquet (batches every flush interval and on exit; "
        f"read with spx.components.serving.prediction_log.read_predictions)"
    )


def _wait_logged(sink, n_events: int, timeout: float = 20.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = requests.get(f"{sink.url}/healthz", timeout=5).json()
        if health.get("accepted", 0) + health.get("duplicates", 0) >= n_events:
            return
        time.sleep(0.1)
    typer.echo(f"the sink acknowledged fewer than {n_events} events within {timeout:.0f}s", err=True)


def _report_logged(request_id: str) -> None:
    from spx.components.serving.prediction_log import read_predictions
    from spx.core.storage import ObjectStore

    log = read_predictions(ObjectStore(), flatten=False)
    mine = log[log["request_id"] == request_id]
    if mine.empty:
        typer.echo(f"prediction log check: request {request_id} NOT in the bucket", err=True)
        raise typer.Exit(1)
    row = mine.iloc[0]
    typer.echo(
        f"prediction log check: request {request_id} logged (model version {row['model_version']}, "
        f"probability {row['probability']:.6f}, at {row['timestamp'].isoformat()})"
    )


def _check(info, running, as_of: str | None) -> str | None:
    import requests

    n = len(info.feature_columns)
    body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, n], "data": [0.0] * n}]}
    resp = requests.post(f"{running.predictor.url}/v2/models/{info.name}/infer", json=body, timeout=10)
    typer.echo(f"predictor check: {resp.status_code} {resp.text}")
    resp.raise_for_status()
    if running.transformer:
        inputs = [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]
        if as_of:
            inputs.append({"name": "as_of", "datatype": "BYTES", "shape": [1], "data": [as_of]})
        request_id = f"spx-serve-check-{uuid.uuid4().hex[:12]}"
        resp = requests.post(
            f"{running.transformer.url}/v2/models/{info.name}/infer",
            json={"id": request_id, "inputs": inputs},
            timeout=10,
        )
        typer.echo(f"transformer check: {resp.status_code} {resp.text}")
        resp.raise_for_status()
        return request_id
    return None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    _app()
