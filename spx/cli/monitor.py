"""``spx monitor``, ``spx report``, ``spx ui``: drift + retrain, pictures, the Evidently dashboard."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

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
    canary_window_minutes: float = typer.Option(60.0, help="canary vs stable health over this many minutes"),
    as_of: str = typer.Option("", "--as-of", help="evaluate as of this UTC time (ISO 8601; default: now)"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """Drift + live hit rate vs the champion's training reference; retrain when needed."""
    import uuid

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
        canary_window_minutes=canary_window_minutes,
    )
    try:
        now = _as_of(as_of)
    except ValueError as exc:
        raise typer.BadParameter(f"--as-of: {exc}") from None
    mid = f"local-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    with _object_store() as store:
        try:
            summary = run_monitoring(store, monitor_run_id=mid, run_id=run_id, variant=variant, cfg=cfg, now=now)
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


def _as_of(text: str):
    """``--as-of``: an ISO time (naive means UTC), or now."""
    from datetime import datetime, timezone

    if not text:
        return datetime.now(timezone.utc)
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


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


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ui(
    host: Optional[str] = typer.Option(None, help="bind address (default $SPX_SERVE_HOST = 127.0.0.1)"),
    port: int = typer.Option(8000, help="port (busy: a free one)"),
    workspace: str = typer.Option(
        "", help="Evidently workspace: a directory or s3://bucket/prefix (default $SPX_EVIDENTLY_WORKSPACE)"
    ),
    refresh_seconds: float = typer.Option(30.0, help="re-read the workspace this often"),
):
    """Serve the Evidently dashboard of the monitoring runs (read-only; drift, live hit rate, canary health and
    the champion's verdict over time)."""
    from spx.components.monitoring.ui import serve as serve_ui
    from spx.components.monitoring.workspace import dashboard_url, project_id_for, workspace_location
    from spx.core.processes import free_port
    from spx.core.settings import settings

    cfg = settings()
    host = host or cfg.serving.host
    if not _port_free(host, port):
        busy, port = port, free_port(host)
        typer.echo(f"port {busy} is busy: using {port}")
    location = workspace_location(workspace or None)
    base = f"http://{host}:{port}"
    typer.echo(f"Evidently UI (read-only) over {location}")
    typer.echo(f"  dashboard: {dashboard_url(base, project_id_for(cfg.evidently.project))}")
    typer.echo(f"  projects:  {base}/")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"  note: reads are not authenticated and {host} is not loopback")
    serve_ui(host, port, location, refresh_seconds=refresh_seconds)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    app.command("report")(report)
    app.command("ui")(ui)
