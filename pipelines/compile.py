"""Compile the training pipeline to KFP IR YAML."""

from __future__ import annotations

import sys
from pathlib import Path

from spx.pipelines.options import CompileOptions


def compile_pipeline(output_path: str, image: str | None = None, *, retries: int | None = None) -> str:
    """Write the compiled pipeline spec; ``image``/``retries`` override the settings for every task."""
    from kfp import compiler

    from spx.pipelines.training import build_training_pipeline

    pipeline = build_training_pipeline(CompileOptions.from_settings(image=image, retries=retries))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(output_path))
    return str(output_path)


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "build/spx-training.yaml"))
