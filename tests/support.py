"""Paths every test package shares (imported as a normal module, never from a conftest)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import requests

from spx.core.processes import ManagedProcess, free_port
from spx.core.settings import child_env

ROOT = Path(__file__).resolve().parents[1]


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: ``docs/screenshots/`` (what the README shows) with
    ``SPX_UPDATE_SCREENSHOTS=1``, else ``tmp_path`` (a test run leaves the tree as it was)."""
    from spx.core.settings import settings

    folder = ROOT / "docs" / "screenshots" if settings().dev.update_screenshots else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def venv_tool(name: str) -> str | None:
    """A console script of this environment (next to the interpreter, so an unactivated venv works), else PATH."""
    import shutil

    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


class SinkProcess(ManagedProcess):
    """``python -m spx.components.monitoring.sink`` as a real subprocess on loopback (what the Deployment runs),
    on a fixed ``port`` so a restarted sink comes back at the same address."""

    def __init__(
        self,
        wal_dir: Path,
        log_path: Path | None = None,
        port: int | None = None,
        batch_rows: int = 100_000,
        flush_interval: float = 3600.0,
        pair_timeout: float = 3600.0,
        env: dict[str, str] | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "spx.components.monitoring.sink", "--host", "127.0.0.1", "--port", str(self.port),
            "--wal-dir", str(wal_dir), "--batch-rows", str(batch_rows), "--flush-interval", str(flush_interval),
            "--pair-timeout", str(pair_timeout),
        ]  # fmt: skip
        super().__init__(
            "sink",
            cmd,
            log_path or Path(wal_dir).parent / "sink.log",
            env=env or child_env(PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            ready_url=f"{self.url}/healthz",
        )

    def health(self) -> dict:
        return requests.get(f"{self.url}/healthz", timeout=5).json()

    def wait_acknowledged(self, n: int, *, include_duplicates: bool = False, timeout: float = 60.0) -> dict:
        """Poll ``/healthz`` until the sink has acknowledged ``n`` events (re-sent duplicates counted when asked);
        returns the last health document."""
        deadline = time.monotonic() + timeout
        health = self.health()
        while time.monotonic() < deadline:
            health = self.health()
            if health["accepted"] + (health["duplicates"] if include_duplicates else 0) >= n:
                return health
            time.sleep(0.1)
        raise AssertionError(f"the sink acknowledged {health}, expected {n} events\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: whatever the sink has not made durable is lost (the fault the tests inject)."""
        self.kill()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM: the sink flushes what it holds to the bucket, then exits."""
        return super().stop(timeout)
