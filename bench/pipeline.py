"""Benchmark: the whole default local pipeline (`spx run`) on the real SPY one-minute bars it ships with
(and, with ../shared/data beside the project, the real Reuters headlines through every news stage).

Runs in a fresh SPX_HOME (a temp dir) and prints the wall time, the time of every KFP task as the local
runner reported it, and the load average (the machine may be shared).
Usage: python bench/pipeline.py [--start 2011-01-01] [-- extra spx run options]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from spx.core.settings import child_env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="")
    ap.add_argument("extra", nargs="*", help="extra `spx run` options, after --")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as home:
        env = child_env(SPX_HOME=home)
        env.pop("SPX_S3_ENDPOINT", None)  # the run starts its own S3 server
        env.pop("AWS_ENDPOINT_URL", None)
        cmd = [sys.executable, "-m", "spx.cli", "run"] + (["--start", args.start] if args.start else []) + args.extra
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True)
        took = time.perf_counter() - t
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(out[-4000:])
        raise SystemExit(f"spx run failed ({proc.returncode})")
    starts = {
        m.group(2): m.group(1) for m in re.finditer(r"(\d\d:\d\d:\d\d\.\d+) - INFO - Executing task .*?'([\w-]+)'", out)
    }
    ends = {
        m.group(2): m.group(1)
        for m in re.finditer(r"(\d\d:\d\d:\d\d\.\d+) - INFO - Task .*?'([\w-]+)'.*? finished", out)
    }

    def secs(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    for task in starts:
        if task in ends:
            print(f"  {task:<28} {secs(ends[task]) - secs(starts[task]):6.1f} s")
    news = re.search(r"news: .*", out)
    print(
        f"whole default local pipeline (real SPY one-minute bars, {len(starts)} tasks): {took:.1f} s; "
        f"{news.group(0) if news else 'news: not reported'}; 1-min load average {load0:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
