"""Serving latency and throughput on loopback (prints figures; targets are checked here, not in tests).

Starts a loopback S3 server, trains and registers a small real XGBoost champion in a temporary
MLflow, materializes its gold table into Feast's SQLite online store, starts the predictor and the
transformer as processes, then measures with a keep-alive HTTP client:

* predictor: p50/p99 of N sequential single-row V2 requests; rows/s for batches of 1000 rows;
* transformer (Feast lookup + predictor call): p50/p99 of N sequential single-instrument requests.

Targets: predictor p99 <= 10 ms, transformer p99 <= 25 ms.

    python bench/serve.py [--requests 2000] [--batches 50] [--format xgboost|lightgbm]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serving"))


def _latencies(session: requests.Session, url: str, body: dict, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        resp = session.post(url, json=body, timeout=10)
        out[i] = (time.perf_counter() - t0) * 1000.0
        if resp.status_code != 200:
            raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--format", choices=["xgboost", "lightgbm"], default="xgboost")
    args = parser.parse_args()

    from helpers import gold_frame, make_champion

    from spx.components.selection import champion as champ
    from spx.components.serving import features as F
    from spx.components.serving.local import start_predictor, start_transformer
    from spx.core.services import LocalS3Server
    from spx.core.storage import ObjectStore

    with tempfile.TemporaryDirectory(prefix="spx-bench-serve-") as tmp:
        tmp = Path(tmp)
        s3 = LocalS3Server(data_dir=tmp / "s3").start()
        servers = []
        try:
            os.environ.update(s3.env())
            os.environ.update({"SPX_HOME": str(tmp / "home"), "SPX_FEAST_HOME": str(tmp / "feast"),
                               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"})
            store = ObjectStore()
            frame = gold_frame(n_bars=2000, seed=1)
            ch = make_champion(store, os.environ["MLFLOW_TRACKING_URI"], args.format, run_id="bench", frame=frame)
            F.materialize_logic(ch.gold_uri, ch.manifest_uri, ch.run_id)
            info = champ.resolve()
            model_dir = champ.download(info, tmp / "model")
            predictor = start_predictor(model_dir, info.name, log_dir=tmp)
            servers.append(predictor)
            transformer = start_transformer(predictor.port, info.name, log_dir=tmp, max_feature_age_seconds=3600)
            servers.append(transformer)

            session = requests.Session()
            X = frame[ch.features].to_numpy()
            one = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, X.shape[1]],
                               "data": X[0].tolist()}]}
            p_url = f"{predictor.url}/v2/models/{info.name}/infer"
            t_url = f"{transformer.url}/v2/models/{info.name}/infer"
            inst = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]}
            _latencies(session, p_url, one, 200)  # warm-up
            _latencies(session, t_url, inst, 200)
            pred = _latencies(session, p_url, one, args.requests)
            trans = _latencies(session, t_url, inst, args.requests)

            rows = X[: args.batch_size]
            batch = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape),
                                 "data": rows.astype(np.float32).ravel().tolist()}]}
            t0 = time.perf_counter()
            for _ in range(args.batches):
                resp = session.post(p_url, json=batch, timeout=30)
                resp.raise_for_status()
            batch_s = time.perf_counter() - t0
            rows_per_s = args.batches * len(rows) / batch_s

            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"spx serving bench ({args.format}, {len(ch.features)} features, loopback, "
                  f"{os.cpu_count()} CPUs, load average {load}, sequential keep-alive HTTP/1.1, JSON bodies)")
            print(f"predictor   single row   n={args.requests}  p50={np.percentile(pred, 50):.2f} ms  "
                  f"p99={np.percentile(pred, 99):.2f} ms  mean={pred.mean():.2f} ms  "
                  f"target p99<=10 ms: {'PASS' if np.percentile(pred, 99) <= 10 else 'MISS'}")
            print(f"transformer Feast+pred   n={args.requests}  p50={np.percentile(trans, 50):.2f} ms  "
                  f"p99={np.percentile(trans, 99):.2f} ms  mean={trans.mean():.2f} ms  "
                  f"target p99<=25 ms: {'PASS' if np.percentile(trans, 99) <= 25 else 'MISS'}")
            print(f"predictor   batches of {len(rows)}  n={args.batches}  {rows_per_s:,.0f} rows/s  "
                  f"({batch_s / args.batches * 1000:.1f} ms per batch)")
        finally:
            for server in reversed(servers):
                server.stop()
            s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
