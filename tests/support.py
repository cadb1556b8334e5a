"""Paths every test package shares (imported as a normal module, never from a conftest)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
