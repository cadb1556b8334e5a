"""``spx news``: ingest news into bronze, build silver tone features, score FinBERT gold signals."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import List, Optional

import typer

from spx.core.choices import NewsSource, Precision
from spx.core.logs import setup_cli_logging

news_app = typer.Typer(
    no_args_is_help=True, help="News sentiment: GDELT/RSS/file ingestion, TextBlob + lexicon tone, FinBERT signals."
)


def _logging(verbose: bool) -> None:
    setup_cli_logging(logging.INFO if verbose else logging.WARNING)


def _store():
    from spx.core.storage import ObjectStore

    store = ObjectStore()
    store.ensure_bucket()
    return store


@news_app.command("ingest")
def ingest_cmd(
    source: NewsSource = typer.Option("file", help="where the news comes from"),
    start: str = typer.Option(..., help="range start (UTC date or datetime, inclusive)"),
    end: str = typer.Option(..., help="range end (exclusive)"),
    path: Optional[str] = typer.Option(
        None, help="news file for --source file (csv/parquet/jsonl); default $SPX_NEWS_FILE or ../shared/data/*news*"
    ),
    query: Optional[str] = typer.Option(None, help="GDELT query (default: US equity market + Fed terms)"),
    feed: Optional[List[str]] = typer.Option(None, help="RSS feed URL (repeatable)"),
    window_hours: float = typer.Option(6.0, help="GDELT window walked per request"),
    fulltext: bool = typer.Option(False, help="GDELT: also fetch article pages for body text"),
    tz: str = typer.Option(
        "", "--tz", help="--source file: the zone of publication times written without one (else they are refused)"
    ),
    verbose: bool = typer.Option(True, "--verbose/--quiet"),
) -> None:
    """Collect articles published in [start, end) into write-once bronze; prints a JSON summary."""
    from spx.components.news.bronze import ingest

    _logging(verbose)
    client = None
    if source == "gdelt":
        from spx.components.news.gdelt import GdeltClient

        kwargs = {"query": query} if query else {}
        client = GdeltClient(window=timedelta(hours=window_hours), fetch_fulltext=fulltext, **kwargs)
    elif source == "rss":
        from spx.components.news.rss import DEFAULT_FEEDS, RssClient

        client = RssClient(feeds=list(feed or DEFAULT_FEEDS))
    try:
        result = ingest(str(source), start, end, store=_store(), client=client, path=path, tz=tz)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    if not result.prefix:
        typer.echo("no news in range: the pipeline will run on market features only", err=True)


@news_app.command("silver")
def silver_cmd(
    bronze_prefix: str = typer.Option(..., help="s3:// bronze news prefix (from `spx news ingest`)"),
    run_id: str = typer.Option(..., help="run id for silver/{run_id}/news.parquet"),
    verbose: bool = typer.Option(True, "--verbose/--quiet"),
) -> None:
    """TextBlob polarity/subjectivity + lexicon financial and policy tone per article."""
    from spx.components.news.silver import build_silver

    _logging(verbose)
    uri, report = build_silver(_store(), bronze_prefix, run_id)
    typer.echo(json.dumps({"silver_uri": uri, **report.as_dict()}, indent=2))


@news_app.command("score")
def score_cmd(
    bronze_prefix: Optional[str] = typer.Option(None, help="build silver from this bronze prefix first"),
    silver_uri: Optional[str] = typer.Option(None, help="score an existing silver news parquet"),
    run_id: str = typer.Option(..., help="run id for gold/{run_id}/news_signals.parquet"),
    model: Optional[str] = typer.Option(
        None,
        help="FinBERT location: local dir, s3:// prefix, or hub id "
        "(needs SPX_ALLOW_HUB_DOWNLOAD=1); default $SPX_FINBERT_MODEL; "
        "none: the offline FinVADER lexicon scorer",
    ),
    window_minutes: int = typer.Option(60, help="bar window aggregated by the as-of join"),
    batch_size: int = typer.Option(32),
    max_length: int = typer.Option(128, help="tokens kept per article (truncation)"),
    precision: Precision = typer.Option("fp32", help="int8: dynamic quantisation, faster on CPU"),
    verbose: bool = typer.Option(True, "--verbose/--quiet"),
) -> None:
    """Sentiment per article: FinBERT when a model is configured (cached by content hash in the bucket),
    else the FinVADER lexicons with VADER."""
    from spx.components.news.finbert import ModelUnavailable
    from spx.components.news.gold import build_gold
    from spx.components.news.silver import build_silver

    _logging(verbose)
    store = _store()
    if not silver_uri:
        if not bronze_prefix:
            raise typer.BadParameter("give --silver-uri or --bronze-prefix")
        silver_uri, _ = build_silver(store, bronze_prefix, run_id)
    try:
        uri, summary = build_gold(
            store,
            silver_uri,
            run_id,
            window_minutes=window_minutes,
            model_location=model,
            batch_size=batch_size,
            max_length=max_length,
            precision=str(precision),
        )
    except ModelUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"signals_uri": uri, **summary}, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.add_typer(news_app, name="news")
