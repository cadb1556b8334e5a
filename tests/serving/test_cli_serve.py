"""`spx serve --check`: resolves the MLflow champion, materializes its gold run, starts both
servers on loopback, calls each once, stops them."""

from __future__ import annotations

import os
import subprocess
import sys

from components.serving.local import REPO_ROOT
from spx.local_services import free_port


def test_spx_serve_check(serving_env, xgb_champion):
    port, predictor_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "serve", "--check", "--port", str(port), "--predictor-port", str(predictor_port), "--max-feature-age", "3600"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"Serving {os.environ['SPX_REGISTERED_MODEL']} version {xgb_champion.version}" in out
    assert "predictor check: 200" in out and "transformer check: 200" in out
    assert f"http://127.0.0.1:{port}/v2/models/" in out and "tritonclient" in out
    assert "\"prediction\"" in out
