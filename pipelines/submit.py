"""Upload the compiled training pipeline to KFP as a new pipeline version and start a run (``spx submit``).

The version name carries the package's content hash, so submitting the same package twice reuses the
version instead of piling up duplicates (KFP rejects duplicate version names).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitResult:
    pipeline_id: str
    version_id: str
    version_name: str
    run_id: str | None
    uploaded: bool


def default_pipeline_root() -> str:
    """Where KFP writes the runs' artifacts: ``SPX_PIPELINE_ROOT``, else ``s3://$SPX_BUCKET/pipeline-root``."""
    from spx.core.settings import settings

    cfg = settings()
    root = cfg.pipeline.pipeline_root or f"s3://{cfg.s3.bucket}/pipeline-root"
    if not root.startswith(("s3://", "minio://")):
        raise ValueError(f"pipeline root must be an s3:// URI, got {root!r}")
    return root


def package_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compile_package(output_dir: str | Path, image: str | None = None) -> str:
    """Compile the training pipeline with the lead's ``spx.pipelines.compile.compile_pipeline``."""
    from spx.pipelines.compile import compile_pipeline

    return compile_pipeline(str(Path(output_dir) / "training_pipeline.yaml"), image=image)


def _find_version(client, pipeline_id: str, version_name: str):
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": version_name}]})
    resp = client.list_pipeline_versions(pipeline_id=pipeline_id, filter=flt, page_size=10)
    versions = resp.pipeline_versions or []
    return versions[0] if versions else None


def upload_version(client, package_path: str, pipeline_name: str, version_name: str | None = None):
    """Upload ``package_path`` as a version of ``pipeline_name`` (creating the pipeline if needed)."""
    version_name = version_name or f"{pipeline_name}-{package_digest(package_path)[:12]}"
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(package_path, pipeline_name=pipeline_name)
        pipeline_id = pipeline.pipeline_id
    existing = _find_version(client, pipeline_id, version_name)
    if existing is not None:
        log.info("pipeline version %s already uploaded", version_name)
        return pipeline_id, existing.pipeline_version_id, version_name, False
    version = client.upload_pipeline_version(package_path, pipeline_version_name=version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id, version_name, True


def submit(
    client,
    *,
    pipeline_name: str = "spx-training",
    package_path: str | None = None,
    image: str | None = None,
    version_name: str | None = None,
    experiment_name: str = "spx-direction",
    run_name: str | None = None,
    params: dict | None = None,
    enable_caching: bool | None = None,
    service_account: str | None = None,
    start_run: bool = True,
    namespace: str | None = None,
    pipeline_root: str | None = None,
) -> SubmitResult:
    """Upload a pipeline version (compiling first unless ``package_path`` is given) and start a run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = package_path or compile_package(tmp, image=image)
        pipeline_id, version_id, vname, uploaded = upload_version(client, path, pipeline_name, version_name)
    run_id = None
    if start_run:
        experiment = client.create_experiment(name=experiment_name, namespace=namespace)
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=run_name or vname,
            params=dict(params or {}),
            pipeline_id=pipeline_id,
            version_id=version_id,
            enable_caching=enable_caching,
            service_account=service_account,
            pipeline_root=pipeline_root or default_pipeline_root(),
        )
        run_id = run.run_id
    return SubmitResult(pipeline_id, version_id, vname, run_id, uploaded)


def kfp_client(host: str, namespace: str | None = None, existing_token: str | None = None):
    import kfp

    kwargs = {"host": host, "existing_token": existing_token}
    if namespace:
        kwargs["namespace"] = namespace
    return kfp.Client(**kwargs)
