"""Benchmark: silver (technical, microstructure, volatility) + gold on 1.7M one-minute bars, in-process.

Target: silver+gold <= 5 s and peak RSS <= 1.5 GB on 2 cores. Prints wall time per step and peak RSS
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
    t0 = time.perf_counter()
    t = time.perf_counter()
    prepared = prepare_bars(bars, bar)
    timings["sessions (calendar, gap out)"] = time.perf_counter() - t
    b = prepared.bars
    t = time.perf_counter()
    tech = technical_features(b)
    timings["silver technical"] = time.perf_counter() - t
    t = time.perf_counter()
    micro = microstructure_features(b)
    timings["silver microstructure"] = time.perf_counter() - t
    t = time.perf_counter()
    vol = volatility_features(b, bar, bars_per_year=prepared.bars_per_year)
    timings["silver volatility"] = time.perf_counter() - t
    t = time.perf_counter()
    gold, manifest = build_gold(
        bars, [tech, micro, vol], bar=bar, horizons=[30, 60], instrument="SPX500_USD", prepared=prepared
    )
    timings["gold (merge, time, returns, labels, leakage guard)"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    for k, v in timings.items():
        print(f"  {k:<62} {v:7.2f} s")
    print(
        f"silver+gold total: {total:.2f} s for {len(bars):,} bars -> {len(gold):,} rows x "
        f"{len(manifest['feature_columns'])} features (target <= 5 s)"
    )
    print(
        f"peak RSS: {rss_mib():.0f} MiB (target <= 1536 MiB); 1-min load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores (shared machine)"
    )


if __name__ == "__main__":
    main()
