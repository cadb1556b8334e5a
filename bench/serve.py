"""Serving throughput, latency and prediction-log completeness on loopback, beside two peers on the same model
(prints figures with the load average; the targets are checked here, not in tests).

Starts a loopback S3 server (SeaweedFS), trains and registers a small real XGBoost champion in a temporary
MLflow, materializes its gold table into Feast's SQLite online store, then starts, as ``spx serve`` does, the
predictor and the transformer (Feast lookup + predictor call + the prediction log, shipped to the bucket) as
processes on 127.0.0.1. Load comes from ``wrk`` (C; Debian package ``wrk``) or, with ``--load-generator
aiohttp`` (and always in the soak, which records every id answered 200), an asyncio client: one keep-alive
connection per client, JSON bodies. The generator shares the cores with the servers.

1. **Load**: the predictor (one 12-feature row per request) and the transformer (one instrument per request,
   logging on) at each client count of ``--clients``: requests/s and p50 / p99 / p99.9 over ``--duration`` s.
2. **Speed-ups** (``--shares``): servers without each speed-up of ``--speedups`` in turn (``infer``: the guard
   answers /infer itself; ``client``: the transformer's own HTTP client instead of httpx; ``booster``: the direct
   XGBoost call) and without any, beside the full set, in alternating short rounds: req/s, p99 and the server
   CPU per request, whose saving is each speed-up's share.
3. **Peers** (``--peers``): a plain KServe ``ModelServer`` with KServe's xgbserver model (bench/kserve_plain.py)
   and Seldon MLServer's XGBoost runtime (``mlserver==1.7.1``, ``mlserver-xgboost==1.7.1``, in a throwaway venv
   the bench makes with ``uv`` under ``~/.cache/spx-bench``: MLServer's pins conflict with the lock's, and it is
   never a dependency of the product; ``MLSERVER_PARALLEL_WORKERS=0``, inference in the server process like ours)
   on the same model file, with the same body and clients.
4. **Soak** (``--soak`` s at 8 clients on the transformer): SIGKILL the transformer at 1/3 (the supervisor
   ``spx serve`` uses restarts it; the new process ships what the dead one logged) and the S3 server at 2/3
   (restarted 5 s later on the same port and data); then the transformer is stopped (it ships) and the bucket
   is read back: every request id answered 200 must be there exactly once (lost = served - logged, duplicates =
   rows - distinct keys).

Targets: predictor >= 1,500 req/s at 8 clients; transformer with logging >= 1,000 req/s at 8 clients with
p99 <= 25 ms; the soak loses nothing and duplicates nothing.

    python bench/serve.py [--clients 1,8,32,64] [--duration 10] [--soak 60] [--shares] [--peers]
                          [--speedups infer,client,booster] [--load-generator auto|wrk|aiohttp]
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
                    await asyncio.sleep(0.05)  # the server is away (a soak kills it): do not spin
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
    cpu = f"  server CPU {r['cpu_ms']:.2f} ms/req" if r.get("cpu_ms") is not None else ""
    return (
        f"{name:<12} {r['clients']:>3} clients  {r['rps']:>7.0f} req/s  p50 {r['p50']:6.2f} ms  "
        f"p99 {r['p99']:7.2f} ms  p99.9 {r['p999']:7.2f} ms  errors {r['errors']}  (n={r['n']}){cpu}"
    )


def _tree(pid: int) -> tuple[int, ...]:
    """A process and its children (MLServer answers in worker processes)."""
    import psutil

    return (pid, *(c.pid for c in psutil.Process(pid).children(recursive=True)))


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the server processes: what load from other programs distorts least."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def _loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


MLSERVER = ("mlserver==1.7.1", "mlserver-xgboost==1.7.1")


def _mlserver_python() -> Path:
    """A throwaway venv with Seldon MLServer (never the product's dependency: its pins conflict with the lock)."""
    venv = Path.home() / ".cache" / "spx-bench" / "-".join(MLSERVER).replace("==", "-")
    python = venv / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *MLSERVER], check=True)
    return python


def _peer(name: str, cmd: list[str], port: int, ready: str, log: Path, env: dict | None = None):
    from spx.core.processes import ManagedProcess

    return ManagedProcess(name, cmd, log, env=env, ready_url=f"http://127.0.0.1:{port}{ready}").start(timeout=180)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per load step")
    parser.add_argument("--soak", type=float, default=60.0, help="soak seconds at 8 clients (0: skip)")
    parser.add_argument("--shares", action="store_true", help="measure each speed-up's share")
    parser.add_argument("--peers", action="store_true", help="measure plain KServe and MLServer on the same model")
    parser.add_argument("--speedups", default="infer,client,booster", help="the servers' --speedups")
    parser.add_argument("--batches", type=int, default=20, help="predictor requests of --batch-size rows")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--load-generator", choices=["auto", "wrk", "aiohttp"], default="auto")
    args = parser.parse_args()
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "aiohttp"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    clients = [int(c) for c in args.clients.split(",") if c]
    speedups = {x for x in args.speedups.split(",") if x and x != "none"}

    import orjson
    import requests
    from helpers import gold_frame, make_champion

    from spx.components.feature_store import store as F
    from spx.components.prediction_log import KEY, read_predictions
    from spx.components.selection import champion as champ
    from spx.components.serving.local import start_predictor, start_transformer
    from spx.core.processes import Supervisor, free_port
    from spx.core.services import LocalS3Server
    from spx.core.settings import child_env, set_environ, settings
    from spx.core.storage import ObjectStore

    with tempfile.TemporaryDirectory(prefix="spx-bench-serve-") as tmp:
        tmp = Path(tmp)
        s3 = LocalS3Server(data_dir=tmp / "s3").start()
        servers: list = []
        try:
            set_environ(
                **s3.env(),
                SPX_HOME=str(tmp / "home"),
                SPX_FEAST_HOME=str(tmp / "feast"),
                MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                SPX_SERVE_HOST="127.0.0.1",
                SPX_PREDICTION_LOG_FLUSH_SECONDS="5",
            )
            store = ObjectStore()
            frame = gold_frame(n_bars=2000, seed=1)
            ch = make_champion(store, settings().mlflow_tracking_uri, "xgboost", run_id="bench", frame=frame)
            F.materialize_logic(ch.gold_uri, ch.manifest_uri, ch.run_id)
            info = champ.resolve()
            model_dir = champ.download(info, tmp / "model")
            X = frame[ch.features].to_numpy()
            one = orjson.dumps(
                {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, X.shape[1]], "data": X[0].tolist()}]}
            )
            infer = f"/v2/models/{info.name}/infer"

            def inst(rid: str | None) -> bytes:
                doc = {"inputs": [{"name": "instrument", "datatype": "BYTES", "shape": [1], "data": ["SPX500_USD"]}]}
                return orjson.dumps({"id": rid, **doc} if rid is not None else doc)

            def run_load(url: str, make_body, c: int, pids: tuple[int, ...] = ()) -> dict:
                """``pids``: the server processes whose CPU per request is reported (warm-up included)."""
                before = _cpu_seconds(list(pids))
                if generator == "wrk":  # one body for every request, without an id: the transformer makes one
                    r = _load_wrk(url, make_body(None), c, args.duration, tmp)
                else:
                    r = asyncio.run(_load(url, make_body, c, args.duration))
                if pids and r["n"]:
                    r["cpu_ms"] = (_cpu_seconds(list(pids)) - before) * 1000 / (r["n"] * (1 + 1 / args.duration))
                return r

            def start(ups: set[str], predictor_port: int | None = None, transformer_port: int | None = None):
                flag = ["--speedups", ",".join(sorted(ups)) or "none"]
                p = start_predictor(model_dir, info.name, port=predictor_port, log_dir=tmp, extra_args=flag)
                t = start_transformer(
                    p.port,
                    info.name,
                    port=transformer_port,
                    log_dir=tmp,
                    max_feature_age_seconds=10**9,
                    prediction_log=True,
                    extra_args=flag,
                )
                return p, t

            print(
                f"spx serving bench (xgboost, {len(ch.features)} features, loopback, {os.cpu_count()} CPUs, load "
                f"average {_loadavg()}; load generator: {generator}"
                f"{' -t1, one C thread' if generator == 'wrk' else ' (asyncio)'}; one keep-alive connection per "
                f"client; speed-ups {','.join(sorted(speedups)) or 'none'}; transformer = Feast lookup + predictor "
                f"call + prediction log)",
                flush=True,
            )
            predictor, transformer = start(speedups)
            servers += [predictor, transformer]
            results: dict[str, list[dict]] = {"predictor": [], "transformer": []}
            steps = (
                ("predictor", predictor, lambda rid: one, (predictor.proc.pid,)),
                ("transformer", transformer, inst, (transformer.proc.pid, predictor.proc.pid)),
            )
            for name, server, body, pids in steps:
                for c in clients:
                    r = run_load(server.url + infer, body, c, pids)
                    results[name].append(r)
                    print(_row(name, r), flush=True)
            print(f"load average after the load steps {_loadavg()}", flush=True)
            if args.batches:
                rows = X[: args.batch_size].astype(np.float32)
                batch = orjson.dumps(
                    {
                        "inputs": [
                            {"name": "f", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
                        ]
                    }
                )
                session = requests.Session()
                t0 = time.perf_counter()
                for _ in range(args.batches):
                    session.post(predictor.url + infer, data=batch, timeout=60).raise_for_status()
                took = time.perf_counter() - t0
                print(
                    f"predictor    batches of {len(rows)} rows, 1 client: {args.batches * len(rows) / took:,.0f} rows/s"
                )
            p8 = next((r for r in results["predictor"] if r["clients"] == 8), None)
            t8 = next((r for r in results["transformer"] if r["clients"] == 8), None)
            if p8 and t8:
                print(
                    f"targets at 8 clients: predictor >= 1500 req/s {'PASS' if p8['rps'] >= 1500 else 'MISS'} "
                    f"({p8['rps']:.0f}); transformer >= 1000 req/s {'PASS' if t8['rps'] >= 1000 else 'MISS'} "
                    f"({t8['rps']:.0f}), p99 <= 25 ms {'PASS' if t8['p99'] <= 25 else 'MISS'} ({t8['p99']:.1f})",
                    flush=True,
                )

            if args.shares:
                # each variant beside the full set, measured in alternating short rounds (the same load for both)
                rounds, seconds = 3, max(2.0, args.duration / 3)
                print(
                    f"speed-up shares at 8 clients, {rounds} alternating rounds of {seconds:g} s (load {_loadavg()}):"
                )

                def measure(p, t) -> dict:
                    out = {}
                    for name, server, body, pids in (
                        ("predictor", p, lambda rid: one, (p.proc.pid,)),
                        ("transformer", t, inst, (t.proc.pid, p.proc.pid)),
                    ):
                        before = _cpu_seconds(list(pids))
                        r = _load_wrk(server.url + infer, body(None), 8, seconds, tmp, warmup=0)
                        out[name] = (r["n"], seconds, _cpu_seconds(list(pids)) - before, r["p99"])
                    return out

                def total(parts: list[dict], name: str) -> tuple[float, float, float]:
                    n = sum(x[name][0] for x in parts)
                    return (
                        n / sum(x[name][1] for x in parts),
                        1000 * sum(x[name][2] for x in parts) / n,
                        float(np.median([x[name][3] for x in parts])),
                    )

                for off in [*sorted(speedups), "all"]:
                    p, t = start(set() if off == "all" else speedups - {off})
                    a, b = [], []
                    try:
                        for _ in range(rounds):
                            a.append(measure(predictor, transformer))
                            b.append(measure(p, t))
                    finally:
                        t.stop()
                        p.stop()
                    line = []
                    for name in ("predictor", "transformer"):
                        (ra, ca, qa), (rb, cb, qb) = total(a, name), total(b, name)
                        line.append(
                            f"{name} {rb:.0f} vs {ra:.0f} req/s, p99 {qb:.1f} vs {qa:.1f} ms, CPU {cb:.2f} vs "
                            f"{ca:.2f} ms/req (it saves {1 - ca / cb:.0%} of the CPU per request)"
                        )
                    print(f"  without {off:<8} " + "; ".join(line) + f"  (load {_loadavg()})", flush=True)

            if args.peers:
                print(f"peers on the same model file, 8 clients (load average {_loadavg()}):", flush=True)
                port = free_port()
                plain = _peer(
                    "kserve-plain",
                    [sys.executable, str(ROOT / "bench" / "kserve_plain.py"), "--model_dir", str(model_dir),
                     "--model_name", info.name, "--http_port", str(port)],
                    port, f"/v2/models/{info.name}/ready", tmp / "kserve-plain.log",
                )  # fmt: skip
                try:
                    r = run_load(f"http://127.0.0.1:{port}{infer}", lambda rid: one, 8, (plain.proc.pid,))
                    print(_row("KServe plain", r) + f"  (load {_loadavg()})", flush=True)
                finally:
                    plain.stop()
                mdir = tmp / "mlserver" / info.name
                mdir.mkdir(parents=True)
                shutil.copy(next(model_dir.glob("model.json")), mdir / "model.json")
                (mdir / "model-settings.json").write_text(
                    json.dumps({"name": info.name, "implementation": "mlserver_xgboost.XGBoostModel",
                                "parameters": {"uri": "./model.json"}})
                )  # fmt: skip
                port = free_port()
                # parallel_workers 0: inference in the server process, like ours (its worker processes die here:
                # uvloop's get_event_loop refuses MLServer 1.7.1's call in a fresh process)
                env = child_env(MLSERVER_HOST="127.0.0.1", MLSERVER_HTTP_PORT=str(port), MLSERVER_PARALLEL_WORKERS="0",
                                MLSERVER_GRPC_PORT=str(free_port()), MLSERVER_METRICS_PORT=str(free_port()))  # fmt: skip
                mls = _peer(
                    "mlserver", [str(_mlserver_python().with_name("mlserver")), "start", str(mdir.parent)],
                    port, f"/v2/models/{info.name}/ready", tmp / "mlserver.log", env=env,
                )  # fmt: skip
                try:
                    r = run_load(f"http://127.0.0.1:{port}{infer}", lambda rid: one, 8, _tree(mls.proc.pid))
                    print(_row("MLServer", r) + f"  (load {_loadavg()})", flush=True)
                finally:
                    mls.stop()

            if args.soak > 0:
                served: set[str] = set()
                failed = [0]
                prefix = f"soak-{secrets.token_hex(3)}-"
                supervisor = Supervisor([transformer], report=lambda line: print("  supervisor:", line, flush=True))
                stop = threading.Event()

                def supervise() -> None:
                    while not stop.is_set():
                        supervisor.check()
                        stop.wait(0.5)

                def killer() -> None:
                    if stop.wait(args.soak / 3):
                        return
                    print(f"  SIGKILL the transformer (pid {transformer.proc.pid}) at {args.soak / 3:.0f}s", flush=True)
                    transformer.proc.kill()
                    if stop.wait(args.soak / 3):
                        return
                    print(f"  SIGKILL the S3 server (pid {s3.proc.pid}) at {2 * args.soak / 3:.0f}s", flush=True)
                    s3.proc.kill()
                    s3.proc.wait()
                    stop.wait(5.0)
                    s3.start()
                    print("  S3 server restarted (same port, same data)", flush=True)

                def on_result(rid: str, ok: bool) -> None:
                    if ok:
                        served.add(prefix + rid)
                    else:
                        failed[0] += 1

                threads = [threading.Thread(target=f, daemon=True) for f in (supervise, killer)]
                for t in threads:
                    t.start()
                t0 = time.monotonic()
                r = asyncio.run(
                    _load(transformer.url + infer, lambda rid: inst(prefix + rid), 8, args.soak, 0.0, on_result)
                )
                soak_s = time.monotonic() - t0
                stop.set()
                for t in threads:
                    t.join(timeout=120)
                transformer.stop()  # SIGTERM: it ships what it holds
                servers.remove(transformer)
                rows = read_predictions(ObjectStore(), raw=True, flatten=False)
                mine = rows[rows["request_id"].str.startswith(prefix)]
                logged = set(mine["request_id"])
                lost = served - logged
                duplicates = len(mine) - len(mine.drop_duplicates(KEY))
                print(
                    f"soak: {soak_s:.0f}s at 8 clients on the transformer (SIGKILLed at 1/3, S3 server at 2/3): "
                    f"{len(served)} answered 200 ({len(served) / soak_s:.0f} req/s, p99 {r['p99']:.1f} ms), "
                    f"{failed[0]} refused while the transformer restarted, {len(logged & served)} in the bucket "
                    f"(+{len(logged - served)} caught by the kill between row and answer), "
                    f"LOST {len(lost)}, DUPLICATED {duplicates}, transformer restarts "
                    f"{supervisor.restarts.get('transformer', 0)} (target 0 lost, 0 duplicated: "
                    f"{'PASS' if not lost and not duplicates else 'MISS'}); load average {_loadavg()}",
                    flush=True,
                )
                if lost:
                    print(f"  not in the bucket (first 10): {sorted(lost)[:10]}", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()
            s3.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
