"""``spx serve``: the MLflow champion on the KServe V2 protocol on localhost, with live features.

Resolves the ``champion`` alias (or ``--model-version N``) of ``$SPX_REGISTERED_MODEL``, copies
its native file from the object store (as KServe's storage initializer would), materializes the
champion's gold run into the local Feast online store, starts the predictor and the transformer
(the same modules the cluster runs) and prints how to call them. Ctrl-C stops both.

Every served prediction is logged (``--no-log-predictions``: none): the transformer writes each answered
prediction to its local log (``$SPX_PREDICTION_LOG_DIR``, default ``$SPX_HOME/prediction-log``) before the
answer leaves and ships it to ``predictions/date=…/*.parquet`` in the bucket every
``$SPX_PREDICTION_LOG_FLUSH_SECONDS`` and when it stops.

Both processes bind ``$SPX_SERVE_HOST`` (default ``127.0.0.1``) and are supervised: one that exits is
restarted on the same port with exponential backoff (a restarted transformer ships what its predecessor
logged). Their output goes to size-rotated logs under ``$SPX_HOME/serving/logs``.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
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
        True, "--log-predictions/--no-log-predictions", help="log every prediction to the bucket"
    ),
    check: bool = typer.Option(False, "--check", help="send one request to each server, print, stop"),
) -> None:
    """Serve the MLflow champion on the KServe V2 protocol (predictor + Feast transformer)."""
    from spx.components.feature_store import store as features
    from spx.components.selection import champion
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
            check=check,
            log_predictions=log_predictions,
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
    check,
    log_predictions=True,
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

    running = LocalServing(start_predictor(model_dir, info.name, predictor_port, log_dir))
    try:
        if transformer:
            running.transformer = start_transformer(
                predictor_port,
                info.name,
                port,
                log_dir,
                max_feature_age_seconds=max_feature_age,
                prediction_log=log_predictions,
            )
        typer.echo(
            _examples(info, running.predictor.url, running.transformer.url if running.transformer else None, as_of)
        )
        typer.echo(f"logs: {log_dir} (rotated at 10 MB, 3 kept)")
        logged = transformer and log_predictions
        typer.echo(_log_destination(cfg) if logged else "prediction log: off")
        if check:
            request_id = _check(info, running, as_of)
            if logged and request_id:
                running.stop()  # the transformer ships its log when it stops
                _report_logged(request_id)
            return
        typer.echo("Ctrl-C to stop.")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        children = [c for c in (running.predictor, running.transformer) if c is not None]
        supervisor = Supervisor(children, report=lambda line: typer.echo(line, err=True))
        while not stop.is_set():
            supervisor.check()
            stop.wait(0.5)
    finally:
        running.stop()  # the transformer first: it ships what it logged


def _log_destination(cfg) -> str:
    return (
        f"prediction log: {cfg.prediction_log_dir} -> s3://{cfg.s3.bucket}/predictions/date=YYYY-MM-DD/*.parquet "
        f"(every {cfg.serving.log_flush_seconds:g} s and on exit; read with "
        "spx.components.prediction_log.read_predictions)"
    )


def _report_logged(request_id: str) -> None:
    from spx.components.prediction_log import read_predictions
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
