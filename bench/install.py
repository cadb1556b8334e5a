"""Benchmark: a fresh install from the README's line, with a cold package cache, beside pip installing the
same lock.

Copies the committed tree (``git archive HEAD``: what a clone gives) into a temp dir and times, with empty
caches of their own:
* **ours** (the README): ``pip install uv==X`` into a throwaway venv, then
  ``uv sync --locked --all-extras --compile-bytecode``;
* **peer**: pip installing exactly the same pins (``uv export --all-extras``) into a new venv with
  ``pip install --no-deps`` (no resolution at all: the fastest pip can be on this lock).
Prints the wall time of each step, the size of each venv and the 1-minute load average before and after.
Downloads come from PyPI (network) and torch's CPU wheel from /opt/wheels (disk) in both.

Usage: python bench/install.py [--no-peer] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spx.core.settings import child_env

ROOT = Path(__file__).resolve().parents[1]
UV_VERSION = "0.13.9"  # the README's and .ci/run's


def run(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-3000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return took


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-peer", action="store_true", help="skip the pip-from-the-lock peer")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="spx-install-bench-"))
    py = shutil.which("python3.11") or sys.executable
    try:
        src = base / "src"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        load0 = os.getloadavg()[0]
        env = child_env(UV_CACHE_DIR=str(base / "uv-cache"), PIP_NO_CACHE_DIR="1")
        for key in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"):
            env.pop(key, None)

        boot = base / "uv-bootstrap"
        t_venv = run([py, "-m", "venv", str(boot)], cwd=src, env=env)
        t_uv = run([str(boot / "bin" / "pip"), "install", "-q", f"uv=={UV_VERSION}"], cwd=src, env=env)
        t_sync = run(
            [str(boot / "bin" / "uv"), "sync", "--locked", "--all-extras", "--compile-bytecode", "-q"], cwd=src, env=env
        )
        t_check = run([str(src / ".venv" / "bin" / "spx"), "--help"], cwd=src, env=env)
        ours = t_uv + t_sync
        print(
            f"ours: pip install uv=={UV_VERSION} {t_uv:.1f} s + uv sync --locked --all-extras --compile-bytecode {t_sync:.1f} s"
        )
        print(
            f"      = {ours:.1f} s from a cold cache ({size_mb(src / '.venv'):,.0f} MiB venv; spx --help {t_check:.1f} s)"
        )

        if not args.no_peer:
            req = base / "requirements-all.txt"
            export = subprocess.run(
                [
                    str(boot / "bin" / "uv"),
                    "export",
                    "--frozen",
                    "--all-extras",
                    "--no-emit-project",
                    "--no-hashes",
                    "-q",
                ],
                cwd=src,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            req.write_text(export)
            venv = base / "pip-venv"
            run([py, "-m", "venv", str(venv)], cwd=src, env=env)
            t_pip = run(
                [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-r", str(req), "--no-cache-dir"],
                cwd=src,
                env=env,
            )
            print(
                f"peer: pip install --no-deps -r <the same lock, exported> {t_pip:.1f} s "
                f"({size_mb(venv):,.0f} MiB venv); ratio pip/uv {t_pip / t_sync:.1f}x"
            )
        print(
            f"venv creation {t_venv:.1f} s; 1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end "
            f"on {os.cpu_count()} cores; target: the README's install in at most 180 s"
        )
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
