"""KFP components for news: bronze ingestion, silver tone features, gold FinBERT signals.

All three pass string URIs and return "" when there is no news, so the pipeline goes on with
market features alone (each says so in its log). Logic lives in the sibling modules; these
bodies only wire settings and the object store.
"""

from spx.core.component import spx_component


@spx_component
def news_bronze(
    source: str,
    start: str,
    end: str,
    path: str = "",
    query: str = "",
    feeds: str = "",
    fetch_fulltext: bool = False,
    tz: str = "",
) -> str:
    """Collect news (gdelt | rss | file) published in [start, end) into write-once bronze.

    ``path``: news file for ``file`` (default: ``$SPX_NEWS_FILE`` or a news file in
    ``../shared/data``); ``tz``: the zone of a file's publication times that carry none (without it such a
    file is refused); ``query``: GDELT query (default: US equity market + Fed terms);
    ``feeds``: comma-separated RSS URLs. Returns the bronze prefix URI, or "" when no news."""
    from spx.components.news.bronze import ingest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.news.bronze")
    store = ObjectStore()
    store.ensure_bucket()
    client = None
    if source == "gdelt":
        from spx.components.news.gdelt import GdeltClient

        client = GdeltClient(fetch_fulltext=fetch_fulltext, **({"query": query} if query else {}))
    elif source == "rss":
        from spx.components.news.rss import DEFAULT_FEEDS, RssClient

        urls = [u.strip() for u in feeds.split(",") if u.strip()] or list(DEFAULT_FEEDS)
        client = RssClient(feeds=urls)
    result = ingest(source, start, end, store=store, client=client, path=path or None, tz=tz)
    if not result.prefix:
        log.warning("no news from %s for %s..%s: the pipeline continues on market features only", source, start, end)
    log.info("news bronze summary: %s", result.as_dict())
    return result.prefix


@spx_component
def news_silver(bronze_prefix: str, run_id: str) -> str:
    """TextBlob + lexicon tone per article -> ``silver/{run_id}/news.parquet`` ("" when none)."""
    from spx.components.news.silver import build_silver
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.news.silver")
    uri, report = build_silver(ObjectStore(), bronze_prefix, run_id)
    log.info("news silver summary: %s", report.as_dict())
    return uri


@spx_component
def news_gold(
    silver_uri: str,
    run_id: str,
    window_minutes: int = 60,
    model_location: str = "",
    batch_size: int = 32,
    max_length: int = 128,
    precision: str = "fp32",
) -> str:
    """FinBERT probabilities per article (cached by content hash) ->
    ``gold/{run_id}/news_signals.parquet``; "" when there is no news.

    ``model_location``: local dir, s3:// prefix or (if allowed) hub id; default ``$SPX_FINBERT_MODEL``.
    ``precision``: fp32 | bf16 | int8 (dynamic quantisation, faster on CPU)."""
    from spx.components.news.gold import build_gold
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.news.gold")
    uri, summary = build_gold(
        ObjectStore(),
        silver_uri,
        run_id,
        window_minutes=window_minutes,
        model_location=model_location or None,
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
    )
    log.info("news gold summary: %s", summary)
    return uri
