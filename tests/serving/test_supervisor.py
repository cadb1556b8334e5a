"""spx.core.services.ManagedProcess / Supervisor with real child processes: the child's output goes
to a size-rotated log (before: one ever-growing file), and a child that dies is started again with
backoff (before: ``spx serve`` shut everything down when one child exited)."""

from __future__ import annotations

import sys
import time

from spx.core.processes import ManagedProcess, Supervisor

CHATTY = "import sys\nfor i in range(4000): print('line %05d ' % i + 'x' * 60)\nsys.stdout.flush()\n"


def test_child_output_is_rotated(tmp_path):
    child = ManagedProcess(
        "chatty", [sys.executable, "-c", CHATTY], tmp_path / "chatty.log", max_log_bytes=50_000, backups=2
    ).start()
    assert child.proc.wait(timeout=60) == 0
    child.stop()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2"], files
    assert all((tmp_path / f).stat().st_size <= 50_000 for f in files)
    assert "line 03999" in (tmp_path / "chatty.log").read_text()  # the newest lines are in the current file


def _wait_for(path, text: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in {path}")


def test_supervisor_restarts_a_dead_child_with_backoff(tmp_path):
    lines: list[str] = []
    child = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        tmp_path / "sleeper.log",
    ).start()
    supervisor = Supervisor([child], report=lines.append, max_backoff=2)
    first = child.proc.pid
    _wait_for(child.log_path, "up", 1)
    child.proc.kill()
    child.proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and supervisor.restarts["sleeper"] == 0:
        supervisor.check()
        time.sleep(0.1)
    try:
        assert supervisor.restarts["sleeper"] == 1 and child.alive() and child.proc.pid != first
        assert any("exited with code -9; restarting in 1s" in line for line in lines), lines
        assert any("restarted (restart #1)" in line for line in lines), lines
        _wait_for(child.log_path, "up", 2)
    finally:
        child.stop()
    assert child.log_path.read_text().count("up") == 2
