"""Create the local MLflow database and experiment of a local run, in a process of its own.

``spx run`` starts this (``python -m spx.pipelines.mlflow_db BUCKET``, a fork of the warm interpreter when there
is one) beside the first tasks, which do not use MLflow, and holds the training loop and the selection until it
has finished: two training tasks creating one SQLite schema (or one experiment) at once race. In its own
process because importing MLflow and creating its schema (~2 s each) would otherwise hold ``spx run``'s GIL
against the threads that start and follow the tasks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spx.core.settings import Settings, settings


def prepare_mlflow(cfg: Settings, bucket: str) -> bool:
    """Create the SQLite database and the experiment (artifacts under ``s3://bucket/mlflow``) when the database
    does not exist yet; True when it did something. A tracking server (http) or an existing database: nothing."""
    uri = cfg.mlflow_tracking_uri
    if not needs_preparing(cfg):
        return False
    import mlflow

    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(cfg.mlflow_experiment) is None:
        mlflow.create_experiment(cfg.mlflow_experiment, artifact_location=f"s3://{bucket}/mlflow")
    return True


def needs_preparing(cfg: Settings) -> bool:
    uri = cfg.mlflow_tracking_uri
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists()


if __name__ == "__main__":
    prepare_mlflow(settings(), sys.argv[1])
