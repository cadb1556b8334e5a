"""The Evidently workspace of the monitoring runs: one project, a snapshot per comparison per run, a dashboard.

Layout (Evidently 0.7's file workspace, read by ``evidently ui`` as is)::

    <workspace>/<project id>/metadata.json        the project (id derived from its name: the same every run)
    <workspace>/<project id>/dashboard.json       the dashboard, rewritten by every run (feature list, verdict)
    <workspace>/<project id>/snapshots/<id>.json  one per comparison per run (uuid7 ids: time-ordered)

``<workspace>`` is a directory or an ``s3://bucket/prefix`` (Evidently reads and writes both through fsspec;
for ``s3://`` the credentials and endpoint come from :mod:`spx.core.settings`). Each monitoring run adds, all
stamped with the run's time:

* ``served`` — served traffic vs the champion's training reference: the data-drift preset over the model's
  features (drift share + one drift score per feature), the prediction drift, the distribution of the served
  probability (10/50/90% quantiles) and the share of "up" predictions;
* ``gold`` — the newest gold window vs the reference rows before it (drift share + per feature);
* ``live`` — the run's figures measured outside Evidently (:class:`~.evidently_metrics.SpxFigure`): live hit
  rate with its floor and baseline, the canary's and the stable model's error rate and p95 latency with the
  rollback limits, news sentiment, and the champion's verdict (validation and out-of-time AUC intervals,
  baselines, credible edge or not).

The dashboard plots these over time. Snapshots are written without the per-metric widgets Evidently keeps
beside the report's own (the report view shows only the latter); snapshots older than the retention are
deleted by the run that writes the next ones.
"""

from __future__ import annotations

import json
import logging
import posixpath
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterable

from evidently._pydantic_compat import parse_obj_as
from evidently.core.report import Snapshot
from evidently.core.serialization import SnapshotModel
from evidently.legacy.core import new_id
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric, ProjectModel
from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel
from evidently.ui.storage.local.base import LocalState
from evidently.ui.workspace import Project, Workspace

log = logging.getLogger(__name__)

TAG_SERVED = "served"
TAG_GOLD = "gold"
TAG_LIVE = "live"
PREDICTION_QUANTILES = (0.1, 0.5, 0.9)
REPORTS_STATE = "spx-reports.json"  # beside the project's metadata.json; Evidently ignores it
# fixed namespace: the project id (and every panel id) follows from a name, so each run finds the same ones
_NAMESPACE = uuid.UUID("5f1c2b8e-7a51-4c39-9c64-2d0e6f1b7a11")


def configure_fsspec_s3() -> None:
    """Point fsspec's ``s3://`` filesystem (s3fs, what Evidently's file workspace uses) at the configured
    S3 server with the configured credentials (:mod:`spx.core.settings`)."""
    import fsspec.config

    from spx.core.settings import settings

    s3 = settings().s3
    fsspec.config.conf["s3"] = {
        "key": s3.access_key,
        "secret": s3.secret_key.get_secret_value(),
        "client_kwargs": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
    }


def workspace_location(location: str | None = None) -> str:
    from spx.core.settings import settings

    return location or settings().evidently_workspace


class MonitoringWorkspace(Workspace):
    """Evidently's file :class:`~evidently.ui.workspace.Workspace`, opened without its dataset, tracing and
    artifact managers: ``Workspace.__init__`` builds a project manager that reads and parses every snapshot
    of every project, which each hourly run would pay again; the monitoring runs only add projects,
    snapshots and dashboards, which need just the workspace's :class:`LocalState` (what ``Workspace``
    writes them through)."""

    def __init__(self, path: str):  # noqa: D107 - see the class doc; deliberately not calling super()
        if path.startswith("s3://"):
            configure_fsspec_s3()
        self.path = path
        self.state = LocalState(path)
        self.full_reports = True  # what the next add_run keeps: the report's widgets, or values only

    def _add_run(self, project_id, snapshot: Snapshot):
        snapshot_id = new_id()
        model = compact(snapshot.to_snapshot_model(), full=self.full_reports)
        self.state.write_snapshot(project_id, snapshot_id, model)
        return snapshot_id

    def read_reports_state(self, project_id) -> dict:
        """Which full reports the project holds (``spx-reports.json`` beside its metadata)."""
        path = posixpath.join(str(project_id), REPORTS_STATE)
        if not self.state.location.exists(path):
            return {}
        with self.state.location.open(path) as fh:
            return json.load(fh)

    def write_reports_state(self, project_id, state: dict) -> None:
        with self.state.location.open(posixpath.join(str(project_id), REPORTS_STATE), "w") as fh:
            json.dump(state, fh, indent=2)


def open_workspace(location: str | None = None) -> MonitoringWorkspace:
    return MonitoringWorkspace(workspace_location(location))


def _without_templates(obj):
    """A widget tree without Plotly's ``layout.template`` (the default theme, ~10 KB of colour scales repeated
    in every figure: two thirds of a drift report's bytes). Plotly draws the figures with its built-in defaults
    instead (white background, grey grid); data, colours of the traces and titles are untouched."""
    if isinstance(obj, dict):
        return {
            k: _without_templates(v)
            for k, v in obj.items()
            if not (k == "template" and isinstance(v, dict) and ("layout" in v or "data" in v))
        }
    if isinstance(obj, list):
        return [_without_templates(v) for v in obj]
    return obj


def compact(model: SnapshotModel, *, full: bool = True) -> SnapshotModel:
    """The snapshot as the workspace keeps it: never the widgets of its individual metric results (one drift
    plot per feature, kept beside the report's own widgets; neither the report view nor the dashboard reads
    them); the report's widgets without Plotly's theme (``full``), or none at all (values only: the dashboard
    reads only the metric values)."""
    for result in model.metric_results.values():
        result.widget = []
    data = model.dict()
    data["widgets"] = _without_templates(data["widgets"]) if full else []
    data["tests_widgets"] = _without_templates(data["tests_widgets"]) if full else []
    return parse_obj_as(SnapshotModel, data)


def project_id_for(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"project:{name}")


def ensure_project(ws: Workspace, name: str, description: str = "") -> Project:
    """The project named ``name`` (its id derived from the name), created on first use."""
    pid = project_id_for(name)
    project = ws.get_project(pid)
    if project is None:
        project = ws.add_project(ProjectModel(id=pid, name=name, description=description or None))
    return project


def snapshot_time(snapshot_id: uuid.UUID | str) -> datetime:
    """When a snapshot was written: Evidently's snapshot ids are UUIDv7 (milliseconds since the epoch in
    the top 48 bits)."""
    value = uuid.UUID(str(snapshot_id))
    if value.version != 7:
        raise ValueError(f"snapshot id {value} is not a UUIDv7")
    return datetime.fromtimestamp((value.int >> 80) / 1000.0, tz=timezone.utc)


def prune(ws: Workspace, project_id: uuid.UUID, retention_days: float, now: datetime | None = None) -> int:
    """Delete the project's snapshots written more than ``retention_days`` before ``now``; returns how many."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
    removed = 0
    for sid in ws.list_runs(project_id):
        try:
            old = snapshot_time(sid) < cutoff
        except ValueError:
            continue  # not written by Evidently's Workspace: not ours to delete
        if old:
            ws.delete_run(project_id, sid)
            removed += 1
    return removed


def report_url(ui_url: str, project_id: uuid.UUID | str, snapshot_id: uuid.UUID | str) -> str:
    """Where the Evidently UI shows one snapshot (its report view)."""
    return f"{ui_url.rstrip('/')}/projects/{project_id}/reports/{snapshot_id}"


def dashboard_url(ui_url: str, project_id: uuid.UUID | str) -> str:
    return f"{ui_url.rstrip('/')}/projects/{project_id}"


# -- the dashboard --------------------------------------------------------------------------------


def _panel_id(key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"panel:{key}")


def _figure(column: str, legend: str) -> PanelMetric:
    return PanelMetric(legend=legend, tags=[TAG_LIVE], metric="SpxFigure", metric_labels={"column": column})


def _line(key: str, title: str, values: list[PanelMetric], description: str, size: str = "half") -> DashboardPanelPlot:
    panel = line_plot_panel(title=title, values=values, description=description, size=size)
    panel.id = _panel_id(key)
    return panel


def _share(tag: str, what: str, legend: str, description: str) -> DashboardPanelPlot:
    """The drift share (Evidently's ``DriftedColumnsCount``) of one kind of snapshot over time."""
    share = PanelMetric(legend=legend, tags=[tag], metric="DriftedColumnsCount", metric_labels={"value_type": "share"})
    return _line(f"drift-share-{tag}", f"Drift share: {what}", [share], description)


def verdict_text(verdict: dict | None) -> tuple[str, str]:
    """(title, description) of the dashboard's verdict panel, from :func:`champion_verdict`'s record."""
    if not verdict:
        return (
            "Champion verdict: unknown",
            "The reference run has no selection record (selection/<run_id>/best_model_selection.json), so "
            "there is no verdict to show; train with spx run or the training pipeline.",
        )

    def num(x, fmt="{:.4f}"):
        return "n/a" if x is None else fmt.format(x)

    name = verdict.get("variant") or "?"
    version = verdict.get("model_version")
    title = (
        f"Champion {name} (run {verdict.get('run_id')}"
        + (f", {verdict.get('registered_model', 'model')} v{version}" if version else "")
        + f"): {str(verdict.get('verdict') or 'no credible edge').upper()}"
    )
    k = verdict.get("bonferroni_k")
    description = (
        f"validation AUC {num(verdict.get('val_auc'))}, interval [{num(verdict.get('val_auc_ci_low'))}, "
        f"{num(verdict.get('val_auc_ci_high'))}]" + (f" (Bonferroni, k={k})" if k else "") + "; "
        f"out-of-time AUC {num(verdict.get('oot_auc'))}, 95% interval [{num(verdict.get('oot_auc_ci_low'))}, "
        f"{num(verdict.get('oot_auc_ci_high'))}]; baselines: chance 0.5000, majority class "
        f"{num(verdict.get('baseline_majority_auc'))}, momentum {num(verdict.get('baseline_momentum_auc'))}. "
        "Credible edge only when both intervals lie above 0.5."
    )
    return title, description


FEATURES_PER_PANEL = 10  # what a panel's legend shows without scrolling


def _per_feature_panels(tag: str, what: str, features: list[str], threshold: float, method: str) -> list:
    """One drift-score line per feature, ten features a panel, in the order given (the run's scores, highest
    first: the first panel holds the features drifting most now, each with its whole history)."""
    panels = []
    for start in range(0, len(features), FEATURES_PER_PANEL):
        chunk = features[start : start + FEATURES_PER_PANEL]
        rank = "top 10 now" if start == 0 else f"{start + 1}–{start + len(chunk)} now"
        panels.append(
            _line(
                f"drift-features-{tag}-{start // FEATURES_PER_PANEL}",
                f"Drift score per feature: {what}, {rank}",
                [PanelMetric(legend=f, tags=[tag], metric="ValueDrift", metric_labels={"column": f}) for f in chunk],
                f"ranked by this run's {method} score; a feature drifts at {threshold:g}",
                size="full",
            )
        )
    return panels


def build_dashboard(
    served_features: Iterable[str],
    gold_features: Iterable[str],
    verdict: dict | None,
    *,
    prediction_column: str,
    method: str,
    threshold: float,
    drift_threshold: float,
) -> DashboardModel:
    """The project's dashboard: an overview tab (verdict, drift share, live hit rate, predictions, news, canary,
    intervals) and a tab with one drift-score line per feature (``served_features`` and ``gold_features`` in the
    order the panels should show them: highest current score first). Every run rewrites it (the champion's features,
    its verdict and the thresholds may have changed); panel ids stay the same.

    A panel draws series of one snapshot kind only (``served``, ``gold`` or ``live``): the UI puts every
    snapshot on the x-axis, so series of two kinds would each show every other point, unconnected. Thresholds
    that belong with the drift series are therefore stated in the panel's subtitle."""
    title, description = verdict_text(verdict)
    verdict_panel = text_panel(title=title, description=description, size="full")
    verdict_panel.id = _panel_id("verdict")
    latest = counter_panel(
        title="Latest served prediction",
        values=[
            _figure("last_served_probability", "P(up)"),
            _figure("last_served_confidence", "confidence"),
            _figure("live_hit_rate", "live hit rate"),
        ],
        description="the newest prediction in the last run's window, its confidence max(p, 1-p), and the live hit rate",
        size="full",
        aggregation="last",
    )
    latest.id = _panel_id("latest")
    rule = f"a feature drifts when its {method} score reaches {threshold:g}; retrain when the share reaches {drift_threshold:g}"
    overview = [
        verdict_panel,
        latest,
        _share(TAG_SERVED, "served traffic", "served vs training reference", rule),
        _share(
            TAG_GOLD,
            "newest gold window",
            "newest gold vs reference",
            f"catches a regime change even with little traffic; {rule}",
        ),
        _line(
            "hit-rate",
            "Live hit rate vs floor",
            [
                _figure("live_hit_rate", "live hit rate"),
                _figure("hit_rate_floor", "floor (retrain below)"),
                _figure("live_majority_baseline", "majority class, same bars"),
            ],
            "served predictions joined to the realized labels of the newest gold table",
        ),
        _line(
            "predictions",
            "Served predictions: P(up)",
            [
                PanelMetric(
                    legend=f"{int(q * 100)}% quantile",
                    tags=[TAG_SERVED],
                    metric="QuantileValue",
                    metric_labels={"column": prediction_column, "quantile": str(q)},
                )
                for q in PREDICTION_QUANTILES
            ]
            + [
                PanelMetric(
                    legend="share predicted up",
                    tags=[TAG_SERVED],
                    metric="MeanValue",
                    metric_labels={"column": "prediction"},
                ),
                PanelMetric(
                    legend="prediction drift score",
                    tags=[TAG_SERVED],
                    metric="ValueDrift",
                    metric_labels={"column": prediction_column},
                ),
            ],
            "distribution of the probability the model answered, and its drift vs the out-of-time predictions",
        ),
        _line(
            "news",
            "News sentiment",
            [
                _figure("news_sentiment_gold", "sentiment, gold bars"),
                _figure("news_sentiment_served", "sentiment, served"),
                _figure("news_bars_with_articles", "bars with news"),
            ],
            "mean news_avg_sentiment (-1 … 1) of the newest gold bars in the monitoring window and of the "
            "features the model received; share of those bars with any article",
        ),
        _line(
            "canary-errors",
            "Canary vs stable: error rate",
            [
                _figure("canary_error_rate", "canary"),
                _figure("stable_error_rate", "stable"),
                _figure("max_error_rate", "rollback limit"),
            ],
            "from the prediction log over the canary window",
        ),
        _line(
            "canary-latency",
            "Canary vs stable: p95 latency (ms)",
            [
                _figure("canary_p95_latency_ms", "canary"),
                _figure("stable_p95_latency_ms", "stable"),
                _figure("max_p95_latency_ms", "rollback limit"),
            ],
            "from the prediction log over the canary window",
        ),
        _line(
            "verdict-intervals",
            "Champion AUC intervals vs baselines",
            [
                _figure("val_auc_ci_low", "validation interval, low"),
                _figure("val_auc_ci_high", "validation interval, high"),
                _figure("oot_auc_ci_low", "out-of-time interval, low"),
                _figure("oot_auc_ci_high", "out-of-time interval, high"),
                _figure("baseline_majority_auc", "baseline: majority class"),
                _figure("baseline_momentum_auc", "baseline: momentum"),
            ],
            "credible edge only when both intervals lie above 0.5 (chance; the majority-class baseline)",
            size="full",
        ),
    ]
    per_feature = _per_feature_panels(TAG_SERVED, "served traffic", list(served_features), threshold, method)
    per_feature += _per_feature_panels(TAG_GOLD, "newest gold window", list(gold_features), threshold, method)
    tabs = [
        DashboardTabModel(id=_panel_id("tab:overview"), title="Overview", panels=[p.id for p in overview]),
        DashboardTabModel(id=_panel_id("tab:features"), title="Drift by feature", panels=[p.id for p in per_feature]),
    ]
    return DashboardModel(tabs=tabs, panels=overview + per_feature)


def full_reports_due(
    state: dict, *, run_time: datetime, gold_table: str | None, every_hours: float, retrain: bool
) -> dict[str, bool]:
    """Which of a run's snapshots keep their full report (the others keep only their values, which is all the
    dashboard reads): ``served`` when the last full one is ``every_hours`` old or older, ``gold`` when the newest
    gold table changed (the hourly runs compare the same table until the next one arrives), both when the run
    decided to retrain (its evidence is kept); ``live`` always (a few counters)."""

    def older(entry: dict | None) -> bool:
        if not entry or not entry.get("time"):
            return True
        return run_time - datetime.fromisoformat(entry["time"]) >= timedelta(hours=every_hours)

    served, gold = state.get(TAG_SERVED), state.get(TAG_GOLD) or {}
    return {
        TAG_SERVED: retrain or older(served),
        TAG_GOLD: retrain or gold.get("table") != gold_table,
        TAG_LIVE: True,
    }


def record_run(
    snapshots: dict[str, Snapshot],
    *,
    dashboard: DashboardModel,
    run_time: datetime,
    gold_table: str | None = None,
    retrain: bool = False,
    location: str | None = None,
    project: str | None = None,
    ui_url: str | None = None,
    retention_days: float | None = None,
) -> dict:
    """Write a run's snapshots (``{tag: Snapshot}``, full reports only where :func:`full_reports_due`) and the
    dashboard into the workspace; prune old snapshots.

    Returns what the run's summary records: the workspace, project id, each snapshot's id and whether it holds
    the full report, the newest full report of each kind, their URLs in the Evidently UI when ``ui_url`` is
    known, and how many old snapshots were deleted."""
    from spx.core.settings import settings

    cfg = settings().evidently
    location = workspace_location(location)
    project = project or cfg.project
    ui_url = cfg.ui_url if ui_url is None else ui_url
    ws = MonitoringWorkspace(location)
    proj = ensure_project(
        ws, project, "spx-kfp monitoring: drift, live hit rate, canary health and the champion's verdict over time"
    )
    state = ws.read_reports_state(proj.id)
    due = full_reports_due(
        state, run_time=run_time, gold_table=gold_table, every_hours=cfg.full_report_hours, retrain=retrain
    )
    written, full = {}, {}
    for tag, snap in snapshots.items():
        ws.full_reports = due.get(tag, True)
        if not ws.full_reports:
            snap.set_name(f"{snap.get_name() or tag} (values only)")
        ref = ws.add_run(proj.id, snap, include_data=False)
        written[tag], full[tag] = str(ref.id), ws.full_reports
        if ws.full_reports and tag != TAG_LIVE:
            state[tag] = {"snapshot": str(ref.id), "time": run_time.isoformat(), "table": gold_table}
    ws.write_reports_state(proj.id, state)
    ws.save_dashboard(proj.id, dashboard)
    removed = prune(ws, proj.id, retention_days or cfg.retention_days)
    latest = {tag: entry["snapshot"] for tag, entry in state.items() if tag in (TAG_SERVED, TAG_GOLD)}
    out = {
        "workspace": location,
        "project": project,
        "project_id": str(proj.id),
        "snapshots": written,
        "full_report": full,
        "latest_full_report": latest,
        "pruned": removed,
        "ui_url": ui_url or "",
    }
    if ui_url:
        out["dashboard_url"] = dashboard_url(ui_url, proj.id)
        out["report_urls"] = {tag: report_url(ui_url, proj.id, sid) for tag, sid in written.items()}
        out["latest_full_report_urls"] = {tag: report_url(ui_url, proj.id, sid) for tag, sid in latest.items()}
    log.info("Evidently workspace %s: project %s, snapshots %s (full report: %s)", location, proj.id, written, full)
    return out


__all__ = [
    "MonitoringWorkspace",
    "PREDICTION_QUANTILES",
    "TAG_GOLD",
    "TAG_LIVE",
    "TAG_SERVED",
    "build_dashboard",
    "compact",
    "full_reports_due",
    "configure_fsspec_s3",
    "dashboard_url",
    "ensure_project",
    "open_workspace",
    "project_id_for",
    "prune",
    "record_run",
    "report_url",
    "snapshot_time",
    "verdict_text",
]
