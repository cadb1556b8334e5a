"""KFP components for news: bronze ingestion, silver tone features, gold FinBERT signals.

Each outputs its table as a typed ``Dataset`` (a manifest of the table in the bucket, see
``spx.core.artifacts``; its ``uri`` is "" when there is no news) and also returns the URI ("" when none),
so the pipeline goes on with market features alone (each says so in its log). Logic lives in the sibling
modules; these bodies only wire settings and the object store.
"""

from kfp.dsl import Dataset, Input, Output

from spx.core.component import spx_component


@spx_component
def news_bronze(
    source: str,
    start: str,
    end: str,
    news: Output[Dataset],
    path: str = "",
    query: str = "",
    feeds: str = "",
    fetch_fulltext: bool = False,
    cache_token: str = "",
    tz: str = "",
) -> str:
    """Collect news (gdelt | rss | file) published in [start, end) into write-once bronze.

    ``path``: news file for ``file`` (default: ``$SPX_NEWS_FILE`` or a news file in
    ``../shared/data``); ``tz``: the zone of a file's publication times that carry none (without it such a
    file is refused); ``query``: GDELT query (default: US equity market + Fed terms);
    ``feeds``: comma-separated RSS URLs. Returns the bronze prefix URI, or "" when no news.
    ``cache_token`` is not read: part of KFP's cache key (see ``bronze_market``)."""
    from spx.components.news.bronze import ingest
    from spx.core.artifacts import describe_prefix, write_manifest
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
    facts = describe_prefix(store, result.prefix) if result.prefix else {"uri": ""}
    write_manifest(news, {**facts, "layer": "bronze", "source": source, "start": start, "end": end})
    return result.prefix


@spx_component
def news_silver(bronze: Input[Dataset], run_id: str, tone: Output[Dataset]) -> str:
    """TextBlob + lexicon tone per article -> ``silver/{run_id}/news.parquet`` ("" when none)."""
    from spx.components.news.silver import build_silver
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.news.silver")
    store = ObjectStore()
    uri, report = build_silver(store, table_uri(bronze), run_id)
    log.info("news silver summary: %s", report.as_dict())
    facts = describe_object(store, uri) if uri else {"uri": ""}
    write_manifest(tone, {**facts, "layer": "silver", "family": "news", "run_id": run_id, **report.as_dict()})
    return uri


@spx_component
def news_gold(
    silver: Input[Dataset],
    run_id: str,
    signals: Output[Dataset],
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
    from spx.core.artifacts import describe_object, table_uri, write_manifest
    from spx.core.logs import stage_logging
    from spx.core.storage import ObjectStore

    log = stage_logging("spx.news.gold")
    store = ObjectStore()
    uri, summary = build_gold(
        store,
        table_uri(silver),
        run_id,
        window_minutes=window_minutes,
        model_location=model_location or None,
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
    )
    log.info("news gold summary: %s", summary)
    facts = describe_object(store, uri) if uri else {"uri": ""}
    write_manifest(signals, {**facts, "layer": "gold", "family": "news_signals", "run_id": run_id, "summary": summary})
    return uri
