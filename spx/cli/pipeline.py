"""`spx run` and `spx compile`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from spx.core.choices import Dataset, MarketSource, NewsSource, PipelineName, Precision, Session, Timestamps
from spx.core.errors import ServiceError
from spx.core.logs import setup_cli_logging
from spx.core.settings import settings

console = Console()
if not console.is_terminal:  # logs and CI: don't squeeze the table into 80 columns
    console = Console(width=200)

_STATUS = {
    "RUNNING": "[yellow]running[/]",
    "SUCCESS": "[green]ok[/]",
    "FAILURE": "[red]failed[/]",
    "CACHED": "[cyan]cached[/]",
}


class TaskBoard:
    """The tasks of a local run: a live table on a terminal, one plain line per finished task elsewhere."""

    def __init__(self, live: bool):
        # bound to the real stdout now: while the pipeline runs, sys.stdout is the task-log router
        self.console = Console(file=sys.stdout, width=None if console.is_terminal else 200)
        self.rows: dict[str, tuple[str, str, float, float | None]] = {}  # task -> label, status, s, cpu s
        self.live = (
            Live(
                self.table(),
                console=self.console,
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            if live
            else None
        )

    def table(self) -> Table:
        table = Table(title="spx run", show_edge=False, pad_edge=False)
        table.add_column("task")
        table.add_column("status")
        table.add_column("s", justify="right")
        table.add_column("cpu s", justify="right")
        for label, status, seconds, cpu in self.rows.values():
            done = status not in ("RUNNING", "CACHED")
            table.add_row(
                label,
                _STATUS.get(status, status),
                f"{seconds:.1f}" if done else "",
                f"{cpu:.1f}" if done and cpu is not None else "",
            )
        return table

    @staticmethod
    def label(event) -> str:
        return f"{event.task} ({event.detail})" if getattr(event, "detail", "") else event.task

    def __call__(self, event) -> None:
        self.rows[event.task] = (self.label(event), event.status, event.seconds, getattr(event, "cpu_seconds", None))
        if self.live is not None:
            self.live.update(self.table())
        elif event.status == "CACHED":
            self.console.print(f"{self.label(event):<36} cached   (outputs of an earlier run reused)", highlight=False)
        elif event.status != "RUNNING":
            cpu = getattr(event, "cpu_seconds", None)
            self.console.print(
                f"{self.label(event):<36} {event.status.lower():<8} {event.seconds:6.1f} s"
                + (f"  cpu {cpu:6.1f} s" if cpu is not None else "  cpu  (shared)"),
                highlight=False,
            )

    def __enter__(self) -> "TaskBoard":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


def print_selection(selection: dict) -> None:
    from spx.components.selection.select import block_text, interval_text

    table = Table(
        title=f"Variants — run {selection['run_id']} (chosen on the validation block; OOT = the untouched final block)"
    )
    for col in (
        "h",
        "rank",
        "variant",
        "task",
        "val AUC",
        "val CI (Bonferroni)",
        "val rows (sess)",
        "OOT AUC",
        "OOT 95% CI",
        "OOT rows (sess)",
        "walk-fwd AUC",
        "majority",
        "momentum",
        "eligible",
    ):
        table.add_column(col)
    # the table names each reason by its head ("too little data to judge"); the full text follows the table
    # once per distinct reason, with the variants it applies to (a reason repeated on six wrapped rows hid the table)
    why_not: dict[str, list[str]] = {}
    for r in selection["ranking"]:
        for why in r["reasons"]:
            why_not.setdefault(why, []).append(r["variant"])
    for r in selection["ranking"]:
        cv = r["cv_auc_mean"]
        adj = r.get("val_auc_ci_bonferroni") or [float("nan"), float("nan")]
        table.add_row(
            str(r["horizon"]),
            str(r["rank"]),
            r["variant"],
            r["task"][:5],
            f"{r.get('val_auc', float('nan')):.4f}",
            interval_text(adj),
            block_text(r, "val"),
            f"{r['oot_auc']:.4f}",
            interval_text(r["oot_auc_ci"]),
            block_text(r, "oot"),
            f"{cv:.4f}" if cv is not None else "-",
            f"{r['baseline_majority_auc']:.3f}",
            f"{r['baseline_momentum_auc']:.4f}",
            "yes" if r["eligible"] else "; ".join(dict.fromkeys(why.split(":", 1)[0] for why in r["reasons"])),
        )
    console.print(table)
    for why, variants in why_not.items():
        console.print(f"  {', '.join(variants)}: {why}", highlight=False)
    news = selection.get("news")
    if news is not None:
        if news.get("news_features"):
            console.print(
                f"news: {news.get('signals', 0)} scored articles, {news.get('bars_with_news', 0)} bars "
                f"with at least one article in their window ({news['news_features']} news features)"
            )
        elif news.get("signals"):
            console.print(
                f"[bold yellow]news: none — this run trained WITHOUT news[/] ({news['signals']} scored articles, "
                "none in any bar's window: the news covers other dates)"
            )
        else:
            console.print(
                "[bold yellow]news: none — this run trained WITHOUT news[/] (no news file: set "
                "SPX_NEWS_FILE or put ../shared/data/news/ beside the project)"
            )
    champ = selection.get("champion")
    if champ:
        verdict = champ.get("verdict", "no credible edge")
        colour = "green" if verdict == "credible edge" else "yellow"
        console.print(
            f"[bold green]Champion:[/] {champ['variant']} → MLflow model "
            f"'{champ['registered_model']}' version {champ['model_version']} (alias champion); "
            f"native model {champ['native_uri']}"
        )
        console.print(
            f"[bold {colour}]Verdict: {verdict.upper()}[/] — {champ.get('verdict_detail', '')}"
            + (
                ""
                if verdict == "credible edge"
                else "; registered for the local demo only: the cluster rollout refuses it unless "
                "deploy_without_edge=true"
            )
        )
    else:
        console.print(f"[bold yellow]No new champion:[/] {selection.get('reason')}")
    console.print(f"selection: {selection.get('selection_uri')}  ({selection.get('elapsed_s')} s)")
    cached = selection.get("cached_tasks") or []
    if cached:
        every = len(cached) == selection.get("tasks")
        console.print(
            f"[cyan]cache:[/] {len(cached)} of {selection.get('tasks')} tasks reused the outputs of an earlier run "
            f"with the same inputs (KFP's local cache){'; run ' + selection['run_id'] + ' unchanged' if every else ''}"
            " — `spx run --no-cache` recomputes everything",
            highlight=False,
        )


def _dataset_defaults(
    source: str, dataset: str, granularity: Optional[str], horizon_short: Optional[int], horizon_long: Optional[int]
) -> tuple[str, int, int]:
    """Granularity and horizons: the named dataset's (bundled), else 30/60 minutes in bars (1/5 daily)."""
    import pandas as pd

    from spx.components.bronze.datasets import get_dataset
    from spx.components.bronze.market import bar_interval

    if source == "bundled":
        ds = get_dataset(dataset)
        gran = granularity or ds.granularity
        if gran != ds.granularity:
            raise typer.BadParameter(f"dataset {ds.name} has {ds.granularity} bars, not {gran}")
        short, long = ds.horizons
    else:
        gran = granularity or "M1"
        bar = bar_interval(gran)
        if bar >= pd.Timedelta(days=1):
            short, long = 1, 5
        else:
            short = max(1, round(pd.Timedelta(minutes=30) / bar))
            long = max(short + 1, round(pd.Timedelta(minutes=60) / bar))
    return gran, horizon_short or short, horizon_long or long


def _print_next(selection: dict) -> None:
    run_dir = Path(selection["run_dir"])
    bucket = selection.get("selection_uri", "s3://spx/").split("/")[2]
    console.print(
        f"artifacts: s3://{bucket}/{{silver,gold,models,selection}}/{selection['run_id']}/ (the local S3 "
        f"server keeps them under $SPX_HOME/s3; MLflow: {settings().mlflow_tracking_uri})",
        highlight=False,
    )
    console.print(f"task logs: {run_dir}", highlight=False)
    from spx.cli.outcome import next_hint

    console.print(next_hint(selection))


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        source: MarketSource = typer.Option("bundled", help="market data: bundled (a named --dataset), file, oanda"),
        dataset: Dataset = typer.Option(
            "spy_m1_2011q1",
            help="bundled dataset: spy_m1_2011q1 (real SPY 1-minute "
            "bars, Jan+Mar 2011, ships with the project) | spy_m5_2018_2020 (real SPY "
            "5-minute bars, read from ../shared/data) | arch (real daily S&P 500)",
        ),
        market_path: str = typer.Option("", help="CSV/parquet with candles when --source file"),
        instrument: str = typer.Option("SPX500_USD"),
        granularity: Optional[str] = typer.Option(
            None, help="bar interval: D, H1, M5, M1 … (default: the dataset's; M1 for file/oanda)"
        ),
        start: str = typer.Option("", help="first bar to use (UTC date/time)"),
        end: str = typer.Option("", help="last bar to use (UTC date/time)"),
        timestamps: Timestamps = typer.Option(
            "auto",
            help="--source file: its stamps mark bar 'end' or 'start' (start is shifted to the bar end); 'auto': "
            "ends, confirmed from the data (a contradiction is refused naming the option; if the data cannot tell, "
            "you are asked)",
        ),
        market_tz: str = typer.Option(
            "",
            help="--source file: the zone its clock is in (naive stamps are refused without it), e.g. America/New_York",
        ),
        session: Session = typer.Option(
            "regular", help="intraday bars: regular (NYSE 09:30-16:00, half days, holidays) or all"
        ),
        label_cross_close: bool = typer.Option(
            False, "--label-cross-close/--no-label-cross-close", help="let a label window run past the session close"
        ),
        horizon_short: Optional[int] = typer.Option(
            None, help="short label horizon in bars (default: the dataset's, 30 for M1)"
        ),
        horizon_long: Optional[int] = typer.Option(
            None, help="long label horizon in bars (default: the dataset's, 60 for M1)"
        ),
        n_folds: int = typer.Option(5),
        oot_frac: float = typer.Option(0.1),
        n_boot: int = typer.Option(500),
        cost_bps: float = typer.Option(1.0, help="transaction cost per position change, in bp"),
        max_fit_rows: int = typer.Option(
            300_000, help="thin larger fits to every k-th row (evaluation uses every row); 0: fit on all rows"
        ),
        min_oot_auc: float = typer.Option(0.5, help="minimum validation AUC"),
        max_overfit_gap: float = typer.Option(0.35, help="maximum train - validation AUC"),
        min_auc_ci_low: float = typer.Option(
            0.0,
            help="require the validation AUC interval, Bonferroni-"
            "corrected for the candidates, to start above this "
            "(e.g. 0.5: a statistically credible edge); 0 = off",
        ),
        max_auc: float = typer.Option(
            0.60,
            help="leakage ceiling: refuse a variant whose validation AUC is further than this from 0.5 on either side",
        ),
        max_abs_ic: float = typer.Option(0.20, help="leakage ceiling on |validation IC|"),
        max_sharpe_excess: float = typer.Option(6.0, help="leakage ceiling on backtest Sharpe minus buy-and-hold's"),
        news_source: NewsSource = typer.Option(
            "file", help="news: file (SPX_NEWS_FILE / ../shared/data), gdelt, rss, none"
        ),
        news_path: str = typer.Option(
            "",
            help="news file (CSV/parquet/JSONL) when --news-source file (default "
            "$SPX_NEWS_FILE, else ../shared/data/news/reuters_markets_2011q1.parquet)",
        ),
        news_model: str = typer.Option("", help="FinBERT: local dir or s3:// prefix (default $SPX_FINBERT_MODEL)"),
        news_precision: Precision = typer.Option(
            "int8", help="FinBERT precision: int8 (dynamic quantisation, default on CPU), fp32, bf16"
        ),
        news_delay_minutes: int = typer.Option(0, help="minutes after publication before an article counts"),
        news_tz: str = typer.Option(
            "", help="the zone of news times written without one (e.g. America/New_York); without it they are refused"
        ),
        materialize: bool = typer.Option(
            True, "--materialize/--no-materialize", help="materialize gold features into the Feast online store"
        ),
        run_id: str = typer.Option(
            "", help="defaults to UTC time + job id (the earlier run's id when nothing changed and the cache is on)"
        ),
        cache: bool = typer.Option(
            True,
            "--cache/--no-cache",
            help="reuse the outputs of an earlier run with the same parameters, code and input files (KFP's "
            "local cache under $SPX_HOME/kfp-local)",
        ),
        json_out: Optional[str] = typer.Option(None, "--json", help="also write the selection JSON here"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every task's full output"),
    ) -> None:
        """Run the whole pipeline locally (KFP local runner, S3 on loopback, MLflow on SQLite).

        Each task's full log goes to $SPX_HOME/runs/<run_id>/<task>.log."""
        from spx.pipelines.local import TaskLogRouter, missing_bytecode, new_run_id, run_local

        setup_cli_logging(logging.INFO if verbose else logging.WARNING)
        # the choices arrive checked (typer lists the valid values on a typo); plain strings from here on
        source, dataset, timestamps, session, news_source, news_precision = (
            str(v) for v in (source, dataset, timestamps, session, news_source, news_precision)
        )
        granularity, horizon_short, horizon_long = _dataset_defaults(
            source, dataset, granularity, horizon_short, horizon_long
        )
        from spx.cli.preflight import OPTIONS, preflight

        for line in preflight(
            **{k: v for k, v in locals().items() if k in OPTIONS}, horizons=[horizon_short, horizon_long]
        ):
            console.print(line, highlight=False, markup=False)
        invocation = run_id or new_run_id()
        router = TaskLogRouter(settings().runs_dir / invocation)
        console.print(f"spx run {invocation}: task logs in {router.run_dir}", highlight=False)
        if missing := missing_bytecode():
            console.print(
                f"[yellow]note:[/] PYTHONDONTWRITEBYTECODE is set and {', '.join(missing)} have no compiled bytecode: "
                "every task compiles what it imports (2-3x the run's CPU); compile once with "
                "`uv sync --locked --all-extras --compile-bytecode`",
                highlight=False,
            )
        try:
            with TaskBoard(live=console.is_terminal and not verbose) as board:
                selection = run_local(
                    router=router,
                    on_event=board,
                    verbose=verbose,
                    cache=cache,
                    run_id=run_id,
                    source=source,
                    dataset=dataset,
                    market_path=market_path,
                    instrument=instrument,
                    granularity=granularity,
                    start=start,
                    end=end,
                    timestamps=timestamps,
                    market_tz=market_tz,
                    session=session,
                    label_cross_close=label_cross_close,
                    horizon_short=horizon_short,
                    horizon_long=horizon_long,
                    n_folds=n_folds,
                    oot_frac=oot_frac,
                    n_boot=n_boot,
                    cost_bps=cost_bps,
                    max_fit_rows=max_fit_rows,
                    min_oot_auc=min_oot_auc,
                    max_overfit_gap=max_overfit_gap,
                    min_auc_ci_low=min_auc_ci_low,
                    max_auc=max_auc,
                    max_abs_ic=max_abs_ic,
                    max_sharpe_excess=max_sharpe_excess,
                    news_source=news_source,
                    news_path=news_path,
                    news_model_location=news_model,
                    news_precision=news_precision,
                    news_delay_minutes=news_delay_minutes,
                    news_tz=news_tz,
                    materialize_features=materialize,
                )
        except Exception as exc:
            failed = router.failed()
            if failed is None:
                raise
            console.print(f"[bold red]task {failed.task} failed[/] — last lines of {failed.log_path}:")
            for line in router.last_lines(failed.task):
                console.print("  " + line, highlight=False, markup=False)
            from spx.cli.outcome import failure_cause

            cause = failure_cause(router.last_lines(failed.task, 400)) or type(exc).__name__
            raise ServiceError(
                f"spx run {invocation}: task {failed.task} failed — {cause} (full log: {failed.log_path})"
            ) from None
        print_selection(selection)
        if json_out:
            with open(json_out, "w") as fh:
                json.dump(selection, fh, indent=2, default=str)
        _print_next(selection)

    @app.command("config")
    def config_cmd(json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
        """Every setting: its environment variable(s), current value (secrets masked), default and meaning."""
        from spx.core.settings import describe

        rows = describe()
        if json_out:
            console.print_json(data=rows)
            return
        table = Table(show_edge=False)
        for col in ("group", "env", "value", "default", "meaning"):
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(row["group"], row["env"], row["value"], row["default"], row["meaning"])
        console.print(table)

    @app.command("compile")
    def compile_cmd(
        output: Optional[str] = typer.Option(None, "--output", "-o", help="default build/spx-<pipeline>.yaml"),
        image: Optional[str] = typer.Option(None, help="component image, e.g. registry/spx-component:tag"),
        pipeline: PipelineName = typer.Option("training", help="which pipeline"),
    ) -> None:
        """Compile a pipeline to KFP IR YAML."""
        if pipeline == "training":
            from spx.pipelines.compile import compile_pipeline as compile_fn
        elif pipeline == "monitoring":
            from spx.pipelines.monitoring import compile_monitoring as compile_fn
        else:
            raise typer.BadParameter("--pipeline is training or monitoring")
        console.print(f"compiled → {compile_fn(output or f'build/spx-{pipeline}.yaml', image=image)}")
