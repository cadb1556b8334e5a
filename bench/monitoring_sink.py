"""Prediction-log sink throughput: events/s acknowledged over HTTP (each one fsync'd to the WAL first),
and the time to write a batch to S3. Starts a loopback SeaweedFS and the sink process; prints figures.

    python bench/monitoring_sink.py [n_inferences] [senders]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from monitoring.helpers import event_pair  # noqa: E402

from spx.core.processes import free_port, wait_http  # noqa: E402
from spx.core.services import LocalS3Server  # noqa: E402
from spx.core.settings import child_env  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    senders = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    with tempfile.TemporaryDirectory() as tmp, LocalS3Server(Path(tmp) / "s3", buckets=("spx",)) as s3:
        env = child_env(**s3.env(), SPX_BUCKET="spx", PYTHONPATH=str(ROOT))
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spx.components.monitoring.sink",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--wal-dir",
                str(Path(tmp) / "wal"),
                "--batch-rows",
                "500",
                "--flush-interval",
                "5",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/healthz", proc=proc)
            events = [e for i in range(n) for e in event_pair(i)]
            session = requests.Session()

            def post(ev):
                r = session.post(url, headers=ev[0], data=ev[1], timeout=30)
                r.raise_for_status()

            t0 = time.perf_counter()
            with ThreadPoolExecutor(senders) as pool:
                list(pool.map(post, events))
            t_ingest = time.perf_counter() - t0
            t1 = time.perf_counter()
            requests.post(url + "/flush", params={"all": "1"}, timeout=120).raise_for_status()
            t_flush = time.perf_counter() - t1
            stats = requests.get(url + "/healthz", timeout=5).json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        f"events acknowledged: {len(events)} ({n} inferences) with {senders} senders in {t_ingest:.2f}s "
        f"-> {len(events) / t_ingest:.0f} events/s ({n / t_ingest:.0f} inferences/s), fsync per event"
    )
    print(
        f"final flush: {t_flush * 1000:.0f} ms; rows written {stats['rows_written']} in "
        f"{stats['batches_written']} batches"
    )


if __name__ == "__main__":
    main()
