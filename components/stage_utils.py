"""Small helpers shared by the stage entry points (logging set-up, store)."""

from __future__ import annotations

import logging
import sys


def stage_logging(name: str) -> logging.Logger:
    """Log lines to stdout (KFP shows a component's stdout as its log)."""
    root = logging.getLogger()
    if not any(getattr(h, "_spx", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._spx = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for noisy in ("botocore", "urllib3", "mlflow", "alembic", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(name)
