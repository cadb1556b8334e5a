"""Benchmark: silver (technical, microstructure, volatility) + gold on 1.7M one-minute bars, in-process.

Target: silver+gold <= 5 s and peak RSS <= 1.5 GB on 2 cores. Prints wall time per step, the process's CPU
time per step (user + system: less sensitive than wall time to other load on a shared machine) and peak RSS
(the RSS of the process after the synthetic bars were made, and the peak during the stages).
Usage: python bench/features.py [--rows 1700000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic import NOTE, minute_bars  # noqa: E402
from spx.components.bronze.sessions import prepare_bars  # noqa: E402
from spx.components.gold.merge import build_gold  # noqa: E402
from spx.components.silver.microstructure import microstructure_features  # noqa: E402
from spx.components.silver.technical import technical_features  # noqa: E402
from spx.components.silver.volatility import volatility_features  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_700_000)
    args = ap.parse_args()
    print(f"data: {args.rows:,} {NOTE}")
    bars = minute_bars(args.rows)
    prepare_bars(bars.iloc[::1000], pd.Timedelta(minutes=1))  # build the exchange calendar once (cached)
    print(f"peak RSS after making the bars: {rss_mib():.0f} MiB; 1-min load average {os.getloadavg()[0]:.2f}")
    bar = pd.Timedelta(minutes=1)
    timings = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def step(name, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        timings[name] = (time.perf_counter() - t, time.process_time() - c)
        return out

    prepared = step("sessions (calendar, gap out)", lambda: prepare_bars(bars, bar))
    b = prepared.bars
    tech = step("silver technical", lambda: technical_features(b))
    micro = step("silver microstructure", lambda: microstructure_features(b))
    vol = step("silver volatility", lambda: volatility_features(b, bar, bars_per_year=prepared.bars_per_year))
    gold, manifest = step(
        "gold (merge, time, returns, labels, leakage guard)",
        lambda: build_gold(
            bars, [tech, micro, vol], bar=bar, horizons=[30, 60], instrument="SPX500_USD", prepared=prepared
        ),
    )
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    for k, (wall, cpu_s) in timings.items():
        print(f"  {k:<52} {wall:7.2f} s wall {cpu_s:7.2f} s CPU")
    print(
        f"silver+gold total: {total:.2f} s wall ({cpu:.2f} s CPU) for {len(bars):,} bars -> {len(gold):,} rows x "
        f"{len(manifest['feature_columns'])} features (target <= 5 s)"
    )
    print(
        f"peak RSS: {rss_mib():.0f} MiB (target <= 1536 MiB); 1-min load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores (shared machine)"
    )


if __name__ == "__main__":
    main()
