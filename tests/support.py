"""Paths every test package shares (imported as a normal module, never from a conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

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
