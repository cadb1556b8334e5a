"""The Evidently workspace and UI at the size a month of hourly monitoring runs makes: bytes per run, the UI's
start time and memory, and how fast the dashboard's panels answer.

One monitoring run is made for real (served, gold and live snapshots through the same code as `spx monitor`,
with ``n_features`` features), then written again for every hour of ``days`` days the way the workspace keeps
them: a full served report once a day, a full gold report once a day (a new gold table), values only otherwise.
The read-only UI (`python -m spx.components.monitoring.ui`) is then started over it.

    python bench/evidently_ui.py [days] [n_features]
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evidently import Report  # noqa: E402

from spx.components.monitoring.drift import PREDICTION_COLUMN, evidently_drift  # noqa: E402
from spx.components.monitoring.evidently_metrics import FIGURES, SpxFigure  # noqa: E402
from spx.components.monitoring.workspace import (  # noqa: E402
    TAG_GOLD,
    TAG_LIVE,
    TAG_SERVED,
    build_dashboard,
    compact,
    ensure_project,
    open_workspace,
)
from spx.core.processes import free_port, wait_http  # noqa: E402
from spx.core.settings import child_env  # noqa: E402


def frame(n: int, n_features: int, start: str, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"timestamp": pd.date_range(start, periods=n, freq="1min", tz="UTC")})
    for j in range(n_features):
        df[f"feature_{j:02d}"] = rng.normal(shift * (j % 3 == 0), 1.0, n)
    df[PREDICTION_COLUMN] = rng.uniform(0.3, 0.7, n)
    return df


def uuid7_at(when: datetime) -> uuid.UUID:
    """A UUIDv7 for a given time (what Evidently's ids would be had the snapshot been written then)."""
    ms = int(when.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    n_features = int(sys.argv[2]) if len(sys.argv) > 2 else 70
    feats = [f"feature_{j:02d}" for j in range(n_features)]
    load0 = os.getloadavg()[0]
    ref = frame(20_000, n_features, "2026-01-01", 1)
    cur = frame(3_000, n_features, "2026-02-01", 2, shift=0.3)
    t0 = time.perf_counter()
    _, served = evidently_drift(ref, cur, feats, tags=[TAG_SERVED])
    _, gold = evidently_drift(ref, cur, feats, prediction_column=None, tags=[TAG_GOLD])
    one_run = time.perf_counter() - t0
    row = {name: 0.5 for name in list(FIGURES)[:30]}
    live = Report([SpxFigure(column=c) for c in row]).run(pd.DataFrame([row]), None, tags=[TAG_LIVE])
    models = {
        (tag, full): json.loads(json.dumps(compact(snap.to_snapshot_model(), full=full).dict(), default=str))
        for tag, snap in ((TAG_SERVED, served), (TAG_GOLD, gold), (TAG_LIVE, live))
        for full in (True, False)
    }
    sizes = {f"{tag} {'full' if full else 'values'}": len(json.dumps(m)) for (tag, full), m in models.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ws")
        ws = open_workspace(path)
        project = ensure_project(ws, "spx-monitoring")
        dashboard = build_dashboard(
            feats,
            feats,
            None,
            prediction_column=PREDICTION_COLUMN,
            method="wasserstein",
            threshold=0.1,
            drift_threshold=0.5,
        )
        ws.save_dashboard(project.id, dashboard)
        snapdir = Path(path) / str(project.id) / "snapshots"
        snapdir.mkdir(parents=True, exist_ok=True)
        start = datetime(2026, 3, 1, tzinfo=timezone.utc)
        total = 0
        for hour in range(days * 24):
            when = start + timedelta(hours=hour)
            for tag in (TAG_SERVED, TAG_GOLD, TAG_LIVE):
                model = copy.deepcopy(models[(tag, tag == TAG_LIVE or hour % 24 == 0)])
                model["timestamp"] = when.isoformat()
                text = json.dumps(model)
                (snapdir / f"{uuid7_at(when)}.json").write_text(text)
                total += len(text)
        runs = days * 24
        port = free_port()
        env = child_env(PYTHONPATH=str(ROOT))
        t1 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "spx.components.monitoring.ui", "--workspace", path, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=1800, proc=proc)
            startup = time.perf_counter() - t1
            rss = rss_mib(proc.pid)
            base = f"http://127.0.0.1:{port}/api/v2/snapshots/{project.id}/data_series_batch"
            timings = []
            for panel in dashboard.panels:
                if not panel.values:
                    continue
                query = {"series_filter": [json.loads(v.json()) for v in panel.values]}
                t2 = time.perf_counter()
                r = requests.post(base, json=query, timeout=600)
                r.raise_for_status()
                timings.append(time.perf_counter() - t2)
            rss_after = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # the same panels in-process: Evidently's own series store against the UI's (one series at a time)
        import asyncio

        from evidently.ui.service.base import SeriesFilter
        from evidently.ui.service.storage.local.base import InMemoryDataStorage, LocalState

        from spx.components.monitoring.ui import PerFilterDataStorage

        state = LocalState.load(path, None)
        stores = {
            "evidently": InMemoryDataStorage(path, local_state=state),
            "spx": PerFilterDataStorage(path, local_state=state),
        }
        in_process: dict[str, list[float]] = {name: [] for name in stores}
        for panel in dashboard.panels:
            if not panel.values:
                continue
            filters = [
                SeriesFilter(tags=v.tags, metadata=v.metadata, metric=v.metric, metric_labels=v.metric_labels)
                for v in panel.values
            ]
            for name, store in stores.items():
                t3 = time.perf_counter()
                asyncio.run(store.get_data_series(project.id, filters, None, None))
                in_process[name].append(time.perf_counter() - t3)
    print(f"one monitoring run's two drift reports, {n_features} features: {one_run:.1f} s")
    print("snapshot bytes: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()))
    print(f"workspace: {days} days x 24 runs ({runs * 3} snapshots): {total / 2**20:.0f} MiB of snapshot JSON")
    print(
        f"UI: ready after {startup:.1f} s, RSS {rss:.0f} MiB after start, {rss_after:.0f} MiB after every panel "
        f"once; panels answered in median {np.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms "
        f"({len(timings)} panels)"
    )
    for name, times in in_process.items():
        print(
            f"series store in-process, {name}: median {np.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms, "
            f"all {len(times)} panels {sum(times):.1f} s"
        )
    print(f"1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
