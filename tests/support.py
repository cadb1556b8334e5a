"""Paths every test package shares (imported as a normal module, never from a conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def venv_tool(name: str) -> str | None:
    """A console script of this environment (next to the interpreter, so an unactivated venv works), else PATH."""
    import shutil

    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)
