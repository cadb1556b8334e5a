"""Compile the training pipeline to KFP IR YAML."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def compile_pipeline(output_path: str, image: str | None = None) -> str:
    """Write the compiled pipeline spec; ``image`` overrides ``SPX_COMPONENT_IMAGE`` for every task."""
    from kfp import compiler

    if image:
        os.environ["SPX_COMPONENT_IMAGE"] = image
        # component definitions read the image at import time: import them afresh
        for name in [m for m in sys.modules if m.startswith(("components.", "pipelines."))
                     and (m.endswith(".component") or m in ("components.kfp_base", "pipelines.training",
                                                             "pipelines.steps"))]:
            del sys.modules[name]
    training = importlib.import_module("pipelines.training")
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training.training_pipeline, package_path=str(output_path))
    return str(output_path)


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "build/spx-training.yaml"))
