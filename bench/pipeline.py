"""Benchmark: the whole default local pipeline (`spx run`), then the same command again (the unchanged rerun).

The default run trains on the real SPY one-minute bars the project ships (and, with ../shared/data beside the
project, the real Reuters headlines through every news stage). Both runs use one fresh SPX_HOME (a temp dir):
the first computes everything, the second should take every task from KFP's local cache.

Prints, for each run: the wall time, the CPU seconds of every process it started (tasks, the warm interpreter,
the S3 server), the 1-minute load average at start and end, and where the wall time went: start-up (until the
first task starts: imports, S3 server, run key, compiling), the tasks, and the end (summary, stopping the
servers); for each task when it started (seconds after `spx run` did), its wall and CPU seconds (CPU is blank
only for a task that shared the machine and was not a fork of the warm interpreter) and, with --imports, the
seconds it spent importing (``PYTHONPROFILEIMPORTTIME``; slows the run a little, so not with the headline
figures); the warm interpreter's own CPU (its preloading); whether the interpreter finds compiled bytecode for
the libraries the tasks import; and whether the figures the run reports (every variant's AUCs and intervals,
the ranking, the champion and its verdict) are identical between the two runs and, with --compare FILE, to a
selection JSON written by another run (e.g. the code before a change: `spx run --json before.json`).

--stock adds a third run, in a home of its own, the way KFP's local runner runs the pipeline by itself
(SPX_WARM_START=false: a fresh interpreter per task; SPX_LOCAL_CONCURRENCY=1: one task after another but the
training loop's two): the peer's figures beside ours, measured in the same bench, with its figures compared.

Targets (issue 17): the default run in at most 60 s on two cores, the unchanged rerun in at most 15 s.
Usage: python bench/pipeline.py [--compare before.json] [--no-rerun] [--stock] [--imports] [-- spx run options]
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
from datetime import datetime
from pathlib import Path

from spx.core.settings import child_env

TASK_LINE = re.compile(r"^(\S+(?: \([^)]*\))?)\s+(success|failed|cached)\s+(?:([\d.]+) s\s+cpu\s+(\(shared\)|[\d.]+))?")
LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - \w+ - (Executing task|Task '[^']+' finished)")
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( +)\S")  # top level: one space before the name
WARM_CPU = re.compile(r"own CPU ([\d.]+) s")


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


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def task_timeline(run_dir: Path) -> dict[str, tuple[float, float, float | None]]:
    """Per task log: (start, end) as epoch seconds and, when the run profiled imports, the seconds the task
    spent importing (the sum of the top-level imports PYTHONPROFILEIMPORTTIME reported)."""
    out: dict[str, tuple[float, float, float | None]] = {}
    for log in run_dir.glob("*.log"):
        start = end = None
        imports = 0
        for line in log.read_text(errors="replace").splitlines():
            if (m := LOG_STAMP.match(line)) is not None:
                if m.group(2) == "Executing task":
                    start = start or _stamp(m.group(1))
                else:
                    end = _stamp(m.group(1))
            elif (i := IMPORT_LINE.search(line)) is not None and len(i.group(2)) == 1:
                imports += int(i.group(1))
        if start is not None:
            out[log.stem] = (start, end or start, imports / 1e6 if imports else None)
    return out


def run_once(home: str, extra: list[str], label: str, env_extra: dict[str, str], imports: bool) -> tuple[dict, float]:
    env = child_env(SPX_HOME=home, **env_extra)
    env.pop("SPX_S3_ENDPOINT", None)  # the run starts its own S3 server
    env.pop("AWS_ENDPOINT_URL", None)
    if imports:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    out_json = Path(home) / f"{label.replace(' ', '-')}.json"
    cmd = [sys.executable, "-m", "spx.cli", "run", "--json", str(out_json), *extra]
    runs = Path(home) / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    load0, cpu0, t0, epoch0 = os.getloadavg()[0], children_cpu(), time.perf_counter(), time.time()
    proc = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True)
    took, cpu, epoch1 = time.perf_counter() - t0, children_cpu() - cpu0, time.time()
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-4000:])
        raise SystemExit(f"spx run failed ({proc.returncode})")
    tasks = [m.groups() for line in proc.stdout.splitlines() if (m := TASK_LINE.match(line.strip()))]
    cached = sum(1 for t in tasks if t[1] == "cached")
    new_runs = sorted(set(runs.iterdir()) - before) if runs.exists() else []
    run_dir = new_runs[-1] if new_runs else None
    timeline = task_timeline(run_dir) if run_dir else {}
    ran = [t for t in timeline.values() if t[1] > t[0]]
    print(
        f"\n{label}: {took:.1f} s wall, {cpu:.1f} s CPU (all processes), {len(tasks)} tasks, {cached} cached; "
        f"1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end, {os.cpu_count()} cores"
    )
    if ran:
        first, last = min(t[0] for t in ran), max(t[1] for t in ran)
        print(
            f"  wall: start-up {first - epoch0:.1f} s (imports, S3 server, run key, compile), tasks {last - first:.1f} s, "
            f"end {epoch1 - last:.1f} s (summary, stopping the servers)"
        )
    warm = run_dir / "runner" / "warm-interpreter.log" if run_dir else None
    if warm is not None and warm.exists() and (w := WARM_CPU.search(warm.read_text())) is not None:
        print(f"  warm interpreter (preloading for the tasks): {float(w.group(1)):.1f} s CPU")
    print(f"  {'task':<34} {'starts':>7} {'wall':>7} {'cpu':>8}" + (f" {'imports':>8}" if imports else ""))
    for name, status, secs, cpu_s in tasks:
        base = name.split(" ")[0]
        start, _, imp = timeline.get(base, (epoch0, epoch0, None))
        if status == "cached":
            print(f"  {name:<34} {'cached':>7}")
            continue
        cpu_text = "(shared)" if cpu_s == "(shared)" else f"{float(cpu_s):6.1f} s"
        line = f"  {name:<34} {start - epoch0:5.1f} s {float(secs):5.1f} s {cpu_text:>8}"
        if imports:
            line += f" {imp:6.1f} s" if imp is not None else "        -"
        print(line)
    news = re.search(r"news: .*", proc.stdout)
    if news:
        print(f"  {news.group(0)}")
    return json.loads(out_json.read_text()), took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", help="a selection JSON (spx run --json) whose figures must equal this run's")
    ap.add_argument("--no-rerun", action="store_true", help="skip the unchanged rerun")
    ap.add_argument("--stock", action="store_true", help="also run the way KFP's local runner does by itself")
    ap.add_argument("--imports", action="store_true", help="profile every task's imports (PYTHONPROFILEIMPORTTIME)")
    ap.add_argument("extra", nargs="*", help="extra `spx run` options, after --")
    args = ap.parse_args()
    print(bytecode_state())
    with tempfile.TemporaryDirectory(prefix="spx-bench-") as home:
        first, took = run_once(home, args.extra, "default run", {}, args.imports)
        verdicts = [f"default run {took:.1f} s (target 60 s)"]
        if not args.no_rerun:
            again, took2 = run_once(home, args.extra, "unchanged rerun", {}, args.imports)
            same = figures(first) == figures(again)
            verdicts.append(f"unchanged rerun {took2:.1f} s (target 15 s); figures identical to the run's: {same}")
        if args.compare:
            ref = json.loads(Path(args.compare).read_text())
            diff = {k: (v, figures(first).get(k)) for k, v in figures(ref).items() if figures(first).get(k) != v}
            verdicts.append(
                f"figures identical to {args.compare}: {not diff}" + (f" — differences: {diff}" if diff else "")
            )
    if args.stock:
        with tempfile.TemporaryDirectory(prefix="spx-bench-stock-") as home:
            stock, took3 = run_once(
                home,
                args.extra,
                "KFP's local runner by itself (fresh interpreters, one task at a time)",
                {"SPX_WARM_START": "false", "SPX_LOCAL_CONCURRENCY": "1"},
                args.imports,
            )
        verdicts.append(f"KFP's own runner {took3:.1f} s; figures identical: {figures(stock) == figures(first)}")
    print("\n" + "; ".join(verdicts))


if __name__ == "__main__":
    main()
