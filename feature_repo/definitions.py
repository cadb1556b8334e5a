"""Feast definitions for the Feast CLI (`feast apply` in this directory).

The feature views are generated from a gold run's manifest, so they always match the table the
champion was trained on: set ``SPX_GOLD_URI`` (``s3://…/gold/{run_id}/features.parquet``) and
``SPX_MANIFEST_URI`` (``…/manifest.json``), plus the S3 variables (``SPX_S3_ENDPOINT``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). The pipeline does the same through the
``feast_materialize`` component (components/serving/component.py), without the CLI.

Objects: entity ``instrument``; feature views ``market_features`` and, when the manifest lists
``news_*`` columns, ``news_features``; both over the gold parquet (labels excluded).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spx.components.serving.features import definitions  # noqa: E402
from spx.core.storage import ObjectStore  # noqa: E402

_gold_uri = os.environ.get("SPX_GOLD_URI")
_manifest_uri = os.environ.get("SPX_MANIFEST_URI")
if not _gold_uri or not _manifest_uri:
    raise RuntimeError("set SPX_GOLD_URI and SPX_MANIFEST_URI to the gold run to serve")

_defs = definitions(ObjectStore().get_json(_manifest_uri), _gold_uri)
instrument = _defs.entity
market_features = _defs.views[0]
news_features = _defs.views[1] if len(_defs.views) > 1 else None
