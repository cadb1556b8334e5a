"""`spx run`'s pre-flight: the data, the options and the news file are checked before any server starts.

What used to fail late, with another cause — a path that does not exist (found after ~45 s of S3 and news
stages), a horizon longer than a session's labelled bars (a training task crashed after gold succeeded), bars
whose stamps were read one bar or hours off (accepted in silence), a file with no volume (every row dropped by
gold) — is found here, in this process, in a few seconds, and stops the run with one line the user can act on
(a :class:`~spx.core.errors.DataValidationError`: ``spx: <message>``, exit code 1). What is not a problem but
shapes the run — bars left out and why, the volume and quote coverage, a dataset too small for a verdict — is
printed in a few lines before the tasks start.

The checks are the stages' own (``spx.components.bronze.profile``: the same reading of the stamps, the same
window, the same calendar), so the pre-flight and the pipeline cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from spx.core.errors import DataValidationError

OPTIONS = (  # the `spx run` options :func:`preflight` takes, by name (besides the resolved horizons)
    "source",
    "dataset",
    "market_path",
    "granularity",
    "start",
    "end",
    "timestamps",
    "market_tz",
    "session",
    "label_cross_close",
    "oot_frac",
    "news_source",
    "news_path",
    "news_tz",
)


def _zone(name: str, option: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataValidationError(f"{option} {name!r} is not a time zone (e.g. America/New_York, UTC)") from None


def _news_lines(news_source: str, news_path: str, news_tz: str) -> list[str]:
    """The news file a ``file`` run will read: it exists, and its times carry a zone (or one is named)."""
    if news_source not in ("file", "gdelt", "rss", "none"):
        raise DataValidationError(f"--news-source must be file, gdelt, rss or none, got {news_source!r}")
    if news_source != "file":
        return []
    from spx.components.news.bronze import default_news_file, read_news_file
    from spx.components.news.schema import naive_published_example

    if news_tz:
        _zone(news_tz, "--news-tz")
    if news_path and not Path(news_path).exists():
        raise DataValidationError(f"{news_path}: news file not found (--news-path)")
    path = Path(news_path) if news_path else default_news_file()
    if path is None:
        return ["news: no news file (SPX_NEWS_FILE, or ../shared/data/news/ beside the project): trains without news"]
    if not path.exists():
        raise DataValidationError(f"{path}: news file not found (SPX_NEWS_FILE)")
    try:
        records = read_news_file(path)
    except ValueError as exc:
        raise DataValidationError(f"{path}: {exc}") from None
    example = None if news_tz else naive_published_example(records)
    if example is not None:
        raise DataValidationError(
            f"{path}: publication times without a time zone (e.g. {example!r}); refusing to read them as UTC (an "
            "article at 19:00 New York would count for that day's close) — pass --news-tz ZONE (e.g. "
            "America/New_York) or write zone-aware times"
        )
    return []


def preflight(
    *,
    source: str,
    dataset: str,
    market_path: str,
    granularity: str,
    start: str,
    end: str,
    timestamps: str,
    market_tz: str,
    session: str,
    label_cross_close: bool,
    horizons: list[int],
    oot_frac: float,
    news_source: str = "file",
    news_path: str = "",
    news_tz: str = "",
) -> list[str]:
    """Check a run's data and options; return the lines to show, or raise :class:`DataValidationError` (one
    line) at the first problem."""
    from spx.components.bronze.market import bar_interval
    from spx.components.bronze.profile import load_run_bars, profile_bars
    from spx.components.selection.select import MIN_BLOCK_SESSIONS, MIN_BLOCK_WINDOWS
    from spx.core.choices import SESSIONS, TIMESTAMPS

    if session not in SESSIONS:
        raise DataValidationError(f"--session must be one of {SESSIONS}, got {session!r}")
    if timestamps not in TIMESTAMPS:
        raise DataValidationError(f"--timestamps must be one of {TIMESTAMPS}, got {timestamps!r}")
    if market_tz:
        _zone(market_tz, "--market-tz")
    try:
        bar_interval(granularity)
    except ValueError as exc:
        raise DataValidationError(f"--granularity: {exc}") from None
    if min(horizons) < 1:
        raise DataValidationError(f"horizons must be at least 1 bar, got {horizons}")
    if source == "oanda":
        from spx.core.settings import settings

        if not settings().market.oanda_api_token.get_secret_value():
            raise DataValidationError("--source oanda needs OANDA_API_TOKEN (your v20 API token) in the environment")
        lines = ["data: OANDA v20 candles (fetched by the run; checked against the calendar as they arrive)"]
        return lines + _news_lines(news_source, news_path, news_tz)
    if source not in ("bundled", "file"):
        raise DataValidationError(f"--source must be bundled, file or oanda, got {source!r}")
    run = load_run_bars(
        source=source,
        dataset=dataset,
        path=market_path,
        granularity=granularity,
        start=start,
        end=end,
        timestamps=timestamps,
        market_tz=market_tz,
    )
    assert run is not None
    profile = profile_bars(
        run.bars,
        granularity=granularity,
        session=session,
        horizons=list(horizons),
        label_cross_close=label_cross_close,
        oot_frac=oot_frac,
        source=run.source,
        min_block_sessions=MIN_BLOCK_SESSIONS,
        min_block_windows=MIN_BLOCK_WINDOWS,
    )
    if profile.problems:
        raise DataValidationError(profile.problems[0])
    lines = profile.lines + [f"  {note}" for note in run.notes + profile.notes]
    return lines + _news_lines(news_source, news_path, news_tz)
