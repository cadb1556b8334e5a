"""`spx serve --check`: resolves the MLflow champion, materializes its gold run, starts both
servers on loopback, calls each once, stops them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from spx.components.prediction_log import read_predictions
from spx.components.serving.local import REPO_ROOT
from spx.core.processes import free_port


def _serve_check(*options: str, port: int | None = None) -> str:
    """``spx serve --check`` (the transformer on ``port``, else a free one); its output (stdout + stderr), after
    asserting it exited 0."""
    cmd = [sys.executable, "-m", "spx.cli", "serve", "--check", "--max-feature-age", "3600", *options]
    proc = subprocess.run(
        cmd + ["--port", str(port or free_port()), "--predictor-port", str(free_port())],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        cwd=REPO_ROOT,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_spx_serve_check(serving_env, xgb_champion, serving_store):
    port = free_port()
    out = _serve_check(port=port)
    assert f"Serving {os.environ['SPX_REGISTERED_MODEL']} version {xgb_champion.version}" in out
    assert "predictor check: 200" in out and "transformer check: 200" in out
    assert f"http://127.0.0.1:{port}/v2/models/" in out and "tritonclient" in out
    assert '"prediction"' in out
    assert f"S3 endpoint {os.environ['SPX_S3_ENDPOINT']} (bucket {os.environ['SPX_BUCKET']})" in out
    # each server's output went to its own (size-rotated) log under $SPX_HOME/serving/logs
    logs = {p.name.split("-")[0] for p in (serving_env / "serving" / "logs").glob("*.log")}
    assert {"predictor", "transformer"} <= logs, logs
    # the transformer logged the check request before answering and shipped it to the bucket when it stopped
    assert f"-> s3://{os.environ['SPX_BUCKET']}/predictions/date=YYYY-MM-DD/*.parquet" in out
    assert "prediction log check: request spx-serve-check-" in out and "logged" in out
    request_id = out.split("prediction log check: request ", 1)[1].split()[0]
    log = read_predictions(serving_store, flatten=False)
    mine = log[log["request_id"] == request_id]
    assert len(mine) == 1, log.tail()
    row = mine.iloc[0]
    assert row["status"] == "ok" and row["model_version"] == xgb_champion.version
    assert json.loads(row["inputs"])["instrument"] == "SPX500_USD"
    assert set(xgb_champion.features) <= set(json.loads(row["inputs"]))  # the features the model received
    assert 0.0 <= row["probability"] <= 1.0 and pd.notna(row["timestamp"])


def test_spx_serve_check_without_the_prediction_log(serving_env, xgb_champion, serving_store):
    out = _serve_check("--no-log-predictions")
    assert "prediction log: off" in out and "transformer check: 200" in out and "prediction log check" not in out


@pytest.mark.unit
def test_printed_tritonclient_example_asks_as_of_the_newest_row():
    """The bundled bars are years old: the printed Python example must pass as_of (or a user copying it
    gets 422 stale features). Checked for syntax here; run against real servers by hand."""
    from types import SimpleNamespace

    from spx.cli.serve import _examples

    info = SimpleNamespace(name="spx-direction", version="3", model_format="xgboost", feature_columns=["a", "b"])
    text = _examples(info, "http://127.0.0.1:8081", "http://127.0.0.1:8080", "2011-03-31T20:00:00+00:00")
    code = "\n".join(
        line[2:] for line in text.split("Python (tritonclient):\n", 1)[1].splitlines() if line.startswith("  ")
    )
    compile(code, "example", "exec")
    assert "InferInput('as_of'" in code and "[x, t]" in code and "2011-03-31T20:00:00+00:00" in code
    without = _examples(info, "http://127.0.0.1:8081", "http://127.0.0.1:8080", None)
    assert "as_of" not in without and "[x])" in without
