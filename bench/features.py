"""Benchmark: silver (technical, microstructure, volatility) + gold on 1.7M one-minute bars.

Target: <= 20 s on 2 cores. Prints wall time per step and peak RSS.
Usage: python bench/features.py [--rows 1700000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic import NOTE, minute_bars  # noqa: E402
from spx.components.gold.merge import build_gold  # noqa: E402
from spx.components.silver.microstructure import microstructure_features  # noqa: E402
from spx.components.silver.technical import technical_features  # noqa: E402
from spx.components.silver.volatility import volatility_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_700_000)
    args = ap.parse_args()
    print(f"data: {args.rows:,} {NOTE}")
    bars = minute_bars(args.rows)
    bar = pd.Timedelta(minutes=1)
    timings = {}
    t0 = time.perf_counter()
    t = time.perf_counter(); tech = technical_features(bars); timings["silver technical"] = time.perf_counter() - t
    t = time.perf_counter(); micro = microstructure_features(bars); timings["silver microstructure"] = time.perf_counter() - t
    t = time.perf_counter(); vol = volatility_features(bars, bar); timings["silver volatility"] = time.perf_counter() - t
    t = time.perf_counter()
    gold, manifest = build_gold(bars, [tech, micro, vol], bar=bar, horizons=[30, 60], instrument="SPX500_USD")
    timings["gold (merge, time, returns, labels)"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    for k, v in timings.items():
        print(f"  {k:<40} {v:7.2f} s")
    print(f"silver+gold total: {total:.2f} s for {len(bars):,} bars -> {len(gold):,} rows x "
          f"{len(manifest['feature_columns'])} features (target <= 20 s)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
