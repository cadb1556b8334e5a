"""One logging set-up for every process spx starts.

* Pods and stages (KFP shows a component's stdout as its log): plain lines on stdout, or JSON lines when
  ``json=True`` (log collectors).
* The CLI on a terminal uses ``rich`` (:func:`setup_cli_logging`).
Third-party chatter (botocore, urllib3, MLflow's alembic) is kept at WARNING.
"""

from __future__ import annotations

import json as _json
import logging
import sys

NOISY = (
    "botocore",
    "boto3",
    "urllib3",
    "mlflow",
    "alembic",
    "s3transfer",
    "kfp",
    "feast",
    "filelock",
    "git",
    "matplotlib",
    "PIL",
    "numexpr",
    "asyncio",
    "httpx",
    "httpcore",
)
_MARK = "_spx_handler"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return _json.dumps(payload)


def _install(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def setup_logging(level: int = logging.INFO, *, json: bool = False, stream=None) -> None:
    """Plain (or JSON) log lines on ``stream`` (stdout by default); idempotent."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    _install(handler, level)


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Rich log lines for a person at a terminal; plain lines otherwise (CI, pipes)."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        _install(RichHandler(show_path=False, rich_tracebacks=False, markup=False), level)
    else:
        setup_logging(level, stream=sys.stderr)


def stage_logging(name: str) -> logging.Logger:
    """Set up a stage process (KFP component body): plain lines on stdout, and the resolved settings
    exported to the libraries that read the environment themselves (boto3, MLflow, s3fs)."""
    from spx.core.settings import export_library_env

    if not any(getattr(h, _MARK, False) for h in logging.getLogger().handlers):
        setup_logging()
    export_library_env()
    return logging.getLogger(name)
