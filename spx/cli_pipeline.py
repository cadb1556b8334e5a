"""`spx run` and `spx compile`."""

from __future__ import annotations

import json
import logging
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
if not console.is_terminal:  # logs and CI: don't squeeze the table into 80 columns
    console = Console(width=200)


def print_selection(selection: dict) -> None:
    table = Table(title=f"Variants — run {selection['run_id']}")
    for col in ("rank", "variant", "task", "h", "OOT AUC", "95% CI", "walk-fwd AUC", "train AUC",
                "majority", "momentum", "eligible"):
        table.add_column(col)
    for r in selection["ranking"]:
        cv = r["cv_auc_mean"]
        table.add_row(str(r["rank"]), r["variant"], r["task"][:5], str(r["horizon"]), f"{r['oot_auc']:.4f}",
                      f"[{r['oot_auc_ci'][0]:.3f}, {r['oot_auc_ci'][1]:.3f}]",
                      f"{cv:.4f}" if cv is not None else "-", f"{r['train_auc']:.4f}",
                      f"{r['baseline_majority_auc']:.3f}", f"{r['baseline_momentum_auc']:.4f}",
                      "yes" if r["eligible"] else "; ".join(r["reasons"]))
    console.print(table)
    champ = selection.get("champion")
    if champ:
        console.print(f"[bold green]Champion:[/] {champ['variant']} → MLflow model "
                      f"'{champ['registered_model']}' version {champ['model_version']} (alias champion); "
                      f"native model {champ['native_uri']}")
    else:
        console.print(f"[bold yellow]No new champion:[/] {selection.get('reason')}")
    console.print(f"selection: {selection.get('selection_uri')}  ({selection.get('elapsed_s')} s)")


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        source: str = typer.Option("bundled", help="market data: bundled | file | oanda"),
        market_path: str = typer.Option("", help="CSV/parquet with candles when --source file"),
        instrument: str = typer.Option("SPX500_USD"),
        granularity: str = typer.Option("D", help="bar interval: D, H1, M5, M1 …"),
        start: str = typer.Option("", help="first bar to use (UTC date/time)"),
        end: str = typer.Option("", help="last bar to use (UTC date/time)"),
        horizon_short: int = typer.Option(1, help="short label horizon in bars (e.g. 30 for M1)"),
        horizon_long: int = typer.Option(5, help="long label horizon in bars (e.g. 60 for M1)"),
        n_folds: int = typer.Option(5), oot_frac: float = typer.Option(0.1), n_boot: int = typer.Option(500),
        cost_bps: float = typer.Option(1.0, help="transaction cost per position change, in bp"),
        min_oot_auc: float = typer.Option(0.5), max_overfit_gap: float = typer.Option(0.35),
        min_auc_ci_low: float = typer.Option(0.0, help="require the OOT AUC 95% CI to start above this "
                                                       "(e.g. 0.5: a statistically credible edge); 0 = off"),
        news_source: str = typer.Option("file", help="news: file (SPX_NEWS_FILE / ../shared/data) | gdelt | rss"),
        news_path: str = typer.Option("", help="news file (CSV/parquet/JSONL) when --news-source file"),
        news_model: str = typer.Option("", help="FinBERT: local dir or s3:// prefix (default $SPX_FINBERT_MODEL)"),
        news_precision: str = typer.Option("int8", help="FinBERT precision: int8 (dynamic quantisation, default on CPU) | fp32 | bf16"),
        news_delay_minutes: int = typer.Option(0, help="minutes after publication before an article counts"),
        materialize: bool = typer.Option(True, "--materialize/--no-materialize",
                                         help="materialize gold features into the Feast online store"),
        run_id: str = typer.Option("", help="defaults to UTC time + job id"),
        json_out: Optional[str] = typer.Option(None, "--json", help="also write the selection JSON here"),
    ) -> None:
        """Run the whole pipeline locally (KFP local runner, S3 on loopback, MLflow on SQLite)."""
        from pipelines.local import run_local

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        selection = run_local(run_id=run_id, source=source, market_path=market_path, instrument=instrument,
                              granularity=granularity, start=start, end=end, horizon_short=horizon_short,
                              horizon_long=horizon_long, n_folds=n_folds, oot_frac=oot_frac, n_boot=n_boot,
                              cost_bps=cost_bps, min_oot_auc=min_oot_auc, max_overfit_gap=max_overfit_gap,
                              min_auc_ci_low=min_auc_ci_low,
                              news_source=news_source, news_path=news_path, news_model_location=news_model,
                              news_precision=news_precision, news_delay_minutes=news_delay_minutes,
                              materialize_features=materialize)
        print_selection(selection)
        if json_out:
            with open(json_out, "w") as fh:
                json.dump(selection, fh, indent=2, default=str)

    @app.command("compile")
    def compile_cmd(
        output: Optional[str] = typer.Option(None, "--output", "-o", help="default build/spx-<pipeline>.yaml"),
        image: Optional[str] = typer.Option(None, help="component image, e.g. registry/spx-component:tag"),
        pipeline: str = typer.Option("training", help="training | monitoring"),
    ) -> None:
        """Compile a pipeline to KFP IR YAML."""
        if pipeline == "training":
            from pipelines.compile import compile_pipeline as compile_fn
        elif pipeline == "monitoring":
            from pipelines.monitoring import compile_monitoring as compile_fn
        else:
            raise typer.BadParameter("--pipeline is training or monitoring")
        console.print(f"compiled → {compile_fn(output or f'build/spx-{pipeline}.yaml', image=image)}")
