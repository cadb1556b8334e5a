"""Smoke test run INSIDE the serving image (stdin of `podman run -i ... python -`), no network.

Trains a small XGBoost booster on synthetic data, starts the real KServe V2 predictor
(the image's `spx-predictor` console script) on the container's loopback, waits for
/v2/health/ready, sends one V2 infer request and checks the probabilities equal the booster's own.
Exit code 0 only if every check holds; the server is always stopped.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import xgboost as xgb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=20
    )
    model_dir = Path(tempfile.mkdtemp(prefix="spx-model-"))
    booster.save_model(str(model_dir / "model.json"))
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            "spx-predictor",
            "--model_dir",
            str(model_dir),
            "--http_port",
            str(port),
            "--model_name",
            "spx-direction",
            "--host",
            "127.0.0.1",
        ]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"predictor exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("predictor not ready within 60 s")
            time.sleep(0.3)
        ready_s = time.perf_counter() - t0
        rows = x[:4]
        body = {
            "inputs": [
                {"name": "features", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
            ]
        }
        req = urllib.request.Request(
            f"{base}/v2/models/spx-direction/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            out = json.load(r)
        got = np.asarray(next(o for o in out["outputs"] if o["name"] == "probability")["data"], dtype=float)
        want = booster.predict(xgb.DMatrix(rows))
        assert got.shape == (4,), f"expected 4 probabilities, got {got.shape}"
        assert np.allclose(got, want, atol=1e-6), f"probabilities {got} != booster's {want}"
        print(
            f"serving smoke OK: predictor ready in {ready_s:.1f}s, V2 infer matches the booster "
            f"({np.round(got, 4).tolist()}); uid={os.getuid()}"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
