"""Benchmark: the whole local pipeline (`spx run`) on the bundled real daily data.

Target: <= 5 min on 2 cores. Runs in a fresh SPX_HOME (a temp dir) and prints the wall time and the
time of every KFP task as the local runner reported it.
Usage: python bench/pipeline.py [--start 1999-01-01]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SPX_HOME": home}
        env.pop("SPX_S3_ENDPOINT", None)
        cmd = [sys.executable, "-m", "spx.cli", "run"] + (["--start", args.start] if args.start else [])
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True)
        took = time.perf_counter() - t
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(out[-4000:])
        raise SystemExit(f"spx run failed ({proc.returncode})")
    starts = {m.group(2): m.group(1) for m in re.finditer(r"(\d\d:\d\d:\d\d\.\d+) - INFO - Executing task .*?'([\w-]+)'", out)}
    ends = {m.group(2): m.group(1) for m in re.finditer(r"(\d\d:\d\d:\d\d\.\d+) - INFO - Task .*?'([\w-]+)'.*? finished", out)}

    def secs(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    for task in starts:
        if task in ends:
            print(f"  {task:<28} {secs(ends[task]) - secs(starts[task]):6.1f} s")
    print(f"whole local pipeline (bundled daily S&P 500, {len(starts)} tasks): {took:.1f} s — target <= 300 s")


if __name__ == "__main__":
    main()
