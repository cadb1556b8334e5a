"""Retrain trigger: decide, then start the training pipeline (KFP in the cluster, local runner here).

In the cluster the training pipeline is already uploaded (``spx submit`` uploads ``spx-training``);
the trigger starts its newest version through ``kfp.Client`` — ``GET /apis/v2beta1/pipelines``
(filter by display name), ``GET /apis/v2beta1/pipelines/{id}/versions``, ``GET/POST
/apis/v2beta1/experiments``, ``POST /apis/v2beta1/runs``. Inside a KFP pod the client authenticates
with the pod's projected service-account token (``KF_PIPELINES_SA_TOKEN_PATH``) when present.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from spx.core.logs import setup_logging
from spx.core.settings import child_env, settings

log = logging.getLogger(__name__)

TRAINING_PIPELINE = "spx-training"
RETRAIN_EXPERIMENT = "spx-retrain"


@dataclass
class Decision:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    drift_share: float | None = None
    hit_rate: float | None = None
    n_labeled: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    *,
    drift_share: float | None,
    hit_rate: float | None,
    n_labeled: int,
    drift_threshold: float = 0.5,
    hit_rate_floor: float = 0.5,
    min_labeled: int = 100,
    prediction_drifted: bool = False,
) -> Decision:
    """Retrain when the drift share reaches ``drift_threshold``, or the live hit rate (on at least
    ``min_labeled`` realized labels) falls below ``hit_rate_floor``, or (opt-in) predictions drifted."""
    if not 0.0 < drift_threshold <= 1.0:
        raise ValueError(f"drift_threshold must be in (0, 1], got {drift_threshold}")
    if not 0.0 <= hit_rate_floor <= 1.0:
        raise ValueError(f"hit_rate_floor must be in [0, 1], got {hit_rate_floor}")
    reasons = []
    if drift_share is not None and drift_share >= drift_threshold:
        reasons.append(f"drift share {drift_share:.2f} >= {drift_threshold:.2f}")
    if hit_rate is not None and n_labeled >= min_labeled and hit_rate < hit_rate_floor:
        reasons.append(f"live hit rate {hit_rate:.3f} < {hit_rate_floor:.3f} on {n_labeled} labels")
    if prediction_drifted:
        reasons.append("prediction distribution drifted")
    return Decision(bool(reasons), reasons, drift_share, hit_rate, n_labeled)


def kfp_client(host: str = "", namespace: str = "", existing_token: str = ""):
    """A ``kfp.Client``; in a pod, the projected SA token (multi-user KFP) is used when mounted."""
    # kfp.client directly: inside a KFP task (_KFP_RUNTIME=true) the top-level kfp omits Client
    from kfp.client import Client

    kwargs: dict[str, Any] = {}
    if host:
        kwargs["host"] = host
    if namespace:
        kwargs["namespace"] = namespace
    if existing_token:
        kwargs["existing_token"] = existing_token
    elif os.path.exists(token_path := settings().cluster.kfp_sa_token_path):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=token_path)
    return Client(**kwargs)


def start_training_kfp(
    client,
    *,
    pipeline_name: str = TRAINING_PIPELINE,
    experiment: str = RETRAIN_EXPERIMENT,
    params: dict | None = None,
    run_name: str = "",
    namespace: str = "",
    version_id: str = "",
    service_account: str = "",
    reason: str = "",
) -> str:
    """Start a run of the newest (or the given) version of ``pipeline_name``; returns the run id."""
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise LookupError(f"no pipeline named {pipeline_name!r} on the KFP server: upload it first (spx submit)")
    if not version_id:
        resp = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=1, sort_by="created_at desc")
        versions = resp.pipeline_versions or []
        if not versions:
            raise LookupError(f"pipeline {pipeline_name!r} ({pipeline_id}) has no versions")
        version_id = versions[0].pipeline_version_id
    exp = client.create_experiment(name=experiment, namespace=namespace or None)
    name = run_name or f"retrain {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}" + (f" ({reason})" if reason else "")
    run = client.run_pipeline(
        experiment_id=exp.experiment_id,
        job_name=name[:120],
        params=dict(params or {}),
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=service_account or None,
    )
    log.info("started training run %s (pipeline %s, version %s): %s", run.run_id, pipeline_name, version_id, reason)
    return run.run_id


def start_training_kfp_subprocess(
    *,
    host: str = "",
    namespace: str = "",
    pipeline_name: str = TRAINING_PIPELINE,
    experiment: str = RETRAIN_EXPERIMENT,
    params: dict | None = None,
    run_name: str = "",
    service_account: str = "",
    reason: str = "",
) -> str:
    """:func:`start_training_kfp` in a fresh interpreter.

    Inside a KFP task the SDK is imported in its slim runtime mode (``_KFP_RUNTIME=true``) where
    ``kfp.client`` cannot be imported; a child process without that flag gets the full client."""
    import json
    import subprocess
    import sys

    env = child_env()
    env.pop("_KFP_RUNTIME", None)
    args = {
        "host": host,
        "namespace": namespace,
        "pipeline_name": pipeline_name,
        "experiment": experiment,
        "params": params or {},
        "run_name": run_name,
        "service_account": service_account,
        "reason": reason,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "spx.components.monitoring.trigger", json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"starting the training run failed:\n{proc.stderr.strip()[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]


def _main(argv: list[str] | None = None) -> None:
    import json
    import sys

    a = json.loads((argv or sys.argv[1:])[0])
    setup_logging(stream=sys.stderr)
    client = kfp_client(a.get("host", ""), a.get("namespace", ""))
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # the KFP SDK prints links; keep stdout for the result
        run_id = start_training_kfp(
            client,
            pipeline_name=a["pipeline_name"],
            experiment=a["experiment"],
            params=a.get("params"),
            run_name=a.get("run_name", ""),
            namespace=a.get("namespace", ""),
            service_account=a.get("service_account", ""),
            reason=a.get("reason", ""),
        )
    print(json.dumps({"run_id": run_id}))


if __name__ == "__main__":
    _main()
