"""Run the training pipeline on this machine with KFP's local runner — no cluster.

Starts the embedded services (a real S3 server on loopback; MLflow tracks into SQLite under
``$SPX_HOME``), then executes the *same* compiled components with ``kfp.local.SubprocessRunner``
in this Python environment, and prints the variants table and the champion.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

from spx.config import settings
from spx.local_services import embedded_s3
from spx.storage import ObjectStore

log = logging.getLogger(__name__)


def run_local(**params: Any) -> dict:
    """Execute the pipeline locally; returns the selection (``best_model_selection.json``) as a dict."""
    from kfp import local

    # the local runner's notices: cluster-only task settings, and our (non-python:*) component image
    warnings.filterwarnings("ignore", message=r"(?s).*have no effect in the current local runner", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"(?s).*non-Python base image", category=RuntimeWarning)
    os.environ.setdefault("SPX_PIPELINE_RETRIES", "0")
    cfg = settings()
    cfg.home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPX_HOME", str(cfg.home))
    os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.mlflow_tracking_uri)
    started = time.perf_counter()
    with embedded_s3(cfg.home):
        store = ObjectStore()
        store.ensure_bucket()
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(cfg.home / "kfp-local"),
                   raise_on_error=True)
        from pipelines.training import training_pipeline

        task = training_pipeline(**params)
        selection_uri = task.output
        selection = store.get_json(selection_uri)
        manifest_key = f"gold/{selection['run_id']}/manifest.json"
        if store.exists(manifest_key):  # what the run trained on, for the summary
            manifest = store.get_json(manifest_key)
            selection["news"] = {**manifest.get("news", {}),
                                 "news_features": len(manifest.get("news_feature_columns") or [])}
    selection["selection_uri"] = selection_uri
    selection["elapsed_s"] = round(time.perf_counter() - started, 1)
    return selection
