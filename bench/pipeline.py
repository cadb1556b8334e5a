"""Benchmark: the whole default local pipeline (`spx run`), then the same command again (the unchanged rerun).

The default run trains on the real SPY one-minute bars the project ships (and, with ../shared/data beside the
project, the real Reuters headlines through every news stage). Both runs use one fresh SPX_HOME (a temp dir):
the first computes everything, the second should take every task from KFP's local cache.

Prints, for each run: the wall time, the CPU seconds of every process it started (tasks, S3 server), each task's
wall and CPU seconds as `spx run` reported them (CPU is blank for tasks that shared the machine with another
task: the training variants run two at a time), the cached tasks, and the 1-minute load average at start and
end; whether the interpreter finds compiled bytecode for the libraries the tasks import; and whether the
figures the run reports (every variant's AUCs and intervals, the ranking, the champion and its verdict) are
identical between the two runs and, with --compare FILE, to a selection JSON written by another run (e.g. the
code before a change: `spx run --json before.json`).

Targets (issue 17): the default run in at most 60 s on two cores, the unchanged rerun in at most 15 s.
Usage: python bench/pipeline.py [--compare before.json] [--no-rerun] [-- extra spx run options]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spx.core.settings import child_env

TASK_LINE = re.compile(r"^(\S+(?: \([^)]*\))?)\s+(success|failed|cached)\s+(?:([\d.]+) s\s+cpu\s+(\(shared\)|[\d.]+))?")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bytecode_state() -> str:
    """Whether the libraries every task imports have compiled bytecode (PYTHONDONTWRITEBYTECODE=1 without it
    makes every task compile every module it imports)."""
    from spx.pipelines.local import TASK_LIBRARIES, missing_bytecode

    flag = "set" if sys.flags.dont_write_bytecode else "unset"
    missing = missing_bytecode()
    return f"PYTHONDONTWRITEBYTECODE {flag}; " + (
        f"NO compiled bytecode for {', '.join(missing)} (uv sync --compile-bytecode)"
        if missing
        else f"bytecode present or written by Python for {', '.join(TASK_LIBRARIES)}"
    )


def figures(selection: dict) -> dict:
    """What the run reports: per variant its AUCs, intervals, IC, Sharpe, baselines, rank, eligibility; the
    champion and its verdict."""
    out: dict = {"champion": (selection.get("champion") or {}).get("variant"), "verdict": selection.get("verdict")}
    for r in selection.get("ranking", []):
        out[r["variant"]] = {
            k: r.get(k)
            for k in (
                "rank",
                "eligible",
                "val_auc",
                "val_auc_ci_bonferroni",
                "oot_auc",
                "oot_auc_ci",
                "oot_ic",
                "bt_sharpe",
                "bh_sharpe",
                "cv_auc_mean",
                "baseline_majority_auc",
                "baseline_momentum_auc",
            )
        }
    return out


def run_once(home: str, extra: list[str], label: str) -> tuple[dict, float]:
    env = child_env(SPX_HOME=home)
    env.pop("SPX_S3_ENDPOINT", None)  # the run starts its own S3 server
    env.pop("AWS_ENDPOINT_URL", None)
    out_json = Path(home) / f"{label}.json"
    cmd = [sys.executable, "-m", "spx.cli", "run", "--json", str(out_json), *extra]
    load0, cpu0, t0 = os.getloadavg()[0], children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True)
    took, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-4000:])
        raise SystemExit(f"spx run failed ({proc.returncode})")
    tasks = [m.groups() for line in proc.stdout.splitlines() if (m := TASK_LINE.match(line.strip()))]
    cached = sum(1 for t in tasks if t[1] == "cached")
    print(
        f"\n{label}: {took:.1f} s wall, {cpu:.1f} s CPU (all processes), {len(tasks)} tasks, {cached} cached; "
        f"1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end, {os.cpu_count()} cores"
    )
    for name, status, secs, cpu_s in tasks:
        if status == "cached":
            print(f"  {name:<34} cached")
        else:
            print(
                f"  {name:<34} {float(secs):6.1f} s  cpu {cpu_s if cpu_s == '(shared)' else f'{float(cpu_s):5.1f} s'}"
            )
    news = re.search(r"news: .*", proc.stdout)
    if news:
        print(f"  {news.group(0)}")
    return json.loads(out_json.read_text()), took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", help="a selection JSON (spx run --json) whose figures must equal this run's")
    ap.add_argument("--no-rerun", action="store_true", help="skip the unchanged rerun")
    ap.add_argument("extra", nargs="*", help="extra `spx run` options, after --")
    args = ap.parse_args()
    print(bytecode_state())
    with tempfile.TemporaryDirectory(prefix="spx-bench-") as home:
        first, took = run_once(home, args.extra, "default run")
        verdicts = [f"default run {took:.1f} s (target 60 s)"]
        if not args.no_rerun:
            again, took2 = run_once(home, args.extra, "unchanged rerun")
            same = figures(first) == figures(again)
            verdicts.append(f"unchanged rerun {took2:.1f} s (target 15 s); figures identical to the run's: {same}")
        if args.compare:
            ref = json.loads(Path(args.compare).read_text())
            diff = {k: (v, figures(first).get(k)) for k, v in figures(ref).items() if figures(first).get(k) != v}
            verdicts.append(
                f"figures identical to {args.compare}: {not diff}" + (f" — differences: {diff}" if diff else "")
            )
    print("\n" + "; ".join(verdicts))


if __name__ == "__main__":
    main()
