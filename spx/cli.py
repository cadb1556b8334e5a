"""The `spx` command line.

Core commands (run, compile) live here; command groups owned by other parts of the system live in
``spx/cli_*.py`` modules, each exposing ``register(app)``. They are imported lazily so that a
missing optional extra (say, serving) never breaks the core commands.
"""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="spx-kfp: S&P 500 short-horizon direction on Kubeflow + KServe.")

_COMMAND_MODULES = ("spx.cli_pipeline", "spx.cli_serve", "spx.cli_cluster", "spx.cli_news",
                    "spx.cli_monitor")


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

if __name__ == "__main__":
    app()
