"""The one decorator every spx KFP component uses.

Lightweight Python components whose image is the project's component image (the package is installed
there), so ``install_kfp_package=False`` and every function body imports its stage logic. The image in the
decorator is only a default: the pipelines set the real one per task at compile time
(``PipelineTask.set_container_image``, see ``spx.pipelines.options``), so nothing here reads the
environment at import time. Locally, KFP's SubprocessRunner runs the same functions in this environment.
"""

from __future__ import annotations

import functools

from kfp import dsl

from spx.core.settings import DEFAULT_COMPONENT_IMAGE

spx_component = functools.partial(dsl.component, base_image=DEFAULT_COMPONENT_IMAGE, install_kfp_package=False)
