"""Serving throughput, latency and prediction-log completeness on loopback (prints figures; targets
are checked here, not in tests).

Starts a loopback S3 server (SeaweedFS), trains and registers a small real XGBoost champion in a
temporary MLflow, materializes its gold table into Feast's SQLite online store, then starts — as
``spx serve`` does — the prediction-log sink, the predictor and the transformer (Feast lookup +
prediction logging to the sink, with the writers' token) as processes on 127.0.0.1, and measures
with an HTTP/1.1 keep-alive load generator, one connection per client: ``wrk`` (C; Debian package
``wrk``) when it is installed, else an asyncio one (aiohttp); ``--load-generator`` chooses. The load
generator shares the machine's cores with the servers, and aiohttp costs several times wrk's CPU per
request, so at high rates it measures itself as much as the servers. The output names the generator.

1. **Load**: for the predictor (one 12-feature row per request) and the transformer (one
   instrument per request, logging on), at each client count in ``--clients`` (default 1, 8, 32,
   64): requests/s and p50 / p99 / p99.9 latency over ``--duration`` seconds.
   Then the predictor's rows/s for ``--batches`` requests of ``--batch-size`` (1000) rows.
2. **Soak** (always aiohttp, which records the id of every request answered 200): ``--soak``
   seconds at 8 clients on the transformer, each request with its own id; half
   way through, the sink is killed with SIGKILL and restarted by the supervisor ``spx serve`` uses.
   At the end the transformer and the sink are stopped (they flush) and the served request ids are
   counted in the bucket: served vs logged, lost = served − logged.

Targets (idle machine): transformer with logging ≥ 500 req/s at 8 clients with p99 ≤ 25 ms;
predictor ≥ 1,500 req/s; 0 predictions lost.

    python bench/serve.py [--clients 1,8,32,64] [--duration 10] [--soak 180] [--no-kill] [--format xgboost]
                          [--load-generator auto|wrk|aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serving"))


async def _load(url: str, make_body, clients: int, duration: float, warmup: float = 1.0, on_result=None) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    counter = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client(k: int) -> None:
        nonlocal errors, counter
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            while True:
                now = loop.time()
                if now >= stop_at:
                    return
                counter += 1
                rid = f"b{k}-{counter}"
                t0 = loop.time()
                try:
                    async with session.post(
                        url,
                        data=make_body(rid),
                        headers={"content-type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except Exception:  # noqa: BLE001 - counted
                    ok = False
                t1 = loop.time()
                if on_result is not None:
                    on_result(rid, ok)
                if t0 >= measure_from:
                    if ok:
                        latencies.append((t1 - t0) * 1000.0)
                    else:
                        errors += 1

    await asyncio.gather(*(client(k) for k in range(clients)))
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "clients": clients,
        "rps": len(latencies) / duration,
        "p50": np.percentile(lat, 50),
        "p99": np.percentile(lat, 99),
        "p999": np.percentile(lat, 99.9),
        "errors": errors,
        "n": len(latencies),
    }


# wrk: POST the body file given as the script's argument; at the end print the figures as one JSON line
# (wrk's own report has no p99.9; latencies are in microseconds)
_WRK_SCRIPT = r"""
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  wrk.headers["content-type"] = "application/json"
  f:close()
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50": %f, "p99": %f, "p999": %f, ' ..
    '"status_errors": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _load_wrk(url: str, body: bytes, clients: int, duration: float, tmp: Path, warmup: float = 1.0) -> dict:
    """``clients`` keep-alive connections from one wrk thread for ``duration`` seconds (after a
    ``warmup`` run that is not counted)."""
    script = tmp / "post.lua"
    script.write_text(_WRK_SCRIPT)
    body_path = tmp / f"body-{abs(hash(body))}.json"
    body_path.write_bytes(body)

    def run(seconds: float) -> dict:
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
        out = subprocess.run(
            [*cmd, "-s", str(script), url, "--", str(body_path)], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(next(line for line in out.splitlines() if line.startswith("{")))

    if warmup > 0:
        run(warmup)
    r = run(duration)
    errors = r["status_errors"] + r["socket_errors"]
    seconds = r["duration_us"] / 1e6
    return {
        "clients": clients,
        "rps": (r["requests"] - r["status_errors"]) / seconds,
        "p50": r["p50"] / 1000.0,
        "p99": r["p99"] / 1000.0,
        "p999": r["p999"] / 1000.0,
        "errors": errors,
        "n": r["requests"] - r["status_errors"],
    }


def _row(name: str, r: dict) -> str:
    return (
        f"{name:<12} {r['clients']:>3} clients  {r['rps']:>7.0f} req/s  p50 {r['p50']:6.2f} ms  "
        f"p99 {r['p99']:7.2f} ms  p99.9 {r['p999']:7.2f} ms  errors {r['errors']}  (n={r['n']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per load step")
    parser.add_argument("--soak", type=float, default=180.0, help="soak seconds at 8 clients (0: skip)")
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL the sink during the soak")
    parser.add_argument("--format", choices=["xgboost", "lightgbm"], default="xgboost")
    parser.add_argument("--batches", type=int, default=20, help="predictor requests of --batch-size rows")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="load steps: wrk (C, cheap) or aiohttp; auto = wrk when installed",
    )
    args = parser.parse_args()
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "aiohttp"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    clients = [int(c) for c in args.clients.split(",") if c]

    import orjson
    from helpers import gold_frame, make_champion

    from spx.cli.serve import start_sink
    from spx.components.selection import champion as champ
    from spx.components.serving import features as F
    from spx.components.serving.local import start_predictor, start_transformer
    from spx.components.serving.prediction_log import read_predictions
    from spx.core.processes import Supervisor, free_port
    from spx.core.services import LocalS3Server
    from spx.core.settings import set_environ, settings
    from spx.core.storage import ObjectStore

    with tempfile.TemporaryDirectory(prefix="spx-bench-serve-") as tmp:
        tmp = Path(tmp)
        s3 = LocalS3Server(data_dir=tmp / "s3").start()
        servers = []
        try:
            token = secrets.token_urlsafe(16)
            set_environ(
                **s3.env(),
                SPX_HOME=str(tmp / "home"),
                SPX_FEAST_HOME=str(tmp / "feast"),
                MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                SPX_SINK_TOKEN=token,
                SPX_SERVE_HOST="127.0.0.1",
            )
            store = ObjectStore()
            frame = gold_frame(n_bars=2000, seed=1)
            ch = make_champion(store, settings().mlflow_tracking_uri, args.format, run_id="bench", frame=frame)
            F.materialize_logic(ch.gold_uri, ch.manifest_uri, ch.run_id)
            info = champ.resolve()
            model_dir = champ.download(info, tmp / "model")
            sink = start_sink(tmp / "wal", tmp, free_port(), flush_interval=30.0, token=token)
            servers.append(sink)
            predictor = start_predictor(model_dir, info.name, log_dir=tmp)
            servers.append(predictor)
            transformer = start_transformer(
                predictor.port, info.name, log_dir=tmp, max_feature_age_seconds=10**9, logger_url=f"{sink.url}/"
            )
            servers.append(transformer)

            X = frame[ch.features].to_numpy()
            one = orjson.dumps(
                {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, X.shape[1]], "data": X[0].tolist()}]}
            )
            p_url = f"{predictor.url}/v2/models/{info.name}/infer"
            t_url = f"{transformer.url}/v2/models/{info.name}/infer"

            def run_load(url: str, make_body, c: int) -> dict:
                if generator == "wrk":  # one body for every request, without an id: the transformer makes one
                    return _load_wrk(url, make_body(None), c, args.duration, tmp)
                return asyncio.run(_load(url, make_body, c, args.duration))

            def inst(rid: str | None) -> bytes:
                doc = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]}
                return orjson.dumps({"id": rid, **doc} if rid is not None else doc)

            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"spx serving bench ({args.format}, {len(ch.features)} features, loopback, {os.cpu_count()} CPUs, "
                f"load average before {load}; load generator: {generator} "
                f"({'wrk -t1, one C thread' if generator == 'wrk' else 'aiohttp, asyncio'}), one keep-alive "
                f"connection per client, JSON bodies; transformer = Feast lookup + predictor call + prediction "
                f"logging to the sink)",
                flush=True,
            )
            results = {"predictor": [], "transformer": []}
            for c in clients:
                r = run_load(p_url, lambda rid: one, c)
                results["predictor"].append(r)
                print(_row("predictor", r), flush=True)
            for c in clients:
                r = run_load(t_url, inst, c)
                results["transformer"].append(r)
                print(_row("transformer", r), flush=True)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"load average after the load steps {load}", flush=True)
            if args.batches:
                import requests

                rows = X[: args.batch_size]
                batch = orjson.dumps(
                    {
                        "inputs": [
                            {
                                "name": "features",
                                "datatype": "FP32",
                                "shape": list(rows.shape),
                                "data": rows.astype(np.float32).ravel().tolist(),
                            }
                        ]
                    }
                )
                session = requests.Session()
                t0 = time.perf_counter()
                for _ in range(args.batches):
                    session.post(
                        p_url, data=batch, headers={"content-type": "application/json"}, timeout=60
                    ).raise_for_status()
                batch_s = time.perf_counter() - t0
                print(
                    f"predictor    batches of {len(rows)} rows, 1 client: {args.batches * len(rows) / batch_s:,.0f} "
                    f"rows/s ({batch_s / args.batches * 1000:.1f} ms per batch)",
                    flush=True,
                )
            by_c = {r["clients"]: r for r in results["transformer"]}
            p_best = max(r["rps"] for r in results["predictor"])
            if 8 in by_c:
                t8 = by_c[8]
                print(
                    f"targets: transformer@8 >= 500 req/s: {'PASS' if t8['rps'] >= 500 else 'MISS'} "
                    f"({t8['rps']:.0f}); p99 <= 25 ms: {'PASS' if t8['p99'] <= 25 else 'MISS'} ({t8['p99']:.1f}); "
                    f"predictor >= 1500 req/s: {'PASS' if p_best >= 1500 else 'MISS'} ({p_best:.0f})",
                    flush=True,
                )

            if args.soak > 0:
                # everything sent during the load steps is logged too; the soak counts its own ids
                served: set[str] = set()
                failed: list[str] = []
                prefix = f"soak-{secrets.token_hex(3)}-"

                def soak_body(rid: str) -> bytes:
                    return inst(prefix + rid)

                def on_result(rid: str, ok: bool) -> None:
                    (served.add(prefix + rid) if ok else failed.append(prefix + rid))

                supervisor = Supervisor([sink], report=lambda line: print("  supervisor:", line, flush=True))
                stop = threading.Event()

                def supervise() -> None:
                    while not stop.is_set():
                        supervisor.check()
                        stop.wait(0.5)

                def killer() -> None:
                    if stop.wait(args.soak / 2):
                        return
                    print(f"  SIGKILL the sink (pid {sink.proc.pid}) at {args.soak / 2:.0f}s", flush=True)
                    sink.proc.kill()

                threads = [threading.Thread(target=supervise, daemon=True)]
                if not args.no_kill:
                    threads.append(threading.Thread(target=killer, daemon=True))
                for t in threads:
                    t.start()
                t0 = time.monotonic()
                r = asyncio.run(_load(t_url, soak_body, 8, args.soak, warmup=0.0, on_result=on_result))
                stop.set()
                soak_s = time.monotonic() - t0
                for t in threads:
                    t.join(timeout=5)
                import requests

                metrics = {
                    line.split('"')[1]: float(line.split()[-1])
                    for line in requests.get(f"{transformer.url}/metrics", timeout=10).text.splitlines()
                    if line.startswith("spx_inference_log_events_total{")
                }
                transformer.stop()  # its logger sends (or spills) what it holds
                servers.remove(transformer)
                t_stop = time.monotonic()
                sink.stop(timeout=120)  # flushes the buffer to the bucket
                servers.remove(sink)
                flush_s = time.monotonic() - t_stop
                log = read_predictions(ObjectStore(), raw=True)
                logged = set(log["request_id"]) & served
                lost = len(served) - len(logged)
                for line in transformer.log_tail(200_000).splitlines():
                    if "inference logger" in line:
                        print("  transformer:", line[-300:], flush=True)
                if lost:
                    print(f"  not in the bucket (first 10): {sorted(served - logged)[:10]}", flush=True)
                print(
                    f"soak: {soak_s:.0f}s at 8 clients on the transformer{'' if args.no_kill else ', sink SIGKILLed half way'}: "
                    f"{len(served)} served ({len(served) / soak_s:.0f} req/s, p99 {r['p99']:.1f} ms), "
                    f"{len(failed)} failed, {len(logged)} logged in the bucket, LOST {lost} "
                    f"(target 0: {'PASS' if lost == 0 and not failed else 'MISS'}); logger events {metrics}; "
                    f"sink restarts {supervisor.restarts.get('sink', 0)}; stop + final flush {flush_s:.1f}s",
                    flush=True,
                )
        finally:
            for server in reversed(servers):
                server.stop()
            s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
