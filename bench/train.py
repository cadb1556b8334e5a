"""Benchmark: one training variant (walk-forward folds + validation fit + final fit + OOT metrics +
bootstrap intervals) on the gold table of 1.7M one-minute bars (regular sessions; labels within the
session) x all features. Target: <= 30 s on 2 cores. Prints seconds and peak RSS.

Usage: python bench/train.py [--rows 1700000] [--variant xgb_all|lgbm_all|xgb_reg] [--folds 5]
                             [--gold-cache DIR | --no-gold-cache] [--rebuild-gold]

Building the gold table is not timed as training. It is cached (``features.parquet`` + ``manifest.json``
under ``--gold-cache``, default ``/tmp/spx-bench-gold-<rows>``) so repeated runs, and runs of an older
checkout for comparison, train on the very same table; ``--rebuild-gold`` rebuilds it (after a change
to silver/gold).
"""

from __future__ import annotations

import argparse
import json
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
from spx.components.training.train import TrainConfig, train_variant  # noqa: E402
from spx.components.training.variants import default_variants  # noqa: E402


def _status_mib() -> dict[str, float]:
    """VmRSS / VmHWM (peak) of this process in MiB (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in lines) if k in ("VmRSS", "VmHWM")}


def _build_gold(rows: int) -> tuple[pd.DataFrame, dict]:
    bars = minute_bars(rows)
    bar = pd.Timedelta(minutes=1)
    prepared = prepare_bars(bars, bar)
    b = prepared.bars
    silver = [
        technical_features(b),
        microstructure_features(b),
        volatility_features(b, bar, bars_per_year=prepared.bars_per_year),
    ]
    return build_gold(bars, silver, bar=bar, horizons=[30, 60], instrument="SPX500_USD", prepared=prepared)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_700_000)
    ap.add_argument("--variant", default="xgb_all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument(
        "--max-fit-rows",
        type=int,
        default=TrainConfig.max_fit_rows,
        help="fits on more rows are thinned to every k-th row (the pipeline's default); 0: every row",
    )
    ap.add_argument("--gold-cache", default=None, help="directory of the cached gold table")
    ap.add_argument("--no-gold-cache", action="store_true", help="build the gold table, do not read/write a cache")
    ap.add_argument("--rebuild-gold", action="store_true", help="rebuild (and re-cache) the gold table")
    args = ap.parse_args()
    print(f"1-min load average {os.getloadavg()[0]:.2f} at start")
    print(f"data: {args.rows:,} {NOTE}")
    cache = None if args.no_gold_cache else Path(args.gold_cache or f"/tmp/spx-bench-gold-{args.rows}")
    if cache is not None and not args.rebuild_gold and (cache / "manifest.json").exists():
        t = time.perf_counter()
        gold = pd.read_parquet(cache / "features.parquet")
        manifest = json.loads((cache / "manifest.json").read_text())
        print(f"gold table read from {cache} in {time.perf_counter() - t:.1f} s (--rebuild-gold to rebuild)")
    else:
        t = time.perf_counter()
        gold, manifest = _build_gold(args.rows)
        print(f"gold table built in {time.perf_counter() - t:.1f} s (not timed as training)")
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            gold.to_parquet(cache / "features.parquet")
            (cache / "manifest.json").write_text(json.dumps(manifest, default=str))
    bar = pd.Timedelta(minutes=1)
    spec = {s.name: s for s in default_variants(30, 60)}[args.variant]
    print(
        f"variant {spec.name}: {spec.model} {spec.task}, features={spec.features}, horizon={spec.horizon} bars; "
        f"{len(gold):,} rows x {len(manifest['feature_columns'])} features"
    )
    before = _status_mib()
    t, cpu = time.perf_counter(), time.process_time()
    res = train_variant(
        gold,
        manifest,
        spec,
        TrainConfig(n_folds=args.folds, n_boot=args.n_boot, max_fit_rows=args.max_fit_rows),
        bar,
        progress=lambda s: print("  " + s, flush=True),
    )
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        f"one variant: {took:.1f} s ({args.folds} walk-forward folds + validation fit + final fit on "
        f"{res.n_train:,} rows (fitted on {int(res.metrics['n_fit_rows']):,}: max_fit_rows {args.max_fit_rows:,}) + OOT on {res.n_oot:,} rows + 2 x {args.n_boot} bootstrap resamples) — target <= 30 s"
    )
    print(
        f"CPU time of the training: {cpu:.1f} s (user+sys, all threads; on an idle machine the wall time lies "
        f"between this / {os.cpu_count()} and this)"
    )
    print(f"OOT AUC on synthetic (bootstrapped, so unpredictable) data: {res.metrics['oot_auc']:.4f} — should be ~0.5")
    print(
        f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (before training: peak "
        f"{before.get('VmHWM', 0):.0f} MiB while reading/building gold, {before.get('VmRSS', 0):.0f} MiB held); "
        f"1-min load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)"
    )


if __name__ == "__main__":
    main()
