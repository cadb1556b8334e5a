"""The one decorator every spx KFP component uses.

Lightweight Python components whose base image is the project's component image (the package is
installed there), so ``install_kfp_package=False`` and every function body just imports the stage
logic. Locally, KFP's SubprocessRunner runs the very same functions in this environment.
The image is read from ``SPX_COMPONENT_IMAGE`` when this module is first imported
(``spx compile --image`` sets it before importing the pipeline).
"""

from __future__ import annotations

import functools

from kfp import dsl

from spx.config import settings

COMPONENT_IMAGE = settings().component_image

spx_component = functools.partial(dsl.component, base_image=COMPONENT_IMAGE, install_kfp_package=False)
