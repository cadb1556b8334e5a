"""``spx bronze list`` / ``spx bronze retire``: see the raw market chunks and take one out of use, write-once kept.

Bronze is never rewritten: a chunk that should not be read any more (a second source under one prefix from an
earlier version, a revised OANDA page that disagrees with the stored one) gets a tombstone beside it
(``{prefix}_retired/{chunk}.json``, with the reason, written once); every reader skips it from then on, and the
chunk's bytes stay as they were (``spx.components.bronze.market.retire_chunk``).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

bronze_app = typer.Typer(
    no_args_is_help=True, help="Raw market chunks: list them, retire one (a tombstone, never a delete)."
)
console = Console()
if not console.is_terminal:
    console = Console(width=200)


def _store():
    """The store ``spx monitor`` uses: ``SPX_S3_ENDPOINT`` when set, else the embedded S3 server of ``spx run``."""
    from spx.cli.monitor import _object_store

    return _object_store()


@bronze_app.command("list")
def list_cmd(
    prefix: str = typer.Argument("bronze/market/", help="a prefix (key or s3:// URI); default every market dataset"),
    all_: bool = typer.Option(False, "--all", help="show retired chunks too"),
) -> None:
    """The market chunks under PREFIX: dataset, instrument, granularity, first and last bar, retired or not."""
    from spx.components.bronze.market import list_chunks

    with _store() as store:
        chunks = list_chunks(store, prefix)
    shown = [c for c in chunks if all_ or c.retired is None]
    table = Table(show_edge=False)
    for col in ("key", "first bar end", "last bar end", "state"):
        table.add_column(col, overflow="fold")
    for c in shown:
        state = (
            "live"
            if c.retired is None
            else f"retired {c.retired.get('retired_at', '')[:19]}: {c.retired.get('reason', '')}"
        )
        table.add_row(c.key, str(c.first), str(c.last), state)
    console.print(table)
    retired = sum(c.retired is not None for c in chunks)
    console.print(
        f"{len(chunks) - retired} live chunk(s), {retired} retired"
        + ("" if all_ or not retired else " (--all shows them)"),
        highlight=False,
    )


@bronze_app.command("retire")
def retire_cmd(
    key: str = typer.Argument(..., help="the chunk's key or s3:// URI (from `spx bronze list`)"),
    reason: str = typer.Option(..., "--reason", help="why it must not be read (kept in the tombstone)"),
) -> None:
    """Retire a chunk: readers skip it from now on; the chunk itself is kept, byte for byte."""
    from spx.components.bronze.market import retire_chunk

    with _store() as store:
        tomb = retire_chunk(store, key, reason=reason, by="spx bronze retire")
    console.print(
        f"retired {key}: tombstone {tomb} (the chunk is kept; `spx bronze list --all` shows it)", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.add_typer(bronze_app, name="bronze")
