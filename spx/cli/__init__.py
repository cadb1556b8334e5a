"""The `spx` command line (the top layer: it may import every other layer, nothing imports it).

Core commands (run, compile) live in ``spx.cli.pipeline``; the other command groups (serve, cluster, news,
monitor) live beside it, each exposing ``register(app)``. They are imported lazily so that a missing optional
extra (say, serving) never breaks the core commands.

:func:`main` is the console entry point: an :class:`~spx.core.errors.SpxError` (bad input, a refused request,
a setting spx cannot use) becomes one line on stderr and its exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from spx.core.errors import SpxError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="spx-kfp: S&P 500 short-horizon direction on Kubeflow + KServe.",
)

_COMMAND_MODULES = (
    "spx.cli.pipeline",
    "spx.cli.serve",
    "spx.cli.cluster",
    "spx.cli.news",
    "spx.cli.monitor",
    "spx.cli.bronze",
)


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command group not part of this build
            logging.getLogger(__name__).debug("command group %s unavailable: %s", name, exc)
            continue
        module.register(app)


_register_all()


def main() -> None:
    try:
        app()
    except SpxError as exc:
        typer.secho(f"spx: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
