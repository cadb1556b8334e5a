"""``spx serve``: the MLflow champion on the KServe V2 protocol on localhost, with live features.

Resolves the ``champion`` alias (or ``--model-version N``) of ``$SPX_REGISTERED_MODEL``, copies
its native file from the object store (as KServe's storage initializer would), materializes the
champion's gold run into the local Feast online store, starts the predictor and the transformer
(the same modules the cluster runs) and prints how to call them. Ctrl-C stops both.
"""

from __future__ import annotations

import json
import signal
import threading
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
    lines += ["", "Predictor (a row of features, in the order listed by its metadata):",
              f"  curl -s {predictor_url}/v2/models/{name}",
              f"  curl -s -H 'content-type: application/json' {predictor_url}/v2/models/{name}/infer \\",
              f"    -d '{{\"inputs\":[{{\"name\":\"features\",\"datatype\":\"FP64\",\"shape\":[1,{n}],"
              f"\"data\":[{zeros}]}}]}}'"]
    if transformer_url:
        as_of_part = (f',{{"name":"as_of","datatype":"BYTES","shape":[1],"data":["{as_of}"]}}'
                      if as_of else "")
        lines += ["", "Transformer (features come from Feast's online store):",
                  f"  curl -s -H 'content-type: application/json' {transformer_url}/v2/models/{name}/infer \\",
                  f"    -d '{{\"inputs\":[{{\"name\":\"instrument\",\"datatype\":\"BYTES\",\"shape\":[1],"
                  f"\"data\":[\"SPX500_USD\"]}}{as_of_part}]}}'",
                  "", "Python (tritonclient):",
                  "  import numpy as np, tritonclient.http as http",
                  f"  c = http.InferenceServerClient('{transformer_url.split('//', 1)[1]}')",
                  "  x = http.InferInput('instrument', [1], 'BYTES')",
                  "  x.set_data_from_numpy(np.array([b'SPX500_USD'], dtype=object))",
                  f"  r = c.infer('{name}', [x]); print(r.as_numpy('prediction'), r.as_numpy('probability'))"]
    return "\n".join(lines)


def serve(
    model_version: Optional[int] = typer.Option(None, "--model-version", help="serve this version, not the champion"),
    port: int = typer.Option(8080, help="transformer port (the entry point)"),
    predictor_port: int = typer.Option(8081, help="predictor port"),
    transformer: bool = typer.Option(True, "--transformer/--no-transformer", help="also start the Feast transformer"),
    materialize: bool = typer.Option(True, "--materialize/--no-materialize",
                                     help="materialize the champion's gold run into the online store first"),
    max_feature_age: float = typer.Option(900.0, help="seconds after which features count as stale (422)"),
    logger_url: Optional[str] = typer.Option(None, "--logger-url", help="POST KServe logger CloudEvents here"),
    check: bool = typer.Option(False, "--check", help="send one request to each server, print, stop"),
) -> None:
    """Serve the MLflow champion on the KServe V2 protocol (predictor + Feast transformer)."""
    from components.serving import champion, features
    from components.serving.local import LocalServing, start_predictor, start_transformer
    from spx.config import settings
    from spx.storage import ObjectStore

    from spx.local_services import embedded_s3

    cfg = settings()
    with embedded_s3(cfg.home):  # the embedded S3 server unless SPX_S3_ENDPOINT names one
        _serve(cfg, champion, features, LocalServing, start_predictor, start_transformer, ObjectStore,
               model_version=model_version, port=port, predictor_port=predictor_port, transformer=transformer,
               materialize=materialize, max_feature_age=max_feature_age, logger_url=logger_url, check=check)


def _serve(cfg, champion, features, LocalServing, start_predictor, start_transformer, ObjectStore, *,
           model_version, port, predictor_port, transformer, materialize, max_feature_age, logger_url,
           check) -> None:
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
    running = LocalServing(start_predictor(model_dir, info.name, predictor_port, log_dir))
    try:
        if transformer:
            running.transformer = start_transformer(predictor_port, info.name, port, log_dir,
                                                    max_feature_age_seconds=max_feature_age,
                                                    logger_url=logger_url)
        typer.echo(_examples(info, running.predictor.url,
                             running.transformer.url if running.transformer else None, as_of))
        typer.echo(f"logs: {log_dir}")
        if check:
            _check(info, running, as_of)
            return
        typer.echo("Ctrl-C to stop.")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set():
            if running.predictor.proc.poll() is not None or (
                    running.transformer and running.transformer.proc.poll() is not None):
                typer.echo("a server exited; see the logs", err=True)
                raise typer.Exit(1)
            stop.wait(1.0)
    finally:
        running.stop()


def _check(info, running, as_of: str | None) -> None:
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
        resp = requests.post(f"{running.transformer.url}/v2/models/{info.name}/infer",
                             json={"inputs": inputs}, timeout=10)
        typer.echo(f"transformer check: {resp.status_code} {resp.text}")
        resp.raise_for_status()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    _app()
