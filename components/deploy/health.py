"""The canary promotion loop: find the canary, measure it over a window, promote / roll back / hold.

``evaluate_canary`` is what the hourly ``spx-monitoring`` pipeline runs (``evaluate_canary_op``):

1. read the InferenceService (``get`` only) and its rollout annotations (``components/deploy/canary.py``);
   no InferenceService or no canary in progress -> a ``no-isvc`` / ``no-canary`` decision, no other call;
2. measure the canary's health over the last ``window_minutes``:

   * from **Prometheus** when a URL is given (serverless only): Knative's queue-proxy metrics of the canary
     revision, whose name comes from the InferenceService status (``status.components.predictor``: the
     traffic target flagged ``latestRevision``, else ``latestReadyRevision``, provided it is not the revision
     rolled out at 100%);
   * else from the **prediction log** in the bucket (``spx.components.prediction_log.read_predictions``):
     the rows of this InferenceService whose ``model_version`` is the canary model's version; errors are the
     rows whose ``status`` is not ``ok``; latency is ``latency_ms``. Rows of the stable model, of other
     InferenceServices and rows without a version are never counted as canary traffic;

3. ``promote`` (canary.py) from that health: patch to 100%, roll back to the stable model, or hold (changes
   nothing) while the canary has served fewer than ``min_requests``. The patch is planned on a fresh read and
   only if the canary is still the model that was measured (a deploy in between -> hold, not a stale verdict).

What the prediction log cannot see: an error response (``{"error": …}``) and a request whose response never
arrived carry no ``model_version``, so the log attributes them to neither model; they are counted and reported
as ``unattributed`` in the notes. For an error rate that sees failed requests use Prometheus.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from spx.components.deploy.canary import (
    CanaryHealth,
    HealthThresholds,
    ModelRef,
    PromoteDecision,
    RolloutAction,
    RolloutError,
    ServingConfig,
    _current_models,
    api_retrying,
    get_isvc,
    health_from_prometheus,
    percentile,
    plan_promote,
    run_with_retries,
)
from spx.core.settings import settings

log = logging.getLogger(__name__)

OK_STATUS = "ok"


@dataclass(frozen=True)
class CanaryMeasurement:
    """The canary's health over a window, where it came from, and anything the numbers do not show."""

    health: CanaryHealth
    source: str  # "prometheus:<revision>" | "prediction-log"
    window_start: str
    window_end: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        h = self.health
        return {
            "source": self.source,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "requests": h.requests,
            "errors": h.errors,
            "error_rate": h.error_rate,
            "p95_latency_ms": h.p95_latency_ms if math.isfinite(h.p95_latency_ms) else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CanaryEvaluation:
    """What the loop decided and sent (``body`` is the exact merge patch, ``None`` when nothing was sent)."""

    decision: str  # promote | rollback | hold | no-canary | no-isvc
    reasons: tuple[str, ...]
    verb: str  # patch | noop
    body: dict | None
    canary: ModelRef | None = None
    stable: ModelRef | None = None
    target: ModelRef | None = None  # the model holding 100% afterwards (promote / rollback)
    measurement: CanaryMeasurement | None = None
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "verb": self.verb,
            "body": self.body,
            "canary": asdict(self.canary) if self.canary else None,
            "stable": asdict(self.stable) if self.stable else None,
            "target": asdict(self.target) if self.target else None,
            "measurement": self.measurement.to_dict() if self.measurement else None,
            "dry_run": self.dry_run,
        }


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------


def _utc(ts: datetime | None) -> datetime:
    ts = ts or datetime.now(timezone.utc)
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def canary_revision(obj: dict) -> str | None:
    """The Knative revision serving the canary, from ``status.components.predictor`` (serverless mode).

    ``None`` while KServe has no ready canary revision yet (the newest ready revision is still the one
    rolled out at 100%)."""
    status = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    rolled_out = status.get("latestRolledoutRevision")
    for target in status.get("traffic") or []:
        if target.get("latestRevision") and target.get("revisionName") and target["revisionName"] != rolled_out:
            return str(target["revisionName"])
    ready = status.get("latestReadyRevision")
    if ready and ready != rolled_out:
        return str(ready)
    return None


def health_from_prediction_log(
    store,
    canary: ModelRef,
    *,
    start: datetime,
    end: datetime,
    inference_service: str | None = None,
    namespace: str | None = None,
    stable: ModelRef | None = None,
    prefix: str = "predictions",
) -> CanaryMeasurement:
    """Canary health from the prediction log rows served by ``canary`` between ``start`` and ``end`` (UTC).

    A row is canary traffic when its ``model_version`` equals ``canary.model_version`` (and, when given, its
    ``inference_service`` / ``namespace`` match). Errors: rows with ``status != "ok"``. p95: nearest-rank over
    the rows' ``latency_ms``; an ``ok`` row without a latency is rejected (the log is then broken).
    """
    from spx.components.prediction_log import read_predictions

    start, end = _utc(start), _utc(end)
    if end <= start:
        raise RolloutError(f"empty measurement window: {start.isoformat()} .. {end.isoformat()}")
    window = (start.isoformat(), end.isoformat())
    version = (canary.model_version or "").strip()
    if not version:
        health = CanaryHealth(requests=0, errors=0, p95_latency_ms=float("nan"))
        return CanaryMeasurement(
            health,
            "prediction-log",
            *window,
            notes=(
                "the canary annotation names no model_version, so its rows cannot be told apart in the prediction "
                "log; redeploy it from a selection with a registered model version, or use Prometheus",
            ),
        )
    if stable is not None and (stable.model_version or "").strip() == version:
        health = CanaryHealth(requests=0, errors=0, p95_latency_ms=float("nan"))
        return CanaryMeasurement(
            health,
            "prediction-log",
            *window,
            notes=(
                f"stable and canary models both report model_version {version!r}: the prediction log cannot "
                "separate their traffic; use Prometheus",
            ),
        )

    df = read_predictions(store, start, end, prefix=prefix, flatten=False)
    if inference_service:
        df = df[df["inference_service"] == inference_service]
    if namespace:
        df = df[df["namespace"] == namespace]
    versions = df["model_version"].astype("string").str.strip()
    is_canary = (versions == version).fillna(False).astype(bool)
    rows = df[is_canary]
    status = rows["status"].astype("string")
    errors = int((status != OK_STATUS).fillna(True).sum())
    ok_latency = rows.loc[(status == OK_STATUS).fillna(False).astype(bool), "latency_ms"]
    if ok_latency.isna().any():
        raise RolloutError(
            f"{int(ok_latency.isna().sum())} ok canary rows in the prediction log have no "
            "latency_ms: the log is incomplete, refusing to judge the canary on it"
        )
    latencies = [float(v) for v in rows["latency_ms"].dropna().tolist()]
    p95 = percentile(latencies, 95) if latencies else float("nan")
    if len(rows) and not latencies:  # every canary row failed without a latency: unbounded, not zero
        p95 = float("inf")
    health = CanaryHealth(requests=int(len(rows)), errors=errors, p95_latency_ms=p95)

    notes = []
    unversioned = df[versions.isna() | (versions == "")]
    if len(unversioned):
        bad = int((unversioned["status"].astype("string") != OK_STATUS).fillna(True).sum())
        notes.append(
            f"{len(unversioned)} rows in the window carry no model_version ({bad} of them not ok): "
            "attributed to neither model (error responses and lost responses have no version; a "
            "server that reports no version makes all its rows look like this)"
        )
    others = versions[(~is_canary) & versions.notna() & (versions != "")]
    if len(others):
        counts = others.value_counts().to_dict()
        notes.append(
            "not canary traffic: " + ", ".join(f"{n} rows of model_version {v}" for v, n in sorted(counts.items()))
        )
    return CanaryMeasurement(health, "prediction-log", *window, notes=tuple(notes))


def measure_canary(
    current: dict,
    canary: ModelRef,
    cfg: ServingConfig,
    *,
    window_minutes: float,
    prometheus_url: str = "",
    store=None,
    stable: ModelRef | None = None,
    now: datetime | None = None,
    prometheus_queries: dict[str, str] | None = None,
) -> CanaryMeasurement:
    """Prometheus (serverless, canary revision from the status) when a URL is set, else the prediction log."""
    if not window_minutes or window_minutes <= 0:
        raise RolloutError(f"window_minutes must be > 0, got {window_minutes!r}")
    end = _utc(now)
    start = end - timedelta(minutes=float(window_minutes))
    if prometheus_url:
        if cfg.mode != "serverless":
            raise RolloutError(
                "Prometheus canary health uses Knative revision metrics (serverless mode); in raw "
                "mode measure from the prediction log (leave prometheus_url empty)"
            )
        revision = canary_revision(current)
        if revision is None:
            health = CanaryHealth(requests=0, errors=0, p95_latency_ms=float("nan"))
            return CanaryMeasurement(
                health,
                "prometheus",
                start.isoformat(),
                end.isoformat(),
                notes=("the InferenceService status shows no ready canary revision yet (status.components.predictor)",),
            )
        minutes = max(1, int(math.ceil(float(window_minutes))))
        health = health_from_prometheus(
            prometheus_url, namespace=cfg.namespace, revision=revision, window=f"{minutes}m", queries=prometheus_queries
        )
        return CanaryMeasurement(health, f"prometheus:{revision}", start.isoformat(), end.isoformat())
    if store is None:
        from spx.core.storage import ObjectStore

        store = ObjectStore()
    return health_from_prediction_log(
        store, canary, start=start, end=end, inference_service=cfg.name, namespace=cfg.namespace, stable=stable
    )


# --------------------------------------------------------------------------------------------------
# the loop step
# --------------------------------------------------------------------------------------------------


def evaluate_canary(
    api,
    cfg: ServingConfig,
    thresholds: HealthThresholds,
    *,
    window_minutes: float = 60.0,
    prometheus_url: str = "",
    store=None,
    now: datetime | None = None,
    dry_run: bool = False,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
    printer: Callable[[str], None] = print,
    prometheus_queries: dict[str, str] | None = None,
) -> CanaryEvaluation:
    """One turn of the promotion loop (see the module docstring)."""
    current = api_retrying(attempts, backoff_seconds, what=f"reading {cfg.namespace}/{cfg.name}")(
        get_isvc, api, cfg.namespace, cfg.name
    )
    if current is None:
        reason = f"InferenceService {cfg.namespace}/{cfg.name} does not exist (nothing deployed yet)"
        return CanaryEvaluation("no-isvc", (reason,), "noop", None, dry_run=dry_run)
    stable, canary = _current_models(current)
    if canary is None:
        return CanaryEvaluation(
            "no-canary", ("no canary in progress",), "noop", None, stable=stable, target=stable, dry_run=dry_run
        )

    measurement = measure_canary(
        current,
        canary,
        cfg,
        window_minutes=window_minutes,
        prometheus_url=prometheus_url,
        store=store,
        stable=stable,
        now=now,
        prometheus_queries=prometheus_queries,
    )

    def plan(cur: dict | None) -> PromoteDecision:
        if cur is not None:
            _, still = _current_models(cur)
            if not canary.same_model(still):
                why = (
                    f"the canary changed while it was measured ({canary.native_uri} -> "
                    f"{still.native_uri if still else 'none'}); judged again next turn"
                )
                return PromoteDecision("hold", (why,), RolloutAction("noop", cfg.namespace, cfg.name, None, why), None)
        return plan_promote(cur, measurement.health, thresholds, cfg)

    decision: PromoteDecision = run_with_retries(
        api, cfg, plan, dry_run=dry_run, attempts=attempts, backoff_seconds=backoff_seconds, printer=printer
    )
    reasons = decision.reasons + tuple(measurement.notes) if decision.decision == "hold" else decision.reasons
    return CanaryEvaluation(
        decision.decision,
        reasons,
        decision.action.verb,
        decision.action.body,
        canary=canary,
        stable=stable,
        target=decision.target,
        measurement=measurement,
        dry_run=dry_run,
    )


def kubernetes_api_configured() -> bool:
    """True in a pod (service-account token) or with a kubeconfig; what ``custom_objects_api`` needs."""
    import os
    from pathlib import Path

    cfg = settings().cluster
    if cfg.in_cluster:
        return True
    paths = cfg.kubeconfig
    candidates = [Path(p) for p in paths.split(os.pathsep) if p] or [Path.home() / ".kube" / "config"]
    return any(p.is_file() for p in candidates)
