"""``spx monitor``, ``spx report``: drift + retrain, pictures."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer


@contextlib.contextmanager
def _object_store():
    """An ObjectStore: ``SPX_S3_ENDPOINT`` when set, else the embedded SeaweedFS of ``spx run``."""
    from spx.core.services import embedded_s3
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    home = settings().home
    home.mkdir(parents=True, exist_ok=True)
    with embedded_s3(home):
        store = ObjectStore()
        store.ensure_bucket()
        yield store


def monitor(
    run_id: str = typer.Option("", help="reference training run (default: the champion)"),
    variant: str = typer.Option("", help="reference variant (default: the champion's)"),
    lookback_days: float = typer.Option(7.0, help="served-traffic window"),
    gold_window_days: float = typer.Option(30.0, help="newest-gold window compared with the reference"),
    method: str = typer.Option("wasserstein", help="Evidently drift test per feature"),
    threshold: float = typer.Option(0.1, help="per-feature drift threshold of that test"),
    drift_threshold: float = typer.Option(0.5, help="retrain when this share of features drifted"),
    hit_rate_floor: float = typer.Option(0.5, help="retrain when the live hit rate is below this"),
    min_labeled: int = typer.Option(100, help="…on at least this many realized labels"),
    retrain: bool = typer.Option(True, help="start training when the decision says so"),
    kfp_host: str = typer.Option("", help="start the retrain on this KFP API instead of locally"),
    namespace: str = typer.Option(""),
    training_params: str = typer.Option("{}", help="JSON parameters for the training run"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Drift + live hit rate vs the champion's training reference; retrain when needed."""
    import uuid
    from datetime import datetime, timezone

    from spx.components.monitoring.drift import MonitorConfig, run_monitoring, summary_text
    from spx.components.monitoring.trigger import kfp_client, start_training_kfp
    from spx.pipelines.local import run_local

    try:
        params = json.loads(training_params)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--training-params is not JSON: {exc}") from None
    cfg = MonitorConfig(
        lookback_days=lookback_days,
        gold_window_days=gold_window_days,
        method=method,
        threshold=threshold,
        drift_threshold=drift_threshold,
        hit_rate_floor=hit_rate_floor,
        min_labeled=min_labeled,
    )
    mid = f"local-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    with _object_store() as store:
        try:
            summary = run_monitoring(store, monitor_run_id=mid, run_id=run_id, variant=variant, cfg=cfg)
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(
            json.dumps({k: v for k, v in summary.items() if not k.startswith("_")}, indent=2, default=str)
            if json_out
            else summary_text(summary)
        )
        decision = summary["decision"]
        if decision["retrain"] and retrain:
            reason = "; ".join(decision["reasons"])
            if kfp_host:
                rid = start_training_kfp(
                    kfp_client(kfp_host, namespace), params=params, namespace=namespace, reason=reason
                )
                typer.echo(f"started KFP training run {rid}")
            else:
                result = run_local(**params)
                champ = result.get("champion") or {}
                typer.echo(
                    f"local training finished: run {result.get('run_id')}, champion "
                    f"{champ.get('variant') if isinstance(champ, dict) else champ}"
                )


def report(
    out: Path = typer.Option(..., "--out", help="folder to write the pictures to"),
    run_id: str = typer.Option("", help="training run (default: the newest)"),
):
    """Write the training/monitoring pictures (HTML with embedded plots, Markdown) to a folder."""
    from spx.components.monitoring.report import write_report

    with _object_store() as store:
        try:
            result = write_report(store, out, run_id=run_id)
        except FileNotFoundError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"run {result['run_id']}: wrote {len(result['files'])} files to {result['out']}")
    for f in result["files"]:
        typer.echo(f"  {f}")


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    app.command("report")(report)
