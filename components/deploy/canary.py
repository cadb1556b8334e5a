"""KServe canary rollout: plan and apply ``deploy`` and ``promote`` on an InferenceService.

Two traffic-splitting mechanisms, chosen by ``mode``:

* ``serverless`` (Knative): the predictor's ``canaryTrafficPercent``. Deploying a new champion
  updates the predictor model and sets ``canaryTrafficPercent: N``; KServe splits traffic between the
  new revision and the last revision rolled out at 100%. Promote removes the field (JSON merge patch
  ``null``); roll back sets it to ``0`` (all traffic pinned to the previous revision at once) and puts
  the previous model back into the spec, so the spec again names what serves.
* ``raw`` (RawDeployment, called "Standard" from KServe 0.20): ``canaryTrafficPercent`` is ignored
  there, so the candidate goes into ``spec.canary: [{trafficPercent, predictor}]`` (KServe >= 0.20) while
  ``spec.predictor`` keeps the stable model. Promote moves the candidate into ``spec.predictor`` and
  removes ``spec.canary``; roll back removes ``spec.canary``.

The state of a rollout is kept on the object itself, in annotations (``spx.io/stable-model``,
``spx.io/canary-model``, ``spx.io/previous-model``, ``spx.io/rollout-phase``), so every step is planned
from what the cluster says now: re-running a step after a crash or a retry either finds the work done
(a no-op) or does it once. Patches carry ``metadata.resourceVersion`` so a concurrent writer makes the
API server answer 409 and the step re-reads and re-plans instead of overwriting.

Only ``get``, ``create`` and ``patch`` on ``inferenceservices`` are used: the pipeline's Role grants
exactly those verbs.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Literal

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from spx.core.choices import SERVING_MODES
from spx.core.errors import SpxError
from spx.core.settings import settings

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"

ANN_STABLE = "spx.io/stable-model"
ANN_CANARY = "spx.io/canary-model"
ANN_PREVIOUS = "spx.io/previous-model"
ANN_PHASE = "spx.io/rollout-phase"
ANN_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
ANN_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"

MODEL_FORMATS = ("xgboost", "lightgbm")
Mode = Literal["serverless", "raw"]
MODES = SERVING_MODES


class RolloutError(SpxError, RuntimeError):
    """The rollout cannot proceed; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """One model KServe can load: a native XGBoost/LightGBM file under an ``s3://`` prefix."""

    native_uri: str
    model_format: str
    model_version: str = ""
    variant: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.native_uri, str) or not self.native_uri.startswith("s3://"):
            raise RolloutError(f"champion native_uri must be an s3:// URI, got {self.native_uri!r}")
        if self.model_format not in MODEL_FORMATS:
            raise RolloutError(f"champion model_format must be one of {MODEL_FORMATS}, got {self.model_format!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelRef":
        missing = [k for k in ("native_uri", "model_format") if not data.get(k)]
        if missing:
            raise RolloutError(f"champion record lacks {missing}: {data!r}")
        return cls(
            native_uri=str(data["native_uri"]),
            model_format=str(data["model_format"]),
            model_version=str(data.get("model_version", "") or ""),
            variant=str(data.get("variant", "") or ""),
        )

    @classmethod
    def from_selection(cls, selection: dict[str, Any]) -> "ModelRef":
        champion = selection.get("champion") if isinstance(selection, dict) else None
        if not isinstance(champion, dict):
            raise RolloutError("selection JSON has no 'champion' object")
        return cls.from_dict(champion)

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str | None) -> "ModelRef | None":
        if not text:
            return None
        return cls.from_dict(json.loads(text))

    def same_model(self, other: "ModelRef | None") -> bool:
        return other is not None and (self.native_uri, self.model_format) == (
            other.native_uri,
            other.model_format,
        )


@dataclass(frozen=True)
class ServingConfig:
    """Everything about the InferenceService that is not the model."""

    namespace: str
    name: str
    mode: Mode = "serverless"
    service_account: str = "spx-kfp-kserve-s3"
    protocol_version: str = "v2"
    # ServingRuntime; default $SPX_SERVING_RUNTIME (the chart: spx-predictor, which reports model versions);
    # empty: KServe picks kserve-xgbserver / kserve-lgbserver by model format
    runtime: str = field(default_factory=lambda: settings().pipeline.serving_runtime)
    transformer_image: str = ""  # empty: no transformer
    # envFrom of the server clients call: the transformer (Feast/Redis endpoints, S3 keys for the Feast registry
    # and the prediction log), or without one the predictor while it writes the prediction log (S3)
    transformer_env_configmap: str = ""
    transformer_env_secret: str = ""
    raw_deployment_mode: str = "RawDeployment"  # "Standard" is the KServe >= 0.20 spelling
    # the prediction log, written by exactly one server: the transformer when there is one, else the predictor
    # (the spx-predictor runtime; KServe's stock runtimes log nothing). Default: $SPX_PREDICTION_LOG (the chart's
    # env ConfigMap, monitoring.predictionLog.enabled)
    prediction_log: bool = field(default_factory=lambda: settings().serving.prediction_log)
    # the claim that server keeps its local log on (rows not yet shipped outlive a deleted pod); default
    # $SPX_PREDICTION_LOG_CLAIM (the chart's env ConfigMap); empty: the pod's /tmp emptyDir, which a deleted pod
    # takes with it
    prediction_log_claim: str = field(default_factory=lambda: settings().cluster.prediction_log_claim)
    min_replicas: int = 1
    max_replicas: int = 2
    predictor_resources: dict = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )
    transformer_resources: dict = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )

    @classmethod
    def in_cluster(
        cls,
        *,
        namespace: str,
        name: str = "",
        mode: str = "",
        service_account: str = "",
        transformer_image: str = "",
        transformer_env_configmap: str = "",
        transformer_env_secret: str = "",
    ) -> "ServingConfig":
        """The config a pipeline step uses: empty values fall back to the chart's env ConfigMap
        (``SPX_INFERENCE_SERVICE``, ``SPX_INFERENCE_MODE``, ``SPX_SERVING_IMAGE``, and the release-dependent
        object names ``SPX_KSERVE_SERVICE_ACCOUNT``, ``SPX_K8S_CONFIGMAP``, ``SPX_K8S_S3_SECRET``)."""
        cfg = settings()
        names = cfg.cluster
        image = transformer_image or cfg.pipeline.serving_image
        return cls(
            namespace=namespace,
            name=name or names.inference_service,
            mode=mode or names.inference_mode or "serverless",
            service_account=service_account or names.kserve_service_account,
            transformer_image=image,
            transformer_env_configmap=transformer_env_configmap or names.env_configmap,
            transformer_env_secret=transformer_env_secret or names.s3_secret,
        )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RolloutError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.namespace or not self.name:
            raise RolloutError("namespace and InferenceService name are required")


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict:
    # read-only root filesystem: the only writable path is the /tmp emptyDir (TMP_VOLUME below); KServe
    # mounts the model read-only at /mnt/models
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


TMP_VOLUME = {"name": "tmp", "emptyDir": {}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
# the prediction log's own volume (a claim), where the one server that writes it keeps the rows it has not shipped
LOG_DIR = "/var/lib/spx/prediction-log"
LOG_VOLUME_NAME = "prediction-log"
SERVING_GID = 10001  # the serving image's group: fsGroup makes the claim writable for it


def _log_storage(cfg: "ServingConfig", spec: dict, container: dict) -> None:
    """Put the prediction log on ``cfg.prediction_log_claim`` (when set) in ``spec``'s pod and ``container``.

    On the pod's /tmp emptyDir the log survives container restarts but goes with the pod: a pod deleted while the
    bucket is away (or killed past its grace period) took the rows it had answered and not yet shipped. On a claim
    the next pod (or a replica beside it) finds the dead process's segments and ships them."""
    if not cfg.prediction_log_claim:
        return
    spec["volumes"] = [
        *spec["volumes"],
        {"name": LOG_VOLUME_NAME, "persistentVolumeClaim": {"claimName": cfg.prediction_log_claim}},
    ]
    spec["securityContext"] = {**spec["securityContext"], "fsGroup": SERVING_GID}
    container["volumeMounts"] = [*container["volumeMounts"], {"name": LOG_VOLUME_NAME, "mountPath": LOG_DIR}]
    container["env"] = [*container.get("env", []), {"name": "SPX_PREDICTION_LOG_DIR", "value": LOG_DIR}]


# KServe >= 0.20 spec.canary (RawDeployment/"Standard"): the CRD requires predictor.model.name, KServe's
# validation requires predictor.name and rejects maxReplicas on a canary predictor (trafficPercent sizes it).
CANARY_PREDICTOR_NAME = "canary"
MODEL_CONTAINER_NAME = "kserve-container"


def predictor_spec(model: ModelRef, cfg: ServingConfig) -> dict:
    """The ``spec.predictor`` of the InferenceService serving ``model`` (V2 protocol, S3 account)."""
    model_spec: dict[str, Any] = {
        "modelFormat": {"name": model.model_format},
        "protocolVersion": cfg.protocol_version,
        "storageUri": model.native_uri,
        "resources": cfg.predictor_resources,
        "securityContext": _container_security(),
        "volumeMounts": [TMP_MOUNT],
    }
    if cfg.runtime:
        model_spec["runtime"] = cfg.runtime
    writes_log = cfg.prediction_log and not cfg.transformer_image  # the predictor answers clients: it logs
    if writes_log:
        if cfg.runtime != "spx-predictor":
            log.warning("runtime %r writes no prediction log; use spx-predictor or a transformer", cfg.runtime)
        model_spec["env"] = _log_env(cfg, True)
        model_spec["envFrom"] = _env_from(cfg)
    spec = {
        "serviceAccountName": cfg.service_account,
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "securityContext": _pod_security(),
        "volumes": [TMP_VOLUME],
        "model": model_spec,
    }
    if writes_log:
        _log_storage(cfg, spec, model_spec)
    return spec


def canary_predictor_spec(model: ModelRef, cfg: ServingConfig) -> dict:
    """The ``spec.canary[0].predictor`` of a raw-mode canary: named, its model named, no ``maxReplicas``."""
    spec = predictor_spec(model, cfg)
    spec.pop("maxReplicas", None)
    spec["name"] = CANARY_PREDICTOR_NAME
    spec["model"]["name"] = MODEL_CONTAINER_NAME
    return spec


def _log_env(cfg: ServingConfig, on: bool) -> list[dict]:
    """The env of the one server that writes the prediction log: on/off explicitly (whatever the env ConfigMap
    says), and the InferenceService and namespace its rows carry (what the canary loop filters on)."""
    return [
        {"name": "SPX_PREDICTION_LOG", "value": "true" if on else "false"},
        {"name": "SPX_INFERENCE_SERVICE", "value": cfg.name},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def _env_from(cfg: ServingConfig) -> list[dict]:
    env_from = []
    if cfg.transformer_env_configmap:
        env_from.append({"configMapRef": {"name": cfg.transformer_env_configmap}})
    if cfg.transformer_env_secret:
        env_from.append({"secretRef": {"name": cfg.transformer_env_secret}})
    return env_from


def transformer_spec(cfg: ServingConfig) -> dict | None:
    if not cfg.transformer_image:
        return None
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": cfg.transformer_image,
        # KServe appends --model_name, --predictor_host and --http_port to a custom transformer.
        "command": ["spx-transformer"],
        "args": ["--predictor_protocol", cfg.protocol_version],
        "env": _log_env(cfg, cfg.prediction_log),
        "resources": cfg.transformer_resources,
        "securityContext": _container_security(),
        "volumeMounts": [TMP_MOUNT],
    }
    if env_from := _env_from(cfg):
        container["envFrom"] = env_from
    spec = {
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "securityContext": _pod_security(),
        "volumes": [TMP_VOLUME],
        "containers": [container],
    }
    if cfg.prediction_log:
        _log_storage(cfg, spec, container)
    return spec


def inference_service(model: ModelRef, cfg: ServingConfig) -> dict:
    """A complete InferenceService serving ``model`` at 100% (the create body)."""
    annotations = {
        ANN_STABLE: model.to_annotation(),
        ANN_PHASE: "stable",
    }
    if cfg.mode == "serverless":
        annotations[ANN_DEPLOYMENT_MODE] = "Serverless"
        annotations[ANN_TAG_ROUTING] = "true"
    else:
        annotations[ANN_DEPLOYMENT_MODE] = cfg.raw_deployment_mode
    spec: dict[str, Any] = {"predictor": predictor_spec(model, cfg)}
    transformer = transformer_spec(cfg)
    if transformer is not None:
        spec["transformer"] = transformer
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "labels": {
                "app.kubernetes.io/name": cfg.name,
                "app.kubernetes.io/part-of": "spx-kfp",
                "app.kubernetes.io/managed-by": "spx-deploy",
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


# --------------------------------------------------------------------------------------------------
# plans
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutAction:
    """What to send to the API server: create a body, merge-patch a body, or nothing."""

    verb: Literal["create", "patch", "noop"]
    namespace: str
    name: str
    body: dict | None
    reason: str

    @property
    def path(self) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        return base if self.verb == "create" else f"{base}/{self.name}"

    def describe(self) -> str:
        """The exact request, as printed by ``--dry-run``."""
        if self.verb == "noop":
            return f"# no change to {self.namespace}/{self.name}: {self.reason}"
        method, ctype = (
            ("POST", "application/json")
            if self.verb == "create"
            else (
                "PATCH",
                "application/merge-patch+json",
            )
        )
        return f"# {self.reason}\n{method} {self.path}\nContent-Type: {ctype}\n\n" + json.dumps(
            self.body, indent=2, sort_keys=True
        )


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _resource_version(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _current_models(obj: dict) -> tuple[ModelRef | None, ModelRef | None]:
    ann = _annotations(obj)
    stable = ModelRef.from_annotation(ann.get(ANN_STABLE))
    canary = ModelRef.from_annotation(ann.get(ANN_CANARY))
    if stable is None:
        # An InferenceService created by hand: what its predictor serves now is the stable model.
        model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
        uri, fmt = model.get("storageUri"), (model.get("modelFormat") or {}).get("name")
        if uri and fmt in MODEL_FORMATS:
            stable = ModelRef(native_uri=uri, model_format=fmt)
    return stable, canary


def _canary_percent(obj: dict, mode: str) -> int | None:
    spec = obj.get("spec") or {}
    if mode == "serverless":
        return (spec.get("predictor") or {}).get("canaryTrafficPercent")
    canary = spec.get("canary") or []
    return canary[0].get("trafficPercent") if canary else None


def _patch(obj: dict, cfg: ServingConfig, annotations: dict, spec: dict, reason: str) -> RolloutAction:
    metadata: dict[str, Any] = {"annotations": annotations}
    rv = _resource_version(obj)
    if rv:
        metadata["resourceVersion"] = rv
    return RolloutAction("patch", cfg.namespace, cfg.name, {"metadata": metadata, "spec": spec}, reason)


def _rollback_spec(stable: ModelRef, cfg: ServingConfig) -> dict:
    if cfg.mode == "serverless":
        predictor = predictor_spec(stable, cfg)
        predictor["canaryTrafficPercent"] = 0
        return {"predictor": predictor}
    return {"canary": None}


def plan_deploy(
    current: dict | None, candidate: ModelRef, cfg: ServingConfig, canary_percent: int = 10
) -> RolloutAction:
    """Plan rolling ``candidate`` out: create at 100% if absent, else canary at ``canary_percent``."""
    if not isinstance(canary_percent, int) or not 0 < canary_percent < 100:
        raise RolloutError(f"canary_percent must be an integer in 1..99, got {canary_percent!r}")
    if current is None:
        return RolloutAction(
            "create",
            cfg.namespace,
            cfg.name,
            inference_service(candidate, cfg),
            f"InferenceService absent: create it serving {candidate.native_uri} at 100%",
        )
    stable, canary = _current_models(current)
    percent = _canary_percent(current, cfg.mode)
    if stable is None:
        raise RolloutError(
            f"{cfg.namespace}/{cfg.name} exists but names no xgboost/lightgbm model this tool can roll "
            "out from; fix or delete it first"
        )
    if candidate.same_model(stable):
        if canary is None:
            return RolloutAction("noop", cfg.namespace, cfg.name, None, f"{candidate.native_uri} already serves 100%")
        return _patch(
            current,
            cfg,
            {ANN_CANARY: None, ANN_PHASE: "stable", ANN_PREVIOUS: canary.to_annotation()},
            _rollback_spec(stable, cfg),
            f"champion is the stable model again: drop canary {canary.native_uri}",
        )
    if candidate.same_model(canary) and percent == canary_percent:
        return RolloutAction(
            "noop", cfg.namespace, cfg.name, None, f"canary {candidate.native_uri} already at {canary_percent}%"
        )
    annotations = {ANN_CANARY: candidate.to_annotation(), ANN_PHASE: "canary"}
    if cfg.mode == "serverless":
        predictor = predictor_spec(candidate, cfg)
        predictor["canaryTrafficPercent"] = canary_percent
        spec: dict[str, Any] = {"predictor": predictor}
    else:
        spec = {"canary": [{"trafficPercent": canary_percent, "predictor": canary_predictor_spec(candidate, cfg)}]}
    return _patch(
        current,
        cfg,
        annotations,
        spec,
        f"canary {candidate.native_uri} at {canary_percent}% beside stable {stable.native_uri}",
    )


@dataclass(frozen=True)
class CanaryHealth:
    """Measured on the canary's served traffic over the observation window."""

    requests: int
    errors: int
    p95_latency_ms: float

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors < 0 or self.errors > self.requests:
            raise RolloutError(f"inconsistent canary counts: {self.requests} requests, {self.errors} errors")
        if math.isnan(self.p95_latency_ms) and self.requests > 0:
            raise RolloutError("p95 latency is NaN although requests were served")

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class HealthThresholds:
    max_error_rate: float = 0.01
    max_p95_latency_ms: float = 250.0
    min_requests: int = 100


@dataclass(frozen=True)
class PromoteDecision:
    decision: Literal["promote", "rollback", "hold", "no-canary"]
    reasons: tuple[str, ...]
    action: RolloutAction
    target: ModelRef | None  # the model that will hold 100% of the traffic

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "verb": self.action.verb,
            "target": asdict(self.target) if self.target else None,
            "body": self.action.body,
        }


def judge(health: CanaryHealth, thresholds: HealthThresholds) -> tuple[str, tuple[str, ...]]:
    """promote / rollback / hold, with the reasons (each threshold checked, none hidden)."""
    if health.requests < thresholds.min_requests:
        return "hold", (f"only {health.requests} canary requests < min_requests {thresholds.min_requests}",)
    failures = []
    if health.error_rate > thresholds.max_error_rate:
        failures.append(f"error rate {health.error_rate:.4f} > {thresholds.max_error_rate:.4f}")
    if health.p95_latency_ms > thresholds.max_p95_latency_ms:
        failures.append(f"p95 latency {health.p95_latency_ms:.1f} ms > {thresholds.max_p95_latency_ms:.1f} ms")
    if failures:
        return "rollback", tuple(failures)
    return "promote", (
        f"error rate {health.error_rate:.4f} <= {thresholds.max_error_rate:.4f}",
        f"p95 latency {health.p95_latency_ms:.1f} ms <= {thresholds.max_p95_latency_ms:.1f} ms",
    )


def plan_promote(
    current: dict | None, health: CanaryHealth, thresholds: HealthThresholds, cfg: ServingConfig
) -> PromoteDecision:
    """Promote the canary to 100% or roll back to the stable model, from measured canary health."""
    if current is None:
        raise RolloutError(f"InferenceService {cfg.namespace}/{cfg.name} not found: deploy first")
    stable, canary = _current_models(current)
    if canary is None:
        noop = RolloutAction("noop", cfg.namespace, cfg.name, None, "no canary in progress")
        return PromoteDecision("no-canary", ("no canary in progress",), noop, stable)
    decision, reasons = judge(health, thresholds)
    if decision == "hold":
        noop = RolloutAction("noop", cfg.namespace, cfg.name, None, reasons[0])
        return PromoteDecision("hold", reasons, noop, None)
    if decision == "promote":
        annotations = {
            ANN_STABLE: canary.to_annotation(),
            ANN_CANARY: None,
            ANN_PREVIOUS: stable.to_annotation() if stable else None,
            ANN_PHASE: "stable",
        }
        if cfg.mode == "serverless":
            spec: dict[str, Any] = {"predictor": {"canaryTrafficPercent": None}}
        else:
            spec = {"predictor": predictor_spec(canary, cfg), "canary": None}
        action = _patch(current, cfg, annotations, spec, f"promote {canary.native_uri} to 100%: " + "; ".join(reasons))
        return PromoteDecision("promote", reasons, action, canary)
    if stable is None:
        raise RolloutError("canary is unhealthy but no stable model is recorded to roll back to")
    annotations = {ANN_CANARY: None, ANN_PREVIOUS: canary.to_annotation(), ANN_PHASE: "rolled-back"}
    action = _patch(
        current,
        cfg,
        annotations,
        _rollback_spec(stable, cfg),
        f"roll back to {stable.native_uri}: " + "; ".join(reasons),
    )
    return PromoteDecision("rollback", reasons, action, stable)


# --------------------------------------------------------------------------------------------------
# health from served traffic
# --------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (what an SLO on "95% of requests under X ms" means)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def health_from_records(records: Iterable[dict]) -> CanaryHealth:
    """Canary health from prediction-log records served by the canary.

    Each record needs ``latency_ms`` and either ``status_code`` (HTTP; >= 500 is an error) or
    ``error`` (truthy is an error). Records without a latency are rejected, not skipped.
    """
    latencies: list[float] = []
    errors = 0
    for i, rec in enumerate(records):
        if "latency_ms" not in rec or rec["latency_ms"] is None:
            raise RolloutError(f"prediction log record {i} has no latency_ms: {rec!r}")
        latencies.append(float(rec["latency_ms"]))
        if "status_code" in rec:
            errors += int(int(rec["status_code"]) >= 500)
        else:
            errors += int(bool(rec.get("error")))
    return CanaryHealth(requests=len(latencies), errors=errors, p95_latency_ms=percentile(latencies, 95))


DEFAULT_PROMQL = {
    # Knative queue-proxy metrics of the canary revision (serverless mode).
    "requests": 'sum(increase(revision_app_request_count{{namespace="{namespace}",'
    'revision_name="{revision}"}}[{window}]))',
    "errors": 'sum(increase(revision_app_request_count{{namespace="{namespace}",'
    'revision_name="{revision}",response_code_class="5xx"}}[{window}]))',
    "p95_latency_ms": "histogram_quantile(0.95, sum by (le) (rate(revision_app_request_latencies_bucket"
    '{{namespace="{namespace}",revision_name="{revision}"}}[{window}])))',
}


def health_from_prometheus(
    prometheus_url: str,
    *,
    namespace: str,
    revision: str,
    window: str = "15m",
    queries: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> CanaryHealth:
    """Canary health from Prometheus instant queries (``GET /api/v1/query``)."""
    import requests

    templates = {**DEFAULT_PROMQL, **(queries or {})}
    values: dict[str, float] = {}
    for key in ("requests", "errors", "p95_latency_ms"):
        promql = templates[key].format(namespace=namespace, revision=revision, window=window)
        resp = requests.get(f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout)
        resp.raise_for_status()
        payload = resp.json()
        if payload.get("status") != "success":
            raise RolloutError(f"Prometheus query failed ({key}): {payload}")
        result = payload["data"]["result"]
        values[key] = float(result[0]["value"][1]) if result else 0.0
    requests_n = int(round(values["requests"]))
    errors_n = min(int(round(values["errors"])), requests_n)
    p95 = values["p95_latency_ms"] if requests_n else float("nan")
    return CanaryHealth(requests=requests_n, errors=errors_n, p95_latency_ms=p95)


# --------------------------------------------------------------------------------------------------
# applying plans through the Kubernetes API (official client), with retries
# --------------------------------------------------------------------------------------------------


def custom_objects_api(api_client=None):
    """A ``CustomObjectsApi``: in-cluster config in a pod, else the kubeconfig."""
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def _is_status(exc: Exception, *codes: int) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status in codes


def is_retryable_api_error(exc: BaseException) -> bool:
    """409 (a concurrent writer: re-read and re-plan), 429, 5xx, or a dropped connection."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status in (409, 429, 500, 502, 503, 504)
    import urllib3

    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def api_retrying(attempts: int = 5, backoff_seconds: float = 1.0, what: str = "attempt") -> Retrying:
    """The one retry policy for Kubernetes API steps: retryable errors only, ``backoff_seconds`` × 2^n between
    attempts, the last error re-raised."""

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s %d failed (%s); retrying in %.1fs", what, state.attempt_number, exc, delay)

    return Retrying(
        stop=stop_after_attempt(attempts),
        reraise=True,
        before_sleep=warn,
        wait=wait_exponential(multiplier=backoff_seconds, min=0, max=max(60.0, backoff_seconds)),
        retry=retry_if_exception(is_retryable_api_error),
    )


def api_error_message(exc: Exception, cfg: ServingConfig) -> str | None:
    """One line naming the object, the HTTP status and the API server's reason; None if not an API error."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return None
    reason, message = exc.reason or "", ""
    try:
        status = json.loads(exc.body or "")
        reason = status.get("reason") or reason
        message = status.get("message") or ""
    except (TypeError, ValueError):
        message = (exc.body or "").strip() if isinstance(exc.body, str) else ""
    message = " ".join(message.split())  # the API server's multi-line field errors, on one line
    return f"InferenceService {cfg.namespace}/{cfg.name}: the API server answered {exc.status} {reason}" + (
        f": {message}" if message else ""
    )


def edge_refusal(selection: dict, allow_no_edge: bool = False) -> str | None:
    """Why a selection's champion must not be rolled out (None when it may): only a champion whose verdict is
    "credible edge" goes out unless ``allow_no_edge`` — a noise model is a demo, not a production canary."""
    champion = selection.get("champion") or {}
    verdict = champion.get("verdict") or selection.get("verdict") or "no credible edge"
    if verdict == "credible edge" or allow_no_edge:
        return None
    return (
        f"refused: champion {champion.get('variant')} has verdict {verdict!r} "
        "(see best_model_selection.json); set allow_no_edge (pipeline parameter deploy_without_edge, "
        "spx deploy --allow-no-edge) to roll it out anyway"
    )


def get_isvc(api, namespace: str, name: str) -> dict | None:
    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except Exception as exc:  # noqa: BLE001 - only 404 is "absent"
        if _is_status(exc, 404):
            return None
        raise


def apply_action(api, action: RolloutAction) -> dict | None:
    if action.verb == "noop":
        return None
    if action.verb == "create":
        return api.create_namespaced_custom_object(
            GROUP, VERSION, action.namespace, PLURAL, action.body, field_validation="Strict"
        )
    return api.patch_namespaced_custom_object(
        GROUP, VERSION, action.namespace, PLURAL, action.name, action.body, field_validation="Strict"
    )


def run_with_retries(
    api,
    cfg: ServingConfig,
    plan: Callable[[dict | None], Any],
    *,
    dry_run: bool = False,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
    printer: Callable[[str], None] = print,
):
    """Read the object, plan, apply; on 409/429/5xx or a dropped connection, back off and re-plan.

    ``plan`` returns a :class:`RolloutAction` or a :class:`PromoteDecision`. Each attempt re-reads
    the object, so a retry after a partial success finds the work done and turns into a no-op.
    """

    def once():
        current = get_isvc(api, cfg.namespace, cfg.name)
        result = plan(current)
        action = result.action if isinstance(result, PromoteDecision) else result
        if dry_run:
            printer(action.describe())
            return result
        log.info("%s", action.reason)
        apply_action(api, action)
        return result

    try:
        return api_retrying(attempts, backoff_seconds)(once)
    except RolloutError:
        raise
    except Exception as exc:  # noqa: BLE001 - an API error becomes one line naming the object
        message = api_error_message(exc, cfg)
        if message is not None:
            raise RolloutError(message) from exc
        raise


def load_selection(selection_uri: str, store=None) -> dict:
    """Read ``best_model_selection.json`` from the object store."""
    if not selection_uri.startswith("s3://"):
        raise RolloutError(f"selection URI must be s3://…, got {selection_uri!r}")
    if store is None:
        from spx.core.storage import ObjectStore

        store = ObjectStore()
    return store.get_json(selection_uri)


def deploy(
    api,
    candidate: ModelRef,
    cfg: ServingConfig,
    canary_percent: int = 10,
    *,
    dry_run: bool = False,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
    printer: Callable[[str], None] = print,
) -> RolloutAction:
    return run_with_retries(
        api,
        cfg,
        lambda cur: plan_deploy(cur, candidate, cfg, canary_percent),
        dry_run=dry_run,
        attempts=attempts,
        backoff_seconds=backoff_seconds,
        printer=printer,
    )


def promote(
    api,
    health: CanaryHealth,
    thresholds: HealthThresholds,
    cfg: ServingConfig,
    *,
    dry_run: bool = False,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
    printer: Callable[[str], None] = print,
) -> PromoteDecision:
    return run_with_retries(
        api,
        cfg,
        lambda cur: plan_promote(cur, health, thresholds, cfg),
        dry_run=dry_run,
        attempts=attempts,
        backoff_seconds=backoff_seconds,
        printer=printer,
    )
