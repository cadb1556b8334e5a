"""Compile-time options of a pipeline: the container image, retries and cluster object names per task.

Nothing is read at import time: a pipeline module defines its DAG as a plain function and a
``build_*`` function decorates it inside :func:`compiling`, so every task created while the DAG is traced
gets the options passed in (``PipelineTask.set_container_image``, ``set_retry``, the Secret/ConfigMap it
reads its environment from). ``spx compile --image …`` and ``spx run`` build with different options in
one interpreter.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from kfp import dsl

from spx.core.settings import DEFAULT_COMPONENT_IMAGE, settings

# KFP 2.5 applies a task's retry policy only to top-level tasks of the root DAG (not inside dsl.If or
# sub-DAGs): a step inside a condition must be idempotent and re-planned by its next scheduled run.
RETRY_BACKOFF = dict(backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")


@dataclass(frozen=True)
class CompileOptions:
    image: str = DEFAULT_COMPONENT_IMAGE
    retries: int = 3
    s3_secret: str = "spx-kfp-s3"
    config_map: str = "spx-kfp-env"
    # built for `spx run` (KFP's local runner): the run id and bronze tasks are cacheable (keyed on run_key)
    local: bool = False

    @classmethod
    def from_settings(cls, **overrides: object) -> "CompileOptions":
        """Options from the settings (``SPX_COMPONENT_IMAGE``, ``SPX_PIPELINE_RETRIES``, ``SPX_K8S_*``);
        ``None`` overrides are ignored."""
        cfg = settings()
        base = cls(
            image=cfg.pipeline.component_image,
            retries=cfg.pipeline.retries,
            s3_secret=cfg.cluster.s3_secret,
            config_map=cfg.cluster.env_configmap,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


DEFAULT_OPTIONS = CompileOptions()
_CURRENT: contextvars.ContextVar[CompileOptions] = contextvars.ContextVar(
    "spx_compile_options", default=DEFAULT_OPTIONS
)


@contextmanager
def compiling(options: CompileOptions) -> Iterator[CompileOptions]:
    token = _CURRENT.set(options)
    try:
        yield options
    finally:
        _CURRENT.reset(token)


def current_options() -> CompileOptions:
    return _CURRENT.get()


def configure(
    task: dsl.PipelineTask,
    *,
    cpu: str = "1",
    memory: str = "2G",
    cpu_limit: str = "2",
    memory_limit: str = "4G",
    retry: bool = True,
) -> dsl.PipelineTask:
    """Image, retries with exponential backoff, resources, and the cluster's S3/MLflow settings as env."""
    from spx.pipelines.k8s import use_cluster_env

    opts = current_options()
    task.set_container_image(opts.image)
    if retry and opts.retries > 0:
        task.set_retry(num_retries=opts.retries, **RETRY_BACKOFF)
    task.set_cpu_request(cpu).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory).set_memory_limit(memory_limit)
    use_cluster_env(task, secret_name=opts.s3_secret, config_map=opts.config_map)
    return task
